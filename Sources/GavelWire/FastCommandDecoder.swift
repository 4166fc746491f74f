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

    /// The message's `type`.
    public var type: String {
        switch kind {
        case .bid: "bid"
        case .order: "order"
        }
    }

    /// The name of the actor field.
    public var actorField: String {
        switch kind {
        case .bid: "bidder"
        case .order: "trader"
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
/// intermediate JSON tree: only the command's own strings are made (an identifier of at most 15 UTF-8 bytes is a
/// Swift small string, so building it allocates nothing).
///
/// It reads a message only when it understands all of it and the generic path (``JSONParser`` and
/// ``CommandDecoder``) would accept it: one JSON object of the type's known members, each at most once; string
/// values that are identifiers (or the `side`/`tif` words) written without escapes; integers of at most 18 digits
/// without fraction or exponent; JSON whitespace between tokens. Anything else (`at`, `null`, escapes, duplicate,
/// unknown or misspelled members, wrong types, other numbers, any byte outside ASCII, trailing text) gives `nil`,
/// and the caller takes the generic path, so every error message still comes from the code that writes it.
public enum FastCommandDecoder {
    /// The message in `bytes`, or `nil` when it must take the generic path.
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> FastCommand? {
        var scanner = Scanner(bytes: bytes)
        return scanner.message()
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

private struct Scanner {
    let bytes: UnsafeRawBufferPointer
    var index = 0
    var seen: UInt16 = 0
    var kind: FastCommand.Kind?
    var id: Range<Int> = 0..<0
    var listing: Range<Int> = 0..<0
    var actor: Range<Int>?
    var onBehalfOf: Range<Int>?
    var amount: Int64 = 0
    var quantity: Int64 = 0
    var side = Side.buy
    var tif = TimeInForce.gtc
    var expiresAt: Int64?

    init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    mutating func message() -> FastCommand? {
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
        guard index == bytes.count, let kind else { return nil }
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
        return FastCommand(
            kind: kind, id: string(id), listing: string(listing), actor: actor.map(string),
            onBehalfOf: onBehalfOf.map(string), amount: amount, quantity: quantity, side: side, tif: tif,
            expiresAt: expiresAt)
    }

    func string(_ range: Range<Int>) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self)
    }

    @inline(__always)
    mutating func take(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    @inline(__always)
    mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    /// One `"key": value` member; false when it is not one the fast path reads.
    mutating func member() -> Bool {
        guard let key = key() else { return false }
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
            guard let range = identifier() else { return false }
            id = range
        case .listing:
            guard let range = identifier() else { return false }
            listing = range
        case .bidder, .trader:
            guard let range = identifier() else { return false }
            actor = range
        case .onBehalfOf:
            guard let range = identifier() else { return false }
            onBehalfOf = range
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

    /// A member name the fast path knows, written without escapes.
    mutating func key() -> Member? {
        guard take(UInt8(ascii: "\"")) else { return nil }
        let start = index
        while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
            let byte = bytes[index]
            guard byte == UInt8(ascii: "_") || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) else {
                return nil
            }
            index += 1
        }
        guard index < bytes.count else { return nil }
        let name = UnsafeRawBufferPointer(rebasing: bytes[start..<index])
        index += 1
        switch name.count {
        case 2: return Self.equal(name, "id") ? .id : nil
        case 3: return Self.equal(name, "tif") ? .tif : nil
        case 4:
            if Self.equal(name, "type") { return .type }
            if Self.equal(name, "side") { return .side }
            return nil
        case 5: return Self.equal(name, "price") ? .price : nil
        case 6:
            if Self.equal(name, "bidder") { return .bidder }
            if Self.equal(name, "trader") { return .trader }
            if Self.equal(name, "amount") { return .amount }
            return nil
        case 7: return Self.equal(name, "listing") ? .listing : nil
        case 8: return Self.equal(name, "quantity") ? .quantity : nil
        case 10: return Self.equal(name, "expires_at") ? .expiresAt : nil
        case 12: return Self.equal(name, "on_behalf_of") ? .onBehalfOf : nil
        default: return nil
        }
    }

    @inline(__always)
    static func equal(_ name: UnsafeRawBufferPointer, _ word: StaticString) -> Bool {
        word.withUTF8Buffer { expected in
            name.count == expected.count && memcmpEqual(name, expected)
        }
    }

    @inline(__always)
    static func memcmpEqual(_ a: UnsafeRawBufferPointer, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        for i in 0..<b.count where a[i] != b[i] { return false }
        return true
    }

    /// A string of 1-64 identifier characters (``Identifier``) without escapes: its bytes between the quotes.
    mutating func identifier() -> Range<Int>? {
        guard take(UInt8(ascii: "\"")) else { return nil }
        let start = index
        while index < bytes.count, Identifier.isValidByte(bytes[index]) { index += 1 }
        let count = index - start
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\""), count >= 1, count <= Limits.maxIdentifierLength
        else { return nil }
        index += 1
        return start..<(index - 1)
    }

    /// A quoted word of 1-5 lowercase letters, packed big-endian into an integer ("bid" is 0x626964).
    mutating func quotedWord() -> UInt64? {
        guard take(UInt8(ascii: "\"")) else { return nil }
        var word: UInt64 = 0
        var count = 0
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
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
        guard index < bytes.count else { return nil }
        var value: Int64 = 0
        var digits = 0
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            digits = 1
        } else {
            while index < bytes.count {
                let byte = bytes[index]
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { break }
                value = value &* 10 &+ Int64(byte &- UInt8(ascii: "0"))
                digits += 1
                index += 1
            }
        }
        guard digits > 0, digits <= 18, index < bytes.count else { return nil }
        switch bytes[index] {
        case 0x20, 0x09, 0x0A, 0x0D, UInt8(ascii: ","), UInt8(ascii: "}"): break
        default: return nil
        }
        return negative ? -value : value
    }
}
