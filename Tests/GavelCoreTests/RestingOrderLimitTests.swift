import Testing

@testable import GavelCore

/// A market book holds at most `maxRestingOrdersPerListing` resting orders, and each trader at most
/// `maxRestingOrdersPerTrader` of them: a `gtc` order arriving at either cap is refused with `limit_exceeded` before
/// anything changes, even one that would fully match. The caps are part of the state and survive a restore.
@Suite struct RestingOrderLimitTests {
    /// Caps small enough to reach: 3 resting orders per listing, 2 per trader.
    private static func configuration(window: Millis = 86_400_000) -> EngineConfiguration {
        EngineConfiguration(idempotencyWindowMs: window, maxRestingOrdersPerListing: 3, maxRestingOrdersPerTrader: 2)
    }

    /// Twins over two engines with the small caps and market `M` open.
    private func twins() -> Twins {
        let twins = Twins(
            subject: Engine(configuration: Self.configuration(window: 1)),
            twin: Engine(configuration: Self.configuration(window: 1)), at: 0)
        #expect(twins.apply(Command(id: "o", listing: "M", body: .open(seller: "sam", terms: Terms.market()))).ok)
        return twins
    }

    /// A harness over an engine with the small caps and market `M` open.
    private func harness() -> Harness {
        let h = Harness(engine: Engine(configuration: Self.configuration()))
        #expect(h.open("M", Terms.market(), at: 0).ok)
        return h
    }

    @Test func aGtcOrderPastTheListingsCapIsRefusedEvenIfItWouldMatchAndChangesNothing() {
        let twins = twins()
        #expect(twins.apply(orderCommand("a", "ann", .buy, 5, price: 10)).ok)
        #expect(twins.apply(orderCommand("b", "bob", .buy, 5, price: 11)).ok)
        #expect(twins.apply(orderCommand("c", "cat", .sell, 5, price: 20)).ok)
        #expect(twins.subject.market()?.restingCount == 3)
        // This sell would trade all of its quantity against bob's bid and rest nothing: refused all the same.
        let result = twins.apply(orderCommand("d", "dan", .sell, 5, price: 11))
        #expect(result.error == .limitExceeded)
        #expect(result.message.contains("listing M already holds 3 resting orders"))
        #expect(result.message.contains("--max-resting-orders-per-listing 3"))
        #expect(twins.subject.events.isEmpty, "a refused order emits nothing")
        #expect(twins.subject.market()?.restingCount == 3)
        #expect(twins.statesAgree())
    }

    @Test func aGtcOrderPastItsTradersCapIsRefusedWhileOtherTradersStillRest() {
        let twins = twins()
        #expect(twins.apply(orderCommand("a1", "ann", .buy, 5, price: 10)).ok)
        #expect(twins.apply(orderCommand("a2", "ann", .buy, 5, price: 9)).ok)
        let result = twins.apply(orderCommand("a3", "ann", .sell, 5, price: 30))
        #expect(result.error == .limitExceeded)
        #expect(result.message.contains("ann already has 2 orders resting on listing M"))
        #expect(result.message.contains("--max-resting-orders-per-trader 2"))
        #expect(twins.subject.events.isEmpty, "a refused order emits nothing")
        #expect(twins.apply(orderCommand("b1", "bob", .sell, 5, price: 30)).ok, "another trader still has room")
        #expect(twins.statesAgree())
    }

    @Test func iocOrdersAreNotLimitedByEitherCap() {
        let twins = twins()
        #expect(twins.apply(orderCommand("a1", "ann", .buy, 5, price: 10)).ok)
        #expect(twins.apply(orderCommand("a2", "ann", .buy, 5, price: 9)).ok)
        #expect(twins.apply(orderCommand("c", "cat", .sell, 5, price: 20)).ok)
        let trade = twins.apply(orderCommand("i1", "dan", .sell, 2, price: 10, tif: .ioc))
        #expect(trade.ok && trade.filled == 2, "the book is full, the ioc trades")
        let miss = twins.apply(orderCommand("i2", "ann", .sell, 2, price: 50, tif: .ioc))
        #expect(
            miss.ok && miss.filled == 0 && miss.remaining == 0, "ann is at her cap, her ioc is cancelled, not refused")
        #expect(twins.statesAgree())
    }

    @Test func aCancelAFillAndAnExpiryEachMakeRoomAgain() {
        let h = harness()
        #expect(h.order("ann", .buy, 5, price: 10, id: "a1").ok)
        #expect(h.order("ann", .buy, 5, price: 9, id: "a2").ok)
        #expect(h.order("ann", .buy, 5, price: 8, id: "a3").error == .limitExceeded)
        #expect(h.cancel("ann", order: "a2").ok)
        #expect(h.order("ann", .buy, 5, price: 8, id: "a4").ok, "room after a cancel")
        #expect(h.order("ann", .buy, 5, price: 7, id: "a5").error == .limitExceeded)
        let fill = h.order("bob", .sell, 5, price: 10, tif: .ioc)
        #expect(fill.ok && fill.filled == 5)
        #expect(h.order("ann", .buy, 5, price: 7, at: 10, id: "a6").ok, "room after a fill")
        #expect(h.order("cat", .sell, 1, price: 50, expiresAt: 100, id: "c1").ok)
        #expect(h.market()?.restingCount == 3)
        #expect(h.order("dan", .sell, 1, price: 60, id: "d1").error == .limitExceeded)
        #expect(h.order("dan", .sell, 1, price: 60, at: 100, id: "d2").ok, "room after cat's order expired")
        #expect(h.market()?.restingPerTrader == ["ann": 2, "dan": 1])
    }

    @Test func theCapsAndTheCountsSurviveARestoreWithTheSameHash() throws {
        let h = harness()
        #expect(h.order("ann", .buy, 5, price: 10).ok)
        #expect(h.order("ann", .buy, 5, price: 9).ok)
        let restored = try Engine.restore(from: h.engine.encodeState())
        #expect(restored.configuration.maxRestingOrdersPerListing == 3)
        #expect(restored.configuration.maxRestingOrdersPerTrader == 2)
        #expect(restored.stateHash() == h.engine.stateHash())
        #expect(Harness(engine: restored).market()?.restingPerTrader == ["ann": 2])
        var events: [Event] = []
        let again = restored.apply(orderCommand("a3", "ann", .buy, 5, price: 8), events: &events)
        #expect(again.error == .limitExceeded, "the restored book still counts ann's orders")
    }

    @Test func theCapsAreInTheStateHash() {
        let other = Engine(
            configuration: EngineConfiguration(maxRestingOrdersPerListing: 3, maxRestingOrdersPerTrader: 3))
        #expect(other.stateHash() != Engine(configuration: Self.configuration()).stateHash())
        let wider = Engine(
            configuration: EngineConfiguration(maxRestingOrdersPerListing: 4, maxRestingOrdersPerTrader: 2))
        #expect(wider.stateHash() != Engine(configuration: Self.configuration()).stateHash())
    }

    @Test func aVersionOneStateTakesTheCapsFromTheDefaultsAndKeepsOrdersAboveThem() throws {
        let h = Harness(engine: Engine())
        #expect(h.open("M", Terms.market(), at: 0).ok)
        for n in 1...3 { #expect(h.order("ann", .buy, 1, price: Money(n)).ok) }
        let defaults = EngineConfiguration(maxRestingOrdersPerListing: 10, maxRestingOrdersPerTrader: 2)
        let restored = try Engine.restore(from: versionOneState(of: h.engine), defaults: defaults)
        #expect(restored.configuration.maxRestingOrdersPerListing == 10)
        #expect(restored.configuration.maxRestingOrdersPerTrader == 2)
        let r = Harness(engine: restored)
        #expect(r.market()?.restingCount == 3, "orders above the cap are kept")
        #expect(r.order("ann", .buy, 1, price: 4).error == .limitExceeded)
        #expect(r.order("bob", .buy, 1, price: 4).ok)
        #expect(restored.encodeState().prefix(4) == [2, 0, 0, 0], "written back as version 2")
    }
}
