import PropertyBased
import Testing

@testable import GavelCore

/// The idempotency table is bounded by the results it still remembers, not by window × rate: a result the
/// per-principal cap forgot frees its slot for a later one, its reference in the order of application is compacted
/// away even while an old result of another principal holds the front of that order, and compaction changes no
/// outcome, no state byte and no hash.
@Suite struct RememberedLogCompactionTests {
    private func engine(cap: Int, window: Millis = 86_400_000, slack: Int) -> Engine {
        let e = Engine(configuration: EngineConfiguration(idempotencyWindowMs: window, maxRequestIDsPerPrincipal: cap))
        e.compactionSlack = slack
        return e
    }

    private func bid(_ bidder: String, id: String, amount: Money = 100) -> Command {
        Command(id: id, listing: "nowhere", body: .bid(bidder: bidder, amount: amount))
    }

    @Test func aPrincipalsOldResultNoLongerHoldsEveryLaterForgottenIdInMemory() {
        let e = engine(cap: 10, slack: 16)
        var events: [Event] = []
        _ = e.apply(bid("sue", id: "once"), events: &events)
        for i in 0..<20_000 {
            _ = e.apply(bid("ann", id: "a\(i)"), events: &events)
            // Live: sue's one and ann's newest 10; the log may hold as many dead again, the slack, and what a pass
            // under way has not reached yet.
            #expect(e.rememberedOrderLength <= 2 * 11 + 16 + 2 * 11 + 8, "after \(i + 1) of ann's requests")
            // The results themselves: the 11 remembered and the one slot the newest freed, never more.
            #expect(e.rememberedSlots.count <= 12, "after \(i + 1) of ann's requests")
        }
        #expect(e.rememberedCount == 11)
        #expect(e.apply(bid("sue", id: "once"), events: &events).duplicate, "sue's result is still remembered")
        for i in 19_990..<20_000 {
            #expect(e.apply(bid("ann", id: "a\(i)"), events: &events).duplicate, "a\(i) is among ann's newest")
        }
        #expect(!e.apply(bid("ann", id: "a19989"), events: &events).duplicate, "a19989 was forgotten by the cap")
    }

    @Test func withoutCompactionTheSameStreamWouldKeepEveryEntry() {
        let e = engine(cap: 10, slack: Int.max / 4)
        var events: [Event] = []
        _ = e.apply(bid("sue", id: "once"), events: &events)
        for i in 0..<2_000 { _ = e.apply(bid("ann", id: "a\(i)"), events: &events) }
        #expect(e.rememberedOrderLength == 2_001, "the bound above is compaction's doing")
    }

    /// Random streams of requests (new ids, repeated ids, conflicting reuse) from fast and slow principals with
    /// a small cap and window: an engine that compacts after every few dead entries answers every request exactly as
    /// one that never compacts, and its state has the same bytes at every step; a restore in the middle changes
    /// nothing either.
    @Test func compactionChangesNoOutcomeAndNoStateByte() async {
        await propertyCheck(count: 150, input: Gen.int(in: 0...Int(Int32.max)).array(of: 1...400)) { values in
            let compacting = engine(cap: 3, window: 5_000, slack: 1)
            let plain = engine(cap: 3, window: 5_000, slack: Int.max / 4)
            var restored: Engine?
            var events: [Event] = []
            var time: Millis = 0
            var most = 0
            for (step, x) in values.enumerated() {
                if x % 7 == 0 {
                    time += Millis(x % 2_000)
                    compacting.advance(to: time, events: &events)
                    plain.advance(to: time, events: &events)
                    restored?.advance(to: time, events: &events)
                    continue
                }
                // Most requests come from ann and bob; cy and dee are slow and pin the front of the log.
                let principal = ["ann", "bob", "ann", "bob", "ann", "cy", "bob", "dee"][(x / 7) % 8]
                let command = bid(principal, id: "r\((x / 56) % 12)", amount: Money(100 + (x / 672) % 2))
                let expected = plain.apply(command, events: &events)
                let got = compacting.apply(command, events: &events)
                #expect(got == expected, "step \(step)")
                if let restored { #expect(restored.apply(command, events: &events) == expected, "restored, \(step)") }
                if step == values.count / 2 { restored = try? Engine.restore(from: compacting.encodeState()) }
                #expect(compacting.rememberedOrderLength <= 2 * compacting.rememberedCount + 1 + 40)
                // Slots are reused: never more than the most results remembered at once, and the one a result
                // passing its principal's cap holds for a moment.
                most = max(most, compacting.rememberedCount)
                #expect(compacting.rememberedSlots.count <= most + 1, "step \(step)")
            }
            #expect(compacting.encodeState() == plain.encodeState())
            if values.count >= 200 { #expect(compacting.compactionPasses > 0, "a long stream compacts") }
            if let restored { #expect(restored.encodeState() == plain.encodeState()) }
        }
    }
}
