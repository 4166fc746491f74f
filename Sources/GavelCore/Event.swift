/// Why a market order left the book without trading.
public enum CancelReason: String, Sendable, Hashable {
    case cancelled
    case ioc
    case selfTrade = "self_trade"
    case expired
    case closed
}

/// What happened to a listing.
public enum EventKind: Sendable, Hashable {
    /// The listing was opened with these public terms (a reserve is never shown, only whether there is one).
    /// Boxed: the terms take 161 bytes, and every event is copied several times on its way out, so the one event
    /// of a listing that carries them should not make every other event that size.
    indirect case opened(seller: String, terms: ListingTerms)
    /// An english bid was accepted.
    case bidPlaced(price: Money, leader: String, bids: Int64, closesAt: Millis, reserveMet: Bool)
    /// A sealed bid was accepted; nothing but the count is public.
    case sealedBidPlaced(bids: Int64)
    /// A private notice to `bidder`: somebody else leads at `price`.
    case outbid(bidder: String, price: Money)
    /// Soft close moved the close.
    case extended(closesAt: Millis)
    /// A Dutch clock step.
    case price(Money)
    /// A Dutch accept filled.
    case filled(bidder: String, price: Money, quantity: Int64, remaining: Int64)
    /// An english or sealed listing closed.
    case closed(winner: String?, price: Money?, reserveMet: Bool)
    /// A Dutch listing closed, sold out or at its close.
    case dutchClosed(sold: Int64)
    /// A market listing closed.
    case marketClosed
    case orderPlaced(order: String, trader: String, side: Side, price: Money, quantity: Int64)
    case orderCancelled(order: String, trader: String, reason: CancelReason, remaining: Int64)
    case trade(buyer: String, seller: String, price: Money, quantity: Int64, buyOrder: String, sellOrder: String)
    case book(bestBid: Money?, bestAsk: Money?, bidQuantity: Int64?, askQuantity: Int64?)
    case listingCancelled
    /// The listing left the engine's memory, its retention after the close over (see
    /// ``EngineConfiguration/closedListingRetentionMs``). Internal: it carries `seq` 0 and is not sent to clients;
    /// the writer frees the listing's queue and the gateway drops its public view and history.
    case evicted
    /// A private notice to a settlement's buyer and seller: it was created or made a transition.
    indirect case settlement(SettlementChange)
    /// A private notice to a listing's seller and its runner-up: a second-chance offer was made, accepted, declined
    /// or expired.
    indirect case secondChance(SecondChanceOffer)
    /// The engine dropped these terminal settlements of a listing that stays in memory (a market listing) from its
    /// memory, their retention over. Internal, like ``evicted``: the gateway drops their view rows.
    indirect case settlementsPruned([Int64])

    /// The protocol name of the event's type.
    public var typeName: String {
        switch self {
        case .opened: "opened"
        case .bidPlaced, .sealedBidPlaced: "bid_placed"
        case .outbid: "outbid"
        case .extended: "extended"
        case .price: "price"
        case .filled: "filled"
        case .closed, .dutchClosed, .marketClosed: "closed"
        case .orderPlaced: "order_placed"
        case .orderCancelled: "order_cancelled"
        case .trade: "trade"
        case .book: "book"
        case .listingCancelled: "listing_cancelled"
        case .evicted: "evicted"
        case .settlement: "settlement"
        case .secondChance: "second_chance"
        case .settlementsPruned: "settlements_pruned"
        }
    }

    /// Whether the event is a private notice for one user rather than a public listing event.
    public var isPrivate: Bool {
        switch self {
        case .outbid, .settlement, .secondChance: true
        default: false
        }
    }

    /// Whether the event ends its listing: it closed, sold out or was cancelled. Every listing has exactly one.
    var endsListing: Bool {
        switch self {
        case .closed, .dutchClosed, .marketClosed, .listingCancelled: true
        default: false
        }
    }

    /// Whether the event is the engine's own bookkeeping (``evicted``, ``settlementsPruned``), never shown to clients.
    public var isInternal: Bool {
        switch self {
        case .evicted, .settlementsPruned: true
        default: false
        }
    }
}

/// An event on a listing at an engine time. Public events carry the listing's `seq`, which counts its public events
/// from 1 without gaps; private notices carry `seq == 0`.
public struct Event: Sendable, Hashable {
    public var listing: String
    public var seq: UInt64
    public var at: Millis
    public var kind: EventKind

    public init(listing: String, seq: UInt64, at: Millis, kind: EventKind) {
        self.listing = listing
        self.seq = seq
        self.at = at
        self.kind = kind
    }
}
