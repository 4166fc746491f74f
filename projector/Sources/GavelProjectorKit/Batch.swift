/// The rows that a run of feed events writes, gathered in memory until they are applied in one transaction.
///
/// A batch is a pure function of the events added to it: no clock, no I/O. It closes only at an lsn boundary
/// (`isAtBoundary`), so the position it carries is always a fully applied lsn.
public struct Batch: Sendable {
    /// One row of `bids`: an accepted bid.
    public struct Bid: Sendable, Equatable {
        public var listing: String
        public var seq: Int64
        public var lsn: Int64
        public var at: Int64
        public var leader: String?
        public var price: Int64?
        public var bids: Int64
        public var reserveMet: Bool?
    }

    /// One row of `trades`: a market trade, or a dutch fill (`kind` "fill", the seller filled in from `listings`).
    public struct Trade: Sendable, Equatable {
        public var listing: String
        public var seq: Int64
        public var lsn: Int64
        public var at: Int64
        public var kind: String
        public var buyer: String
        public var seller: String?
        public var price: Int64
        public var quantity: Int64
        public var buyOrder: String?
        public var sellOrder: String?
        public var remaining: Int64?
    }

    /// One row of `settlement_transitions`: one `settlement` event.
    public struct Transition: Sendable, Equatable {
        public var settlement: String
        public var lsn: Int64
        public var index: Int32
        public var listing: String
        public var state: String
        public var at: Int64
        public var dueAt: Int64?
        public var by: String?
        public var role: String?
        public var paymentRef: String?
        public var tracking: String?
        public var reason: String?
        public var outcome: String?
    }

    /// What the batch's events say about one listing: a new row (`opened` in this batch) or changes to an
    /// existing one. Fields left nil keep their value.
    public struct Listing: Sendable, Equatable {
        public var id: String
        public var opened: Opened?
        public var status: String?
        public var closesAt: Int64?
        public var price: Int64?
        public var leader: String?
        public var bids: Int64?
        public var finalPrice: Int64?
        public var winner: String?
        public var reserveMet: Bool?
        public var sold: Int64?
        public var closedAt: Int64?
        public var updatedLSN: Int64
    }

    /// The columns an `opened` event sets once.
    public struct Opened: Sendable, Equatable {
        public var format: String
        public var seller: String
        public var opensAt: Int64?
        public var start: Int64?
        public var buyNow: Int64?
        public var pricing: String?
        public var hasReserve: Bool?
        public var quantity: Int64?
        public var terms: String
        public var openedAt: Int64
        public var openedLSN: Int64
    }

    /// The current state of one settlement after the batch's transitions.
    public struct Settlement: Sendable, Equatable {
        public var id: String
        public var listing: String
        public var buyer: String
        public var seller: String
        public var price: Int64
        public var quantity: Int64
        public var state: String
        public var dueAt: Int64?
        public var paymentRef: String?
        public var tracking: String?
        public var createdAt: Int64
        public var updatedAt: Int64
        public var createdLSN: Int64
        public var updatedLSN: Int64
    }

    /// A listing id opened in this batch: the rows the database holds under it (if any) are an earlier listing's
    /// that had the id (`gavel serve` forgets a listing once it is closed and past its retention, and the id may be
    /// opened again), and are renamed ``Batch/archivedID(_:lsn:)`` before the batch's rows are written, in the same
    /// transaction.
    public struct Reopening: Sendable, Equatable {
        public var listing: String
        /// The lsn of the `opened` event that took the id (the first in this batch).
        public var lsn: Int64
    }

    /// The position stored before this batch.
    public let startPosition: Int64
    /// The last lsn whose every message is in the batch (the position to store with it).
    public private(set) var position: Int64
    /// The server's `feed_mark` of the journal batch that holds `position`, stored with it and sent back as
    /// `expect` on resuming; nil while the server has sent none (one that sends no marks, or a read model from
    /// before they were kept).
    public private(set) var mark: FeedMark?
    /// The last `feed_mark` received: the journal batch of the messages that follow it.
    public private(set) var latestMark: FeedMark?
    /// Whether the last message added ended its lsn.
    public private(set) var isAtBoundary = true
    /// Events added (those at or below the start position are skipped and not counted).
    public private(set) var events = 0
    /// The size of the feed frames of the events added (what `--batch-bytes` bounds).
    public private(set) var bytes = 0
    /// Events skipped because their lsn was already applied.
    public private(set) var skipped = 0
    /// The engine time of the first event added, for the lag in seconds.
    public private(set) var firstAt: Int64?

    public private(set) var bids: [Bid] = []
    public private(set) var trades: [Trade] = []
    public private(set) var transitions: [Transition] = []
    /// Listings touched, in the order first touched.
    public private(set) var listings: [Listing] = []
    /// Settlements touched, in the order first touched.
    public private(set) var settlements: [Settlement] = []
    /// Every listing id opened in this batch, at its first `opened` in it: what the database may hold under them
    /// belongs to an earlier listing of the same id.
    public private(set) var reopenings: [Reopening] = []
    private var openedIDs: Set<String> = []
    /// Listings with trades or settlements in this batch (those with other rows are in `listingIndex`).
    private var tradedOrSettled: Set<String> = []
    private var listingIndex: [String: Int] = [:]
    private var settlementIndex: [String: Int] = [:]
    private var currentLSN: Int64 = 0
    private var indexInLSN: Int32 = 0

    /// A batch that starts at the stored `position`, whose journal batch is `mark`; `latest`: the last `feed_mark`
    /// received (by default `mark`).
    public init(position: Int64, mark: FeedMark? = nil, latest: FeedMark?? = .none) {
        startPosition = position
        self.position = position
        self.mark = mark
        self.latestMark = latest ?? mark
    }

    /// The batch after this one: it starts at this one's position and mark, and goes on with the last mark received.
    public func next() -> Batch {
        Batch(position: position, mark: mark, latest: .some(latestMark))
    }

    /// The number of rows the batch writes, table by table.
    public var rowCounts: [(table: String, rows: Int)] {
        [
            ("listings", listings.count), ("bids", bids.count), ("trades", trades.count),
            ("settlements", settlements.count), ("settlement_transitions", transitions.count),
        ]
    }

    public var isEmpty: Bool { events == 0 && position == startPosition }

    /// A `feed_mark`: the messages that follow, up to `mark.lsn`, belong to that journal batch.
    public mutating func receive(_ mark: FeedMark) {
        latestMark = mark
    }

    /// Adds one feed event, which came in a frame of `bytes` bytes.
    /// - Throws: `Batch.Error` when the event goes back in lsn order or lacks a field its type needs.
    public mutating func add(_ event: FeedEvent, terms: String? = nil, bytes: Int = 0) throws {
        guard let lsn = event.lsn else { throw Error.missing("lsn", event.type) }
        let ends = event.last ?? true
        if lsn <= startPosition || lsn <= position {
            // Already applied (a server resending from before the stored position): exactly once means skip it.
            skipped += 1
            return
        }
        if lsn < currentLSN { throw Error.outOfOrder(lsn, after: currentLSN) }
        if lsn != currentLSN {
            currentLSN = lsn
            indexInLSN = 0
        } else {
            indexInLSN += 1
        }
        isAtBoundary = ends
        if ends { move(to: lsn) }
        events += 1
        self.bytes += bytes
        if firstAt == nil { firstAt = event.at }
        try apply(event, lsn: lsn, terms: terms)
    }

    /// Marks every lsn up to `lsn` as delivered (the feed went live there) when the batch is at a boundary.
    public mutating func advance(to lsn: Int64) {
        guard isAtBoundary, lsn > position else { return }
        move(to: lsn)
        currentLSN = max(currentLSN, lsn)
    }

    /// Moves the position to `lsn`, with the last mark received when its batch holds `lsn` (a server that sends no
    /// marks leaves none: a mark of an earlier batch does not say what the journal holds at `lsn`).
    private mutating func move(to lsn: Int64) {
        position = lsn
        mark = latestMark.flatMap { $0.lsn >= lsn ? $0 : nil }
    }

    private mutating func apply(_ e: FeedEvent, lsn: Int64, terms: String?) throws {
        let at = e.at ?? 0
        switch e.type {
        case "opened":
            let id = try need(e.listing, "listing", e)
            if openedIDs.insert(id).inserted { reopenings.append(Reopening(listing: id, lsn: lsn)) }
            if listingIndex[id] != nil || tradedOrSettled.contains(id) { archive(id, lsn: lsn) }
            let opened = Opened(
                format: try need(e.format, "format", e), seller: try need(e.seller, "seller", e),
                opensAt: e.opensAt, start: e.start, buyNow: e.buyNow, pricing: e.pricing, hasReserve: e.hasReserve,
                quantity: e.quantity, terms: terms ?? "{}", openedAt: at, openedLSN: lsn)
            update(id, lsn) {
                $0.opened = opened
                $0.status = "open"
                $0.closesAt = e.closesAt
                $0.price = e.start
                $0.bids = 0
            }
        case "bid_placed":
            let id = try need(e.listing, "listing", e)
            bids.append(
                Bid(
                    listing: id, seq: try need(e.seq, "seq", e), lsn: lsn, at: at, leader: e.leader,
                    price: e.price, bids: e.bids ?? 0, reserveMet: e.reserveMet))
            update(id, lsn) {
                if let price = e.price { $0.price = price }
                if let leader = e.leader { $0.leader = leader }
                if let count = e.bids { $0.bids = count }
                if let closes = e.closesAt { $0.closesAt = closes }
                if let met = e.reserveMet { $0.reserveMet = met }
            }
        case "extended":
            let id = try need(e.listing, "listing", e)
            update(id, lsn) { $0.closesAt = e.closesAt }
        case "price":
            let id = try need(e.listing, "listing", e)
            update(id, lsn) { $0.price = e.price }
        case "filled":
            let id = try need(e.listing, "listing", e)
            tradedOrSettled.insert(id)
            trades.append(
                Trade(
                    listing: id, seq: try need(e.seq, "seq", e), lsn: lsn, at: at, kind: "fill",
                    buyer: try need(e.bidder, "bidder", e), seller: nil, price: try need(e.price, "price", e),
                    quantity: try need(e.quantity, "quantity", e), buyOrder: nil, sellOrder: nil,
                    remaining: e.remaining))
        case "trade":
            let id = try need(e.listing, "listing", e)
            tradedOrSettled.insert(id)
            trades.append(
                Trade(
                    listing: id, seq: try need(e.seq, "seq", e), lsn: lsn, at: at, kind: "trade",
                    buyer: try need(e.buyer, "buyer", e), seller: try need(e.seller, "seller", e),
                    price: try need(e.price, "price", e), quantity: try need(e.quantity, "quantity", e),
                    buyOrder: e.buyOrder, sellOrder: e.sellOrder, remaining: nil))
        case "closed":
            let id = try need(e.listing, "listing", e)
            update(id, lsn) {
                $0.status = "closed"
                $0.closedAt = at
                if let winner = e.winner { $0.winner = winner }
                if let price = e.price { $0.finalPrice = price }
                if let met = e.reserveMet { $0.reserveMet = met }
                if let sold = e.sold { $0.sold = sold }
            }
        case "listing_cancelled":
            let id = try need(e.listing, "listing", e)
            update(id, lsn) {
                $0.status = "cancelled"
                $0.closedAt = at
            }
        case "settlement":
            try applySettlement(e, lsn: lsn, at: at)
        default:
            // outbid, book, order_placed, order_cancelled, second_chance and types added later write no row.
            break
        }
    }

    private mutating func applySettlement(_ e: FeedEvent, lsn: Int64, at: Int64) throws {
        let id = try need(e.settlement, "settlement", e)
        let listing = try need(e.listing, "listing", e)
        let state = try need(e.state, "state", e)
        tradedOrSettled.insert(listing)
        transitions.append(
            Transition(
                settlement: id, lsn: lsn, index: indexInLSN, listing: listing, state: state, at: at, dueAt: e.dueAt,
                by: e.by, role: e.role, paymentRef: e.paymentRef, tracking: e.tracking, reason: e.reason,
                outcome: e.outcome))
        if let index = settlementIndex[id] {
            settlements[index].state = state
            settlements[index].dueAt = e.dueAt
            if let ref = e.paymentRef { settlements[index].paymentRef = ref }
            if let tracking = e.tracking { settlements[index].tracking = tracking }
            settlements[index].updatedAt = at
            settlements[index].updatedLSN = lsn
            return
        }
        settlementIndex[id] = settlements.count
        settlements.append(
            Settlement(
                id: id, listing: listing, buyer: try need(e.buyer, "buyer", e), seller: try need(e.seller, "seller", e),
                price: try need(e.price, "price", e), quantity: try need(e.quantity, "quantity", e), state: state,
                dueAt: e.dueAt, paymentRef: e.paymentRef, tracking: e.tracking, createdAt: at, updatedAt: at,
                createdLSN: lsn, updatedLSN: lsn))
    }

    /// The id the rows of a listing get once listing id `id` is opened again at `lsn`: `L1@5012` is the listing that
    /// held id `L1` until the entry at lsn 5012 opened it again. Identifiers never hold `@`, so no listing's own id
    /// looks like this.
    public static func archivedID(_ id: String, lsn: Int64) -> String { "\(id)@\(lsn)" }

    /// A settlement id of listing `listing` once its id is archived at `lsn`: `L1:1` becomes `L1@5012:1` (the same
    /// as the SQL of `SQL.archive`).
    public static func archivedSettlement(_ settlement: String, listing: String, lsn: Int64) -> String {
        let archived = archivedID(listing, lsn: lsn)
        if settlement.hasPrefix(listing + ":") { return archived + settlement.dropFirst(listing.count) }
        return "\(settlement)@\(lsn)"
    }

    /// Listing id `id` is opened again at `lsn` while the batch holds rows of the listing that had it before:
    /// renames those rows as the database's are renamed (``archivedID(_:lsn:)``).
    private mutating func archive(_ id: String, lsn: Int64) {
        let archived = Self.archivedID(id, lsn: lsn)
        if let index = listingIndex.removeValue(forKey: id) {
            listings[index].id = archived
            listingIndex[archived] = index
        }
        for index in bids.indices where bids[index].listing == id { bids[index].listing = archived }
        guard tradedOrSettled.remove(id) != nil else { return }
        tradedOrSettled.insert(archived)
        for index in trades.indices where trades[index].listing == id { trades[index].listing = archived }
        for index in transitions.indices where transitions[index].listing == id {
            transitions[index].listing = archived
            transitions[index].settlement = Self.archivedSettlement(
                transitions[index].settlement, listing: id, lsn: lsn)
        }
        for index in settlements.indices where settlements[index].listing == id {
            let renamed = Self.archivedSettlement(settlements[index].id, listing: id, lsn: lsn)
            settlementIndex[renamed] = settlementIndex.removeValue(forKey: settlements[index].id)
            settlements[index].id = renamed
            settlements[index].listing = archived
        }
    }

    private mutating func update(_ id: String, _ lsn: Int64, _ change: (inout Listing) -> Void) {
        let index: Int
        if let known = listingIndex[id] {
            index = known
        } else {
            index = listings.count
            listingIndex[id] = index
            listings.append(Listing(id: id, updatedLSN: lsn))
        }
        change(&listings[index])
        listings[index].updatedLSN = lsn
    }

    private func need<T>(_ value: T?, _ field: String, _ event: FeedEvent) throws -> T {
        guard let value else { throw Error.missing(field, event.type) }
        return value
    }

    public enum Error: Swift.Error, CustomStringConvertible {
        case missing(String, String)
        case outOfOrder(Int64, after: Int64)
        public var description: String {
            switch self {
            case .missing(let field, let type): "a \(type) event without its \(field)"
            case .outOfOrder(let lsn, let after): "the feed went back from lsn \(after) to lsn \(lsn)"
            }
        }
    }
}
