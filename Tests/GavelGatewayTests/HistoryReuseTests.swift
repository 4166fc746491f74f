import GavelCore
@_spi(Manual) import GavelEngine
import GavelWire
import NIOCore
import Testing

@testable import GavelGateway

/// The fan-out writes each live frame into a buffer it reuses in turn, and a history keeps its frames back to back in
/// one array that drops the oldest bytes as it goes; a frame still on its way to a client, or handed to a resuming
/// subscriber, must keep its bytes.
@Suite struct HistoryReuseTests {
    private func bid(_ k: Int) -> Command {
        Command(
            id: "b\(k)", listing: "L", body: .bid(bidder: k % 2 == 0 ? "ann" : "bob", amount: Money(1_000 * (k + 1))))
    }

    @Test func framesInFlightAndFramesResumedKeepTheirBytesWhileTheRingIsReused() throws {
        let h = try SessionHarness(principal: Principal(name: "ann", role: .bidder)) { $0.historyEvents = 2 }
        let open = Command(
            id: "o", listing: "L",
            body: .open(seller: "sam", terms: .english(.init(start: 100, closesAt: 1_000_000_000))))
        #expect(h.writer.submit(open, replyTo: nil) == nil)
        h.settle()
        try h.send(#"{"type":"subscribe","listing":"L"}"#)
        h.settle()
        _ = try h.frames()
        // One durable group per bid, nothing read by the client in between: the ring of two wraps several times
        // while every frame it held is still in the channel's outbound queue.
        var resumed: [ByteBuffer] = []
        for k in 0..<7 {
            #expect(h.writer.submit(bid(k), replyTo: nil) == nil)
            h.settle()
            if k == 3,
                case .resumed(_, _, let frames) = h.fanOut.subscribe(listing: "L", since: 3, loop: 0, renew: true)
            {
                resumed = frames
            }
        }
        let placed = try h.frames().filter { $0.type == "bid_placed" }
        #expect(placed.map { $0.json?["seq"] } == (2...8).map { .integer(Int64($0)) })
        #expect(placed.map { $0.json?["leader"] } == (0..<7).map { .string($0 % 2 == 0 ? "ann" : "bob") })
        // The frames a resume got at seq 5 (the two after 3) are still those of seq 4 and 5.
        var bytes: [UInt8] = []
        for frame in resumed { bytes.append(contentsOf: frame.readableBytesView) }
        #expect(ServerFrameRead.parseAll(bytes).map { $0.json?["seq"] } == [.integer(4), .integer(5)])
        // And the ring holds the newest two.
        guard case .resumed(_, let seq, let last) = h.fanOut.subscribe(listing: "L", since: 6, loop: 0, renew: true)
        else {
            Issue.record("the newest two events are in the history")
            return
        }
        bytes = []
        for frame in last { bytes.append(contentsOf: frame.readableBytesView) }
        #expect(seq == 8)
        #expect(ServerFrameRead.parseAll(bytes).map { $0.json?["seq"] } == [.integer(7), .integer(8)])
    }

    @Test func liveFramesStillQueuedForAClientKeepTheirBytesWhenTheirBuffersComeRoundAgain() throws {
        let h = try SessionHarness(principal: Principal(name: "ann", role: .bidder))
        try h.openAndSubscribe()
        // More events than the fan-out has live buffers, none read by the client until the end.
        let bids = FanOut.liveFrameCount + 40
        for k in 0..<bids {
            #expect(h.writer.submit(bid(k), replyTo: nil) == nil)
            if k % 100 == 99 { h.settle() }
        }
        h.settle()
        let placed = try h.frames().filter { $0.type == "bid_placed" }
        #expect(placed.map { $0.json?["seq"] } == (2...(bids + 1)).map { .integer(Int64($0)) })
        let leaders: [JSONValue?] = (0..<bids).map { .string($0 % 2 == 0 ? "ann" : "bob") }
        #expect(placed.map { $0.json?["leader"] } == leaders)
    }

    @Test(arguments: [1, 2, 5, 64])
    func aHistoryGivesExactlyTheNewestFramesAndHoldsAtMostFourTimesTheirBytes(limit: Int) {
        var generator = SystemRandomNumberGenerator()
        var history = FanOut.History()
        var kept: [[UInt8]] = []  // the model: the frames that must be kept, oldest first
        var seq: UInt64 = 0
        for step in 0..<2_000 {
            if step == 1_000 {
                // A gap in the numbering (a listing opened again after eviction) starts the history again.
                seq += 5
                kept = []
            }
            seq += 1
            // Sizes on both sides of the 126-byte boundary where the frame header grows; small frames for a while,
            // so that the ring shrinks as well as grows and wraps.
            let largest = (600..<1_000).contains(step) ? 20 : 300
            let payload = (0..<Int.random(in: 0...largest, using: &generator)).map {
                UInt8(truncatingIfNeeded: $0 &+ step)
            }
            history.appendText(payload, seq: seq, limit: limit)
            var frame: [UInt8] = []
            ServerFrame.appendText(payload, to: &frame)
            kept.append(frame)
            if kept.count > limit { kept.removeFirst() }
            #expect(history.count == kept.count && history.lastSeq == seq)
            let liveBytes = kept.reduce(0) { $0 + $1.count }
            #expect(
                history.ring.count <= max(FanOut.History.minimumCapacity, 4 * liveBytes),
                "step \(step): \(history.ring.count) bytes kept for \(liveBytes)")
            let wanted = Int.random(in: 0...kept.count, using: &generator)
            let frames = history.after(seq - UInt64(wanted))
            #expect(frames?.map { Array($0.readableBytesView) } == Array(kept.suffix(wanted)), "step \(step)")
        }
        #expect(history.after(seq - UInt64(kept.count) - 1) == nil)
        #expect(history.after(seq + 1) == nil)
    }
}
