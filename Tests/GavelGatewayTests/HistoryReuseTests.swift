import GavelCore
@_spi(Manual) import GavelEngine
import GavelWire
import NIOCore
import Testing

@testable import GavelGateway

/// A listing's history writes each new frame into the buffer of the frame it drops once full; a frame still on its
/// way to a client, or handed to a resuming subscriber, must keep its bytes.
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
}
