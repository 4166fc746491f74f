import NIOCore
import NIOWebSocket

/// One frame from a client as read off the connection: its first byte (FIN, the reserved bits, the opcode), its
/// masking key and its payload, still masked (a slice of the read buffer, not a copy).
struct InboundFrame {
    var firstByte: UInt8
    /// The masking key as sent (its first byte the most significant); `nil`: the frame was not masked.
    var mask: UInt32?
    var data: ByteBuffer

    var fin: Bool { firstByte & 0x80 != 0 }
    var rsv1: Bool { firstByte & 0x40 != 0 }
    var rsv2: Bool { firstByte & 0x20 != 0 }
    var rsv3: Bool { firstByte & 0x10 != 0 }
    /// Every 4-bit value is an opcode to NIO (the reserved ones too), so this always succeeds.
    var opcode: WebSocketOpcode { WebSocketOpcode(encodedWebSocketOpcode: firstByte & 0x0F)! }

    /// The masking key's bytes in the order they apply to the payload, twice: one 8-byte word to XOR with.
    var maskPattern: UInt64? {
        guard let mask else { return nil }
        return SessionStateMachine.maskPattern { UInt8(truncatingIfNeeded: mask >> (24 - 8 * ($0 % 4))) }
    }

    /// The payload unmasked, in a buffer of its own.
    var unmaskedData: ByteBuffer {
        guard let pattern = maskPattern else { return data }
        var out = ByteBuffer()
        SessionStateMachine.unmask(data, pattern: pattern, into: &out)
        return out
    }

    init(firstByte: UInt8, mask: UInt32?, data: ByteBuffer) {
        self.firstByte = firstByte
        self.mask = mask
        self.data = data
    }

    /// The frame a `WebSocketFrame` describes (tests build frames with NIO's type).
    init(_ frame: WebSocketFrame) {
        var first = UInt8(webSocketOpcode: frame.opcode)
        if frame.fin { first |= 0x80 }
        if frame.rsv1 { first |= 0x40 }
        if frame.rsv2 { first |= 0x20 }
        if frame.rsv3 { first |= 0x10 }
        let mask = frame.maskKey.map { key in (0..<4).reduce(UInt32(0)) { $0 << 8 | UInt32(key[$1]) } }
        self.init(firstByte: first, mask: mask, data: frame.data)
    }
}

/// Reads RFC 6455 frames from a connection's bytes: what `ByteToMessageHandler(WebSocketFrameDecoder)` (which the
/// upgrade installs) does, with the same checks and the same errors, in the session's own `channelRead`.
///
/// Why not NIO's decoder: for each read it ran a byte-to-message handler (its buffer bookkeeping, its decode loop,
/// its exclusivity checks), a parser stepping through a state per header field, and for each frame an object (a
/// `WebSocketFrame`'s storage) and a `fireChannelRead` through the pipeline: a tenth of the event loop's time under
/// durable bids (docs/PERFORMANCE.md). Here a frame whose bytes are all in the read is a slice of it, and only the
/// bytes of a frame cut by the end of a read are kept, until the rest arrives.
///
/// The checks, as NIO's decoder makes them, as soon as a frame's length is known (before its payload arrives, so an
/// oversized frame is refused without being buffered): a length above `maxFrameSize`, or one past `Int.max`, is
/// ``NIOWebSocketError/invalidFrameLength``; a control frame without FIN is
/// ``NIOWebSocketError/fragmentedControlFrame``; a control frame longer than 125 bytes is
/// ``NIOWebSocketError/multiByteControlFrameLength``. Everything else (masking, reserved bits and opcodes, the
/// order of fragments) is the state machine's.
struct FrameReader {
    let maxFrameSize: Int
    /// The bytes of a frame cut by the end of a read, waiting for the rest.
    private var pending: ByteBuffer?

    init(maxFrameSize: Int) {
        self.maxFrameSize = maxFrameSize
    }

    enum Step {
        case frame(InboundFrame)
        /// The bytes end inside a frame (or are used up).
        case needMore
        case failed(NIOWebSocketError)
    }

    /// Takes the bytes of one read: what is left of an earlier read's cut frame comes first.
    mutating func received(_ bytes: ByteBuffer) -> ByteBuffer {
        guard var earlier = pending else { return bytes }
        pending = nil
        var more = bytes
        earlier.writeBuffer(&more)
        return earlier
    }

    /// Keeps what is left of `bytes` (the start of a frame) for the next read.
    mutating func keep(_ bytes: ByteBuffer) {
        guard bytes.readableBytes > 0 else { return }
        var rest = bytes
        rest.discardReadBytes()
        pending = rest
    }

    /// Bytes kept from a cut frame (for tests).
    var pendingBytes: Int { pending?.readableBytes ?? 0 }

    /// The next frame of `bytes`, moving its reader index past the frame; `needMore` (nothing taken) when the frame
    /// is not all there.
    func next(_ bytes: inout ByteBuffer) -> Step {
        let available = bytes.readableBytes
        guard available >= 2 else { return .needMore }
        let start = bytes.readerIndex
        let first = bytes.getInteger(at: start, as: UInt8.self)!
        let second = bytes.getInteger(at: start + 1, as: UInt8.self)!
        let masked = second & 0x80 != 0
        var header = 2
        let length: Int
        switch second & 0x7F {
        case 126:
            guard available >= 4 else { return .needMore }
            length = Int(bytes.getInteger(at: start + 2, as: UInt16.self)!)
            header = 4
        case 127:
            guard available >= 10 else { return .needMore }
            let long = bytes.getInteger(at: start + 2, as: UInt64.self)!
            guard long <= UInt64(Int.max) else { return .failed(.invalidFrameLength) }
            length = Int(long)
            header = 10
        case let short:
            length = Int(short)
        }
        if length > maxFrameSize { return .failed(.invalidFrameLength) }
        let control = first & 0x08 != 0
        if control && first & 0x80 == 0 { return .failed(.fragmentedControlFrame) }
        if control && length > 125 { return .failed(.multiByteControlFrameLength) }
        var mask: UInt32?
        if masked {
            guard available >= header + 4 else { return .needMore }
            mask = bytes.getInteger(at: start + header, as: UInt32.self)!
            header += 4
        }
        guard available - header >= length else { return .needMore }
        let data = bytes.getSlice(at: start + header, length: length)!
        bytes.moveReaderIndex(forwardBy: header + length)
        return .frame(InboundFrame(firstByte: first, mask: mask, data: data))
    }
}
