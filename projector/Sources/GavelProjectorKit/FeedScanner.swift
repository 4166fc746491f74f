/// Reads a feed message in one pass over its bytes, without Codable: the fields the projector uses, straight into a
/// `FeedEvent` and the envelope. It accepts a strict subset of JSON (an object whose integers have no fraction or
/// exponent, whose text is valid UTF-8); anything else answers nil and `FeedMessage.parse` reads the message with
/// `JSONDecoder` instead, which gives the same result or the error to report.
struct FeedScanner {
    struct Envelope {
        var ok: Bool?
        var error: String?
        var code: String?
        var message: String?
        var oldestLSN: Int64?
        var chain: String?
    }

    private let bytes: UnsafeBufferPointer<UInt8>
    private var index = 0

    private init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    static func scan(_ bytes: UnsafeBufferPointer<UInt8>) -> (FeedEvent, Envelope)? {
        var scanner = FeedScanner(bytes)
        return scanner.object()
    }

    /// The object's members other than `leaving`, as JSON sorted by key, each value as it was written (the terms
    /// of an `opened` event, stored as jsonb). nil when a key has escapes or comes twice, or the text is not read.
    static func terms(_ bytes: UnsafeBufferPointer<UInt8>, leaving: Set<String>) -> String? {
        var scanner = FeedScanner(bytes)
        var members: [(key: String, value: Range<Int>)] = []
        scanner.skipSpace()
        guard scanner.take(UInt8(ascii: "{")) else { return nil }
        scanner.skipSpace()
        if !scanner.take(UInt8(ascii: "}")) {
            repeat {
                scanner.skipSpace()
                guard let raw = scanner.rawString(), let key = String(validating: raw, as: UTF8.self) else {
                    return nil
                }
                scanner.skipSpace()
                guard scanner.take(UInt8(ascii: ":")) else { return nil }
                scanner.skipSpace()
                let start = scanner.index
                guard scanner.skipValue() else { return nil }
                if !leaving.contains(key) { members.append((key, start..<scanner.index)) }
                scanner.skipSpace()
            } while scanner.take(UInt8(ascii: ","))
            guard scanner.take(UInt8(ascii: "}")) else { return nil }
        }
        scanner.skipSpace()
        guard scanner.index == bytes.count else { return nil }
        members.sort { Array($0.key.utf8).lexicographicallyPrecedes($1.key.utf8) }
        var out: [UInt8] = [UInt8(ascii: "{")]
        for (n, member) in members.enumerated() {
            if n > 0 {
                guard member.key != members[n - 1].key else { return nil }
                out.append(UInt8(ascii: ","))
            }
            out.append(UInt8(ascii: "\""))
            out.append(contentsOf: member.key.utf8)
            out.append(contentsOf: #"":"#.utf8)
            out.append(contentsOf: bytes[member.value])
        }
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }

    private mutating func object() -> (FeedEvent, Envelope)? {
        var event = FeedEvent(type: "")
        var envelope = Envelope()
        var sawType = false
        skipSpace()
        guard take(UInt8(ascii: "{")) else { return nil }
        skipSpace()
        if !take(UInt8(ascii: "}")) {
            repeat {
                skipSpace()
                guard let key = rawString() else { return nil }
                skipSpace()
                guard take(UInt8(ascii: ":")) else { return nil }
                skipSpace()
                guard field(key, &event, &envelope, &sawType) else { return nil }
                skipSpace()
            } while take(UInt8(ascii: ","))
            guard take(UInt8(ascii: "}")) else { return nil }
        }
        skipSpace()
        guard index == bytes.count, sawType else { return nil }
        return (event, envelope)
    }

    /// Reads the value of `key` into its field; false when the value is not of the field's type.
    private mutating func field(
        _ key: UnsafeBufferPointer<UInt8>, _ e: inout FeedEvent, _ h: inout Envelope, _ sawType: inout Bool
    ) -> Bool {
        switch String(decoding: key, as: UTF8.self) {
        case "type":
            guard case .some(.some(let type)) = string() else { return false }
            e.type = type
            sawType = true
            return true
        case "listing": return read(string(), into: &e.listing)
        case "seq": return read(integer(), into: &e.seq)
        case "at": return read(integer(), into: &e.at)
        case "lsn": return read(integer(), into: &e.lsn)
        case "last": return read(boolean(), into: &e.last)
        case "format": return read(string(), into: &e.format)
        case "seller": return read(string(), into: &e.seller)
        case "start": return read(integer(), into: &e.start)
        case "opens_at": return read(integer(), into: &e.opensAt)
        case "closes_at": return read(integer(), into: &e.closesAt)
        case "has_reserve": return read(boolean(), into: &e.hasReserve)
        case "buy_now": return read(integer(), into: &e.buyNow)
        case "pricing": return read(string(), into: &e.pricing)
        case "floor": return read(integer(), into: &e.floor)
        case "step": return read(integer(), into: &e.step)
        case "quantity": return read(integer(), into: &e.quantity)
        case "price": return read(integer(), into: &e.price)
        case "leader": return read(string(), into: &e.leader)
        case "bids": return read(integer(), into: &e.bids)
        case "reserve_met": return read(boolean(), into: &e.reserveMet)
        case "bidder": return read(string(), into: &e.bidder)
        case "winner": return read(string(), into: &e.winner)
        case "sold": return read(integer(), into: &e.sold)
        case "remaining": return read(integer(), into: &e.remaining)
        case "buyer": return read(string(), into: &e.buyer)
        case "buy_order": return read(string(), into: &e.buyOrder)
        case "sell_order": return read(string(), into: &e.sellOrder)
        case "settlement": return read(string(), into: &e.settlement)
        case "state": return read(string(), into: &e.state)
        case "due_at": return read(integer(), into: &e.dueAt)
        case "by": return read(string(), into: &e.by)
        case "role": return read(string(), into: &e.role)
        case "payment_ref": return read(string(), into: &e.paymentRef)
        case "tracking": return read(string(), into: &e.tracking)
        case "reason": return read(string(), into: &e.reason)
        case "outcome": return read(string(), into: &e.outcome)
        case "ok": return read(boolean(), into: &h.ok)
        case "error": return read(string(), into: &h.error)
        case "code": return read(string(), into: &h.code)
        case "message": return read(string(), into: &h.message)
        case "oldest_lsn": return read(integer(), into: &h.oldestLSN)
        case "chain": return read(string(), into: &h.chain)
        default: return skipValue()
        }
    }

    /// `value` is nil when the JSON value was not of the type, `.some(nil)` when it was null.
    private func read<T>(_ value: T??, into field: inout T?) -> Bool {
        guard let value else { return false }
        field = value
        return true
    }

    private mutating func skipSpace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private mutating func take(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    private mutating func literal(_ text: StaticString) -> Bool {
        let count = text.utf8CodeUnitCount
        guard bytes.count - index >= count else { return false }
        for offset in 0..<count where bytes[index + offset] != text.utf8Start[offset] { return false }
        index += count
        return true
    }

    private mutating func null() -> Bool { literal("null") }

    /// The bytes of a string without escapes (keys are such); nil otherwise.
    private mutating func rawString() -> UnsafeBufferPointer<UInt8>? {
        guard take(UInt8(ascii: "\"")) else { return nil }
        let start = index
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                return UnsafeBufferPointer(rebasing: bytes[start..<index - 1])
            }
            if byte == UInt8(ascii: "\\") || byte < 0x20 { return nil }
            index += 1
        }
        return nil
    }

    /// A string or null; nil when the value is neither.
    private mutating func string() -> String?? {
        if null() { return .some(nil) }
        let start = index
        if let raw = rawString() {
            guard let text = String(validating: raw, as: UTF8.self) else { return nil }
            return .some(text)
        }
        // Escapes (or a control character, which escapedString refuses): read it again, decoding.
        index = start
        guard take(UInt8(ascii: "\"")) else { return nil }
        return escapedString()
    }

    /// A string with escapes, from just after its opening quote.
    private mutating func escapedString() -> String?? {
        var out: [UInt8] = []
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                guard let text = String(validating: out, as: UTF8.self) else { return nil }
                return .some(text)
            case UInt8(ascii: "\\"):
                guard index < bytes.count else { return nil }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escape)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    guard var scalar = hex4() else { return nil }
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard literal("\\u"), let low = hex4(), (0xDC00..<0xE000).contains(low) else { return nil }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let unicode = Unicode.Scalar(scalar) else { return nil }
                    UTF8.encode(unicode) { out.append($0) }
                default: return nil
                }
            default:
                if byte < 0x20 { return nil }
                out.append(byte)
            }
        }
        return nil
    }

    private mutating func hex4() -> UInt32? {
        guard bytes.count - index >= 4 else { return nil }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            index += 1
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    /// An integer without fraction or exponent that fits Int64.
    private mutating func integer() -> Int64?? {
        if null() { return .some(nil) }
        let negative = take(UInt8(ascii: "-"))
        let start = index
        var magnitude: UInt64 = 0
        while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
            let (times, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times.addingReportingOverflow(UInt64(bytes[index] - UInt8(ascii: "0")))
            guard !o1, !o2 else { return nil }
            magnitude = sum
            index += 1
        }
        let digits = index - start
        guard digits > 0, digits == 1 || bytes[start] != UInt8(ascii: "0") else { return nil }
        if index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E"): return nil
            default: break
            }
        }
        if negative {
            guard magnitude <= UInt64(Int64.max) + 1 else { return nil }
            return .some(magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude))
        }
        guard magnitude <= UInt64(Int64.max) else { return nil }
        return .some(Int64(magnitude))
    }

    private mutating func boolean() -> Bool?? {
        if null() { return .some(nil) }
        if literal("true") { return .some(true) }
        if literal("false") { return .some(false) }
        return nil
    }

    /// Passes over any JSON value nested at most 64 deep; false when it is not one (or nested deeper).
    private mutating func skipValue(depth: Int = 0) -> Bool {
        guard index < bytes.count, depth < 64 else { return false }
        switch bytes[index] {
        case UInt8(ascii: "\""):
            guard case .some(.some) = string() else { return false }
            return true
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            let isObject = bytes[index] == UInt8(ascii: "{")
            let close = isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")
            index += 1
            skipSpace()
            if take(close) { return true }
            repeat {
                skipSpace()
                if isObject {
                    guard index < bytes.count, bytes[index] == UInt8(ascii: "\""), case .some(.some) = string() else {
                        return false
                    }
                    skipSpace()
                    guard take(UInt8(ascii: ":")) else { return false }
                    skipSpace()
                }
                guard skipValue(depth: depth + 1) else { return false }
                skipSpace()
            } while take(UInt8(ascii: ","))
            return take(close)
        case UInt8(ascii: "t"): return literal("true")
        case UInt8(ascii: "f"): return literal("false")
        case UInt8(ascii: "n"): return literal("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return skipNumber()
        default: return false
        }
    }

    /// A number as JSON writes it: `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`.
    private mutating func skipNumber() -> Bool {
        _ = take(UInt8(ascii: "-"))
        if !take(UInt8(ascii: "0")) {
            guard index < bytes.count, (UInt8(ascii: "1")...UInt8(ascii: "9")).contains(bytes[index]) else {
                return false
            }
            _ = skipDigits()
        }
        if take(UInt8(ascii: ".")) {
            guard skipDigits() else { return false }
        }
        if take(UInt8(ascii: "e")) || take(UInt8(ascii: "E")) {
            _ = take(UInt8(ascii: "+")) || take(UInt8(ascii: "-"))
            guard skipDigits() else { return false }
        }
        return true
    }

    /// Passes over digits; false when there is none.
    private mutating func skipDigits() -> Bool {
        let start = index
        while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
        return index > start
    }

}
