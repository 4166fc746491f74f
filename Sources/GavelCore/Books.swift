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
    var expiresAt: Millis?
}

/// All resting orders at one price, in time order.
struct PriceLevel: Hashable {
    var price: Money
    var orders: [RestingOrder]
    var total: Int64
}

/// Identifies a resting order: its trader and its id.
struct OrderKey: Hashable {
    var trader: String
    var id: String
}

/// The state of a continuous market book. Each side keeps its levels sorted so that the best level is last:
/// bids ascending by price, asks descending.
final class MarketBook {
    var bids: [PriceLevel] = []
    var asks: [PriceLevel] = []
    /// Side and price of every resting order.
    var resting: [OrderKey: (side: Side, price: Money)] = [:]
    /// How many resting orders carry each id, across traders.
    var restingIds: [String: Int] = [:]
    /// How many orders each trader has resting, for ``EngineConfiguration/maxRestingOrdersPerTrader``.
    var restingPerTrader: [String: Int] = [:]
    var traded: Bool = false

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
        resting[OrderKey(trader: order.trader, id: order.id)] = (side, price)
        restingIds[order.id, default: 0] += 1
        restingPerTrader[order.trader, default: 0] += 1
        if side == .buy {
            Self.insert(order, price: price, into: &bids, bestIsHigh: true)
        } else {
            Self.insert(order, price: price, into: &asks, bestIsHigh: false)
        }
    }

    /// The total quantity resting at `price` on `side`, or `nil` when no order rests there.
    func levelTotal(_ side: Side, at price: Money) -> Int64? {
        let levels = side == .buy ? bids : asks
        let (index, found) = Self.search(price, in: levels, bestIsHigh: side == .buy)
        return found ? levels[index].total : nil
    }

    /// Whether `quantity` more can rest at `price` on `side` without the level's total passing `Int64.max`.
    func hasRoom(for quantity: Int64, _ side: Side, at price: Money) -> Bool {
        guard let total = levelTotal(side, at: price) else { return true }
        return !total.addingReportingOverflow(quantity).overflow
    }

    /// Where `price` is in `levels` (sorted so that the best is last): its index when `found`, else the first index
    /// whose price sorts after it.
    private static func search(_ price: Money, in levels: [PriceLevel], bestIsHigh: Bool) -> (index: Int, found: Bool) {
        var low = 0
        var high = levels.count
        while low < high {
            let mid = (low + high) / 2
            let p = levels[mid].price
            if p == price { return (mid, true) }
            let before = bestIsHigh ? p < price : p > price
            if before { low = mid + 1 } else { high = mid }
        }
        return (low, false)
    }

    private static func insert(_ order: RestingOrder, price: Money, into levels: inout [PriceLevel], bestIsHigh: Bool) {
        let (index, found) = search(price, in: levels, bestIsHigh: bestIsHigh)
        if found {
            levels[index].orders.append(order)
            // Cannot overflow: every caller checks `hasRoom` first (placeOrder refuses with `limit_exceeded`,
            // restore refuses the state).
            levels[index].total += order.remaining
        } else {
            levels.insert(PriceLevel(price: price, orders: [order], total: order.remaining), at: index)
        }
    }

    /// Removes a resting order and returns it, or `nil` when it does not rest.
    func remove(_ key: OrderKey) -> RestingOrder? {
        guard let (side, price) = resting.removeValue(forKey: key) else { return nil }
        forget(key)
        if side == .buy {
            return Self.remove(key, price: price, from: &bids)
        } else {
            return Self.remove(key, price: price, from: &asks)
        }
    }

    /// Counts one resting order of `key` less, by id and by trader.
    private func forget(_ key: OrderKey) {
        if let n = restingIds[key.id], n > 1 { restingIds[key.id] = n - 1 } else { restingIds[key.id] = nil }
        if let n = restingPerTrader[key.trader], n > 1 {
            restingPerTrader[key.trader] = n - 1
        } else {
            restingPerTrader[key.trader] = nil
        }
    }

    /// Forgets every resting order.
    func removeAll() {
        bids.removeAll()
        asks.removeAll()
        resting.removeAll()
        restingIds.removeAll()
        restingPerTrader.removeAll()
    }

    private static func remove(_ key: OrderKey, price: Money, from levels: inout [PriceLevel]) -> RestingOrder? {
        guard let levelIndex = levels.firstIndex(where: { $0.price == price }),
            let orderIndex = levels[levelIndex].orders.firstIndex(where: { $0.id == key.id && $0.trader == key.trader })
        else { return nil }
        let order = levels[levelIndex].orders.remove(at: orderIndex)
        levels[levelIndex].total -= order.remaining
        if levels[levelIndex].orders.isEmpty { levels.remove(at: levelIndex) }
        return order
    }

    /// Removes the first order of the best level of `side` (the next order to match against).
    func popBest(_ side: Side) -> RestingOrder {
        let order: RestingOrder
        if side == .buy {
            order = bids[bids.count - 1].orders.removeFirst()
            bids[bids.count - 1].total -= order.remaining
            if bids[bids.count - 1].orders.isEmpty { bids.removeLast() }
        } else {
            order = asks[asks.count - 1].orders.removeFirst()
            asks[asks.count - 1].total -= order.remaining
            if asks[asks.count - 1].orders.isEmpty { asks.removeLast() }
        }
        let key = OrderKey(trader: order.trader, id: order.id)
        resting[key] = nil
        forget(key)
        return order
    }

    /// Reduces the first order of the best level of `side` by `quantity` (a partial fill).
    func reduceBest(_ side: Side, by quantity: Int64) {
        if side == .buy {
            bids[bids.count - 1].orders[0].remaining -= quantity
            bids[bids.count - 1].total -= quantity
        } else {
            asks[asks.count - 1].orders[0].remaining -= quantity
            asks[asks.count - 1].total -= quantity
        }
    }

    /// Every resting order, bids best first then asks best first, each level in time order.
    var allResting: [(side: Side, price: Money, order: RestingOrder)] {
        var all: [(side: Side, price: Money, order: RestingOrder)] = []
        for level in bids.reversed() { for order in level.orders { all.append((.buy, level.price, order)) } }
        for level in asks.reversed() { for order in level.orders { all.append((.sell, level.price, order)) } }
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
    /// The listing's sales so far: the number of the last settlement created.
    var sales: Int64 = 0
    /// The settlements in memory, by number ascending (a market listing's old terminal ones are pruned). Pruned
    /// ones stay here, marked, until they are half of the array, so that pruning one costs no pass over the rest;
    /// everything that reads settlements skips them.
    var settlements: [Settlement] = []
    /// Marked pruned settlements still in ``settlements``.
    var prunedSettlements = 0
    /// Settlements not in a final state yet.
    var openSettlements = 0
    /// The final settlements not pruned yet, in the order they ended (engine time never goes back), with the time
    /// each ended: pruning takes them from the front, never scanning the rest. Entries before `endedHead` are done.
    var endedSettlements: [(number: Int64, at: Millis)] = []
    var endedHead = 0
    /// The listing's second-chance offer, once made (english only; one per listing).
    var offer: SecondChanceOffer?
    /// When its last settlement or offer ended (reached a terminal state), `nil` before any did; a listing that has
    /// ended is evicted only after the retention has passed since then too.
    var settledAt: Millis?

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
