import PropertyBased
import Testing

@testable import GavelCore

/// The timer heap and how the engine fires timers when the clock moves.
@Suite struct TimerQueueTests {
    @Test func popDueReturnsTimersInTimeOrder() {
        var q = TimerQueue()
        for t in [50, 10, 40, 20, 30] as [Millis] { q.schedule(.close, listing: "L\(t)", at: t) }
        #expect(q.count == 5)
        #expect(q.nextTime == 10)
        var popped: [Millis] = []
        while let timer = q.popDue(atOrBefore: 100) { popped.append(timer.time) }
        #expect(popped == [10, 20, 30, 40, 50])
        #expect(q.count == 0)
        #expect(q.nextTime == nil)
    }

    @Test func timersAtTheSameTimeFireInSchedulingOrder() {
        var q = TimerQueue()
        for name in ["c", "a", "d", "b", "e"] { q.schedule(.close, listing: name, at: 7) }
        var popped: [String] = []
        while let timer = q.popDue(atOrBefore: 7) { popped.append(timer.listing) }
        #expect(popped == ["c", "a", "d", "b", "e"])
    }

    @Test func popDueLeavesTimersAfterTheTime() {
        var q = TimerQueue()
        q.schedule(.close, listing: "a", at: 10)
        q.schedule(.dutchStep, listing: "b", at: 11)
        #expect(q.popDue(atOrBefore: 9) == nil)
        #expect(q.popDue(atOrBefore: 10)?.listing == "a")
        #expect(q.popDue(atOrBefore: 10) == nil)
        #expect(q.count == 1)
    }

    @Test func orderedListsEveryTimerInFiringOrder() {
        var q = TimerQueue()
        q.schedule(.close, listing: "a", at: 30)
        q.schedule(.expire(trader: "t", order: "o"), listing: "b", at: 10)
        q.schedule(.dutchStep, listing: "c", at: 30)
        #expect(q.ordered.map(\.listing) == ["b", "a", "c"])
        #expect(q.ordered.map(\.sequence) == [1, 0, 2])
        #expect(q.nextSequence == 3)
    }

    @Test func restoredTimersKeepTheirOrderAndSequence() {
        var original = TimerQueue()
        for (i, t) in [5, 3, 5, 1].enumerated() { original.schedule(.close, listing: "l\(i)", at: Millis(t)) }
        var restored = TimerQueue()
        for timer in original.ordered.reversed() { restored.restore(timer, nextSequence: original.nextSequence) }
        #expect(restored.ordered == original.ordered)
        restored.schedule(.close, listing: "new", at: 5)
        #expect(restored.ordered.last?.sequence == 4)
    }

    @Test func heapAlwaysPopsTheEarliestQueuedTimerUnderAPseudoRandomLoad() {
        var q = TimerQueue()
        var queued: [(time: Millis, sequence: UInt64)] = []
        var x: UInt64 = 0x9E37_79B9_7F4A_7C15
        var pops = 0
        func popAndCheck(atOrBefore limit: Millis) {
            guard let timer = q.popDue(atOrBefore: limit) else {
                #expect(queued.allSatisfy { $0.time > limit })
                return
            }
            let earliest = queued.min { $0.time != $1.time ? $0.time < $1.time : $0.sequence < $1.sequence }
            #expect(timer.time == earliest?.time)
            #expect(timer.sequence == earliest?.sequence)
            queued.removeAll { $0.sequence == timer.sequence }
            pops += 1
        }
        for round in 0..<2000 {
            x = x &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let time = Millis((x >> 33) % 500)
            queued.append((time, q.nextSequence))
            q.schedule(.close, listing: "l", at: time)
            if round % 3 == 0 { popAndCheck(atOrBefore: Millis(round / 4)) }
        }
        while !queued.isEmpty { popAndCheck(atOrBefore: .max) }
        #expect(pops == 2000)
        #expect(q.count == 0)
    }

    @Test func cancelledTimersNeverFireAndTheRestFireInOrderLikeAModel() async {
        await propertyCheck(count: 100, input: Gen.int(in: 0...Int(Int32.max))) { seed in
            var rng = SplitMix64(seed: UInt64(seed))
            var q = TimerQueue()
            var model: [(time: Millis, sequence: UInt64)] = []
            var handles: [(handle: TimerHandle, sequence: UInt64)] = []
            var clock: Millis = 0
            for _ in 0..<600 {
                switch rng.next() % 10 {
                case 0..<5:
                    let time = clock + Millis(rng.next() % 200)
                    let sequence = q.nextSequence
                    handles.append((q.schedule(.close, listing: "l", at: time), sequence))
                    model.append((time, sequence))
                case 5..<8 where !handles.isEmpty:
                    // Cancel any handle: scheduled, already fired or already cancelled (then nothing happens).
                    let (handle, sequence) = handles[Int(rng.next() % UInt64(handles.count))]
                    #expect(q.isScheduled(handle) == model.contains { $0.sequence == sequence })
                    q.cancel(handle)
                    model.removeAll { $0.sequence == sequence }
                    #expect(!q.isScheduled(handle))
                default:
                    clock += Millis(rng.next() % 60)
                    while let timer = q.popDue(atOrBefore: clock) {
                        let earliest = model.min { $0.time != $1.time ? $0.time < $1.time : $0.sequence < $1.sequence }
                        #expect(timer.time == earliest?.time && timer.sequence == earliest?.sequence)
                        model.removeAll { $0.sequence == timer.sequence }
                    }
                    #expect(model.allSatisfy { $0.time > clock })
                }
                #expect(q.count == model.count)
                #expect(
                    q.ordered.map(\.sequence)
                        == model.sorted { ($0.time, $0.sequence) < ($1.time, $1.sequence) }.map(\.sequence))
            }
        }
    }

    @Test func aHandleOfAFiredTimerDoesNotCancelTheTimerThatReusedItsSlot() {
        var q = TimerQueue()
        let first = q.schedule(.close, listing: "a", at: 10)
        #expect(q.popDue(atOrBefore: 10)?.listing == "a")
        let second = q.schedule(.close, listing: "b", at: 20)
        #expect(second.slot == first.slot, "the freed slot is reused")
        q.cancel(first)
        #expect(q.isScheduled(second) && q.count == 1)
        #expect(q.popDue(atOrBefore: 20)?.listing == "b")
    }
}

@Suite struct EngineClockTests {
    @Test func advanceFiresTimersInTimeOrderAcrossListings() {
        let h = Harness()
        h.open("late", Terms.english(closesAt: 300), at: 0)
        h.open("early", Terms.english(closesAt: 100), at: 0)
        h.open("mid", Terms.market(closesAt: 200), at: 0)
        h.advance(to: 1000)
        #expect(h.events.map(\.listing) == ["early", "mid", "late"])
        #expect(h.events.map(\.at) == [100, 200, 300])
        #expect(h.engine.now == 1000)
    }

    @Test func timersDueAtTheSameTimeFireInTheOrderTheyWereScheduled() {
        let h = Harness()
        h.open("b", Terms.english(closesAt: 100), at: 0)
        h.open("a", Terms.english(closesAt: 100), at: 0)
        h.open("c", Terms.english(closesAt: 100), at: 0)
        h.advance(to: 100)
        #expect(h.events.map(\.listing) == ["b", "a", "c"])
    }

    @Test func interleavedTimersOfDifferentKindsFireInTimeOrder() {
        let h = Harness()
        h.open("D", Terms.dutch(stepEveryMs: 1000, closesAt: 2500), at: 0)
        h.open("M", Terms.market(), at: 0)
        h.order("sue", .sell, 1, price: 100, expiresAt: 1500, on: "M", id: "s1")
        h.advance(to: 5000)
        #expect(
            h.kinds == [
                .price(900),
                .orderCancelled(order: "s1", trader: "sue", reason: .expired, remaining: 1),
                .book(bestBid: nil, bestAsk: nil, bidQuantity: nil, askQuantity: nil),
                .price(800),
                .dutchClosed(sold: 0),
            ])
        #expect(h.events.map(\.at) == [1000, 1500, 1500, 2000, 2500])
    }

    @Test func clockNeverMovesBackwards() {
        let h = Harness()
        #expect(h.advance(to: 100))
        #expect(!h.advance(to: 99))
        #expect(h.engine.now == 100)
        #expect(h.advance(to: 100), "staying put is allowed")
    }

    @Test func refusedAdvanceFiresNothing() {
        let h = Harness()
        h.open(Terms.english(closesAt: 50), at: 10)
        h.advance(to: 40)
        #expect(!h.advance(to: 30))
        #expect(h.events.isEmpty)
        #expect(h.status() == .open)
    }

    @Test func staleCloseTimerAfterSoftCloseIsSkipped() {
        let h = Harness()
        let soft = SoftClose(windowMs: 100, extendMs: 100, maxClosesAt: nil)
        h.open(Terms.english(closesAt: 1000, softClose: soft), at: 0)
        h.bid("ann", 100, at: 950)  // moves the close to 1050
        #expect(h.engine.timerCount == 2)
        h.advance(to: 1049)
        #expect(h.events.isEmpty)
        h.advance(to: 1050)
        #expect(h.kinds == [.closed(winner: "ann", price: 100, reserveMet: true)])
    }

    @Test func commandsAfterAnAdvanceSeeTheNewTime() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.bid("ann", 100, at: 777)
        #expect(h.events.first?.at == 777)
    }
}
