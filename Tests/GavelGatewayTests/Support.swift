import GavelCore
@_spi(Manual) import GavelEngine
import GavelWire
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import GavelGateway

/// A frame the server wrote, parsed.
struct ServerFrameRead: Equatable {
    var fin: Bool
    var opcode: UInt8
    var payload: [UInt8]

    var text: String { String(decoding: payload, as: UTF8.self) }
    /// The close code of a close frame.
    var closeCode: Int? {
        guard opcode == 0x8, payload.count >= 2 else { return nil }
        return Int(payload[0]) << 8 | Int(payload[1])
    }
    var json: JSONValue? { try? JSONParser.parse(payload) }
    var type: String? {
        if case .string(let s)? = json?["type"] { return s }
        return nil
    }

    /// Parses every frame in `bytes` (server frames are unmasked).
    static func parseAll(_ bytes: [UInt8]) -> [ServerFrameRead] {
        var frames: [ServerFrameRead] = []
        var i = 0
        while i + 2 <= bytes.count {
            let fin = bytes[i] & 0x80 != 0
            let opcode = bytes[i] & 0x0F
            var length = Int(bytes[i + 1] & 0x7F)
            var header = 2
            if length == 126 {
                guard i + 4 <= bytes.count else { break }
                length = Int(bytes[i + 2]) << 8 | Int(bytes[i + 3])
                header = 4
            } else if length == 127 {
                guard i + 10 <= bytes.count else { break }
                length = (0..<8).reduce(0) { $0 << 8 | Int(bytes[i + 2 + $1]) }
                header = 10
            }
            guard i + header + length <= bytes.count else { break }
            frames.append(
                ServerFrameRead(fin: fin, opcode: opcode, payload: Array(bytes[(i + header)..<(i + header + length)])))
            i += header + length
        }
        return frames
    }
}

/// A client frame as a browser would send it: masked.
func clientFrame(_ opcode: WebSocketOpcode, _ text: String, fin: Bool = true) -> WebSocketFrame {
    clientFrame(opcode, Array(text.utf8), fin: fin)
}

func clientFrame(_ opcode: WebSocketOpcode, _ bytes: [UInt8], fin: Bool = true, masked: Bool = true) -> WebSocketFrame {
    let key: WebSocketMaskingKey? = masked ? WebSocketMaskingKey([1, 2, 3, 4]) : nil
    var data = ByteBuffer(bytes: bytes)
    if let key { data.webSocketMask(key) }
    return WebSocketFrame(fin: fin, opcode: opcode, maskKey: key, data: data)
}

/// The bytes of `frame` on the wire (RFC 6455): its payload is written as it is (masked already when it has a key).
func clientBytes(_ frame: WebSocketFrame) -> ByteBuffer {
    var out = ByteBuffer()
    let inbound = InboundFrame(frame)
    out.writeInteger(inbound.firstByte)
    let maskBit: UInt8 = inbound.mask == nil ? 0 : 0x80
    let count = frame.data.readableBytes
    if count < 126 {
        out.writeInteger(maskBit | UInt8(count))
    } else if count <= Int(UInt16.max) {
        out.writeInteger(maskBit | 126)
        out.writeInteger(UInt16(count))
    } else {
        out.writeInteger(maskBit | 127)
        out.writeInteger(UInt64(count))
    }
    if let mask = inbound.mask { out.writeInteger(mask) }
    out.writeImmutableBuffer(frame.data)
    return out
}

/// Keeps every batch until the test releases it, as the journal does until an fdatasync has returned. Used on the
/// test's thread only.
final class HeldSink: BatchSink, @unchecked Sendable {
    private var held: [(Batch, BatchRelease)] = []

    var count: Int { held.count }

    func write(_ batch: Batch, release: @escaping BatchRelease) {
        held.append((batch, release))
    }

    func flush() {}

    /// Releases the `count` oldest batches, as made durable together; the last of them ends the group when
    /// `endsGroup`.
    func release(_ count: Int, endsGroup: Bool) {
        let taken = held.prefix(count)
        held.removeFirst(count)
        for (index, (batch, release)) in taken.enumerated() { release(batch, endsGroup && index == count - 1) }
    }
}

/// One session on an `EmbeddedChannel`, with a writer driven by hand behind it.
final class SessionHarness {
    let channel: EmbeddedChannel
    let writer: Writer
    let fanOut: FanOut
    let registry = SessionRegistry()
    let metrics = GatewayMetrics()

    init(
        principal: Principal = .anonymous, sink: BatchSink = InMemorySink(), limits: ConnectionLimits? = nil,
        expires: Int64? = nil, writer writerConfiguration: WriterConfiguration = WriterConfiguration(),
        clock: ManualClock = ManualClock(1000), configure: (inout GatewayConfiguration) -> Void = { _ in }
    ) throws {
        var configuration = GatewayConfiguration()
        configure(&configuration)
        let loop = EmbeddedEventLoop()
        channel = EmbeddedChannel(loop: loop)
        fanOut = FanOut(
            group: loop, historyLimit: configuration.historyEvents, userHistoryLimit: configuration.userHistoryEvents,
            histories: try HistoryRings(
                historyBytes: configuration.historyBytes, userHistoryBytes: configuration.userHistoryBytes),
            metrics: metrics)
        writer = Writer(configuration: writerConfiguration, sink: sink, clock: clock, observer: fanOut)
        writer.startManual()
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        let raw = RawFrameWriter()
        try channel.pipeline.syncOperations.addHandler(raw)
        try channel.pipeline.syncOperations.addHandler(
            WebSocketSession(
                principal: principal, configuration: configuration, writer: writer, fanOut: fanOut,
                metrics: metrics, registry: registry, output: raw, limits: limits, expires: expires))
    }

    /// Sends `frame` from the client, as the bytes of one read.
    func send(_ frame: WebSocketFrame) throws {
        try send(bytes: clientBytes(frame))
    }

    /// Sends `bytes` from the client as one read (frames, or pieces of them).
    func send(bytes: ByteBuffer) throws {
        try channel.writeInbound(bytes)
        channel.pipeline.fireChannelReadComplete()
    }

    func send(_ text: String) throws { try send(clientFrame(.text, text)) }

    /// Opens english listing `L` (seller `sam`, start 100, increments of 1, so that every bid 1 above the last
    /// goes through) and subscribes the session to it; the frames written so far are read and dropped.
    func openAndSubscribe() throws {
        let open = Command(
            id: "o", listing: "L",
            body: .open(
                seller: "sam",
                terms: .english(
                    .init(start: 100, closesAt: 1_000_000_000, increments: [IncrementStep(from: 0, step: 1)]))))
        #expect(writer.submit(open, replyTo: nil) == nil)
        settle()
        try send(#"{"type":"subscribe","listing":"L"}"#)
        settle()
        _ = try frames()
    }

    /// Applies everything submitted and delivers the results and events.
    func settle() {
        writer.runUntilIdle()
        channel.embeddedEventLoop.run()
    }

    /// Every frame written since the last call.
    func frames() throws -> [ServerFrameRead] {
        var bytes: [UInt8] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
            bytes.append(contentsOf: buffer.readableBytesView)
        }
        return ServerFrameRead.parseAll(bytes)
    }
}
