/// Where a listing is in its life.
public enum ListingStatus: UInt8, Sendable, Hashable {
    case open = 0
    case closed = 1
    case cancelled = 2
}

/// The state of an english book: price `P`, leader `L` with maximum `M`.
///
/// Its rules are the terms it was opened with, kept once: the start and the ladder in effect here, the rules most
/// listings do not set (reserve, buy-now, a given ladder, soft close) in ``EnglishExtras``, made only when one is
/// set. The listing rebuilds its terms from them (``Listing/terms``).
final class EnglishBook {
    let start: Money
    /// The ladder in effect: the given one, else ``IncrementLadder/standard`` (shared, not copied).
    let ladder: [IncrementStep]
    /// The reserve, buy-now, ladder and soft close as given; `nil` when none was.
    let extras: EnglishExtras?
    var price: Money
    var leader: String?
    var maximum: Money = 0
    var bids: Int64 = 0
    /// Who bought the listing at its buy-now price, if it was bought.
    var buyer: String?
    /// The bidder other than the leader (after a sale: other than the buyer) with the highest maximum, the earlier
    /// on a tie, and that maximum: whom a second-chance offer goes to, at what price.
    var runnerUp: String?
    var runnerUpMaximum: Money = 0

    init(_ terms: ListingTerms.English) {
        start = terms.start
        ladder = terms.increments ?? IncrementLadder.standard
        extras = EnglishExtras.of(terms)
        price = terms.start
    }

    var reserve: Money? { extras?.reserve }
    var buyNow: Money? { extras?.buyNow }
    var softClose: SoftClose? { extras?.softClose }

    /// Whether the leader's maximum meets the reserve (true when there is no reserve).
    var reserveMet: Bool {
        guard let reserve else { return true }
        return leader != nil && maximum >= reserve
    }
}

/// The english terms most listings leave out, as given: kept by the book only when one of them is set.
final class EnglishExtras {
    let reserve: Money?
    let buyNow: Money?
    /// The ladder as given: `nil` when the terms named none (the book then uses the standard one).
    let increments: [IncrementStep]?
    let softClose: SoftClose?

    /// The extras of `terms`, or `nil` when they set none. Checked before the object is made: a failable class
    /// initializer allocates the object first, and a `nil` from it was an allocation and a `free` for every plain
    /// english listing opened.
    static func of(_ terms: ListingTerms.English) -> EnglishExtras? {
        if terms.reserve == nil && terms.buyNow == nil && terms.increments == nil && terms.softClose == nil {
            return nil
        }
        return EnglishExtras(terms)
    }

    private init(_ terms: ListingTerms.English) {
        reserve = terms.reserve
        buyNow = terms.buyNow
        increments = terms.increments
        softClose = terms.softClose
    }
}

/// One bidder's sealed bid. `order` breaks ties: lower was placed earlier.
struct SealedBid: Hashable {
    var amount: Money
    var order: UInt64
}

/// The state of a sealed-bid book.
final class SealedBook {
    let pricing: SealedPricing
    let start: Money
    let reserve: Money?
    var bids: [String: SealedBid] = [:]
    var count: Int64 = 0
    var nextOrder: UInt64 = 0

    init(_ terms: ListingTerms.Sealed) {
        pricing = terms.pricing
        start = terms.start
        reserve = terms.reserve
    }

    /// Who wins at the close and at what price: the highest amount, ties to the earliest bid; no winner without
    /// bids or below the reserve.
    var outcome: (winner: String?, price: Money?, reserveMet: Bool) {
        var best: (bidder: String, bid: SealedBid)?
        var second: Money?
        for (bidder, bid) in bids {
            if let current = best {
                let beats =
                    bid.amount > current.bid.amount
                    || (bid.amount == current.bid.amount && bid.order < current.bid.order)
                if beats {
                    second = max(second ?? 0, current.bid.amount)
                    best = (bidder, bid)
                } else {
                    second = max(second ?? 0, bid.amount)
                }
            } else {
                best = (bidder, bid)
            }
        }
        guard let best else { return (nil, nil, reserve == nil) }
        if let reserve, best.bid.amount < reserve { return (nil, nil, false) }
        switch pricing {
        case .first: return (best.bidder, best.bid.amount, true)
        case .second: return (best.bidder, max(start, reserve ?? 0, second ?? 0), true)
        }
    }
}

/// The state of a Dutch book.
final class DutchBook {
    let start: Money
    let floor: Money
    let step: Money
    let stepEveryMs: Millis
    let quantity: Int64
    var remaining: Int64
    /// The last published price.
    var price: Money
    /// When the next clock step is due, or `nil` when the clock has stopped.
    var nextStepAt: Millis?
    /// The timer of ``nextStepAt``, cancelled when the clock stops or the listing is evicted. Not part of the state
    /// (the timers are).
    var stepTimer = TimerHandle.none

    init(_ terms: ListingTerms.Dutch) {
        start = terms.start
        floor = terms.floor
        step = terms.step
        stepEveryMs = terms.stepEveryMs
        quantity = terms.quantity
        remaining = terms.quantity
        price = terms.start
    }

    /// `max(floor, start - step * floor((t - opensAt) / stepEveryMs))`.
    func price(at time: Millis, opensAt: Millis) -> Money {
        guard time > opensAt else { return start }
        // A far-past opens_at cannot overflow the elapsed time: the clock has long reached the floor.
        let (elapsed, late) = time.subtractingReportingOverflow(opensAt)
        if late { return floor }
        let steps = elapsed / stepEveryMs
        // Saturate instead of overflowing on absurd clocks: the floor wins long before.
        let (drop, overflow) = steps.multipliedReportingOverflow(by: step)
        if overflow || drop >= start - floor { return floor }
        return start - drop
    }

    /// The first step time strictly after `time`.
    func nextStep(after time: Millis, opensAt: Millis) -> Millis {
        // Saturates at the end of time instead of overflowing on absurd opens_at or step_every_ms.
        guard time >= opensAt else { return Self.saturating(opensAt, plus: stepEveryMs) }
        let (elapsed, late) = time.subtractingReportingOverflow(opensAt)
        if late { return .max }
        let (steps, endless) = (elapsed / stepEveryMs).addingReportingOverflow(1)
        if endless { return .max }
        let (offset, far) = stepEveryMs.multipliedReportingOverflow(by: steps)
        return far ? .max : Self.saturating(opensAt, plus: offset)
    }

    private static func saturating(_ a: Millis, plus b: Millis) -> Millis {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? (b > 0 ? .max : .min) : sum
    }
}

/// Resting orders per trader over every market listing of an engine, for
/// ``EngineConfiguration/maxRestingOrdersPerTraderTotal``: the engine's books share it and keep it as orders rest
/// and leave. Not part of the state (the books are): a restore counts it again.
final class RestingTotals {
    private var byTrader: [String: Int] = [:]

    subscript(trader: String) -> Int { byTrader[trader] ?? 0 }

    func add(_ trader: String, _ n: Int = 1) { byTrader[trader, default: 0] += n }

    func remove(_ trader: String, _ n: Int = 1) { byTrader.countDown(trader, by: n) }
}

extension Dictionary where Value == Int {
    /// Counts `n` fewer for `key` and drops the key at zero: a map of counts keeps no zero entries, so its size is
    /// what is counted, not everything ever counted.
    mutating func countDown(_ key: Key, by n: Int = 1) {
        if let count = self[key], count > n { self[key] = count - n } else { self[key] = nil }
    }
}

/// The books of the four formats.
enum Book {
    case english(EnglishBook)
    case sealed(SealedBook)
    case dutch(DutchBook)
    case market(MarketBook)
}

/// One listing: identity, schedule, status, public sequence number and its book.
///
/// Its stored properties are declared in the order that packs them (a class lays them out as declared): the
/// 8-byte ones first, then the optional close and the 1-byte ones, then the terms.
final class Listing {
    let id: String
    let seller: String
    let opensAt: Millis
    /// The `seq` of the last public event.
    var seq: UInt64 = 0
    let book: Book
    /// The timer of its latest close (at open, and each soft close), cancelled when the listing is evicted so that
    /// a listing cancelled long before its close keeps no timer until then. Not part of the state.
    var closeTimer = TimerHandle.none
    /// What the listing keeps about its sales, made when something is first written to it (a sale, an offer, a
    /// restore of a listing that had them): most listings never sell while in memory, and carry one reference
    /// instead of these fields (about 140 bytes).
    private var salesRecord: SalesRecord?
    var closesAt: Millis?
    let format: ListingFormat
    var status: ListingStatus = .open
    /// `false` once evicted from the engine's memory (a ``ListingHandle`` on it is no longer current).
    var live = true
    /// The terms, as ``terms`` keeps them.
    private(set) var storedTerms: StoredTerms

    /// How a listing keeps its terms: an english listing's are in its book, but for the close it was opened with,
    /// when that gives them back exactly (no settlement deadlines, `opens_at` the listing's); any others whole, in
    /// a box of their own.
    enum StoredTerms {
        /// English terms rebuilt from the english book, the listing's `opensAt` and this `closes_at`.
        case english(closesAt: Millis)
        /// Terms kept as given.
        indirect case whole(ListingTerms)
    }

    /// The terms the listing was opened with (a restore sets their settlement deadlines after the rest).
    var terms: ListingTerms {
        get {
            switch storedTerms {
            case .english(let closesAt):
                guard case .english(let book) = book else {
                    preconditionFailure("english terms kept by the book of a listing that has no english book")
                }
                return Self.englishTerms(of: book, opensAt: opensAt, closesAt: closesAt)
            case .whole(let terms):
                return terms
            }
        }
        set { storedTerms = Self.stored(newValue, book: book, opensAt: opensAt) }
    }

    /// The english terms `book` was opened with, opened at `opensAt`, closing at `closesAt`, without deadlines.
    private static func englishTerms(of book: EnglishBook, opensAt: Millis, closesAt: Millis) -> ListingTerms {
        .english(
            ListingTerms.English(
                start: book.start, reserve: book.reserve, buyNow: book.buyNow, closesAt: closesAt, opensAt: opensAt,
                increments: book.extras?.increments, softClose: book.softClose))
    }

    /// How to keep `terms` for a listing with `book` opened at `opensAt`: in the book when it gives them back
    /// exactly, else whole.
    private static func stored(_ terms: ListingTerms, book: Book, opensAt: Millis) -> StoredTerms {
        if case .english(let t) = terms, case .english(let englishBook) = book,
            englishTerms(of: englishBook, opensAt: opensAt, closesAt: t.closesAt) == terms
        {
            return .english(closesAt: t.closesAt)
        }
        return .whole(terms)
    }

    /// The fields of ``salesRecord``; each is described at its forwarding property below.
    final class SalesRecord {
        var sales: Int64 = 0
        var settlements: [Settlement] = []
        var prunedSettlements = 0
        var openSettlements = 0
        var endedSettlements: [(number: Int64, at: Millis)] = []
        var endedHead = 0
        var offer: SecondChanceOffer?
        var settledAt: Millis?
        /// The timer of each settlement's current deadline, cancelled when the settlement moves on. Not part of the
        /// state (the timers are).
        var deadlineTimers: [Int64: TimerHandle] = [:]
        /// The timer of the open offer's deadline, cancelled when the offer is answered.
        var offerTimer = TimerHandle.none
        /// The pending prune timers, one per ended settlement, in the order they fire (from `pruneHead`); cancelled
        /// when the listing is evicted, so that none fires for a listing opened later under the same id.
        var pruneTimers: [TimerHandle] = []
        var pruneHead = 0
    }

    /// Whether the listing has made its sales record (for tests: one that never sold has none).
    var hasSalesRecord: Bool { salesRecord != nil }

    /// The sales record, made on first use.
    private var record: SalesRecord {
        if let salesRecord { return salesRecord }
        let made = SalesRecord()
        salesRecord = made
        return made
    }

    /// The timer of each settlement's current deadline, by settlement number.
    var settlementTimers: [Int64: TimerHandle] {
        get { salesRecord?.deadlineTimers ?? [:] }
        _modify { yield &record.deadlineTimers }
    }

    /// The timer of the open second-chance offer's deadline.
    var offerTimer: TimerHandle {
        get { salesRecord?.offerTimer ?? .none }
        _modify { yield &record.offerTimer }
    }

    /// Notes a prune timer just scheduled (they fire in the order they are scheduled: each is the retention after
    /// the current engine time).
    func addPruneTimer(_ handle: TimerHandle) { record.pruneTimers.append(handle) }

    /// Forgets `handle`, a prune timer that fired (the oldest pending one); any other handle is ignored.
    func prunePassed(_ handle: TimerHandle) {
        guard let record = salesRecord, record.pruneHead < record.pruneTimers.count,
            record.pruneTimers[record.pruneHead] == handle
        else { return }
        record.pruneHead += 1
        if record.pruneHead == record.pruneTimers.count {
            record.pruneTimers.removeAll(keepingCapacity: record.pruneTimers.count <= 64)
            record.pruneHead = 0
        } else if record.pruneHead >= 64 && record.pruneHead * 2 >= record.pruneTimers.count {
            record.pruneTimers.removeFirst(record.pruneHead)
            record.pruneHead = 0
        }
    }

    /// Every timer the listing still holds a handle on: its close, its dutch clock's step, its offer's deadline, its
    /// settlements' deadlines and its pending prunes. Cancelling them at eviction leaves no timer behind to fire
    /// for a listing opened later under the same id.
    var pendingTimers: [TimerHandle] {
        var handles = [closeTimer]
        if case .dutch(let book) = book { handles.append(book.stepTimer) }
        if let record = salesRecord {
            handles.append(record.offerTimer)
            handles += record.deadlineTimers.values
            handles += record.pruneTimers[record.pruneHead...]
        }
        return handles
    }

    /// The listing's sales so far: the number of the last settlement created.
    var sales: Int64 {
        get { salesRecord?.sales ?? 0 }
        _modify { yield &record.sales }
    }
    /// The settlements in memory, by number ascending (a market listing's old terminal ones are pruned). Pruned
    /// ones stay here, marked, until they are half of the array, so that pruning one costs no pass over the rest;
    /// everything that reads settlements skips them.
    var settlements: [Settlement] {
        get { salesRecord?.settlements ?? [] }
        _modify { yield &record.settlements }
    }
    /// Marked pruned settlements still in ``settlements``.
    var prunedSettlements: Int {
        get { salesRecord?.prunedSettlements ?? 0 }
        _modify { yield &record.prunedSettlements }
    }
    /// Settlements not in a final state yet.
    var openSettlements: Int {
        get { salesRecord?.openSettlements ?? 0 }
        _modify { yield &record.openSettlements }
    }
    /// The final settlements not pruned yet, in the order they ended (engine time never goes back), with the time
    /// each ended: pruning takes them from the front, never scanning the rest. Entries before `endedHead` are done.
    var endedSettlements: [(number: Int64, at: Millis)] {
        get { salesRecord?.endedSettlements ?? [] }
        _modify { yield &record.endedSettlements }
    }
    var endedHead: Int {
        get { salesRecord?.endedHead ?? 0 }
        _modify { yield &record.endedHead }
    }
    /// The listing's second-chance offer, once made (english only; one per listing).
    var offer: SecondChanceOffer? {
        get { salesRecord?.offer }
        _modify { yield &record.offer }
    }
    /// When its last settlement or offer ended (reached a terminal state), `nil` before any did; a listing that has
    /// ended is evicted only after the retention has passed since then too.
    var settledAt: Millis? {
        get { salesRecord?.settledAt }
        _modify { yield &record.settledAt }
    }

    init(id: String, seller: String, terms: ListingTerms, opensAt: Millis) {
        self.id = id
        self.seller = seller
        self.format = terms.format
        self.opensAt = opensAt
        let book: Book
        switch terms {
        case .english(let t):
            closesAt = t.closesAt
            book = .english(EnglishBook(t))
        case .sealed(let t):
            closesAt = t.closesAt
            book = .sealed(SealedBook(t))
        case .dutch(let t):
            closesAt = t.closesAt
            book = .dutch(DutchBook(t))
        case .market(let t):
            closesAt = t.closesAt
            book = .market(MarketBook())
        }
        self.book = book
        storedTerms = Self.stored(terms, book: book, opensAt: opensAt)
    }

    /// Whether the listing has a bid or a fill, after which the seller can no longer cancel it.
    var hasActivity: Bool {
        switch book {
        case .english(let b): b.leader != nil
        case .sealed(let b): b.count > 0
        case .dutch(let b): b.remaining < b.quantity
        case .market(let b): b.traded
        }
    }
}
