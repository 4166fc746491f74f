/// Why bytes could not be decoded.
public struct DecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    public var offset: Int
    public var reason: String
    public init(offset: Int, reason: String) {
        self.offset = offset
        self.reason = reason
    }
    public var description: String { "cannot decode at byte \(offset): \(reason)" }
}

/// Reads values in the encoding of ``BinaryWriter``, checking every length against the bytes that remain.
public struct BinaryReader {
    public let bytes: [UInt8]
    public private(set) var offset: Int
    private let end: Int
    /// Where ``readIdentifier()`` takes the identifiers too long to be stored inline from, when set.
    public var identifiers: IdentifierCache?
    /// The slots of the ``identifiers`` cache ``readIdentifier()`` makes at the first long name, when none is set:
    /// bytes whose names are all short (inline strings) cost no cache.
    public var identifierSlotsWhenNeeded: Int?

    public init(_ bytes: [UInt8], offset: Int = 0, end: Int? = nil, identifiers: IdentifierCache? = nil) {
        self.bytes = bytes
        self.offset = offset
        self.end = end ?? bytes.count
        self.identifiers = identifiers
    }

    /// Whether every byte has been read.
    public var isAtEnd: Bool { offset >= end }

    public var remaining: Int { end - offset }

    func fail(_ reason: String) -> DecodingError { DecodingError(offset: offset, reason: reason) }

    public mutating func readByte() throws(DecodingError) -> UInt8 {
        guard offset < end else { throw fail("unexpected end of data") }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func readBool() throws(DecodingError) -> Bool {
        switch try readByte() {
        case 0: return false
        case 1: return true
        default: throw fail("invalid boolean")
        }
    }

    public mutating func readUInt32() throws(DecodingError) -> UInt32 {
        guard let value = peekUInt32() else { throw fail("unexpected end of data") }
        offset += 4
        return value
    }

    /// The `UInt32` ``readUInt32()`` would read next, without reading it; `nil` when fewer than 4 bytes are left.
    private func peekUInt32() -> UInt32? {
        guard end - offset >= 4 else { return nil }
        var value: UInt32 = 0
        for i in 0..<4 { value |= UInt32(bytes[offset + i]) << (8 * UInt32(i)) }
        return value
    }

    public mutating func readUInt64() throws(DecodingError) -> UInt64 {
        guard end - offset >= 8 else { throw fail("unexpected end of data") }
        var value: UInt64 = 0
        for i in 0..<8 { value |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
        offset += 8
        return value
    }

    public mutating func readInt64() throws(DecodingError) -> Int64 { Int64(bitPattern: try readUInt64()) }

    public mutating func readString() throws(DecodingError) -> String {
        try readString(interning: nil)
    }

    /// A string that names something the journal and the state mention again and again (a listing, a user): read as
    /// ``readString()``, but one of more than 15 ASCII bytes comes from ``identifiers`` when it is set, so that the
    /// same name read twice shares one storage.
    public mutating func readIdentifier() throws(DecodingError) -> String {
        if identifiers == nil, let slots = identifierSlotsWhenNeeded, let count = peekUInt32(),
            count > SmallASCII.capacity
        {
            identifiers = IdentifierCache(slotCount: slots)
        }
        return try readString(interning: identifiers)
    }

    @inline(__always)
    private mutating func readString(interning cache: IdentifierCache?) throws(DecodingError) -> String {
        let count = Int(try readUInt32())
        guard count <= end - offset else { throw fail("string length \(count) exceeds the data") }
        // Identifiers are ASCII: checking that and building the string from the bytes skips the generic validating
        // initialiser (a metadata lookup per call); anything else takes the validating path. One of at most 15
        // bytes (every identifier in a journal of bids) is built as the inline value the standard library makes of
        // it (``SmallASCII``), without `String(decoding:as:)` checking the bytes again and copying them.
        let start = offset
        let ascii: String? = bytes.withUnsafeBufferPointer { all in
            let utf8 = UnsafeBufferPointer(rebasing: all[start..<start + count])
            var high: UInt8 = 0
            for byte in utf8 { high |= byte }
            guard high < 0x80 else { return nil }
            if count <= SmallASCII.capacity, SmallASCII.layoutHolds {
                return SmallASCII.string(all.baseAddress! + start, count: count, readableBefore: start)
            }
            if let cache { return cache.string(all.baseAddress! + start, count: count) }
            return String(decoding: utf8, as: UTF8.self)
        }
        guard let s = ascii ?? String(validating: bytes[offset..<offset + count], as: UTF8.self) else {
            throw fail("invalid UTF-8")
        }
        offset += count
        return s
    }

    public mutating func readBytes(_ count: Int) throws(DecodingError) -> ArraySlice<UInt8> {
        guard count >= 0, count <= end - offset else { throw fail("length \(count) exceeds the data") }
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    public mutating func readOptionalInt64() throws(DecodingError) -> Int64? {
        try readBool() ? try readInt64() : nil
    }

    public mutating func readOptionalString() throws(DecodingError) -> String? {
        try readBool() ? try readString() : nil
    }

    /// A count of following items, each at least `minimumSize` bytes, checked against what remains.
    public mutating func readCount(minimumSize: Int = 1) throws(DecodingError) -> Int {
        let count = try readUInt64()
        guard count <= UInt64(max(remaining, 0) / max(minimumSize, 1)) else {
            throw fail("count \(count) exceeds the data")
        }
        return Int(count)
    }
}

extension ListingTerms {
    /// Reads terms written by ``encode(into:)``.
    public static func decode(from r: inout BinaryReader) throws(DecodingError) -> ListingTerms {
        switch try r.readByte() {
        case 0:
            let start = try r.readInt64()
            let reserve = try r.readOptionalInt64()
            let buyNow = try r.readOptionalInt64()
            let closesAt = try r.readInt64()
            let opensAt = try r.readOptionalInt64()
            var ladder: [IncrementStep]?
            if try r.readBool() {
                let count = Int(try r.readUInt32())
                guard count <= r.remaining / 16 else { throw r.fail("ladder length \(count) exceeds the data") }
                var steps: [IncrementStep] = []
                for _ in 0..<count { steps.append(IncrementStep(from: try r.readInt64(), step: try r.readInt64())) }
                ladder = steps
            }
            var soft: SoftClose?
            if try r.readBool() {
                soft = SoftClose(
                    windowMs: try r.readInt64(), extendMs: try r.readInt64(), maxClosesAt: try r.readOptionalInt64())
            }
            return .english(
                .init(
                    start: start, reserve: reserve, buyNow: buyNow, closesAt: closesAt, opensAt: opensAt,
                    increments: ladder, softClose: soft))
        case 1:
            let pricing: SealedPricing = try r.readByte() == 0 ? .first : .second
            return .sealed(
                .init(
                    pricing: pricing, start: try r.readInt64(), reserve: try r.readOptionalInt64(),
                    closesAt: try r.readInt64(), opensAt: try r.readOptionalInt64()))
        case 2:
            return .dutch(
                .init(
                    start: try r.readInt64(), floor: try r.readInt64(), step: try r.readInt64(),
                    stepEveryMs: try r.readInt64(), quantity: try r.readInt64(), closesAt: try r.readInt64(),
                    opensAt: try r.readOptionalInt64()))
        case 3:
            return .market(.init(closesAt: try r.readOptionalInt64(), opensAt: try r.readOptionalInt64()))
        default:
            throw r.fail("unknown listing format")
        }
    }
}

extension Command {
    /// Reads a command written by ``encode(into:)``.
    public static func decode(from r: inout BinaryReader) throws(DecodingError) -> Command {
        let id = try r.readString()
        let listing = try r.readIdentifier()
        let body: CommandBody
        switch try r.readByte() {
        case 0: body = .open(seller: try r.readIdentifier(), terms: try ListingTerms.decode(from: &r))
        case 1: body = .bid(bidder: try r.readIdentifier(), amount: try r.readInt64())
        case 2: body = .buyNow(buyer: try r.readIdentifier())
        case 3: body = .accept(bidder: try r.readIdentifier(), quantity: try r.readInt64())
        case 4:
            let trader = try r.readIdentifier()
            let side: Side = try r.readByte() == 0 ? .buy : .sell
            let price = try r.readInt64()
            let quantity = try r.readInt64()
            let tif: TimeInForce = try r.readByte() == 0 ? .gtc : .ioc
            body = .order(
                trader: trader, side: side, price: price, quantity: quantity, tif: tif,
                expiresAt: try r.readOptionalInt64())
        case 5: body = .cancel(trader: try r.readIdentifier(), order: try r.readString())
        case 6: body = .cancelListing(seller: try r.readIdentifier())
        case 7:
            let seller = try r.readIdentifier()
            var terms = try ListingTerms.decode(from: &r)
            terms.deadlines = try SettlementDeadlines.decode(from: &r)
            body = .open(seller: seller, terms: terms)
        case 8: body = .cancelListingAsAdmin(admin: try r.readIdentifier())
        case 9:
            let by = try r.readIdentifier()
            let role = try Self.readRole(&r)
            let number = try r.readInt64()
            body = .settle(number: number, action: try SettlementAction.decode(from: &r), by: by, role: role)
        case 10:
            let by = try r.readIdentifier()
            let role = try Self.readRole(&r)
            guard let action = OfferAction(code: try r.readByte()) else { throw r.fail("unknown offer action") }
            body = .secondChance(action, by: by, role: role)
        default: throw r.fail("unknown command type")
        }
        return Command(id: id, listing: listing, body: body)
    }

    private static func readRole(_ r: inout BinaryReader) throws(DecodingError) -> ActorRole {
        guard let role = ActorRole(code: try r.readByte()) else { throw r.fail("unknown role") }
        return role
    }
}

extension CommandResult {
    /// Reads a result written by ``encode(into:)``.
    public static func decode(from r: inout BinaryReader) throws(DecodingError) -> CommandResult {
        var error: ErrorCode?
        if let code = try r.readOptionalString() {
            guard let known = ErrorCode(rawValue: code) else { throw r.fail("unknown error code \(code)") }
            error = known
        }
        let message = try r.readString()
        let minBid = try r.readOptionalInt64()
        let price = try r.readOptionalInt64()
        let leading = try r.readOptionalInt64().map { $0 != 0 }
        let filled = try r.readOptionalInt64()
        let remaining = try r.readOptionalInt64()
        return CommandResult(
            error: error, message: message, minBid: minBid, price: price, leading: leading, filled: filled,
            remaining: remaining)
    }
}
