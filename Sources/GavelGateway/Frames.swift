import NIOCore
import NIOWebSocket

/// Builds complete server-to-client WebSocket frames (header and payload, unmasked) in one buffer, so that one
/// encoded frame can be written to any number of channels.
public enum ServerFrame {
    /// A final text frame holding `payload`.
    public static func text(_ payload: [UInt8], allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        frame(opcode: .text, payload: payload, allocator: allocator)
    }

    /// A close frame with `code` and a short reason (at most 123 bytes are kept).
    public static func close(_ code: WebSocketErrorCode, reason: String = "") -> ByteBuffer {
        var payload: [UInt8] = []
        let raw = UInt16(webSocketErrorCode: code)
        payload.append(UInt8(raw >> 8))
        payload.append(UInt8(raw & 0xFF))
        var reasonBytes: [UInt8] = []
        for scalar in reason.unicodeScalars {
            let encoded = Array(String(scalar).utf8)
            if reasonBytes.count + encoded.count > 123 { break }
            reasonBytes.append(contentsOf: encoded)
        }
        payload.append(contentsOf: reasonBytes)
        return frame(opcode: .connectionClose, payload: payload, allocator: ByteBufferAllocator())
    }

    /// A control frame (`ping`, `pong`) echoing `payload` (at most 125 bytes).
    public static func control(_ opcode: WebSocketOpcode, payload: ByteBuffer) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 2 + payload.readableBytes)
        buffer.writeInteger(UInt8(0x80) | opcodeByte(opcode))
        buffer.writeInteger(UInt8(min(payload.readableBytes, 125)))
        var body = payload
        if let slice = body.readSlice(length: min(payload.readableBytes, 125)) { buffer.writeImmutableBuffer(slice) }
        return buffer
    }

    /// Appends a final text frame holding `payload` to `buffer`: many frames in one buffer are one write.
    public static func appendText(_ payload: [UInt8], to buffer: inout ByteBuffer) {
        append(opcode: .text, payload: payload, to: &buffer)
    }

    /// Appends a final text frame holding `payload` to `bytes`: its header from a few bytes on the stack, then the
    /// payload in one copy.
    public static func appendText(_ payload: [UInt8], to bytes: inout [UInt8]) {
        withUnsafeTemporaryAllocation(byteCount: maxHeaderLength, alignment: 1) { header in
            let length = writeTextHeader(count: payload.count, to: header)
            bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: header[..<length]))
        }
        bytes.append(contentsOf: payload)
    }

    /// Writes the header of a final text frame of `count` payload bytes at the start of `out` (room for
    /// ``maxHeaderLength``); returns its length.
    static func writeTextHeader(count: Int, to out: UnsafeMutableRawBufferPointer) -> Int {
        writeHeader(first: 0x80 | opcodeByte(.text), count: count, to: out)
    }

    static func frame(opcode: WebSocketOpcode, payload: [UInt8], allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: payload.count + 10)
        append(opcode: opcode, payload: payload, to: &buffer)
        return buffer
    }

    /// The header and the payload in one write into the buffer's memory: one capacity and uniqueness check, not one
    /// per header byte.
    private static func append(opcode: WebSocketOpcode, payload: [UInt8], to buffer: inout ByteBuffer) {
        let first = UInt8(0x80) | opcodeByte(opcode)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: headerLength(payload.count) + payload.count) { out in
            write(first: first, payload: payload, to: out)
        }
    }

    /// Writes the frame's header and `payload` at the start of `out` (room for both); returns the bytes written.
    private static func write(first: UInt8, payload: [UInt8], to out: UnsafeMutableRawBufferPointer) -> Int {
        let header = writeHeader(first: first, count: payload.count, to: out)
        payload.withUnsafeBytes { bytes in
            UnsafeMutableRawBufferPointer(rebasing: out[header...]).copyMemory(from: bytes)
        }
        return header + payload.count
    }

    /// Writes the header of a frame of `count` payload bytes whose first byte is `first` at the start of `out` (room
    /// for ``headerLength(_:)`` bytes); returns its length.
    private static func writeHeader(first: UInt8, count: Int, to out: UnsafeMutableRawBufferPointer) -> Int {
        let header = headerLength(count)
        out[0] = first
        switch header {
        case 2:
            out[1] = UInt8(count)
        case 4:
            out[1] = 126
            out[2] = UInt8(truncatingIfNeeded: count >> 8)
            out[3] = UInt8(truncatingIfNeeded: count)
        default:
            out[1] = 127
            for i in 0..<8 { out[2 + i] = UInt8(truncatingIfNeeded: UInt64(count) >> (56 - 8 * UInt64(i))) }
        }
        return header
    }

    /// The longest header a server frame has.
    static let maxHeaderLength = 10

    /// The length of a server frame's header for a payload of `count` bytes.
    static func headerLength(_ count: Int) -> Int {
        count < 126 ? 2 : count <= Int(UInt16.max) ? 4 : maxHeaderLength
    }

    static func opcodeByte(_ opcode: WebSocketOpcode) -> UInt8 {
        UInt8(webSocketOpcode: opcode)
    }
}
