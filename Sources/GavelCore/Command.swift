/// A soft-close rule for english listings: a bid in the last `windowMs` before the close moves the close to
/// at least `extendMs` after the bid, never past `maxClosesAt`.
public struct SoftClose: Sendable, Hashable {
    public var windowMs: Millis
    public var extendMs: Millis
    /// The latest the close may move to; `nil` means no cap.
    public var maxClosesAt: Millis?

    public init(windowMs: Millis, extendMs: Millis, maxClosesAt: Millis?) {
        self.windowMs = windowMs
        self.extendMs = extendMs
        self.maxClosesAt = maxClosesAt
    }
}

/// One bracket of a bid increment ladder: from `from` upward the step is `step`.
public struct IncrementStep: Sendable, Hashable {
    public var from: Money
    public var step: Money

    public init(from: Money, step: Money) {
        self.from = from
        self.step = step
    }
}

/// The terms of a new listing, by format.
public enum ListingTerms: Sendable, Hashable {
    case english(English)
    case sealed(Sealed)
    case dutch(Dutch)
    case market(Market)

    /// An ascending auction with proxy bidding.
    public struct English: Sendable, Hashable {
        public var start: Money
        public var reserve: Money?
        public var buyNow: Money?
        public var closesAt: Millis
        public var opensAt: Millis?
        /// The increment ladder; `nil` means ``IncrementLadder/standard``.
        public var increments: [IncrementStep]?
        public var softClose: SoftClose?

        public init(
            start: Money, reserve: Money? = nil, buyNow: Money? = nil, closesAt: Millis, opensAt: Millis? = nil,
            increments: [IncrementStep]? = nil, softClose: SoftClose? = nil
        ) {
            self.start = start
            self.reserve = reserve
            self.buyNow = buyNow
            self.closesAt = closesAt
            self.opensAt = opensAt
            self.increments = increments
            self.softClose = softClose
        }
    }

    /// A sealed-bid auction.
    public struct Sealed: Sendable, Hashable {
        public var pricing: SealedPricing
        public var start: Money
        public var reserve: Money?
        public var closesAt: Millis
        public var opensAt: Millis?

        public init(
            pricing: SealedPricing, start: Money, reserve: Money? = nil, closesAt: Millis, opensAt: Millis? = nil
        ) {
            self.pricing = pricing
            self.start = start
            self.reserve = reserve
            self.closesAt = closesAt
            self.opensAt = opensAt
        }
    }

    /// A descending-clock, multi-unit auction.
    public struct Dutch: Sendable, Hashable {
        public var start: Money
        public var floor: Money
        public var step: Money
        public var stepEveryMs: Millis
        public var quantity: Int64
        public var closesAt: Millis
        public var opensAt: Millis?

        public init(
            start: Money, floor: Money, step: Money, stepEveryMs: Millis, quantity: Int64, closesAt: Millis,
            opensAt: Millis? = nil
        ) {
            self.start = start
            self.floor = floor
            self.step = step
            self.stepEveryMs = stepEveryMs
            self.quantity = quantity
            self.closesAt = closesAt
            self.opensAt = opensAt
        }
    }

    /// Continuous bid/ask matching.
    public struct Market: Sendable, Hashable {
        public var closesAt: Millis?
        public var opensAt: Millis?

        public init(closesAt: Millis? = nil, opensAt: Millis? = nil) {
            self.closesAt = closesAt
            self.opensAt = opensAt
        }
    }

    /// The format these terms open.
    public var format: ListingFormat {
        switch self {
        case .english: .english
        case .sealed: .sealed
        case .dutch: .dutch
        case .market: .market
        }
    }
}

/// What a command asks for, with its actor.
public enum CommandBody: Sendable, Hashable {
    case open(seller: String, terms: ListingTerms)
    case bid(bidder: String, amount: Money)
    case buyNow(buyer: String)
    case accept(bidder: String, quantity: Int64)
    case order(trader: String, side: Side, price: Money, quantity: Int64, tif: TimeInForce, expiresAt: Millis?)
    case cancel(trader: String, order: String)
    case cancelListing(seller: String)
}

/// A command to the engine: a request `id` (unique per principal), the listing it is for, and its body.
///
/// Two commands are equal when every field is equal; the engine time at which a command is applied is not part of
/// it, so a retried command compares equal to the original.
public struct Command: Sendable, Hashable {
    public var id: String
    public var listing: String
    public var body: CommandBody

    public init(id: String, listing: String, body: CommandBody) {
        self.id = id
        self.listing = listing
        self.body = body
    }

    /// The principal the command acts as: its seller, bidder, buyer or trader.
    public var principal: String {
        switch body {
        case .open(let seller, _), .cancelListing(let seller): seller
        case .bid(let bidder, _), .accept(let bidder, _): bidder
        case .buyNow(let buyer): buyer
        case .order(let trader, _, _, _, _, _), .cancel(let trader, _): trader
        }
    }

    /// The protocol name of the command's type.
    public var typeName: String {
        switch body {
        case .open: "open"
        case .bid: "bid"
        case .buyNow: "buy_now"
        case .accept: "accept"
        case .order: "order"
        case .cancel: "cancel"
        case .cancelListing: "cancel_listing"
        }
    }
}
