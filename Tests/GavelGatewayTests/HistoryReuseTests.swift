import GavelCore
@_spi(Manual) import GavelEngine
import GavelWire
import NIOCore
import Testing

@testable import GavelGateway

/// The fan-out writes each live frame into a buffer it reuses in turn, and the histories keep their frames back to
/// back in one ring whose oldest bytes make room for the newest; a frame still on its way to a client, or handed to a
/// resuming subscriber, must keep its bytes, and a history gives exactly its newest frames or none.
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

    /// Histories sharing one ring, checked against a model that keeps every frame: what a history gives is exactly
    /// the newest frames asked for, and it gives them whenever they are within its limit and the records written
    /// since the oldest of them (of every history) take at most half the ring; past its limit, before its numbering
    /// started again or beyond its newest frame, it gives nothing.
    @Test(arguments: [1, 2, 5, 64, 10_000])
    func historiesInOneRingGiveExactlyTheNewestFramesAsFarBackAsTheRingHoldsThem(limit: Int) throws {
        var generator = SystemRandomNumberGenerator()
        let ring = try HistoryRing(capacity: 8_192, setting: "--history-bytes")
        let listings = 5
        var histories = Array(repeating: FrameHistory(), count: listings)
        // The model: per history, its frames since its numbering last started, each with the bytes of records
        // written before it (of every history); and those bytes now.
        var kept: [[(frame: [UInt8], start: Int)]] = Array(repeating: [], count: listings)
        var seqs = [UInt64](repeating: 0, count: listings)
        var written = 0
        for step in 0..<4_000 {
            let h = Int.random(in: 0..<listings, using: &generator)
            if step % 997 == 996 {
                // A gap in the numbering (a listing opened again after eviction) starts its history again.
                seqs[h] += 5
                kept[h] = []
            }
            seqs[h] += 1
            // Sizes on both sides of the 126-byte boundary where the frame header grows.
            let payload = (0..<Int.random(in: 0...300, using: &generator)).map {
                UInt8(truncatingIfNeeded: $0 &+ step)
            }
            histories[h].appendText(payload, seq: seqs[h], limit: limit, in: ring)
            var frame: [UInt8] = []
            ServerFrame.appendText(payload, to: &frame)
            kept[h].append((frame, written))
            written += HistoryRing.headerLength + frame.count
            #expect(histories[h].lastSeq == seqs[h])

            let asked = Int.random(in: 0..<listings, using: &generator)
            let available = min(kept[asked].count, limit)
            let wanted = Int.random(in: 0...available, using: &generator)
            let frames = histories[asked].after(seqs[asked] - UInt64(wanted), in: ring)
            let expected = kept[asked].suffix(wanted)
            if let frames {
                #expect(frames.map { Array($0.readableBytesView) } == expected.map(\.frame), "step \(step)")
            } else {
                let since = expected.first.map { written - $0.start } ?? 0
                #expect(since > ring.capacity / 2, "step \(step): \(wanted) frames \(since) bytes back are held")
            }
            if UInt64(available) < seqs[asked] {
                #expect(histories[asked].after(seqs[asked] - UInt64(available) - 1, in: ring) == nil)
            }
            #expect(histories[asked].after(seqs[asked] + 1, in: ring) == nil)
        }
    }

    @Test func aRingTheSystemWillNotMapIsRefusedWithTheSettingToLower() {
        // 2^62 bytes: more address space than any process has, so the mapping fails everywhere.
        #expect {
            _ = try HistoryRings(historyBytes: 64 << 10, userHistoryBytes: 1 << 62)
        } throws: { error in
            "\(error)".contains("cannot reserve 4611686018427387904 bytes")
                && "\(error)".hasSuffix("lower --user-history-bytes")
        }
    }

    @Test func aFrameLargerThanAQuarterOfTheRingIsNotKeptAndItsHistoryStartsAgainAfterIt() throws {
        let ring = try HistoryRing(capacity: 4_096, setting: "--history-bytes")
        var history = FrameHistory()
        history.appendText([UInt8](repeating: 65, count: 10), seq: 1, limit: 8, in: ring)
        history.appendText([UInt8](repeating: 66, count: ring.largestFrame), seq: 2, limit: 8, in: ring)
        #expect(history.count == 0 && history.lastSeq == 2)
        #expect(history.after(1, in: ring) == nil, "the large frame is not there to give")
        #expect(history.after(2, in: ring) == [])
        history.appendText([UInt8](repeating: 67, count: 10), seq: 3, limit: 8, in: ring)
        var frame: [UInt8] = []
        ServerFrame.appendText([UInt8](repeating: 67, count: 10), to: &frame)
        #expect(history.after(2, in: ring)?.map { Array($0.readableBytesView) } == [frame])
    }

    /// A listing's events overwritten by other listings' newer events (all listings' events share
    /// `--history-bytes`) are not replayed: the resuming subscriber gets a snapshot, while a listing whose events are
    /// still held resumes.
    @Test func aSubscriberWhoseEventsTheRingNoLongerHoldsGetsASnapshotAndARecentOneResumes() throws {
        let h = try SessionHarness(principal: Principal(name: "ann", role: .bidder)) { $0.historyBytes = 4_096 }
        for listing in ["L", "M"] {
            let open = Command(
                id: "o\(listing)", listing: listing,
                body: .open(seller: "sam", terms: .english(.init(start: 100, closesAt: 1_000_000_000))))
            #expect(h.writer.submit(open, replyTo: nil) == nil)
        }
        h.settle()
        #expect(h.writer.submit(bid(0), replyTo: nil) == nil)
        h.settle()
        guard case .resumed(_, 2, let one) = h.fanOut.subscribe(listing: "L", since: 1, loop: 0, renew: false) else {
            Issue.record("L's one bid is held")
            return
        }
        #expect(one.count == 1)
        // Forty bids on M, about 7 KB of frames: more than the ring.
        for k in 0..<40 {
            let bid = Command(id: "m\(k)", listing: "M", body: .bid(bidder: "bob", amount: Money(1_000 * (k + 1))))
            #expect(h.writer.submit(bid, replyTo: nil) == nil)
        }
        h.settle()
        guard case .snapshot(let seq, _) = h.fanOut.subscribe(listing: "L", since: 1, loop: 0, renew: true) else {
            Issue.record("L's bid was overwritten by M's: a snapshot, not a resume")
            return
        }
        #expect(seq == 2)
        guard case .resumed(_, 41, let last) = h.fanOut.subscribe(listing: "M", since: 38, loop: 0, renew: false)
        else {
            Issue.record("M's last three bids are held")
            return
        }
        var bytes: [UInt8] = []
        for frame in last { bytes.append(contentsOf: frame.readableBytesView) }
        #expect(ServerFrameRead.parseAll(bytes).map { $0.json?["seq"] } == [.integer(39), .integer(40), .integer(41)])
    }
}
