/// Writes one JSON object, member by member, into a byte buffer. Keys are written as given (they are the
/// protocol's own ASCII names); string values are escaped.
///
/// The buffer is kept at its full size while the object is written (the object is its first `length` bytes) and
/// each member is written through one pointer, so a member costs one capacity check, not one per byte.
public struct JSONObjectWriter {
    private var storage: [UInt8]
    private var length = 0
    private var first = true

    /// The bytes written so far.
    public var bytes: [UInt8] { Array(storage[0..<length]) }

    public init(capacity: Int = 256) {
        storage = [UInt8](repeating: 0, count: max(capacity, 16))
        put(UInt8(ascii: "{"))
    }

    /// Starts an object in `buffer`'s storage, which the caller keeps between messages and gets back from
    /// ``finish(into:)``: no allocation once the buffer has grown to the size of the messages.
    public init(reusing buffer: inout [UInt8]) {
        storage = []
        swap(&storage, &buffer)
        let size = max(storage.capacity, 256)
        if storage.count < size { storage.append(contentsOf: repeatElement(0, count: size - storage.count)) }
        put(UInt8(ascii: "{"))
    }

    /// Makes room for `count` more bytes and writes them through `body`, which returns how many it wrote.
    @inline(__always)
    private mutating func write(upTo count: Int, _ body: (UnsafeMutablePointer<UInt8>) -> Int) {
        if length + count > storage.count {
            storage.append(contentsOf: repeatElement(0, count: max(storage.count, length + count - storage.count)))
        }
        let start = length
        length += storage.withUnsafeMutableBufferPointer { body($0.baseAddress! + start) }
    }

    @inline(__always)
    private mutating func put(_ byte: UInt8) {
        write(upTo: 1) { p in
            p[0] = byte
            return 1
        }
    }

    /// `,"name":` (no comma before the first member) at `p`; returns the bytes written.
    @inline(__always)
    private static func key(_ name: StaticString, first: Bool, at p: UnsafeMutablePointer<UInt8>) -> Int {
        var n = 0
        if !first {
            p[0] = UInt8(ascii: ",")
            n = 1
        }
        p[n] = UInt8(ascii: "\"")
        n += 1
        let count = name.utf8CodeUnitCount
        (p + n).update(from: name.utf8Start, count: count)
        n += count
        p[n] = UInt8(ascii: "\"")
        p[n + 1] = UInt8(ascii: ":")
        return n + 2
    }

    /// Room for a key: its name, quotes, colon and comma.
    @inline(__always)
    private static func keyRoom(_ name: StaticString) -> Int { name.utf8CodeUnitCount + 4 }

    public mutating func field(_ name: StaticString, _ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            let first = self.first
            write(upTo: Self.keyRoom(name) + Self.stringRoom(utf8)) { p in
                let n = Self.key(name, first: first, at: p)
                return n + Self.string(utf8, at: p + n)
            }
        }
        first = false
    }

    public mutating func field(_ name: StaticString, _ value: String?) {
        if let value { field(name, value) } else { literal(name, "null") }
    }

    public mutating func field(_ name: StaticString, _ value: Int64) {
        integer(name, value.magnitude, negative: value < 0)
    }

    public mutating func field(_ name: StaticString, _ value: UInt64) {
        integer(name, value, negative: false)
    }

    public mutating func field(_ name: StaticString, _ value: Int64?) {
        if let value { field(name, value) } else { literal(name, "null") }
    }

    public mutating func field(_ name: StaticString, _ value: Bool) {
        literal(name, value ? "true" : "false")
    }

    /// Writes `name` with an already-encoded JSON value.
    public mutating func field(_ name: StaticString, raw: [UInt8]) {
        let first = self.first
        raw.withUnsafeBufferPointer { raw in
            write(upTo: Self.keyRoom(name) + raw.count) { p in
                let n = Self.key(name, first: first, at: p)
                if let base = raw.baseAddress { (p + n).update(from: base, count: raw.count) }
                return n + raw.count
            }
        }
        self.first = false
    }

    private mutating func literal(_ name: StaticString, _ word: StaticString) {
        let first = self.first
        write(upTo: Self.keyRoom(name) + word.utf8CodeUnitCount) { p in
            let n = Self.key(name, first: first, at: p)
            (p + n).update(from: word.utf8Start, count: word.utf8CodeUnitCount)
            return n + word.utf8CodeUnitCount
        }
        self.first = false
    }

    private mutating func integer(_ name: StaticString, _ magnitude: UInt64, negative: Bool) {
        let first = self.first
        write(upTo: Self.keyRoom(name) + 21) { p in
            let n = Self.key(name, first: first, at: p)
            return n + Self.decimal(magnitude, negative: negative, at: p + n)
        }
        self.first = false
    }

    /// Closes the object and returns its bytes.
    public mutating func finish() -> [UInt8] {
        put(UInt8(ascii: "}"))
        storage.removeLast(storage.count - length)
        return storage
    }

    /// Closes the object and hands its bytes to `buffer` (the one it was started in, for reuse).
    public mutating func finish(into buffer: inout [UInt8]) {
        put(UInt8(ascii: "}"))
        storage.removeLast(storage.count - length)
        swap(&storage, &buffer)
    }

    /// Closes the object and returns it as a string.
    public mutating func finishString() -> String {
        String(decoding: finish(), as: UTF8.self)
    }

    /// The decimal digits of `magnitude` (after a `-` when `negative`) at `p`; returns the bytes written (at most 21).
    @inline(__always)
    private static func decimal(_ magnitude: UInt64, negative: Bool, at p: UnsafeMutablePointer<UInt8>) -> Int {
        var n = 0
        if negative {
            p[0] = UInt8(ascii: "-")
            n = 1
        }
        var digits = 1
        var rest = magnitude / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        var value = magnitude
        var i = n + digits - 1
        while i >= n {
            p[i] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: value % 10)
            value /= 10
            i -= 1
        }
        return n + digits
    }

    /// The most bytes `utf8` takes as a JSON string literal: every byte escaped as `\u00XX`, and the quotes.
    @inline(__always)
    private static func stringRoom(_ utf8: UnsafeBufferPointer<UInt8>) -> Int { utf8.count * 6 + 2 }

    /// `utf8` as a JSON string literal at `p`; returns the bytes written.
    private static func string(_ utf8: UnsafeBufferPointer<UInt8>, at p: UnsafeMutablePointer<UInt8>) -> Int {
        p[0] = UInt8(ascii: "\"")
        var n = 1
        for byte in utf8 {
            switch byte {
            case UInt8(ascii: "\""):
                p[n] = 0x5C
                p[n + 1] = 0x22
                n += 2
            case UInt8(ascii: "\\"):
                p[n] = 0x5C
                p[n + 1] = 0x5C
                n += 2
            case 0x0A:
                p[n] = 0x5C
                p[n + 1] = UInt8(ascii: "n")
                n += 2
            case 0x0D:
                p[n] = 0x5C
                p[n + 1] = UInt8(ascii: "r")
                n += 2
            case 0x09:
                p[n] = 0x5C
                p[n + 1] = UInt8(ascii: "t")
                n += 2
            case 0x00..<0x20:
                let hex: StaticString = "0123456789abcdef"
                p[n] = 0x5C
                p[n + 1] = UInt8(ascii: "u")
                p[n + 2] = 0x30
                p[n + 3] = 0x30
                p[n + 4] = hex.utf8Start[Int(byte >> 4)]
                p[n + 5] = hex.utf8Start[Int(byte & 0xF)]
                n += 6
            default:
                p[n] = byte
                n += 1
            }
        }
        p[n] = UInt8(ascii: "\"")
        return n + 1
    }

    static func appendInteger(_ value: Int64, to bytes: inout [UInt8]) {
        bytes.reserveCapacity(bytes.count + 21)
        let old = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: 21))
        let n = bytes.withUnsafeMutableBufferPointer {
            decimal(value.magnitude, negative: value < 0, at: $0.baseAddress! + old)
        }
        bytes.removeLast(21 - n)
    }

    /// Appends `value` as a JSON string literal.
    public static func appendString(_ value: String, to bytes: inout [UInt8]) {
        var value = value
        value.withUTF8 { utf8 in
            let old = bytes.count
            let room = stringRoom(utf8)
            bytes.append(contentsOf: repeatElement(0, count: room))
            let n = bytes.withUnsafeMutableBufferPointer { string(utf8, at: $0.baseAddress! + old) }
            bytes.removeLast(room - n)
        }
    }
}
