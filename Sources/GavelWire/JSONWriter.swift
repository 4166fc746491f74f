/// Writes one JSON object, member by member, into a byte buffer. Keys are written as given (they are the
/// protocol's own ASCII names); string values are escaped.
public struct JSONObjectWriter {
    public private(set) var bytes: [UInt8]
    private var first = true

    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
        bytes.append(UInt8(ascii: "{"))
    }

    /// Starts an object in `buffer`'s storage, which the caller keeps between messages and gets back from
    /// ``finish(into:)``: no allocation once the buffer has grown to the size of the messages.
    public init(reusing buffer: inout [UInt8]) {
        bytes = []
        swap(&bytes, &buffer)
        bytes.removeAll(keepingCapacity: true)
        bytes.append(UInt8(ascii: "{"))
    }

    private mutating func key(_ name: StaticString) {
        if !first { bytes.append(UInt8(ascii: ",")) }
        first = false
        bytes.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { bytes.append(contentsOf: $0) }
        // `":` in one append.
        withUnsafeBytes(of: UInt16(0x3A22).littleEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func field(_ name: StaticString, _ value: String) {
        key(name)
        Self.appendString(value, to: &bytes)
    }

    public mutating func field(_ name: StaticString, _ value: String?) {
        key(name)
        if let value { Self.appendString(value, to: &bytes) } else { appendNull() }
    }

    public mutating func field(_ name: StaticString, _ value: Int64) {
        key(name)
        Self.appendInteger(value, to: &bytes)
    }

    public mutating func field(_ name: StaticString, _ value: UInt64) {
        key(name)
        Self.appendDecimal(value, negative: false, to: &bytes)
    }

    public mutating func field(_ name: StaticString, _ value: Int64?) {
        key(name)
        if let value { Self.appendInteger(value, to: &bytes) } else { appendNull() }
    }

    public mutating func field(_ name: StaticString, _ value: Bool) {
        key(name)
        let word: StaticString = value ? "true" : "false"
        word.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    /// Writes `name` with an already-encoded JSON value.
    public mutating func field(_ name: StaticString, raw: [UInt8]) {
        key(name)
        bytes.append(contentsOf: raw)
    }

    private mutating func appendNull() {
        let word: StaticString = "null"
        word.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    /// Closes the object and returns its bytes.
    public mutating func finish() -> [UInt8] {
        bytes.append(UInt8(ascii: "}"))
        return bytes
    }

    /// Closes the object and hands its bytes to `buffer` (the one it was started in, for reuse).
    public mutating func finish(into buffer: inout [UInt8]) {
        bytes.append(UInt8(ascii: "}"))
        swap(&bytes, &buffer)
    }

    /// Closes the object and returns it as a string.
    public mutating func finishString() -> String {
        String(decoding: finish(), as: UTF8.self)
    }

    static func appendInteger(_ value: Int64, to bytes: inout [UInt8]) {
        appendDecimal(value.magnitude, negative: value < 0, to: &bytes)
    }

    static func appendDecimal(_ value: UInt64, negative: Bool, to bytes: inout [UInt8]) {
        if value == 0 {
            bytes.append(UInt8(ascii: "0"))
            return
        }
        var magnitude = value
        if negative { bytes.append(UInt8(ascii: "-")) }
        var digits:
            (
                UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8
            ) =
                (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &digits) { buffer in
            // Written from the end of the scratch, so the digits go in with one copy.
            var start = buffer.count
            while magnitude > 0 {
                start -= 1
                buffer[start] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            }
            bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[start...]))
        }
    }

    /// Appends `value` as a JSON string literal.
    public static func appendString(_ value: String, to bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "\""))
        // Fast path: nothing to escape (every identifier), so the bytes go in with one copy.
        var plain = value
        let copied = plain.withUTF8 { utf8 -> Bool in
            for byte in utf8 where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                return false
            }
            bytes.append(contentsOf: utf8)
            return true
        }
        if copied {
            bytes.append(UInt8(ascii: "\""))
            return
        }
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [0x5C, 0x22])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: bytes.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: bytes.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: bytes.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x00..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                bytes.append(contentsOf: [
                    0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(byte >> 4)], hex[Int(byte & 0xF)],
                ])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
