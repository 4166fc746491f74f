import PropertyBased
import Testing

@testable import GavelCore

/// The market book's compact layout: an order's slot and a level stay small, the index finds every live number
/// through collisions and removals, and a name carried both as an id and as a trader is counted for each.
@Suite struct MarketBookLayoutTests {
    @Test func aRestingOrderTakesAFortyByteSlotAndALevelThirtyTwo() {
        #expect(MemoryLayout<MarketBook.OrderSlot>.stride == 40, "kept per resting order")
        #expect(MemoryLayout<PriceLevel>.stride == 32, "inserting a price moves the levels after it in its chunk")
        #expect(MemoryLayout<BookNames.Name>.stride == 24, "kept per distinct id and trader")
    }

    @Test func theIndexFindsEveryLiveNumberThroughCollisionsGrowthAndRemovals() async {
        await propertyCheck(count: 10, input: Gen.int(in: 0...Int(Int32.max))) { seed in
            var random = SplitMix64(seed: UInt64(seed))
            let index = BookIndex()
            var live: [(number: UInt32, hash: UInt64)] = []
            // Few distinct hashes, some equal in their low bits only: long runs that wrap past the table's end.
            let hashes: [UInt64] = (0..<12).map { n in (UInt64(n % 4) << 32) | UInt64((n * 7) % 5) | 0xFFF0 }
            var next: UInt32 = 0
            for step in 0..<2_000 {
                if live.isEmpty || random.next() % 3 != 0 {
                    let hash = hashes[Int(random.next() % UInt64(hashes.count))]
                    index.insert(hash: hash, number: next)
                    live.append((next, hash))
                    next += 1
                } else {
                    live.swapAt(Int(random.next() % UInt64(live.count)), live.count - 1)
                    let (number, hash) = live.removeLast()
                    index.remove(hash: hash, number: number)
                    #expect(index.find(hash: hash) { $0 == number } == nil, "step \(step): \(number) removed")
                }
                #expect(index.count == live.count)
                guard step % 50 == 0 else { continue }
                for (number, hash) in live {
                    #expect(index.find(hash: hash) { $0 == number } == number, "step \(step): \(number) lost")
                }
            }
            for (number, hash) in live { index.remove(hash: hash, number: number) }
            #expect(index.count == 0)
            for hash in hashes { #expect(index.find(hash: hash) { _ in true } == nil) }
        }
    }

    @Test func aNameThatIsBothAnIDAndATraderIsCountedAsEach() {
        let h = Harness()
        #expect(h.open("M", Terms.market(), at: 0).ok)
        // ann's order "bob" and bob's order "ann": each name is an id once and a trader once.
        #expect(h.order("ann", .buy, 1, price: 10, id: "o1").ok)
        #expect(h.order("ann", .buy, 1, price: 11, id: "bob").ok)
        #expect(h.order("bob", .buy, 1, price: 12, id: "ann").ok)
        guard let book = h.market() else {
            Issue.record("no market book")
            return
        }
        #expect(book.restingPerTrader == ["ann": 2, "bob": 1])
        #expect(book.hasResting(id: "ann") && book.hasResting(id: "bob") && !book.hasResting(id: "sam"))
        #expect(h.cancel("ann", order: "ann").error == .notOwner)
        #expect(h.cancel("bob", order: "ann").ok)
        #expect(!book.hasResting(id: "ann") && book.restingCount(of: "ann") == 2, "ann still has her orders")
        #expect(h.cancel("bob", order: "ann").error == .unknownOrder)
        #expect(book.restingPerTrader == ["ann": 2])
        // The freed name and slot are reused by a later order without mixing them up.
        #expect(h.order("cy", .buy, 2, price: 9, id: "bob2").ok)
        #expect(book.order(OrderKey(trader: "ann", id: "bob"))?.remaining == 1)
        #expect(book.order(OrderKey(trader: "cy", id: "bob2"))?.remaining == 2)
        #expect(book.restingPerTrader == ["ann": 2, "cy": 1] && book.restingCount == 3)
    }
}

@Suite struct MarketBookChurnTests {
    /// One trader placing and cancelling orders with ever new ids (some expiring), at ever other prices, beside
    /// orders that stay: the book keeps as many slots, expiry records and names as orders rest at once, not as many
    /// as came and went.
    @Test func placingAndCancellingNewIDsReusesTheBooksSlotsRecordsAndNames() {
        let h = Harness(engine: Engine(configuration: EngineConfiguration(maxRequestIDsPerPrincipal: 100)))
        #expect(h.open("M", Terms.market(), at: 0).ok)
        for n in 0..<20 { #expect(h.order("kim", .buy, 1, price: Money(10 + n), id: "keep\(n)").ok) }
        guard let book = h.market() else {
            Issue.record("no market book")
            return
        }
        var random = SplitMix64(seed: 7)
        for n in 0..<20_000 {
            // Sells above and buys below kim's bids: nothing trades.
            let (side, price): (Side, Money) =
                n % 2 == 0 ? (.sell, 1_000 + Money(random.next() % 500)) : (.buy, 1 + Money(random.next() % 9))
            let placed = h.order("ulf", side, 1, price: price, expiresAt: n % 3 == 0 ? 1_000_000 : nil, id: "u\(n)")
            let cancelled = h.cancel("ulf", order: "u\(n)")
            guard placed.ok, cancelled.remaining == 1 else {
                Issue.record("pair \(n): \(placed.message) \(cancelled.message)")
                return
            }
        }
        // 20 orders rest; one more slot, record and name (the id of the moment) were in use at a time, besides kim's
        // and ulf's names.
        #expect(book.restingCount == 20)
        #expect(book.stored.slots == 21 && book.stored.expiries == 1 && book.stored.names == 23, "\(book.stored)")
    }
}
