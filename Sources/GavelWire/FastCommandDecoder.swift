import GavelCore

/// A `bid` or `order` message read straight from its bytes by ``FastCommandDecoder``: the fields as written, before
/// the gateway fills in the actor from the connection.
public struct FastCommand: Sendable, Equatable {
    /// The two command types the fast path reads.
    public enum Kind: Sendable, Equatable {
        case bid
        case order
    }

    public var kind: Kind
    public var id: String
    public var listing: String
    /// The actor field (`bidder` of a bid, `trader` of an order) when the message gives it.
    public var actor: String?
    /// `on_behalf_of` when the message gives it (a valid identifier).
    public var onBehalfOf: String?
    /// A bid's `amount` or an order's `price`.
    public var amount: Int64
    /// An order's `quantity` (0 for a bid).
    public var quantity: Int64
    public var side: Side
    public var tif: TimeInForce
    public var expiresAt: Millis?

    /// The command type of the message (its `type`).
    public var commandKind: CommandKind {
        switch kind {
        case .bid: .bid
        case .order: .order
        }
    }

    /// The command, with `actor` as its bidder or trader.
    public func command(actor: String) -> Command {
        switch kind {
        case .bid:
            Command(id: id, listing: listing, body: .bid(bidder: actor, amount: amount))
        case .order:
            Command(
                id: id, listing: listing,
                body: .order(
                    trader: actor, side: side, price: amount, quantity: quantity, tif: tif, expiresAt: expiresAt))
        }
    }
}

/// Reads the well-formed shapes of a `bid` or `order` message straight from the received bytes, with no
/// intermediate JSON tree: only the command's own strings are made, and an identifier of at most 15 UTF-8 bytes is a
/// Swift small string, stored inline in the `String` value, so building it allocates nothing (``SmallASCII``). A
/// longer identifier (up to the limit of 64) costs one allocation.
///
/// It reads a message only when it understands all of it and the generic path (``JSONParser`` and
/// ``CommandDecoder``) would accept it: one JSON object of the type's known members, each at most once; string
/// values that are identifiers (or the `side`/`tif` words) written without escapes; integers of at most 18 digits
/// without fraction or exponent; JSON whitespace between tokens. Anything else (`at`, `null`, escapes, duplicate,
/// unknown or misspelled members, wrong types, other numbers, any byte outside ASCII, trailing text) gives `nil`,
/// and the caller takes the generic path, so every error message still comes from the code that writes it.
public enum FastCommandDecoder {
    /// The message in `bytes`, or `nil` when it must take the generic path (every string built; a function to pass
    /// where one argument is expected).
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> FastCommand? {
        decode(bytes, identifiers: nil, user: nil)
    }

    /// The message in `bytes`, or `nil` when it must take the generic path. Its listing and user names longer than
    /// 15 bytes come from `identifiers` when given (one per thread: an event loop's), so that a name sent again
    /// shares the storage of the first, and an actor spelled as `user` (the connection's own user) is `user`
    /// itself; the request id, new each time, is always built.
    public static func decode(
        _ bytes: UnsafeRawBufferPointer, identifiers: IdentifierCache? = nil, user: String? = nil
    ) -> FastCommand? {
        guard let base = bytes.baseAddress else { return nil }
        var scanner = Scanner(base: base.assumingMemoryBound(to: UInt8.self), count: bytes.count)
        return scanner.message(identifiers: identifiers, user: user)
    }

    /// The message in `bytes`, or `nil` when it must take the generic path.
    public static func decode(_ bytes: [UInt8]) -> FastCommand? {
        bytes.withUnsafeBytes { decode($0) }
    }

    /// What ``CommandDecoder/decode(_:actor:)`` gives for the same message with the same `actor` default, or `nil`
    /// when the message must take the generic path (also when the decoder would need `actor` and it is not an
    /// identifier).
    public static func decodedInput(_ bytes: [UInt8], actor: String?) -> DecodedInput? {
        guard let frame = decode(bytes) else { return nil }
        guard let given = frame.actor ?? actor, Identifier.isValid(given) else { return nil }
        return .command(frame.command(actor: given), at: nil)
    }
}

/// The members a message may hold, one bit each.
private enum Member: UInt16 {
    case type = 1
    case id = 2
    case listing = 4
    case bidder = 8
    case trader = 16
    case amount = 32
    case price = 64
    case quantity = 128
    case side = 256
    case tif = 512
    case expiresAt = 1024
    case onBehalfOf = 2048

    static let bid: UInt16 =
        Member.type.rawValue | Member.id.rawValue | Member.listing.rawValue
        | Member.bidder.rawValue | Member.amount.rawValue | Member.onBehalfOf.rawValue
    static let order: UInt16 =
        Member.type.rawValue | Member.id.rawValue | Member.listing.rawValue
        | Member.trader.rawValue | Member.price.rawValue | Member.quantity.rawValue | Member.side.rawValue
        | Member.tif.rawValue | Member.expiresAt.rawValue | Member.onBehalfOf.rawValue
}

/// Where a string value's bytes are in the message.
private struct Span {
    var start: UnsafePointer<UInt8>
    var count: Int
}

/// One pass over the message's bytes, through a pointer; a byte past the end reads as 0, which no token starts
/// with, so every check fails there.
private struct Scanner {
    let base: UnsafePointer<UInt8>
    let end: UnsafePointer<UInt8>
    var p: UnsafePointer<UInt8>
    var seen: UInt16 = 0
    var kind: FastCommand.Kind?
    var id: Span
    var listing: Span
    var actor: Span?
    var onBehalfOf: Span?
    var amount: Int64 = 0
    var quantity: Int64 = 0
    var side = Side.buy
    var tif = TimeInForce.gtc
    var expiresAt: Int64?

    init(base: UnsafePointer<UInt8>, count: Int) {
        self.base = base
        end = base + count
        p = base
        id = Span(start: base, count: 0)
        listing = id
    }

    mutating func message(identifiers: IdentifierCache?, user: String?) -> FastCommand? {
        skipWhitespace()
        guard take(UInt8(ascii: "{")) else { return nil }
        skipWhitespace()
        while true {
            guard member() else { return nil }
            skipWhitespace()
            if take(UInt8(ascii: ",")) {
                skipWhitespace()
                continue
            }
            guard take(UInt8(ascii: "}")) else { return nil }
            break
        }
        skipWhitespace()
        guard p == end, let kind else { return nil }
        let allowed: UInt16
        let required: UInt16
        switch kind {
        case .bid:
            allowed = Member.bid
            required = Member.id.rawValue | Member.listing.rawValue | Member.amount.rawValue
        case .order:
            allowed = Member.order
            required =
                Member.id.rawValue | Member.listing.rawValue | Member.price.rawValue | Member.quantity.rawValue
                | Member.side.rawValue
        }
        guard seen & ~allowed == 0, seen & required == required else { return nil }
        let small = SmallASCII.layoutHolds
        return FastCommand(
            kind: kind, id: string(id, small: small, cache: nil),
            listing: string(listing, small: small, cache: identifiers),
            actor: actor.map { span in
                if let user, span.count > SmallASCII.capacity,
                    IdentifierCache.holds(user, span.start, count: span.count)
                {
                    return user
                }
                return string(span, small: small, cache: identifiers)
            },
            onBehalfOf: onBehalfOf.map { string($0, small: small, cache: identifiers) },
            amount: amount, quantity: quantity, side: side, tif: tif, expiresAt: expiresAt)
    }

    /// The identifier at `span` (ASCII, checked by ``identifier()``) as a `String`: inline when it is short enough,
    /// else from `cache` when given.
    @inline(__always)
    func string(_ span: Span, small: Bool, cache: IdentifierCache?) -> String {
        if small, span.count <= SmallASCII.capacity {
            return SmallASCII.string(span.start, count: span.count, readableBefore: span.start - base)
        }
        if let cache { return cache.string(span.start, count: span.count) }
        return String(decoding: UnsafeBufferPointer(start: span.start, count: span.count), as: UTF8.self)
    }

    /// The byte at `p`, or 0 at the end.
    @inline(__always)
    func peek() -> UInt8 { p < end ? p.pointee : 0 }

    @inline(__always)
    mutating func take(_ byte: UInt8) -> Bool {
        guard peek() == byte else { return false }
        p += 1
        return true
    }

    @inline(__always)
    mutating func skipWhitespace() {
        while p < end {
            switch p.pointee {
            case 0x20, 0x09, 0x0A, 0x0D: p += 1
            default: return
            }
        }
    }

    /// One `"key": value` member; false when it is not one the fast path reads.
    mutating func member() -> Bool {
        guard take(UInt8(ascii: "\"")), let key = key() else { return false }
        guard seen & key.rawValue == 0 else { return false }
        seen |= key.rawValue
        skipWhitespace()
        guard take(UInt8(ascii: ":")) else { return false }
        skipWhitespace()
        switch key {
        case .type:
            guard let word = quotedWord() else { return false }
            switch word {
            case 0x626964: kind = .bid  // "bid"
            case 0x6F_7264_6572: kind = .order  // "order"
            default: return false
            }
        case .id:
            guard let span = identifier() else { return false }
            id = span
        case .listing:
            guard let span = identifier() else { return false }
            listing = span
        case .bidder, .trader:
            guard let span = identifier() else { return false }
            actor = span
        case .onBehalfOf:
            guard let span = identifier() else { return false }
            onBehalfOf = span
        case .amount, .price:
            guard let value = integer() else { return false }
            amount = value
        case .quantity:
            guard let value = integer() else { return false }
            quantity = value
        case .expiresAt:
            guard let value = integer() else { return false }
            expiresAt = value
        case .side:
            switch quotedWord() {
            case 0x627579: side = .buy  // "buy"
            case 0x7365_6C6C: side = .sell  // "sell"
            default: return false
            }
        case .tif:
            switch quotedWord() {
            case 0x677463: tif = .gtc  // "gtc"
            case 0x696F63: tif = .ioc  // "ioc"
            default: return false
            }
        }
        return true
    }

    /// A member name the fast path knows, written without escapes, with its closing quote: the next bytes are read
    /// as little-endian words (zeros past the end) and compared with the names' bytes.
    @inline(__always)
    mutating func key() -> Member? {
        let first = word(at: 0)
        let member: Member
        let length: Int
        switch UInt8(truncatingIfNeeded: first) {
        case UInt8(ascii: "i") where matches(first, 0x22_6469, count: 3):  // id"
            (member, length) = (.id, 3)
        case UInt8(ascii: "l") where first == 0x2267_6E69_7473_696C:  // listing"
            (member, length) = (.listing, 8)
        case UInt8(ascii: "a") where matches(first, 0x22_746E_756F_6D61, count: 7):  // amount"
            (member, length) = (.amount, 7)
        case UInt8(ascii: "b") where matches(first, 0x22_7265_6464_6962, count: 7):  // bidder"
            (member, length) = (.bidder, 7)
        case UInt8(ascii: "p") where matches(first, 0x2265_6369_7270, count: 6):  // price"
            (member, length) = (.price, 6)
        // quantity"
        case UInt8(ascii: "q") where first == 0x7974_6974_6E61_7571 && matches(word(at: 8), 0x22, count: 1):
            (member, length) = (.quantity, 9)
        case UInt8(ascii: "s") where matches(first, 0x22_6564_6973, count: 5):  // side"
            (member, length) = (.side, 5)
        case UInt8(ascii: "e") where first == 0x5F73_6572_6970_7865 && matches(word(at: 8), 0x22_7461, count: 3):
            (member, length) = (.expiresAt, 11)  // expires_at"
        case UInt8(ascii: "o") where first == 0x6C61_6865_625F_6E6F && matches(word(at: 8), 0x22_666F_5F66, count: 5):
            (member, length) = (.onBehalfOf, 13)  // on_behalf_of"
        case UInt8(ascii: "t"):
            if matches(first, 0x22_6570_7974, count: 5) {  // type"
                (member, length) = (.type, 5)
            } else if matches(first, 0x22_7265_6461_7274, count: 7) {  // trader"
                (member, length) = (.trader, 7)
            } else if matches(first, 0x2266_6974, count: 4) {  // tif"
                (member, length) = (.tif, 4)
            } else {
                return nil
            }
        default:
            return nil
        }
        p += length
        return member
    }

    /// The 8 bytes from `p + offset` as a little-endian word; bytes past the end read as 0.
    @inline(__always)
    func word(at offset: Int) -> UInt64 {
        let start = p + offset
        if end - start >= 8 { return UInt64(littleEndian: UnsafeRawPointer(start).loadUnaligned(as: UInt64.self)) }
        var value: UInt64 = 0
        var i = 0
        while start + i < end {
            value |= UInt64(start[i]) << (UInt64(i) * 8)
            i += 1
        }
        return value
    }

    /// Whether the first `count` bytes (1-7) of `value` are those of `expected`, both little-endian words: the
    /// member names' bytes, their closing quote included, written as hexadecimal words (first byte lowest).
    @inline(__always)
    func matches(_ value: UInt64, _ expected: UInt64, count: Int) -> Bool {
        value & ((1 << UInt64(count * 8)) - 1) == expected
    }

    /// A string of 1-64 identifier characters (``Identifier``) without escapes: where its bytes are.
    @inline(__always)
    mutating func identifier() -> Span? {
        guard take(UInt8(ascii: "\"")) else { return nil }
        let start = p
        while p < end, Identifier.isValidByte(p.pointee) { p += 1 }
        let count = p - start
        guard Identifier.isValidLength(count), take(UInt8(ascii: "\"")) else { return nil }
        return Span(start: start, count: count)
    }

    /// A quoted word of 1-5 lowercase letters, packed big-endian into an integer ("bid" is 0x626964).
    mutating func quotedWord() -> UInt64? {
        guard take(UInt8(ascii: "\"")) else { return nil }
        var word: UInt64 = 0
        var count = 0
        while p < end {
            let byte = p.pointee
            p += 1
            if byte == UInt8(ascii: "\"") { return count > 0 ? word : nil }
            guard byte >= UInt8(ascii: "a"), byte <= UInt8(ascii: "z"), count < 5 else { return nil }
            word = word << 8 | UInt64(byte)
            count += 1
        }
        return nil
    }

    /// A JSON integer (`-?(0|[1-9][0-9]*)`, no fraction or exponent) of at most 18 digits, which always fits in 64
    /// bits; it must be followed by whitespace, `,` or `}`. `-0` is 0, as `Int64("-0")` reads it.
    mutating func integer() -> Int64? {
        let negative = take(UInt8(ascii: "-"))
        var value: Int64 = 0
        var digits = 0
        if peek() == UInt8(ascii: "0") {
            p += 1
            digits = 1
        } else {
            while p < end {
                let digit = p.pointee &- UInt8(ascii: "0")
                guard digit < 10 else { break }
                value = value &* 10 &+ Int64(digit)
                digits += 1
                p += 1
            }
        }
        guard digits > 0, digits <= 18 else { return nil }
        switch peek() {
        case 0x20, 0x09, 0x0A, 0x0D, UInt8(ascii: ","), UInt8(ascii: "}"): break
        default: return nil
        }
        return negative ? -value : value
    }
}
