import GavelCore
import NIOCore
import NIOEmbedded
import NIOWebSocket
import PropertyBased
import Testing

@testable import GavelGateway

/// What a reader of frames made of a connection's bytes: the frames (first byte, masking key, payload) up to the
/// first error, and the error.
private struct Reading: Equatable {
    var frames: [[UInt8]] = []
    var error: NIOWebSocketError?
}

/// `frame` as bytes for comparison: its first byte, its masking key (or none) and its payload as sent.
private func describe(firstByte: UInt8, mask: UInt32?, data: ByteBuffer) -> [UInt8] {
    var out: [UInt8] = [firstByte, mask == nil ? 0 : 1]
    if let mask { withUnsafeBytes(of: mask.bigEndian) { out.append(contentsOf: $0) } }
    out.append(contentsOf: data.readableBytesView)
    return out
}

/// The reading of `reads` (the connection's bytes, cut into reads) by the session's ``FrameReader``.
private func readWithFrameReader(_ reads: [ByteBuffer], maxFrameSize: Int) -> Reading {
    var reader = FrameReader(maxFrameSize: maxFrameSize)
    var reading = Reading()
    for read in reads {
        var bytes = reader.received(read)
        loop: while true {
            switch reader.next(&bytes) {
            case .frame(let frame):
                reading.frames.append(describe(firstByte: frame.firstByte, mask: frame.mask, data: frame.data))
            case .needMore:
                reader.keep(bytes)
                break loop
            case .failed(let error):
                reading.error = error
                return reading
            }
        }
    }
    return reading
}

/// The reading of `reads` by swift-nio's own decoder, as the upgrade installs it.
private func readWithNIO(_ reads: [ByteBuffer], maxFrameSize: Int) throws -> Reading {
    let channel = EmbeddedChannel()
    try channel.pipeline.syncOperations.addHandler(
        ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maxFrameSize)))
    var reading = Reading()
    for read in reads {
        do {
            try channel.writeInbound(read)
        } catch let error as NIOWebSocketError {
            reading.error = error
        }
        while let frame = try channel.readInbound(as: WebSocketFrame.self) {
            let inbound = InboundFrame(frame)
            reading.frames.append(describe(firstByte: inbound.firstByte, mask: inbound.mask, data: inbound.data))
        }
        if reading.error != nil { break }
    }
    _ = try? channel.finish()
    return reading
}

/// Random frames, well-formed or not, as bytes: any first byte, masked or not, payload lengths around the 7-bit,
/// 16-bit and 64-bit encodings and the size limit, control frames long or fragmented now and then.
private struct FrameBytes {
    var rng: SplitMix64

    mutating func frame(maxFrameSize: Int) -> [UInt8] {
        let first = UInt8(truncatingIfNeeded: rng.next())
        let masked = rng.next() % 8 != 0
        let lengths = [0, 1, 2, 7, 125, 126, 127, 300, 65_535, 65_536, maxFrameSize, maxFrameSize + 1]
        let length = rng.next() % 3 == 0 ? lengths[Int(rng.next() % UInt64(lengths.count))] : Int(rng.next() % 200)
        var out: [UInt8] = [first]
        // Now and then the longest encoding for a short length, or a 64-bit length past Int.max.
        let encoding = rng.next() % 10
        if encoding == 0 {
            out.append((masked ? 0x80 : 0) | 127)
            let huge: UInt64 = rng.next() % 2 == 0 ? UInt64(length) : (1 << 63) | rng.next()
            withUnsafeBytes(of: huge.bigEndian) { out.append(contentsOf: $0) }
        } else if length < 126 {
            out.append((masked ? 0x80 : 0) | UInt8(length))
        } else if length <= 65_535 {
            out.append((masked ? 0x80 : 0) | 126)
            withUnsafeBytes(of: UInt16(length).bigEndian) { out.append(contentsOf: $0) }
        } else {
            out.append((masked ? 0x80 : 0) | 127)
            withUnsafeBytes(of: UInt64(length).bigEndian) { out.append(contentsOf: $0) }
        }
        if masked { withUnsafeBytes(of: UInt32(truncatingIfNeeded: rng.next())) { out.append(contentsOf: $0) } }
        for _ in 0..<length { out.append(UInt8(truncatingIfNeeded: rng.next())) }
        return out
    }

    /// `bytes` cut at random places into reads (some of one byte, some empty).
    mutating func cut(_ bytes: [UInt8]) -> [ByteBuffer] {
        var reads: [ByteBuffer] = []
        var start = 0
        while start < bytes.count {
            let size = rng.next() % 4 == 0 ? Int(rng.next() % 3) : Int(rng.next() % 70_000)
            let end = min(bytes.count, start + size)
            reads.append(ByteBuffer(bytes: bytes[start..<end]))
            start = end
        }
        return reads
    }
}

private let seeds = Gen.int(in: 0...Int(Int32.max))

@Suite struct FrameReaderTests {
    @Test func readsTheFramesAndTheFirstErrorThatNIOsDecoderReadsHoweverTheBytesAreCut() async {
        await propertyCheck(count: 200, input: seeds) { seed in
            var maker = FrameBytes(rng: SplitMix64(seed: UInt64(seed)))
            let maxFrameSize = [128, 1_000, 70_000][Int(maker.rng.next() % 3)]
            var bytes: [UInt8] = []
            for _ in 0..<Int(1 + maker.rng.next() % 12) { bytes += maker.frame(maxFrameSize: maxFrameSize) }
            let reads = maker.cut(bytes)
            let ours = readWithFrameReader(reads, maxFrameSize: maxFrameSize)
            let nio = try? readWithNIO(reads, maxFrameSize: maxFrameSize)
            #expect(ours == nio, "seed \(seed)")
        }
    }

    @Test func aFrameCutByTheEndOfAReadIsKeptUntilTheRestArrivesAndNoLonger() throws {
        var reader = FrameReader(maxFrameSize: 1_000)
        let frame = clientBytes(clientFrame(.text, String(repeating: "x", count: 300)))
        var first = reader.received(frame.getSlice(at: 0, length: 100)!)
        guard case .needMore = reader.next(&first) else {
            Issue.record("a frame from 100 of its bytes")
            return
        }
        reader.keep(first)
        #expect(reader.pendingBytes == 100)
        var rest = reader.received(frame.getSlice(at: 100, length: frame.readableBytes - 100)!)
        guard case .frame(let read) = reader.next(&rest) else {
            Issue.record("no frame from all its bytes")
            return
        }
        #expect(String(buffer: read.unmaskedData) == String(repeating: "x", count: 300))
        reader.keep(rest)
        #expect(reader.pendingBytes == 0)
    }

    @Test func anOversizedFrameIsRefusedFromItsHeaderAlone() {
        let reader = FrameReader(maxFrameSize: 1_000)
        // A header announcing 2^40 bytes, and none of them.
        var bytes = ByteBuffer(bytes: [0x81, 0xFF, 0, 0, 1, 0, 0, 0, 0, 0])
        guard case .failed(.invalidFrameLength) = reader.next(&bytes) else {
            Issue.record("the header of a 2^40-byte frame was not refused")
            return
        }
    }

    @Test func aSessionGetsEveryMessageOfAReadCutAnywhere() throws {
        let h = try SessionHarness()
        var bytes = ByteBuffer()
        for k in 0..<20 {
            var frame = clientBytes(clientFrame(.text, #"{"type":"unsubscribe","listing":"L\#(k)"}"#))
            bytes.writeBuffer(&frame)
        }
        // Reads of 7 bytes: every frame is cut, most of them more than once.
        while bytes.readableBytes > 0 {
            try h.send(bytes: bytes.readSlice(length: min(7, bytes.readableBytes))!)
        }
        let answers = try h.frames().filter { $0.type == "unsubscribed" }.map { $0.json?["listing"] }
        #expect(answers == (0..<20).map { .string("L\($0)") })
    }
}
