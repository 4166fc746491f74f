import PropertyBased
import Testing

@testable import GavelCore

/// An independent model of a market listing's book: every resting order in one list, matched by scanning for the
/// best price and then the earliest arrival, with self-trade prevention. Slow and obviously right, to check the
/// engine's book (chunked price levels, levels with gaps) against.
private struct MarketModel {
    struct Order: Equatable {
        var id: String
        var trader: String
        var side: Side
        var price: Money
        var remaining: Int64
        var arrival: Int
    }

    var resting: [Order] = []
    var arrivals = 0

    /// Places an order; returns what it filled and what rests of it.
    mutating func place(id: String, trader: String, side: Side, price: Money, quantity: Int64, gtc: Bool)
        -> (filled: Int64, rests: Int64)
    {
        var left = quantity
        while left > 0 {
            let candidates = resting.indices.filter {
                resting[$0].side != side && (side == .buy ? resting[$0].price <= price : resting[$0].price >= price)
            }
            guard
                let best = candidates.min(by: { a, b in
                    let (x, y) = (resting[a], resting[b])
                    if x.price != y.price { return side == .buy ? x.price < y.price : x.price > y.price }
                    return x.arrival < y.arrival
                })
            else { break }
            if resting[best].trader == trader {
                resting.remove(at: best)  // self-trade prevention: the resting order is cancelled
                continue
            }
            let quantity = min(left, resting[best].remaining)
            left -= quantity
            resting[best].remaining -= quantity
            if resting[best].remaining == 0 { resting.remove(at: best) }
        }
        if left > 0 && gtc {
            resting.append(
                Order(id: id, trader: trader, side: side, price: price, remaining: left, arrival: arrivals))
            arrivals += 1
            return (quantity - left, left)
        }
        return (quantity - left, 0)
    }

    /// Cancels `trader`'s order `id`: its remaining quantity, or the error the engine must give.
    mutating func cancel(id: String, trader: String) -> (remaining: Int64?, error: ErrorCode?) {
        guard let index = resting.firstIndex(where: { $0.id == id && $0.trader == trader }) else {
            return (nil, resting.contains { $0.id == id } ? .notOwner : .unknownOrder)
        }
        return (resting.remove(at: index).remaining, nil)
    }

    /// The resting orders as the engine lists them: bids best first, then asks best first, each price in time order.
    var listed: [(side: Side, price: Money, id: String, trader: String, remaining: Int64)] {
        let bids = resting.filter { $0.side == .buy }.sorted { ($0.price, -$0.arrival) > ($1.price, -$1.arrival) }
        let asks = resting.filter { $0.side == .sell }.sorted { ($0.price, $0.arrival) < ($1.price, $1.arrival) }
        return (bids + asks).map { ($0.side, $0.price, $0.id, $0.trader, $0.remaining) }
    }
}

@Suite struct MarketBookModelTests {
    /// Runs a stream of orders and cancels drawn from `seed` against the engine and the model, comparing every result
    /// and the whole book after every step. `prices` is how many prices orders use: a few make deep levels (many
    /// cancels in the middle of one, gaps and compaction), hundreds make many levels (chunks that split and empty).
    /// The whole book is compared every `every` steps and after the last.
    private static func check(seed: Int, prices: Int, sellsAbove: Int, steps: Int, every: Int = 1) -> (
        bids: Int, asks: Int
    ) {
        var most = (bids: 0, asks: 0)
        var rng = SplitMix64(seed: UInt64(seed))
        var configuration = EngineConfiguration()
        configuration.maxRestingOrdersPerTrader = 100_000
        let engine = Engine(configuration: configuration)
        var events: [Event] = []
        _ = engine.apply(
            Command(id: "open", listing: "M", body: .open(seller: "sam", terms: .market(.init()))), events: &events)
        var model = MarketModel()
        var placed: [(id: String, trader: String)] = []
        let traders = ["ann", "bob", "cid", "dee", "eve"]
        for step in 0..<steps {
            events.removeAll()
            let roll = rng.next() % 100
            if roll < 30, !placed.isEmpty {
                // A cancel of an order placed earlier (resting or not), now and then by someone else.
                let target = placed[Int(rng.next() % UInt64(placed.count))]
                let trader = rng.next() % 8 == 0 ? traders[Int(rng.next() % 5)] : target.trader
                let result = engine.apply(
                    Command(id: "c\(step)", listing: "M", body: .cancel(trader: trader, order: target.id)),
                    events: &events)
                let expected = model.cancel(id: target.id, trader: trader)
                #expect(result.error == expected.error, "step \(step): cancel \(target) by \(trader)")
                #expect(result.remaining == expected.remaining, "step \(step): cancel \(target) by \(trader)")
            } else {
                let trader = traders[Int(rng.next() % 5)]
                let side: Side = rng.next() % 2 == 0 ? .buy : .sell
                // Sells `sellsAbove` higher than buys: the book both rests and crosses.
                let price = Money(1_000 + Int(rng.next() % UInt64(prices)) + (side == .sell ? sellsAbove : 0))
                let quantity = Int64(1 + rng.next() % 5)
                let gtc = rng.next() % 5 != 0
                let id = "o\(step)"
                let result = engine.apply(
                    Command(
                        id: id, listing: "M",
                        body: .order(
                            trader: trader, side: side, price: price, quantity: quantity, tif: gtc ? .gtc : .ioc,
                            expiresAt: nil)), events: &events)
                let expected = model.place(
                    id: id, trader: trader, side: side, price: price, quantity: quantity, gtc: gtc)
                #expect(result.ok, "step \(step): \(result.message)")
                #expect(result.filled == expected.filled && result.remaining == expected.rests, "step \(step)")
                placed.append((id, trader))
            }
            guard case .market(let book) = engine.handle(for: "M")!.listing.book else { return most }
            most = (max(most.bids, book.bids.count), max(most.asks, book.asks.count))
            guard step % every == 0 || step == steps - 1 else { continue }
            let listed = book.allResting.map { ($0.side, $0.price, $0.order.id, $0.order.trader, $0.order.remaining) }
            let expected = model.listed
            guard listed.count == expected.count, zip(listed, expected).allSatisfy({ $0 == $1 }) else {
                Issue.record("step \(step): the book differs from the model (\(listed.count) vs \(expected.count))")
                return most
            }
            #expect(book.restingCount == expected.count)
            #expect(book.bids.count == Set(model.resting.filter { $0.side == .buy }.map(\.price)).count)
            #expect(book.asks.count == Set(model.resting.filter { $0.side == .sell }.map(\.price)).count)
            for level in Array(book.bids) + Array(book.asks) {
                #expect(level.total == level.orders.reduce(0) { $0 + $1.remaining } && level.count > 0)
            }
        }
        return most
    }

    @Test func deepLevelsMatchAndCancelLikeTheModel() async {
        await propertyCheck(count: 30, input: Gen.int(in: 0...Int(Int32.max))) { seed in
            let most = Self.check(seed: seed, prices: 3, sellsAbove: 0, steps: 800)
            #expect(most.bids <= 3 && most.asks <= 3)
        }
    }

    @Test func manyLevelsMatchAndCancelLikeTheModel() async {
        await propertyCheck(count: 8, input: Gen.int(in: 0...Int(Int32.max))) { seed in
            // Enough prices resting at once that each side's levels fill several chunks, split and empty them.
            let most = Self.check(seed: seed, prices: 4_000, sellsAbove: 3_000, steps: 3_000, every: 50)
            #expect(min(most.bids, most.asks) > 2 * PriceLevels.chunkCapacity, "\(most)")
        }
    }

    @Test func aDeepLevelFillsAndCancelsWithoutMovingItsOrders() {
        // 2,000 orders at one price, then three in four cancelled from the back and the rest filled from the front:
        // the level keeps time order through cancels from its middle, and ends empty.
        let engine = Engine()
        var events: [Event] = []
        _ = engine.apply(
            Command(id: "open", listing: "M", body: .open(seller: "sam", terms: .market(.init()))), events: &events)
        for n in 0..<2_000 {
            let r = engine.apply(
                Command(
                    id: "s\(n)", listing: "M",
                    body: .order(trader: "t\(n % 10)", side: .sell, price: 100, quantity: 1, tif: .gtc, expiresAt: nil)),
                events: &events)
            #expect(r.ok)
        }
        for n in stride(from: 1_999, through: 0, by: -1) where n % 4 != 0 {
            let r = engine.apply(
                Command(id: "c\(n)", listing: "M", body: .cancel(trader: "t\(n % 10)", order: "s\(n)")),
                events: &events)
            #expect(r.ok && r.remaining == 1)
        }
        guard case .market(let book) = engine.handle(for: "M")!.listing.book, let level = book.asks.last else {
            Issue.record("no ask level")
            return
        }
        #expect(level.count == 500 && level.total == 500)
        #expect(level.orders.map(\.id) == stride(from: 0, to: 2_000, by: 4).map { "s\($0)" }, "in time order")
        events.removeAll()
        let fill = engine.apply(
            Command(
                id: "buy", listing: "M",
                body: .order(trader: "bob", side: .buy, price: 100, quantity: 500, tif: .ioc, expiresAt: nil)),
            events: &events)
        #expect(fill.filled == 500)
        let sold = events.compactMap { event -> String? in
            if case .trade(_, _, _, _, _, let sellOrder) = event.kind { return sellOrder }
            return nil
        }
        #expect(sold == stride(from: 0, to: 2_000, by: 4).map { "s\($0)" }, "oldest first, the cancelled ones skipped")
        #expect(book.asks.isEmpty && book.isEmpty)
    }
}
