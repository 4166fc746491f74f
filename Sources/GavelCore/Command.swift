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

        /// The settlement deadlines given in `open`.
        public var deadlines: SettlementDeadlines

        public init(
            start: Money, reserve: Money? = nil, buyNow: Money? = nil, closesAt: Millis, opensAt: Millis? = nil,
            increments: [IncrementStep]? = nil, softClose: SoftClose? = nil,
            deadlines: SettlementDeadlines = SettlementDeadlines()
        ) {
            self.deadlines = deadlines
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

        /// The settlement deadlines given in `open`.
        public var deadlines: SettlementDeadlines

        public init(
            pricing: SealedPricing, start: Money, reserve: Money? = nil, closesAt: Millis, opensAt: Millis? = nil,
            deadlines: SettlementDeadlines = SettlementDeadlines()
        ) {
            self.deadlines = deadlines
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

        /// The settlement deadlines given in `open`.
        public var deadlines: SettlementDeadlines

        public init(
            start: Money, floor: Money, step: Money, stepEveryMs: Millis, quantity: Int64, closesAt: Millis,
            opensAt: Millis? = nil, deadlines: SettlementDeadlines = SettlementDeadlines()
        ) {
            self.deadlines = deadlines
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

        /// The settlement deadlines given in `open`.
        public var deadlines: SettlementDeadlines

        public init(
            closesAt: Millis? = nil, opensAt: Millis? = nil, deadlines: SettlementDeadlines = SettlementDeadlines()
        ) {
            self.deadlines = deadlines
            self.closesAt = closesAt
            self.opensAt = opensAt
        }
    }

    /// The settlement deadlines given in `open`, whatever the format.
    public var deadlines: SettlementDeadlines {
        get {
            switch self {
            case .english(let t): t.deadlines
            case .sealed(let t): t.deadlines
            case .dutch(let t): t.deadlines
            case .market(let t): t.deadlines
            }
        }
        set { modifyShared { _, deadlines in deadlines = newValue } }
    }

    /// Changes the fields every format has, its `opens_at` and its settlement deadlines, in place.
    mutating func modifyShared(_ change: (inout Millis?, inout SettlementDeadlines) -> Void) {
        switch self {
        case .english(var t):
            change(&t.opensAt, &t.deadlines)
            self = .english(t)
        case .sealed(var t):
            change(&t.opensAt, &t.deadlines)
            self = .sealed(t)
        case .dutch(var t):
            change(&t.opensAt, &t.deadlines)
            self = .dutch(t)
        case .market(var t):
            change(&t.opensAt, &t.deadlines)
            self = .market(t)
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
    /// Boxed, as ``EventKind/opened(seller:terms:)`` is: one open per listing should not make every bid the size
    /// of its 161 bytes of terms.
    indirect case open(seller: String, terms: ListingTerms)
    case bid(bidder: String, amount: Money)
    case buyNow(buyer: String)
    case accept(bidder: String, quantity: Int64)
    case order(trader: String, side: Side, price: Money, quantity: Int64, tif: TimeInForce, expiresAt: Millis?)
    case cancel(trader: String, order: String)
    case cancelListing(seller: String)
    /// `cancel_listing` by an admin, who may cancel any listing (the other rules stay: no bids or fills).
    case cancelListingAsAdmin(admin: String)
    /// A settlement command on the listing's settlement `number`, by `by` acting as `role`.
    case settle(number: Int64, action: SettlementAction, by: String, role: ActorRole)
    /// A second-chance command on the listing, by `by` acting as `role`.
    case secondChance(OfferAction, by: String, role: ActorRole)
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

    /// The principal the command acts as: its seller, bidder, buyer, trader, admin or `by`.
    public var principal: String {
        switch body {
        case .open(let seller, _), .cancelListing(let seller): seller
        case .bid(let bidder, _), .accept(let bidder, _): bidder
        case .buyNow(let buyer): buyer
        case .order(let trader, _, _, _, _, _), .cancel(let trader, _): trader
        case .cancelListingAsAdmin(let admin): admin
        case .settle(_, _, let by, _), .secondChance(_, let by, _): by
        }
    }

    /// The id of the settlement a settlement command acts on, `nil` for other commands.
    public var settlementID: String? {
        guard case .settle(let number, _, _, _) = body else { return nil }
        return SettlementID.format(listing: listing, number: number)
    }

    /// The command's type.
    public var kind: CommandKind { body.kind }

    /// The protocol name of the command's type.
    public var typeName: String { body.kind.rawValue }
}
