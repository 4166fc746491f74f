/// Where a listing is in its life.
public enum ListingStatus: UInt8, Sendable, Hashable {
    case open = 0
    case closed = 1
    case cancelled = 2
}

/// The state of an english book: price `P`, leader `L` with maximum `M`.
final class EnglishBook {
    let start: Money
    let reserve: Money?
    let buyNow: Money?
    let ladder: [IncrementStep]
    let softClose: SoftClose?
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
        reserve = terms.reserve
        buyNow = terms.buyNow
        ladder = terms.increments ?? IncrementLadder.standard
        softClose = terms.softClose
        price = terms.start
    }

    /// Whether the leader's maximum meets the reserve (true when there is no reserve).
    var reserveMet: Bool {
        guard let reserve else { return true }
        return leader != nil && maximum >= reserve
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

/// A market order resting on the book.
struct RestingOrder: Hashable {
    var id: String
    var trader: String
    var remaining: Int64
    /// `expiresAt`, `Millis.min` for none (no timer is due before the clock's start): 8 bytes, not 16.
    private var storedExpiresAt: Millis
    /// Its place in the order the book took its orders (``MarketBook/rest(_:side:price:)`` numbers them): a level
    /// finds an order by it. Not part of the state: a restored book numbers its orders again, in the same order.
    var arrival: UInt64 = 0
    /// Its expiry's timer, cancelled when the order leaves the book some other way. Not part of the state.
    var expiry = TimerHandle.none

    init(id: String, trader: String, remaining: Int64, expiresAt: Millis?, arrival: UInt64 = 0) {
        self.id = id
        self.trader = trader
        self.remaining = remaining
        storedExpiresAt = expiresAt ?? .min
        self.arrival = arrival
    }

    /// When it expires, if it does.
    var expiresAt: Millis? {
        get { storedExpiresAt == .min ? nil : storedExpiresAt }
        set { storedExpiresAt = newValue ?? .min }
    }

    /// What a removed order leaves in its level until the level is compacted: its arrival (which keeps the level's
    /// slots sorted), nothing remaining and no strings.
    static func gap(_ arrival: UInt64) -> RestingOrder {
        RestingOrder(id: "", trader: "", remaining: 0, expiresAt: nil, arrival: arrival)
    }
}

/// All resting orders at one price, in time order.
///
/// The orders sit in `slots` from `head` on, oldest first, in arrival order. Taking the oldest (a fill) moves `head`;
/// removing one from the middle (a cancel, an expiry) finds it by binary search on its arrival and leaves a gap (a
/// slot with nothing remaining). The slots are compacted once gaps and taken slots are half of them. So a fill or a
/// cancel costs O(log n) amortized, not a shift or a scan of every order at the price: a level of 100,000 orders
/// took 64 µs a fill and 178 µs a cancel that way.
struct PriceLevel {
    var price: Money
    var total: Int64
    private var slots: [RestingOrder]
    private var storedHead: Int32 = 0
    private var storedCount: Int32 = 1

    init(price: Money, first order: RestingOrder) {
        self.price = price
        total = order.remaining
        slots = [order]
    }

    /// Where the oldest order is in `slots`. 32-bit, as is the count, so that a level is 32 bytes: inserting a price
    /// moves the levels after it.
    private var head: Int {
        get { Int(storedHead) }
        set { storedHead = Int32(newValue) }
    }

    /// The orders resting here.
    private(set) var count: Int {
        get { Int(storedCount) }
        set { storedCount = Int32(newValue) }
    }

    /// The slots the orders and the gaps between them take (for tests: compaction keeps it under twice the orders).
    var slotCount: Int { slots.count - head }

    /// The oldest order (the next to match). The level is never empty: the book removes an empty one.
    var first: RestingOrder { slots[head] }

    /// The orders, oldest first.
    var orders: [RestingOrder] { slots[head...].filter { $0.remaining > 0 } }

    /// Calls `body` with each order, oldest first.
    func forEachOrder(_ body: (RestingOrder) -> Void) {
        for order in slots[head...] where order.remaining > 0 { body(order) }
    }

    /// The order that arrived as `arrival`, if it rests here.
    func order(arrival: UInt64) -> RestingOrder? {
        guard let index = index(of: arrival) else { return nil }
        return slots[index]
    }

    /// Sets the expiry timer of the order that arrived as `arrival` (a restore links the timers it restored).
    mutating func setExpiry(_ handle: TimerHandle, arrival: UInt64) {
        guard let index = index(of: arrival) else { return }
        slots[index].expiry = handle
    }

    /// Adds `order`, which arrived after every order here, at the back.
    mutating func append(_ order: RestingOrder) {
        slots.append(order)
        count += 1
        // Cannot overflow: every caller checks `hasRoom` first (placeOrder refuses with `limit_exceeded`, restore
        // refuses the state).
        total += order.remaining
    }

    /// Takes the oldest order.
    mutating func popFirst() -> RestingOrder {
        let order = slots[head]
        take(head)
        return order
    }

    /// Reduces the oldest order by `quantity` (a partial fill).
    mutating func reduceFirst(by quantity: Int64) {
        slots[head].remaining -= quantity
        total -= quantity
    }

    /// Removes the order that arrived as `arrival`; returns it, or `nil` when it does not rest here.
    mutating func remove(arrival: UInt64) -> RestingOrder? {
        guard let index = index(of: arrival) else { return nil }
        let order = slots[index]
        take(index)
        return order
    }

    /// The slot of the live order that arrived as `arrival`: a binary search (the slots are in arrival order).
    private func index(of arrival: UInt64) -> Int? {
        var low = head
        var high = slots.count
        while low < high {
            let mid = (low + high) / 2
            if slots[mid].arrival < arrival { low = mid + 1 } else { high = mid }
        }
        guard low < slots.count, slots[low].arrival == arrival, slots[low].remaining > 0 else { return nil }
        return low
    }

    /// Leaves a gap at `index`; moves `head` past the gaps at the front; compacts the slots once half are gaps.
    private mutating func take(_ index: Int) {
        total -= slots[index].remaining
        slots[index] = .gap(slots[index].arrival)
        count -= 1
        while head < slots.count, slots[head].remaining == 0 { head += 1 }
        if slots.count - count > max(16, slots.count / 2) {
            slots = orders
            head = 0
        }
    }
}

/// One side's price levels, sorted so that the best is last (bids ascending by price, asks descending), in chunks of
/// at most ``chunkCapacity``: a new or emptied price moves the levels of its chunk and the chunks' array, never every
/// level. (One sorted array moved them all: 18 µs an order at 100,000 prices, a thousand times that at the
/// 10,000,000 resting orders `--max-resting-orders-per-listing` allows.)
struct PriceLevels: Sequence {
    private var chunks: [[PriceLevel]] = []
    /// The number of levels.
    private(set) var count = 0
    /// Whether higher prices are better (bids).
    let bestIsHigh: Bool

    /// The most levels in a chunk: a full one splits in two.
    static let chunkCapacity = 128

    init(bestIsHigh: Bool) { self.bestIsHigh = bestIsHigh }

    var isEmpty: Bool { count == 0 }

    /// The best level.
    var last: PriceLevel? { chunks.last?.last }

    /// The best level, to change in place. The caller checks that there is one.
    var best: PriceLevel {
        get { chunks[chunks.count - 1][chunks[chunks.count - 1].count - 1] }
        _modify {
            let c = chunks.count - 1
            yield &chunks[c][chunks[c].count - 1]
        }
    }

    /// Removes the best level.
    mutating func removeBest() {
        chunks[chunks.count - 1].removeLast()
        if chunks[chunks.count - 1].isEmpty { chunks.removeLast() }
        count -= 1
    }

    /// Whether `a` sorts before `b` (is the worse price).
    @inline(__always)
    private func before(_ a: Money, _ b: Money) -> Bool { bestIsHigh ? a < b : a > b }

    /// Where `price` is: its chunk and place when `found`; otherwise where a level at `price` would go.
    private func locate(_ price: Money) -> (chunk: Int, index: Int, found: Bool) {
        // The first chunk whose last level does not sort before `price`.
        var low = 0
        var high = chunks.count
        while low < high {
            let mid = (low + high) / 2
            if before(chunks[mid][chunks[mid].count - 1].price, price) { low = mid + 1 } else { high = mid }
        }
        // Past every chunk: the new best level goes at the end of the last chunk.
        if low == chunks.count { return chunks.isEmpty ? (0, 0, false) : (low - 1, chunks[low - 1].count, false) }
        let chunk = chunks[low]
        var first = 0
        var end = chunk.count
        while first < end {
            let mid = (first + end) / 2
            if before(chunk[mid].price, price) { first = mid + 1 } else { end = mid }
        }
        return (low, first, chunk[first].price == price)
    }

    /// The level at `price`, if there is one.
    func level(at price: Money) -> PriceLevel? {
        let (chunk, index, found) = locate(price)
        return found ? chunks[chunk][index] : nil
    }

    /// Adds `order` at the back of the level at `price`, which it starts when there is none.
    mutating func add(_ order: RestingOrder, at price: Money) {
        let (chunk, index, found) = locate(price)
        if found {
            chunks[chunk][index].append(order)
            return
        }
        count += 1
        let level = PriceLevel(price: price, first: order)
        if chunks.isEmpty {
            chunks.append([level])
            return
        }
        chunks[chunk].insert(level, at: index)
        if chunks[chunk].count > Self.chunkCapacity {
            let upper = Array(chunks[chunk][(Self.chunkCapacity / 2)...])
            chunks[chunk].removeLast(chunks[chunk].count - Self.chunkCapacity / 2)
            chunks.insert(upper, at: chunk + 1)
        }
    }

    /// Sets the expiry timer of the order that arrived as `arrival` at `price`.
    mutating func setExpiry(_ handle: TimerHandle, arrival: UInt64, at price: Money) {
        let (chunk, index, found) = locate(price)
        if found { chunks[chunk][index].setExpiry(handle, arrival: arrival) }
    }

    /// Removes the order that arrived as `arrival` from the level at `price`, and the level once it is empty.
    mutating func remove(arrival: UInt64, at price: Money) -> RestingOrder? {
        let (chunk, index, found) = locate(price)
        guard found, let order = chunks[chunk][index].remove(arrival: arrival) else { return nil }
        if chunks[chunk][index].count == 0 {
            chunks[chunk].remove(at: index)
            if chunks[chunk].isEmpty { chunks.remove(at: chunk) }
            count -= 1
        }
        return order
    }

    mutating func removeAll() {
        chunks.removeAll()
        count = 0
    }

    func makeIterator() -> FlattenSequence<[[PriceLevel]]>.Iterator { chunks.joined().makeIterator() }
}

/// Identifies a resting order: its trader and its id.
struct OrderKey: Hashable {
    var trader: String
    var id: String
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

/// The state of a continuous market book. Each side keeps its levels sorted so that the best level is last:
/// bids ascending by price, asks descending.
final class MarketBook {
    var bids = PriceLevels(bestIsHigh: true)
    var asks = PriceLevels(bestIsHigh: false)
    /// Side, price and arrival of every resting order.
    var resting: [OrderKey: (side: Side, price: Money, arrival: UInt64)] = [:]
    /// How many resting orders carry each id, across traders.
    var restingIds: [String: Int] = [:]
    /// How many orders each trader has resting, for ``EngineConfiguration/maxRestingOrdersPerTrader``.
    var restingPerTrader: [String: Int] = [:]
    /// The engine's count over every market listing, kept with ``restingPerTrader`` (`nil` for a book not in an
    /// engine yet: a restore attaches it once the book is whole).
    var totals: RestingTotals?
    var traded: Bool = false
    /// The arrival number of the next order to rest.
    private var nextArrival: UInt64 = 0

    struct Top: Equatable {
        var bestBid: Money?
        var bestAsk: Money?
        var bidQuantity: Int64?
        var askQuantity: Int64?
    }

    var top: Top {
        Top(
            bestBid: bids.last?.price, bestAsk: asks.last?.price, bidQuantity: bids.last?.total,
            askQuantity: asks.last?.total)
    }

    /// Adds `order` at the back of its price level.
    ///
    /// - Note: The caller checks ``hasRoom(for:_:at:)`` first.
    func rest(_ order: RestingOrder, side: Side, price: Money) {
        var order = order
        order.arrival = nextArrival
        nextArrival += 1
        resting[OrderKey(trader: order.trader, id: order.id)] = (side, price, order.arrival)
        restingIds[order.id, default: 0] += 1
        restingPerTrader[order.trader, default: 0] += 1
        totals?.add(order.trader)
        if side == .buy {
            bids.add(order, at: price)
        } else {
            asks.add(order, at: price)
        }
    }

    /// The total quantity resting at `price` on `side`, or `nil` when no order rests there.
    /// Whether an order on `side` at `price` meets the best order of the other side, so that it would trade at once
    /// (unless that order is its own trader's, which self-trade prevention cancels instead).
    func crosses(_ side: Side, at price: Money) -> Bool {
        side == .buy ? !asks.isEmpty && asks.best.price <= price : !bids.isEmpty && bids.best.price >= price
    }

    func levelTotal(_ side: Side, at price: Money) -> Int64? {
        (side == .buy ? bids : asks).level(at: price)?.total
    }

    /// Whether `quantity` more can rest at `price` on `side` without the level's total passing `Int64.max`.
    func hasRoom(for quantity: Int64, _ side: Side, at price: Money) -> Bool {
        guard let total = levelTotal(side, at: price) else { return true }
        return !total.addingReportingOverflow(quantity).overflow
    }

    /// The resting order of `key`, if it rests.
    func order(_ key: OrderKey) -> RestingOrder? {
        guard let (side, price, arrival) = resting[key] else { return nil }
        return (side == .buy ? bids : asks).level(at: price)?.order(arrival: arrival)
    }

    /// Sets the expiry timer of the resting order of `key`.
    func setExpiry(_ handle: TimerHandle, of key: OrderKey) {
        guard let (side, price, arrival) = resting[key] else { return }
        if side == .buy {
            bids.setExpiry(handle, arrival: arrival, at: price)
        } else {
            asks.setExpiry(handle, arrival: arrival, at: price)
        }
    }

    /// Removes a resting order and returns it, or `nil` when it does not rest.
    func remove(_ key: OrderKey) -> RestingOrder? {
        guard let (side, price, arrival) = resting.removeValue(forKey: key) else { return nil }
        forget(key)
        if side == .buy {
            return bids.remove(arrival: arrival, at: price)
        } else {
            return asks.remove(arrival: arrival, at: price)
        }
    }

    /// Counts one resting order of `key` less, by id and by trader.
    private func forget(_ key: OrderKey) {
        restingIds.countDown(key.id)
        restingPerTrader.countDown(key.trader)
        totals?.remove(key.trader)
    }

    /// Forgets every resting order.
    func removeAll() {
        bids.removeAll()
        asks.removeAll()
        resting.removeAll()
        restingIds.removeAll()
        if let totals {
            for (trader, n) in restingPerTrader { totals.remove(trader, n) }
        }
        restingPerTrader.removeAll()
    }

    /// Removes the first order of the best level of `side` (the next order to match against).
    func popBest(_ side: Side) -> RestingOrder {
        let order: RestingOrder
        if side == .buy {
            order = bids.best.popFirst()
            if bids.best.count == 0 { bids.removeBest() }
        } else {
            order = asks.best.popFirst()
            if asks.best.count == 0 { asks.removeBest() }
        }
        let key = OrderKey(trader: order.trader, id: order.id)
        resting[key] = nil
        forget(key)
        return order
    }

    /// Reduces the first order of the best level of `side` by `quantity` (a partial fill).
    func reduceBest(_ side: Side, by quantity: Int64) {
        if side == .buy {
            bids.best.reduceFirst(by: quantity)
        } else {
            asks.best.reduceFirst(by: quantity)
        }
    }

    /// Every resting order, bids best first then asks best first, each level in time order.
    var allResting: [(side: Side, price: Money, order: RestingOrder)] {
        var all: [(side: Side, price: Money, order: RestingOrder)] = []
        for level in bids.reversed() { level.forEachOrder { all.append((.buy, level.price, $0)) } }
        for level in asks.reversed() { level.forEachOrder { all.append((.sell, level.price, $0)) } }
        return all
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
final class Listing {
    let id: String
    let seller: String
    let format: ListingFormat
    let opensAt: Millis
    var closesAt: Millis?
    var status: ListingStatus = .open
    /// The `seq` of the last public event.
    var seq: UInt64 = 0
    /// `false` once evicted from the engine's memory (a ``ListingHandle`` on it is no longer current).
    var live = true
    let book: Book
    /// The terms the listing was opened with (a restore sets their settlement deadlines after the rest).
    var terms: ListingTerms
    /// The timer of its latest close (at open, and each soft close), cancelled when the listing is evicted so that
    /// a listing cancelled long before its close keeps no timer until then. Not part of the state.
    var closeTimer = TimerHandle.none
    /// What the listing keeps about its sales, made when something is first written to it (a sale, an offer, a
    /// restore of a listing that had them): most listings never sell while in memory, and carry one reference
    /// instead of these fields (about 140 bytes).
    private var salesRecord: SalesRecord?

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
        self.terms = terms
        self.format = terms.format
        self.opensAt = opensAt
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
