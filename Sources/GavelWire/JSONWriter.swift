/// Writes the members of one JSON object: keys as given (they are the protocol's own ASCII names), string values
/// escaped, integers in decimal. A writer supplies the one primitive, ``write(upTo:_:)``, and whether a member was
/// written yet; the member methods are shared, so every writer writes the same bytes.
public protocol JSONMemberWriter {
    /// Whether no member has been written yet (no comma goes before the next one).
    var isFirstMember: Bool { get set }

    /// Makes room for `count` more bytes and writes them through `body`, which returns how many it wrote (at most
    /// `count`).
    mutating func write(upTo count: Int, _ body: (UnsafeMutablePointer<UInt8>) -> Int)
}

extension JSONMemberWriter {
    @inlinable @inline(__always)
    public mutating func field(_ name: StaticString, _ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            let first = isFirstMember
            write(upTo: JSONBytes.keyRoom(name) + JSONBytes.stringRoom(utf8)) { p in
                let n = JSONBytes.key(name, first: first, at: p)
                return n + JSONBytes.string(utf8, at: p + n)
            }
        }
        isFirstMember = false
    }

    @inlinable @inline(__always)
    public mutating func field(_ name: StaticString, _ value: String?) {
        if let value { field(name, value) } else { literal(name, "null") }
    }

    @inlinable @inline(__always)
    public mutating func field(_ name: StaticString, _ value: Int64) {
        integer(name, value.magnitude, negative: value < 0)
    }

    @inlinable @inline(__always)
    public mutating func field(_ name: StaticString, _ value: UInt64) {
        integer(name, value, negative: false)
    }

    @inlinable @inline(__always)
    public mutating func field(_ name: StaticString, _ value: Int64?) {
        if let value { field(name, value) } else { literal(name, "null") }
    }

    @inlinable @inline(__always)
    public mutating func field(_ name: StaticString, _ value: Bool) {
        literal(name, value ? "true" : "false")
    }

    /// Writes `name` with a string value known when compiling, which needs no escape (a protocol word).
    @inlinable @inline(__always)
    public mutating func field(_ name: StaticString, word: StaticString) {
        let first = isFirstMember
        write(upTo: JSONBytes.keyRoom(name) + word.utf8CodeUnitCount + 2) { p in
            var n = JSONBytes.key(name, first: first, at: p)
            p[n] = UInt8(ascii: "\"")
            JSONBytes.copy(word.utf8Start, count: word.utf8CodeUnitCount, to: p + n + 1)
            n += word.utf8CodeUnitCount + 1
            p[n] = UInt8(ascii: "\"")
            return n + 1
        }
        isFirstMember = false
    }

    /// Writes `name` with an already-encoded JSON value.
    @inlinable
    public mutating func field(_ name: StaticString, raw: [UInt8]) {
        let first = isFirstMember
        raw.withUnsafeBufferPointer { raw in
            write(upTo: JSONBytes.keyRoom(name) + raw.count) { p in
                let n = JSONBytes.key(name, first: first, at: p)
                if let base = raw.baseAddress { (p + n).update(from: base, count: raw.count) }
                return n + raw.count
            }
        }
        isFirstMember = false
    }

    @inlinable @inline(__always)
    mutating func literal(_ name: StaticString, _ word: StaticString) {
        let first = isFirstMember
        write(upTo: JSONBytes.keyRoom(name) + word.utf8CodeUnitCount) { p in
            let n = JSONBytes.key(name, first: first, at: p)
            (p + n).update(from: word.utf8Start, count: word.utf8CodeUnitCount)
            return n + word.utf8CodeUnitCount
        }
        isFirstMember = false
    }

    @inlinable @inline(__always)
    mutating func integer(_ name: StaticString, _ magnitude: UInt64, negative: Bool) {
        let first = isFirstMember
        write(upTo: JSONBytes.keyRoom(name) + 21) { p in
            let n = JSONBytes.key(name, first: first, at: p)
            return n + JSONBytes.decimal(magnitude, negative: negative, at: p + n)
        }
        isFirstMember = false
    }

    /// Writes one byte (an object's opening or closing brace).
    @inlinable @inline(__always)
    mutating func put(_ byte: UInt8) {
        write(upTo: 1) { p in
            p[0] = byte
            return 1
        }
    }
}

/// Writes one JSON object, member by member, into a byte buffer that grows as needed.
///
/// The buffer is kept at its full size while the object is written (the object is its first `length` bytes) and
/// each member is written through one pointer, so a member costs one capacity check, not one per byte.
public struct JSONObjectWriter: JSONMemberWriter {
    @usableFromInline var storage: [UInt8]
    @usableFromInline var length = 0
    public var isFirstMember = true

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

    @inlinable @inline(__always)
    public mutating func write(upTo count: Int, _ body: (UnsafeMutablePointer<UInt8>) -> Int) {
        if length + count > storage.count {
            storage.append(contentsOf: repeatElement(0, count: max(storage.count, length + count - storage.count)))
        }
        let start = length
        length += storage.withUnsafeMutableBufferPointer { body($0.baseAddress! + start) }
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
}

/// Writes one JSON object into memory of a fixed size: the scratch of ``write(into:_:)``.
struct FixedJSONWriter: JSONMemberWriter {
    let base: UnsafeMutablePointer<UInt8>
    let capacity: Int
    /// The bytes written, while they fit; past `capacity`, the most the object can need (no byte is written then).
    var length = 0
    var isFirstMember = true

    init(_ memory: UnsafeMutableBufferPointer<UInt8>) {
        base = memory.baseAddress!
        capacity = memory.count
        put(UInt8(ascii: "{"))
    }

    @inline(__always)
    mutating func write(upTo count: Int, _ body: (UnsafeMutablePointer<UInt8>) -> Int) {
        if length + count <= capacity {
            length += body(base + length)
        } else {
            length += count
        }
    }

    /// The object that `members` writes (its braces around them), put in `buffer` in place of its old content. The
    /// object is written in 1 KiB of stack first, then copied: no allocation while `buffer`'s capacity holds it. A
    /// larger object is written again into heap memory of the size the first attempt said it needs.
    @inline(__always)
    static func write(into buffer: inout [UInt8], _ members: (inout FixedJSONWriter) -> Void) {
        var needed = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 1_024) { scratch in
            write(members, in: scratch, to: &buffer)
        }
        while needed > 0 {
            let memory = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: needed)
            defer { memory.deallocate() }
            needed = write(members, in: memory, to: &buffer)
        }
    }

    /// Writes the object in `memory` and copies it to `buffer`; returns 0, or the size it needs when it does not fit.
    @inline(__always)
    private static func write(
        _ members: (inout FixedJSONWriter) -> Void, in memory: UnsafeMutableBufferPointer<UInt8>,
        to buffer: inout [UInt8]
    ) -> Int {
        var w = FixedJSONWriter(memory)
        members(&w)
        w.put(UInt8(ascii: "}"))
        guard w.length <= w.capacity else { return w.length }
        buffer.removeAll(keepingCapacity: true)
        buffer.append(contentsOf: UnsafeBufferPointer(start: w.base, count: w.length))
        return 0
    }
}

/// The bytes of JSON values, written through pointers: the code the writers share.
@usableFromInline
enum JSONBytes {
    /// `,"name":` (no comma before the first member) at `p`; returns the bytes written.
    @inlinable @inline(__always)
    static func key(_ name: StaticString, first: Bool, at p: UnsafeMutablePointer<UInt8>) -> Int {
        var n = 0
        if !first {
            p[0] = UInt8(ascii: ",")
            n = 1
        }
        p[n] = UInt8(ascii: "\"")
        n += 1
        let count = name.utf8CodeUnitCount
        copy(name.utf8Start, count: count, to: p + n)
        n += count
        p[n] = UInt8(ascii: "\"")
        p[n + 1] = UInt8(ascii: ":")
        return n + 2
    }

    /// Copies `count` bytes from `source` to `target` (which do not overlap) in words of 8 or 4 bytes, the last word
    /// overlapping the one before: a key or a short string costs a few loads and stores, not a call to `memmove`.
    @inlinable @inline(__always)
    static func copy(_ source: UnsafePointer<UInt8>, count: Int, to target: UnsafeMutablePointer<UInt8>) {
        let from = UnsafeRawPointer(source)
        let to = UnsafeMutableRawPointer(target)
        if count >= 8 {
            var offset = 0
            while offset + 8 < count {
                to.storeBytes(
                    of: from.loadUnaligned(fromByteOffset: offset, as: UInt64.self), toByteOffset: offset,
                    as: UInt64.self)
                offset += 8
            }
            let last = count - 8
            to.storeBytes(
                of: from.loadUnaligned(fromByteOffset: last, as: UInt64.self), toByteOffset: last, as: UInt64.self)
        } else if count >= 4 {
            to.storeBytes(of: from.loadUnaligned(as: UInt32.self), as: UInt32.self)
            let last = count - 4
            to.storeBytes(
                of: from.loadUnaligned(fromByteOffset: last, as: UInt32.self), toByteOffset: last, as: UInt32.self)
        } else {
            for i in 0..<count { target[i] = source[i] }
        }
    }

    /// Room for a key: its name, quotes, colon and comma.
    @inlinable @inline(__always)
    static func keyRoom(_ name: StaticString) -> Int { name.utf8CodeUnitCount + 4 }

    /// The decimal digits of `magnitude` (after a `-` when `negative`) at `p`; returns the bytes written (at most 21).
    /// The digits are counted first, then written from the end: eight at a time in 32-bit halves while more than
    /// eight remain, two at a time from a table of the pairs 00-99.
    @inlinable @inline(__always)
    static func decimal(_ magnitude: UInt64, negative: Bool, at p: UnsafeMutablePointer<UInt8>) -> Int {
        var n = 0
        if negative {
            p[0] = UInt8(ascii: "-")
            n = 1
        }
        let digits = digitCount(magnitude)
        var end = n + digits
        var value = magnitude
        while value >= 100_000_000 {
            let high = value / 100_000_000
            let low = UInt32(truncatingIfNeeded: value &- high &* 100_000_000)
            end -= 8
            let upper = low / 10_000
            let lower = low &- upper &* 10_000
            pair(upper / 100, at: p + end)
            pair(upper % 100, at: p + end + 2)
            pair(lower / 100, at: p + end + 4)
            pair(lower % 100, at: p + end + 6)
            value = high
        }
        var rest = UInt32(truncatingIfNeeded: value)
        while rest >= 100 {
            let next = rest / 100
            end -= 2
            pair(rest &- next &* 100, at: p + end)
            rest = next
        }
        if rest >= 10 {
            pair(rest, at: p + n)
        } else {
            p[n] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: rest)
        }
        return n + digits
    }

    /// The two digits of `value` (below 100) at `p`.
    @inlinable @inline(__always)
    static func pair(_ value: UInt32, at p: UnsafeMutablePointer<UInt8>) {
        let table = UnsafeRawPointer(digitPairs.utf8Start)
        UnsafeMutableRawPointer(p).storeBytes(
            of: table.loadUnaligned(fromByteOffset: Int(value) &* 2, as: UInt16.self), as: UInt16.self)
    }

    /// How many decimal digits `value` has (1 for 0): an estimate from its bit length, corrected by one comparison.
    @inlinable @inline(__always)
    static func digitCount(_ value: UInt64) -> Int {
        // 1233 / 4096 is just above log10(2), so this is the digit count or one less.
        let estimate = ((64 - (value | 1).leadingZeroBitCount) &* 1233) >> 12
        return estimate + ((value | 1) >= powerOfTen(estimate) ? 1 : 0)
    }

    /// "00", "01", ... "99": the two digits of each number below 100.
    @inlinable
    static var digitPairs: StaticString {
        """
        0001020304050607080910111213141516171819202122232425262728293031323334353637383940414243444546474849\
        5051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899
        """
    }

    /// 10^`exponent` for 0...19 (a switch the compiler turns into a table).
    @inlinable @inline(__always)
    static func powerOfTen(_ exponent: Int) -> UInt64 {
        switch exponent {
        case 0: 1
        case 1: 10
        case 2: 100
        case 3: 1_000
        case 4: 10_000
        case 5: 100_000
        case 6: 1_000_000
        case 7: 10_000_000
        case 8: 100_000_000
        case 9: 1_000_000_000
        case 10: 10_000_000_000
        case 11: 100_000_000_000
        case 12: 1_000_000_000_000
        case 13: 10_000_000_000_000
        case 14: 100_000_000_000_000
        case 15: 1_000_000_000_000_000
        case 16: 10_000_000_000_000_000
        case 17: 100_000_000_000_000_000
        case 18: 1_000_000_000_000_000_000
        default: 10_000_000_000_000_000_000
        }
    }

    /// The most bytes `utf8` takes as a JSON string literal: every byte escaped as `\u00XX`, and the quotes.
    @inlinable @inline(__always)
    static func stringRoom(_ utf8: UnsafeBufferPointer<UInt8>) -> Int { utf8.count * 6 + 2 }

    /// `utf8` as a JSON string literal at `p`; returns the bytes written.
    @usableFromInline
    static func string(_ utf8: UnsafeBufferPointer<UInt8>, at p: UnsafeMutablePointer<UInt8>) -> Int {
        p[0] = UInt8(ascii: "\"")
        if let base = utf8.baseAddress, !needsEscape(utf8) {
            copy(base, count: utf8.count, to: p + 1)
            p[utf8.count + 1] = UInt8(ascii: "\"")
            return utf8.count + 2
        }
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

    /// Whether a byte of `utf8` must be escaped in a JSON string: a control character, `"` or `\`.
    @inline(__always)
    static func needsEscape(_ utf8: UnsafeBufferPointer<UInt8>) -> Bool {
        for byte in utf8 where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { return true }
        return false
    }
}

extension JSONObjectWriter {
    /// Appends `value` in decimal.
    public static func appendInteger(_ value: Int64, to bytes: inout [UInt8]) {
        bytes.reserveCapacity(bytes.count + 21)
        let old = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: 21))
        let n = bytes.withUnsafeMutableBufferPointer {
            JSONBytes.decimal(value.magnitude, negative: value < 0, at: $0.baseAddress! + old)
        }
        bytes.removeLast(21 - n)
    }

    /// Appends `value` as a JSON string literal.
    public static func appendString(_ value: String, to bytes: inout [UInt8]) {
        var value = value
        value.withUTF8 { utf8 in
            let old = bytes.count
            let room = JSONBytes.stringRoom(utf8)
            bytes.append(contentsOf: repeatElement(0, count: room))
            let n = bytes.withUnsafeMutableBufferPointer { JSONBytes.string(utf8, at: $0.baseAddress! + old) }
            bytes.removeLast(room - n)
        }
    }
}
