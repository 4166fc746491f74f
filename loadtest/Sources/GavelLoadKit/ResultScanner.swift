import Foundation

/// Reads the server's WebSocket frames on one closed-loop connection straight from the bytes received, without a
/// JSON parser: frame headers are parsed, a text frame is a result when its first `"type":"` is `result"`, and of a
/// result only the request number (the digits after the last `-` of an id starting with `r`), `"ok":` and, when it failed, its
/// `"error":"..."` code and `"message":"..."` are read. Other text frames (`hello`, the `outbid` notices a bidder
/// gets) are skipped after the type check. A frame split across reads waits in the buffer for the rest.
///
/// The buffer is the connection's read buffer: `read(2)` writes into ``writable(minimum:)`` and ``didRead(_:)``
/// counts the bytes.
struct ResultScanner {
    enum Event: Equatable {
        /// A result: its request number (nil for an id without `-<digits>`), whether it succeeded, its error code
        /// and message.
        case result(number: Int?, ok: Bool, error: String?, message: String?)
        /// A close frame: its code (1005 when it has none) and reason.
        case close(code: Int, reason: String)
        /// A ping, to be answered with a pong carrying `payload`.
        case ping(payload: [UInt8])
    }

    private var storage: UnsafeMutableRawBufferPointer
    private var start = 0
    private var end = 0

    init(capacity: Int = 16_384) {
        storage = .allocate(byteCount: capacity, alignment: 8)
    }

    /// Frees the buffer; the scanner is not used afterwards.
    mutating func deallocate() {
        storage.deallocate()
        storage = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    }

    /// Space for at least `minimum` more bytes after what is buffered (compacting or growing the buffer).
    mutating func writable(minimum: Int = 4_096) -> UnsafeMutableRawBufferPointer {
        if storage.count - end < minimum {
            let buffered = end - start
            if buffered + minimum > storage.count {
                let grown = UnsafeMutableRawBufferPointer.allocate(
                    byteCount: max(storage.count * 2, buffered + minimum), alignment: 8)
                if buffered > 0 {
                    grown.baseAddress!.copyMemory(from: storage.baseAddress! + start, byteCount: buffered)
                }
                storage.deallocate()
                storage = grown
            } else if buffered > 0 {
                storage.baseAddress!.copyMemory(from: storage.baseAddress! + start, byteCount: buffered)
            }
            start = 0
            end = buffered
        }
        return UnsafeMutableRawBufferPointer(rebasing: storage[end...])
    }

    mutating func didRead(_ count: Int) { end += count }

    /// Copies `bytes` in (tests, and the bytes that came with the upgrade response).
    mutating func append(_ bytes: some Collection<UInt8>) {
        let space = writable(minimum: bytes.count)
        space.copyBytes(from: bytes)
        didRead(bytes.count)
    }

    /// Bytes received but not yet a whole frame.
    var buffered: Int { end - start }

    /// Calls `handle` for each whole result, close and ping frame buffered, in order, and keeps the rest.
    mutating func scan(_ handle: (Event) -> Void) {
        guard let base = storage.baseAddress.map({ UnsafePointer<UInt8>($0.assumingMemoryBound(to: UInt8.self)) })
        else { return }
        while end - start >= 2 {
            let b0 = base[start]
            let b1 = base[start + 1]
            let masked = b1 & 0x80 != 0
            var length = Int(b1 & 0x7F)
            var header = 2
            if length == 126 {
                guard end - start >= 4 else { return }
                length = Int(base[start + 2]) << 8 | Int(base[start + 3])
                header = 4
            } else if length == 127 {
                guard end - start >= 10 else { return }
                length = 0
                for i in 2..<10 { length = length << 8 | Int(base[start + i]) }
                header = 10
            }
            if masked { header += 4 }
            guard end - start >= header + length else {
                // Make room for the whole frame the next read completes.
                if header + length > storage.count { _ = writable(minimum: header + length) }
                return
            }
            let payloadStart = start + header
            if masked {
                // Servers do not mask; unmask in place if one does.
                let key = UnsafeMutablePointer(mutating: base + start + header - 4)
                let payload = UnsafeMutablePointer(mutating: base + payloadStart)
                for i in 0..<length { payload[i] ^= key[i & 3] }
            }
            let payload = UnsafeBufferPointer(start: base + payloadStart, count: length)
            start += header + length
            switch b0 & 0x0F {
            case 0x1:
                if let event = Self.result(payload) { handle(event) }
            case 0x8:
                let code = length >= 2 ? Int(payload[0]) << 8 | Int(payload[1]) : 1005
                let reason = length > 2 ? String(decoding: payload[2...], as: UTF8.self) : ""
                handle(.close(code: code, reason: reason))
            case 0x9:
                handle(.ping(payload: Array(payload)))
            default:
                break  // continuation, binary, pong: results are small unfragmented text frames
            }
        }
        if start == end {
            start = 0
            end = 0
        }
    }

    private static let typeKey: StaticString = #""type":""#
    private static let resultValue: StaticString = #"result""#
    private static let idKey: StaticString = #""id":""#
    private static let okKey: StaticString = #""ok":"#
    private static let errorKey: StaticString = #""error":""#
    private static let messageKey: StaticString = #""message":""#

    /// The result in one text frame's payload, or nil if it is another message.
    static func result(_ payload: UnsafeBufferPointer<UInt8>) -> Event? {
        guard let type = find(typeKey, in: payload, from: 0), payload.count - type >= resultValue.utf8CodeUnitCount
        else { return nil }
        for i in 0..<resultValue.utf8CodeUnitCount where payload[type + i] != resultValue.utf8Start[i] { return nil }
        var number: Int?
        // The driver's ids are r<run>c<connection>-<n>; any other id has no number.
        if let id = find(idKey, in: payload, from: type), id < payload.count, payload[id] == UInt8(ascii: "r") {
            var index = id
            var value = 0
            var digits = 0
            while index < payload.count, payload[index] != UInt8(ascii: "\"") {
                if payload[index] == UInt8(ascii: "-") {
                    value = 0
                    digits = 0
                } else if payload[index] >= 48 && payload[index] <= 57 && digits < 18 {
                    value = value * 10 + Int(payload[index] - 48)
                    digits += 1
                } else {
                    digits = -1_000
                }
                index += 1
            }
            if digits > 0 { number = value }
        }
        guard let ok = find(okKey, in: payload, from: type), ok < payload.count else { return nil }
        if payload[ok] == UInt8(ascii: "t") { return .result(number: number, ok: true, error: nil, message: nil) }
        return .result(
            number: number, ok: false, error: string(after: errorKey, in: payload) ?? "unknown",
            message: string(after: messageKey, in: payload))
    }

    /// The string value after `key` (up to the next unescaped quote), or nil.
    static func string(after key: StaticString, in payload: UnsafeBufferPointer<UInt8>) -> String? {
        guard let from = find(key, in: payload, from: 0) else { return nil }
        var index = from
        while index < payload.count, payload[index] != UInt8(ascii: "\"") {
            index += payload[index] == UInt8(ascii: "\\") ? 2 : 1
        }
        return String(decoding: payload[from..<min(index, payload.count)], as: UTF8.self)
    }

    /// The index just past the first `key` at or after `from`, or nil.
    static func find(_ key: StaticString, in payload: UnsafeBufferPointer<UInt8>, from: Int) -> Int? {
        let bytes = key.utf8Start
        let count = key.utf8CodeUnitCount
        let first = bytes[0]
        var index = from
        let last = payload.count - count
        while index <= last {
            if payload[index] == first {
                var matched = 1
                while matched < count && payload[index + matched] == bytes[matched] { matched += 1 }
                if matched == count { return index + count }
            }
            index += 1
        }
        return nil
    }
}

/// Builds the closed loop's client frames: masked text frames (RFC 6455 requires a client to mask) with one fixed
/// random 4-byte key per connection, the payload written byte by byte and masked eight bytes at a time.
struct FrameWriter {
    let mask: UInt32
    /// The key's four bytes in order, twice: XORed over the payload a word at a time.
    private let maskWord: UInt64

    init(mask: UInt32) {
        self.mask = mask
        var word: UInt64 = 0
        withUnsafeMutableBytes(of: &word) { w in
            withUnsafeBytes(of: mask.bigEndian) { k in for i in 0..<8 { w[i] = k[i & 3] } }
        }
        maskWord = word
    }

    /// `{"type":"bid","id":"<idPrefix><number>","listing":"<listing>","bidder":"<bidder>","amount":<amount>}` as
    /// one masked text frame appended to `out`, written in place (no intermediate copy, no reference counting).
    mutating func appendBid(
        to out: inout [UInt8], idPrefix: UnsafeRawBufferPointer, number: Int, listing: UnsafeRawBufferPointer,
        bidder: UnsafeRawBufferPointer, amount: Int
    ) {
        let numberDigits = Self.digitCount(number)
        let amountDigits = Self.digitCount(amount)
        let length =
            Self.bidStart.utf8CodeUnitCount + idPrefix.count + numberDigits + Self.listingKey.utf8CodeUnitCount
            + listing.count + Self.bidderKey.utf8CodeUnitCount + bidder.count + Self.amountKey.utf8CodeUnitCount
            + amountDigits + 1
        let header = length < 126 ? 6 : 8
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: header + length))
        let maskWord = maskWord
        out.withUnsafeMutableBytes { bytes in
            let frame = UnsafeMutableRawBufferPointer(rebasing: bytes[start...])
            frame[0] = 0x81
            if length < 126 {
                frame[1] = 0x80 | UInt8(length)
            } else {
                frame[1] = 0x80 | 126
                frame[2] = UInt8(length >> 8)
                frame[3] = UInt8(length & 0xFF)
            }
            var p = frame.baseAddress! + header - 4
            p.storeBytes(of: UInt32(truncatingIfNeeded: maskWord), as: UInt32.self)
            p += 4
            let payload = p
            func put(_ part: UnsafeRawBufferPointer) {
                if part.count > 0 { p.copyMemory(from: part.baseAddress!, byteCount: part.count) }
                p += part.count
            }
            func put(_ part: StaticString) {
                p.copyMemory(from: part.utf8Start, byteCount: part.utf8CodeUnitCount)
                p += part.utf8CodeUnitCount
            }
            func put(_ value: Int, digits: Int) {
                var rest = value
                for i in stride(from: digits - 1, through: 0, by: -1) {
                    p.storeBytes(of: UInt8(48 + rest % 10), toByteOffset: i, as: UInt8.self)
                    rest /= 10
                }
                p += digits
            }
            put(Self.bidStart)
            put(idPrefix)
            put(number, digits: numberDigits)
            put(Self.listingKey)
            put(listing)
            put(Self.bidderKey)
            put(bidder)
            put(Self.amountKey)
            put(amount, digits: amountDigits)
            p.storeBytes(of: UInt8(ascii: "}"), as: UInt8.self)
            Self.mask(UnsafeMutableRawBufferPointer(start: payload, count: length), with: maskWord)
        }
    }

    /// XORs `body` with the key `word` (the 4-byte key twice), eight bytes at a time.
    static func mask(_ body: UnsafeMutableRawBufferPointer, with word: UInt64) {
        var i = 0
        while i + 8 <= body.count {
            let value = body.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            body.storeBytes(of: value ^ word, toByteOffset: i, as: UInt64.self)
            i += 8
        }
        withUnsafeBytes(of: word) { key in
            while i < body.count {
                body[i] ^= key[i & 7]
                i += 1
            }
        }
    }

    /// Decimal digits of a non-negative `value`.
    static func digitCount(_ value: Int) -> Int {
        var count = 1
        var rest = value
        while rest >= 10 {
            rest /= 10
            count += 1
        }
        return count
    }

    /// One masked frame of `opcode` carrying `payload`, appended to `out`.
    func appendFrame(opcode: UInt8, payload: [UInt8], to out: inout [UInt8]) {
        out.append(0x80 | opcode)
        if payload.count < 126 {
            out.append(0x80 | UInt8(payload.count))
        } else {
            out.append(0x80 | 126)
            out.append(UInt8(payload.count >> 8))
            out.append(UInt8(payload.count & 0xFF))
        }
        withUnsafeBytes(of: mask.bigEndian) { out.append(contentsOf: $0) }
        let offset = out.count
        out.append(contentsOf: payload)
        out.withUnsafeMutableBytes { bytes in
            Self.mask(UnsafeMutableRawBufferPointer(rebasing: bytes[offset...]), with: maskWord)
        }
    }

    static let bidStart: StaticString = #"{"type":"bid","id":""#
    static let listingKey: StaticString = #"","listing":""#
    static let bidderKey: StaticString = #"","bidder":""#
    static let amountKey: StaticString = #"","amount":"#
}
