import GavelCore
@_spi(Manual) import GavelEngine
import GavelWire
import NIOCore
import Testing

@testable import GavelGateway

/// A session copies what it sends into one buffer of its own and hands the channel that buffer once per flush.
@Suite struct OutboundCoalescingTests {
    /// The buffers the channel was handed since the last call, one per write.
    private func writes(_ h: SessionHarness) throws -> [ByteBuffer] {
        var out: [ByteBuffer] = []
        while let buffer = try h.channel.readOutbound(as: ByteBuffer.self) { out.append(buffer) }
        return out
    }

    /// Sends bid `k` (ids `b1`, `b2`, ...) on the harness's listing.
    private func sendBid(_ h: SessionHarness, _ k: Int) throws {
        try h.send(#"{"type":"bid","id":"b\#(k)","listing":"L","amount":\#(1_000 + k)}"#)
    }

    /// Expects the results of bids 1...`count`, in order, and their `bid_placed` events (`seq` 2 on: the open is 1).
    private func expectResultsAndEvents(_ frames: [ServerFrameRead], ofBids count: Int) {
        #expect(frames.filter { $0.type == "result" }.map { $0.json?["id"] } == (1...count).map { .string("b\($0)") })
        #expect(
            frames.filter { $0.type == "bid_placed" }.map { $0.json?["seq"] }
                == (2...(count + 1)).map { .integer(Int64($0)) })
    }

    @Test func aDurableGroupsResultsAndEventsReachTheConnectionInOneWrite() throws {
        let h = try SessionHarness(principal: Principal(name: "ann", role: .bidder))
        try h.openAndSubscribe()
        for k in 1...10 { try sendBid(h, k) }
        h.settle()
        let written = try writes(h)
        #expect(written.count == 1, "\(written.count) writes")
        var bytes: [UInt8] = []
        for buffer in written { bytes.append(contentsOf: buffer.readableBytesView) }
        expectResultsAndEvents(ServerFrameRead.parseAll(bytes), ofBids: 10)
    }

    @Test func framesWrittenAfterAFlushNeverChangeTheBytesTheChannelStillHolds() throws {
        let h = try SessionHarness(principal: Principal(name: "ann", role: .bidder))
        try h.openAndSubscribe()
        // Nothing is read from the channel until the end: every buffer handed over is still held by it while the
        // session writes its next frames.
        for k in 1...30 {
            try sendBid(h, k)
            h.settle()
        }
        expectResultsAndEvents(try h.frames(), ofBids: 30)
    }
}
