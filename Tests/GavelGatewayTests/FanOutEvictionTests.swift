import GavelCore
@_spi(Manual) import GavelEngine
import NIOEmbedded
import Testing

@testable import GavelGateway

/// The gateway lets go of a listing's public view and history when the engine evicts it.
@Suite struct FanOutEvictionTests {
    /// A fan-out on one embedded loop behind a writer driven by hand, whose closed listings are evicted 100 ms
    /// after their end.
    private func harness() -> (FanOut, Writer, ManualClock, EmbeddedEventLoop) {
        let loop = EmbeddedEventLoop()
        let fanOut = FanOut(group: loop, historyLimit: 16, metrics: GatewayMetrics())
        var configuration = WriterConfiguration()
        configuration.engine.closedListingRetentionMs = 100
        let clock = ManualClock(0)
        let writer = Writer(configuration: configuration, clock: clock, observer: fanOut)
        writer.startManual()
        return (fanOut, writer, clock, loop)
    }

    private func open(_ listing: String, closesAt: Millis) -> Command {
        Command(
            id: "o-\(listing)", listing: listing,
            body: .open(seller: "sam", terms: .english(.init(start: 100, closesAt: closesAt))))
    }

    @Test func anEvictedListingLeavesTheViewsTheListAndTheHistory() {
        let (fanOut, writer, clock, loop) = harness()
        writer.submit(open("gone", closesAt: 50), replyTo: nil)
        writer.submit(open("kept", closesAt: 10_000), replyTo: nil)
        writer.runUntilIdle()
        clock.set(60)
        writer.runUntilIdle()
        loop.run()
        #expect(fanOut.view(of: "gone")?.status == .closed, "closed, within its retention")
        #expect(fanOut.listings(openOnly: false, after: nil, limit: 10).views.map(\.listing) == ["gone", "kept"])
        clock.set(150)
        writer.runUntilIdle()
        loop.run()
        #expect(fanOut.view(of: "gone") == nil)
        #expect(fanOut.listings(openOnly: false, after: nil, limit: 10).views.map(\.listing) == ["kept"])
        guard case .snapshot(let seq, let view) = fanOut.subscribe(listing: "gone", since: 1, loop: 0, renew: false)
        else {
            Issue.record("a resume from history that should be gone")
            return
        }
        #expect(seq == 0 && view == nil, "as for an id never opened")
        fanOut.unsubscribe(listing: "gone", loop: 0)
        #expect(fanOut.subscriptionCount == 0)
    }

    @Test func aSubscriptionHeldAcrossTheEvictionIsStillCountedAndReleased() {
        let (fanOut, writer, clock, loop) = harness()
        writer.submit(open("L", closesAt: 50), replyTo: nil)
        writer.runUntilIdle()
        loop.run()
        _ = fanOut.subscribe(listing: "L", since: nil, loop: 0, renew: false)
        clock.set(200)
        writer.runUntilIdle()
        loop.run()
        #expect(fanOut.view(of: "L") == nil)
        #expect(fanOut.subscriptionCount == 1)
        fanOut.unsubscribe(listing: "L", loop: 0)
        #expect(fanOut.subscriptionCount == 0)
    }
}

/// A session's subscriptions and registration are returned to the fan-out when it disconnects.
@Suite struct FanOutDisconnectTests {
    @Test func aDisconnectedSessionLeavesNothingBehindInTheFanOut() throws {
        let h = try SessionHarness(principal: Principal(name: "ann", role: .bidder))
        for i in 0..<50 { try h.send(#"{"type":"subscribe","listing":"made-up-\#(i)"}"#) }
        h.settle()
        #expect(h.fanOut.subscriptionCount == 50)
        #expect(h.fanOut.tracked.listings == 50 && h.fanOut.tracked.users == 1)
        try h.channel.close().wait()
        h.settle()
        #expect(h.fanOut.subscriptionCount == 0)
        #expect(h.fanOut.tracked.listings == 0 && h.fanOut.tracked.users == 0)
    }

    @Test func aSessionAnsweredOutsideAFanOutTaskFlushesItselfAndIsNotKeptByItsLoop() throws {
        let h = try SessionHarness(principal: Principal(name: "ann", role: .bidder))
        for i in 0..<5 { try h.send(#"{"type":"subscribe","listing":"made-up-\#(i)"}"#) }
        #expect(try h.frames().map(\.type) == ["hello"] + Array(repeating: "snapshot", count: 5))
        #expect(h.fanOut.loops[0].dirtyCount == 0)
    }
}

/// A service session on a writer driven by hand, its clock at 1000 ms, whose closed listings are evicted 100 ms
/// after their end.
private func serviceSessionEvictingAfter100Ms() throws -> (SessionHarness, ManualClock) {
    var configuration = WriterConfiguration()
    configuration.engine.closedListingRetentionMs = 100
    let clock = ManualClock(1000)
    let h = try SessionHarness(principal: Principal(name: "svc", role: .service), writer: configuration, clock: clock)
    return (h, clock)
}

/// A session that stays subscribed while its listing is evicted and its id opened again gets the new listing's
/// events from `seq` 1.
@Suite struct FanOutReopenTests {
    @Test func aSubscriberKeptAcrossAnEvictionGetsTheReopenedListingsEvents() throws {
        let (h, clock) = try serviceSessionEvictingAfter100Ms()
        let open =
            #"{"type":"open","id":"o1","listing":"L","seller":"sam","format":"english","start":100,"closes_at":1050,"payment_due_ms":10}"#
        try h.send(open)
        h.settle()
        for i in 1...3 {
            try h.send(#"{"type":"bid","id":"b\#(i)","listing":"L","bidder":"ann","amount":\#(100 * i + 100)}"#)
        }
        try h.send(#"{"type":"subscribe","listing":"L"}"#)
        h.settle()
        clock.set(1200)  // closed at 1050, its sale's payment expired at 1060, evicted at 1160
        h.settle()
        _ = try h.frames()
        try h.send(open.replacingOccurrences(of: "o1", with: "o2").replacingOccurrences(of: "1050", with: "9000"))
        h.settle()
        let opened = try h.frames().filter { $0.type == "opened" }
        #expect(opened.count == 1, "the new listing's first event reaches the subscriber")
        #expect(opened.first?.json?["seq"] == .integer(1))
    }
}

/// A bid a session sends while its listing is still held, but which the writer takes in the turn that evicts the
/// listing, comes back to the session as `unknown_listing`, and its id is applied normally once the listing is open
/// again.
@Suite struct FanOutEvictionTurnTests {
    @Test func aBidTakenInTheTurnThatEvictsItsListingIsAnsweredToItsSessionAndMaySendItAgain() throws {
        let (h, clock) = try serviceSessionEvictingAfter100Ms()
        let open =
            #"{"type":"open","id":"o1","listing":"L","seller":"sam","format":"english","start":100,"closes_at":1050}"#
        try h.send(open)
        h.settle()
        clock.set(1050)  // closed without a bid: evicted at 1150
        h.settle()
        _ = try h.frames()
        clock.set(1150)
        let bid = #"{"type":"bid","id":"b1","listing":"L","bidder":"ann","amount":200}"#
        try h.send(bid)
        #expect(h.writer.queue(for: "L")?.depth == 1, "queued: the listing was held when the bid was sent")
        h.settle()
        let refused = try h.frames().filter { $0.type == "result" }
        #expect(refused.count == 1)
        #expect(refused.first?.json?["id"] == .string("b1"))
        #expect(refused.first?.json?["error"] == .string("unknown_listing"))

        try h.send(open.replacingOccurrences(of: "o1", with: "o2").replacingOccurrences(of: "1050", with: "9000"))
        h.settle()
        try h.send(bid)
        h.settle()
        let results = try h.frames().filter { $0.type == "result" }.map(\.json)
        #expect(results.map { $0?["ok"] } == [.bool(true), .bool(true)])
        #expect(results.last??["duplicate"] == nil, "b1 was not remembered: applied as a new request")
    }
}

/// The fan-out routes a durable group on its first event loop, not on the thread that released it (the journal's),
/// and gives the group's batches back to the writer there.
@Suite struct FanOutRoutingTests {
    @Test func aReleasedGroupChangesNothingUntilTheFirstEventLoopRoutesIt() throws {
        let sink = HeldSink()
        let h = try SessionHarness(principal: Principal(name: "svc", role: .service), sink: sink)
        try h.send(
            #"{"type":"open","id":"o1","listing":"L","seller":"sam","format":"english","start":100,"closes_at":99000}"#
        )
        h.writer.runUntilIdle()
        sink.release(sink.count, endsGroup: true)
        h.channel.embeddedEventLoop.run()
        try h.send(#"{"type":"subscribe","listing":"L"}"#)
        h.channel.embeddedEventLoop.run()
        #expect(try h.frames().map(\.type) == ["hello", "result", "snapshot"])
        try h.send(#"{"type":"bid","id":"b1","listing":"L","bidder":"ann","amount":100}"#)
        h.writer.runUntilIdle()
        #expect(sink.count >= 1)
        sink.release(sink.count, endsGroup: true)
        #expect(h.fanOut.view(of: "L")?.seq == 1, "released, not yet routed: the view is the open's")
        #expect(try h.frames().isEmpty, "nor is anything sent")
        h.channel.embeddedEventLoop.run()
        #expect(h.fanOut.view(of: "L")?.seq == 2)
        #expect(try h.frames().map(\.type) == ["result", "bid_placed"], "the result before the event it caused")

        // Two groups released before the loop runs are routed by one task, in release order.
        for (index, bidder) in [(2, "bob"), (3, "cy")] {
            try h.send(
                #"{"type":"bid","id":"b\#(index)","listing":"L","bidder":"\#(bidder)","amount":\#(100 * index)}"#)
            h.writer.runUntilIdle()
            sink.release(sink.count, endsGroup: true)
        }
        #expect(h.fanOut.view(of: "L")?.seq == 2)
        h.channel.embeddedEventLoop.run()
        #expect(h.fanOut.view(of: "L")?.seq == 4)
        let frames = try h.frames()
        #expect(frames.map(\.type) == ["result", "bid_placed", "result", "bid_placed"])
        #expect(frames.compactMap { $0.json?["id"] } == [.string("b2"), .string("b3")])
    }
}
