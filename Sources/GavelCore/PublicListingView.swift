/// What anybody may see of one listing: its public terms, status, and the public state of its book, as of its
/// public event number ``seq``.
///
/// A view is built once from an ``Engine`` (``init(_:listing:)``, after recovery) or from the listing's `opened`
/// event, and then kept current with ``apply(_:)`` from the listing's public events in `seq` order. It never holds
/// anything the events do not publish: no reserve amount (only whether there is one), no sealed amounts or leader
/// before the close, no resting orders beyond the top of the book.
public struct PublicListingView: Sendable, Hashable {
    /// The public state of the book, by format.
    public enum Book: Sendable, Hashable {
        /// `price` is the current price (the start until the first bid); `leader` is `nil` before the first bid.
        case english(price: Money, leader: String?, bids: Int64, reserveMet: Bool)
        /// Only the count of bids accepted so far, replacements included.
        case sealed(bids: Int64)
        /// `price` is the last published clock price.
        case dutch(price: Money, remaining: Int64)
        /// The top of the book; each side `nil` when empty.
        case market(bestBid: Money?, bestAsk: Money?, bidQuantity: Int64?, askQuantity: Int64?)
    }

    /// How an english or sealed listing ended (from its `closed` event).
    public struct Outcome: Sendable, Hashable {
        public var winner: String?
        public var price: Money?
        public var reserveMet: Bool

        public init(winner: String?, price: Money?, reserveMet: Bool) {
            self.winner = winner
            self.price = price
            self.reserveMet = reserveMet
        }
    }

    public var listing: String
    /// The `seq` of the last public event this view reflects.
    public var seq: UInt64
    public var seller: String
    /// The terms the listing was opened with. Encoders show only their public part (never a reserve amount).
    public var terms: ListingTerms
    /// When the listing opens (the `opens_at` it was given, or the engine time of its `open`).
    public var opensAt: Millis
    public var status: ListingStatus
    /// The current close, moved by soft close; `nil` for a market listing without one.
    public var closesAt: Millis?
    public var book: Book
    /// English and sealed, once closed. `nil` while open, and after a recovery for an english listing that was
    /// closed by `buy_now` (the engine does not keep the buyer).
    public var outcome: Outcome?
    /// Dutch, once closed: the units sold.
    public var sold: Int64?

    public var format: ListingFormat { terms.format }

    /// The view of a listing that has just been opened: its `opened` event.
    ///
    /// - Returns: `nil` when `event` is not an `opened` event.
    public init?(opened event: Event) {
        guard case .opened(let seller, let terms) = event.kind else { return nil }
        self.listing = event.listing
        self.seq = event.seq
        self.seller = seller
        self.terms = terms
        self.status = .open
        switch terms {
        case .english(let t):
            opensAt = t.opensAt ?? event.at
            closesAt = t.closesAt
            book = .english(price: t.start, leader: nil, bids: 0, reserveMet: t.reserve == nil)
        case .sealed(let t):
            opensAt = t.opensAt ?? event.at
            closesAt = t.closesAt
            book = .sealed(bids: 0)
        case .dutch(let t):
            opensAt = t.opensAt ?? event.at
            closesAt = t.closesAt
            book = .dutch(price: t.start, remaining: t.quantity)
        case .market(let t):
            opensAt = t.opensAt ?? event.at
            closesAt = t.closesAt
            book = .market(bestBid: nil, bestAsk: nil, bidQuantity: nil, askQuantity: nil)
        }
    }

    /// The view of `listing` as `engine` holds it now, or `nil` when there is no such listing.
    ///
    /// - Note: Read the engine on its owner's thread (before the writer starts, or inside `Writer.inspect`).
    public init?(_ engine: Engine, listing id: String) {
        guard let listing = engine.listings[id] else { return nil }
        self.init(listing)
    }

    /// The views of every listing in `engine`, in listing id order.
    public static func all(in engine: Engine) -> [PublicListingView] {
        engine.listings.keys.sorted().compactMap { engine.listings[$0].map(PublicListingView.init) }
    }

    init(_ listing: Listing) {
        self.listing = listing.id
        self.seq = listing.seq
        self.seller = listing.seller
        self.terms = listing.terms
        self.opensAt = listing.opensAt
        self.status = listing.status
        self.closesAt = listing.closesAt
        let closed = listing.status == .closed
        switch listing.book {
        case .english(let b):
            book = .english(price: b.price, leader: b.leader, bids: b.bids, reserveMet: b.reserveMet)
            if closed {
                if let buyer = b.buyer, let price = b.buyNow {
                    outcome = Outcome(winner: buyer, price: price, reserveMet: true)
                } else if let leader = b.leader, b.reserveMet {
                    outcome = Outcome(winner: leader, price: b.price, reserveMet: true)
                } else {
                    outcome = Outcome(winner: nil, price: nil, reserveMet: b.reserveMet)
                }
            }
        case .sealed(let b):
            book = .sealed(bids: b.count)
            if closed {
                let o = b.outcome
                outcome = Outcome(winner: o.winner, price: o.price, reserveMet: o.reserveMet)
            }
        case .dutch(let b):
            book = .dutch(price: b.price, remaining: b.remaining)
            if closed { sold = b.quantity - b.remaining }
        case .market(let b):
            let top = b.top
            book = .market(
                bestBid: top.bestBid, bestAsk: top.bestAsk, bidQuantity: top.bidQuantity, askQuantity: top.askQuantity)
        }
    }

    /// Applies `event` (``apply(_:)``) and says whether the listing is open after it.
    public mutating func applyIsOpen(_ event: Event) -> Bool {
        apply(event)
        return status == .open
    }

    /// Applies the listing's next public event.
    ///
    /// - Returns: `false` (and changes nothing) when `event` is not this listing's event number `seq + 1`, or is a
    ///   private notice.
    @discardableResult
    public mutating func apply(_ event: Event) -> Bool {
        guard event.listing == listing, !event.kind.isPrivate, event.seq == seq + 1 else { return false }
        seq = event.seq
        switch event.kind {
        case .opened, .outbid, .orderPlaced, .orderCancelled:
            break
        case .bidPlaced(let price, let leader, let bids, let closesAt, let reserveMet):
            book = .english(price: price, leader: leader, bids: bids, reserveMet: reserveMet)
            self.closesAt = closesAt
        case .sealedBidPlaced(let bids):
            book = .sealed(bids: bids)
        case .extended(let closesAt):
            self.closesAt = closesAt
        case .price(let price):
            if case .dutch(_, let remaining) = book { book = .dutch(price: price, remaining: remaining) }
        case .filled(_, let price, _, let remaining):
            book = .dutch(price: price, remaining: remaining)
        case .closed(let winner, let price, let reserveMet):
            status = .closed
            outcome = Outcome(winner: winner, price: price, reserveMet: reserveMet)
        case .dutchClosed(let sold):
            status = .closed
            self.sold = sold
        case .marketClosed:
            status = .closed
        case .trade:
            break
        case .book(let bestBid, let bestAsk, let bidQuantity, let askQuantity):
            book = .market(bestBid: bestBid, bestAsk: bestAsk, bidQuantity: bidQuantity, askQuantity: askQuantity)
        case .listingCancelled:
            status = .cancelled
        case .evicted, .settlement, .secondChance, .settlementsPruned:
            break
        }
        return true
    }
}
