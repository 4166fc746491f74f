import GavelCore
import GavelJournal
import Testing

/// Restores a copy of `engine` and checks that it encodes to the same bytes and hashes the same.
private func checkRestore(_ engine: Engine, _ note: String, sourceLocation: SourceLocation = #_sourceLocation) throws
    -> Engine
{
    let bytes = engine.encodeState()
    let restored = try Engine.restore(from: bytes)
    #expect(restored.encodeState() == bytes, "\(note): re-encoding the restored state", sourceLocation: sourceLocation)
    #expect(restored.stateHash() == engine.stateHash(), "\(note)", sourceLocation: sourceLocation)
    #expect(restored.now == engine.now, sourceLocation: sourceLocation)
    #expect(restored.listingCount == engine.listingCount, sourceLocation: sourceLocation)
    #expect(restored.timerCount == engine.timerCount, sourceLocation: sourceLocation)
    #expect(restored.rememberedCount == engine.rememberedCount, sourceLocation: sourceLocation)
    #expect(restored.configuration.idempotencyWindowMs == engine.configuration.idempotencyWindowMs)
    return restored
}

@Suite("Engine state restore")
struct EngineRestoreTests {
    /// Every format in the middle of its life: resting market orders on both sides with expiries, a Dutch clock that
    /// has stepped with units left, sealed bids, an english auction extended by soft close with a proxy maximum
    /// above the price, and remembered request ids (accepted and rejected).
    @Test func everyFormatMidLifeRestoresToTheSameBytes() throws {
        let engine = Engine()
        var events: [Event] = []
        func apply(_ at: Millis, _ id: String, _ listing: String, _ body: CommandBody) -> CommandResult {
            engine.advance(to: at, events: &events)
            return engine.apply(Command(id: id, listing: listing, body: body), events: &events)
        }
        let softClose = SoftClose(windowMs: 1000, extendMs: 2000, maxClosesAt: 20_000)
        #expect(
            apply(
                0, "o1", "E",
                .open(
                    seller: "sam",
                    terms: .english(.init(start: 100, reserve: 500, closesAt: 10_000, softClose: softClose)))
            ).ok)
        #expect(
            apply(
                0, "o2", "S", .open(seller: "sam", terms: .sealed(.init(pricing: .second, start: 10, closesAt: 50_000)))
            ).ok)
        #expect(
            apply(
                0, "o3", "D",
                .open(
                    seller: "sam",
                    terms: .dutch(
                        .init(start: 1000, floor: 100, step: 50, stepEveryMs: 100, quantity: 10, closesAt: 50_000)))
            ).ok)
        #expect(apply(0, "o4", "M", .open(seller: "sam", terms: .market(.init(closesAt: 50_000)))).ok)
        #expect(apply(1, "b1", "E", .bid(bidder: "ann", amount: 800)).ok)
        #expect(apply(2, "b2", "E", .bid(bidder: "bob", amount: 300)).ok == false, "outbid by ann's proxy")
        #expect(apply(9_500, "b3", "E", .bid(bidder: "bob", amount: 2000)).leading == true)
        #expect(apply(9_600, "s1", "S", .bid(bidder: "ann", amount: 300)).ok)
        #expect(apply(9_600, "s2", "S", .bid(bidder: "bob", amount: 200)).ok)
        #expect(apply(9_700, "a1", "D", .accept(bidder: "cyd", quantity: 3)).ok)
        #expect(
            apply(
                9_800, "q1", "M",
                .order(trader: "ann", side: .sell, price: 105, quantity: 4, tif: .gtc, expiresAt: 30_000)
            ).remaining == 4)
        #expect(
            apply(
                9_800, "q2", "M", .order(trader: "bob", side: .buy, price: 95, quantity: 2, tif: .gtc, expiresAt: nil)
            ).remaining == 2)
        #expect(
            apply(
                9_900, "q3", "M", .order(trader: "cyd", side: .buy, price: 96, quantity: 1, tif: .gtc, expiresAt: 9_950)
            ).ok)
        #expect(
            apply(
                9_900, "q4", "M", .order(trader: "dee", side: .buy, price: 105, quantity: 1, tif: .ioc, expiresAt: nil)
            ).filled == 1)
        #expect(apply(9_910, "bad", "nowhere", .bid(bidder: "eve", amount: 5)).ok == false)
        // The english close moved (soft close), the dutch clock stepped, an order is due to expire.
        #expect(engine.timerCount >= 3)
        #expect(engine.rememberedCount == 15)
        let restored = try checkRestore(engine, "mid-life")
        // Both go on identically: the expiry, the Dutch steps, the extended close, more commands.
        var a: [Event] = []
        var b: [Event] = []
        for (at, command) in [
            (
                Millis(9_960),
                Command(
                    id: "q5", listing: "M",
                    body: .order(trader: "eve", side: .sell, price: 95, quantity: 3, tif: .gtc, expiresAt: nil))
            ),
            (10_500, Command(id: "b4", listing: "E", body: .bid(bidder: "ann", amount: 2500))),
            (11_000, Command(id: "a2", listing: "D", body: .accept(bidder: "fay", quantity: 1))),
            (11_000, Command(id: "b1", listing: "E", body: .bid(bidder: "ann", amount: 800))),
            (60_000, Command(id: "z", listing: "M", body: .cancel(trader: "ann", order: "q1"))),
        ] {
            engine.advance(to: at, events: &a)
            restored.advance(to: at, events: &b)
            #expect(engine.apply(command, events: &a) == restored.apply(command, events: &b))
            #expect(a == b)
            #expect(restored.stateHash() == engine.stateHash())
        }
        _ = try checkRestore(restored, "after everything closed")
    }

    @Test(arguments: [UInt64(1), 2, 3, 4, 5, 6])
    func randomStreamsRestoreAtEveryCheckpointAndContinueIdentically(seed: UInt64) throws {
        var workload = Workload(seed: seed)
        workload.groupSize = 20 + Int(seed % 3) * 25
        var rng = SplitMix64(seed: seed &* 31)
        let window: Millis = seed % 2 == 0 ? 86_400_000 : 500
        let engine = Engine(configuration: EngineConfiguration(idempotencyWindowMs: window))
        var shadow: Engine? = nil
        var events: [Event] = []
        var shadowEvents: [Event] = []
        var checkpoints = 0
        for step in 0..<1500 {
            var (command, at) = workload.next()
            // Now and then a retry of an earlier command (a duplicate) or a reused id (a conflict).
            if rng.chance(3) {
                command.body = .bid(bidder: "ann", amount: 1)
                command.id = "retry\(rng.int(0...20))"
            }
            engine.advance(to: at, events: &events)
            let result = engine.apply(command, events: &events)
            if let shadow {
                shadow.advance(to: at, events: &shadowEvents)
                #expect(shadow.apply(command, events: &shadowEvents) == result)
                #expect(shadowEvents == events)
            }
            events.removeAll()
            shadowEvents.removeAll()
            if step % 97 == 0 || rng.chance(2) {
                checkpoints += 1
                let restored = try checkRestore(engine, "seed \(seed) step \(step)")
                // Keep one restored engine running beside the original from the first checkpoint on.
                if shadow == nil { shadow = restored }
            }
        }
        if let shadow { #expect(shadow.stateHash() == engine.stateHash()) }
        #expect(checkpoints > 10)
        _ = try checkRestore(engine, "seed \(seed) end")
    }

    @Test func emptyEngineAndGarbageStates() throws {
        _ = try checkRestore(Engine(), "empty")
        _ = try checkRestore(Engine(configuration: EngineConfiguration(idempotencyWindowMs: 1)), "tiny window")
        var workload = Workload(seed: 3)
        let engine = Engine()
        workload.apply(200, to: engine)
        let bytes = engine.encodeState()
        // Every cut of the state is refused, never trusted.
        for cut in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 200)) {
            #expect(throws: DecodingError.self) { _ = try Engine.restore(from: Array(bytes.prefix(cut))) }
        }
        #expect(throws: DecodingError.self) { _ = try Engine.restore(from: bytes + [0]) }
    }

    /// The room made up front is a setting of the running engine, not part of its state: the restored engine keeps
    /// it, encodes to the same bytes, and goes on remembering ids exactly as one restored without it.
    @Test func roomForRequestIDsIsKeptButIsNotPartOfTheState() throws {
        var workload = Workload(seed: 9)
        let engine = Engine(configuration: EngineConfiguration(expectedRequestIDs: 5_000))
        workload.apply(300, to: engine)
        let bytes = engine.encodeState()
        #expect(engine.rememberedCount > 0)
        let roomy = try Engine.restore(from: bytes, defaults: EngineConfiguration(expectedRequestIDs: 50_000))
        let plain = try Engine.restore(from: bytes)
        #expect(roomy.configuration.expectedRequestIDs == 50_000 && plain.configuration.expectedRequestIDs == 0)
        #expect(roomy.encodeState() == bytes && plain.encodeState() == bytes)
        var events: [Event] = []
        for _ in 0..<300 {
            let (command, at) = workload.next()
            roomy.advance(to: at, events: &events)
            plain.advance(to: at, events: &events)
            #expect(roomy.apply(command, events: &events) == plain.apply(command, events: &events))
        }
        #expect(roomy.stateHash() == plain.stateHash() && roomy.rememberedCount == plain.rememberedCount)
    }
}
