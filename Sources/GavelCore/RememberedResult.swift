/// A remembered result, with its request id and the digest of the command that produced it. Its principal is named
/// by its chain (``principalSlot``), once however many ids the principal has.
///
/// One is kept per remembered request id (10^6 by default), so its layout is what the idempotency table costs: the
/// id inline (``StoredID``: no heap allocation up to 23 bytes, nor for a UUID), the result as the numbers of an
/// accepted command (``StoredResult``; a result with a message or a settlement is a shared box), the chain link and
/// the principal as 32-bit slots, and of the key's hash the 32 bits the index uses. 72 bytes (the id in 24 and the
/// result in 16, neither with a tag byte of its own), where a `String` id, a ``CommandResult``, the whole hash, a
/// 64-bit sequence and 64-bit links took 160, and a heap block for an id over 15 bytes.
struct RememberedResult {
    var fingerprint: UInt64
    var at: Millis
    /// How many times the slot was freed (wrapping): the reference in the order of application to the result in it
    /// holds the same (``RememberedRef``).
    var generation: UInt32 = 0
    /// The low 32 bits of ``RequestHash`` of the principal and the id: all the idempotency index keeps of it
    /// (``RequestTable``).
    private var storedHash: UInt32
    private var storedNext: Int32 = -1
    private var storedPrincipalSlot: Int32 = -1
    var storedID: StoredID
    var storedResult: StoredResult

    init(id: StoredID, hash: UInt64, fingerprint: UInt64, result: StoredResult, at: Millis) {
        self.storedID = id
        self.storedHash = UInt32(truncatingIfNeeded: hash)
        self.fingerprint = fingerprint
        self.storedResult = result
        self.at = at
    }

    init(id: String, hash: UInt64, fingerprint: UInt64, result: CommandResult, at: Millis) {
        self.init(id: StoredID(id), hash: hash, fingerprint: fingerprint, result: StoredResult(result), at: at)
    }

    /// The request id.
    var id: String { storedID.string }

    /// The low 32 bits of ``RequestHash`` of the principal and the id, under which the idempotency index holds the
    /// entry.
    var hash: UInt64 { UInt64(storedHash) }

    /// The result remembered.
    var result: CommandResult {
        get { storedResult.result }
        set { storedResult = StoredResult(newValue) }
    }

    /// The slot of the same principal's next remembered result, -1 for none; in a free slot, the next free one.
    var next: Int {
        get { Int(storedNext) }
        set { storedNext = Int32(newValue) }
    }

    /// Where its principal's chain is in ``PrincipalChains`` (set when remembered).
    var principalSlot: Int {
        get { Int(storedPrincipalSlot) }
        set { storedPrincipalSlot = Int32(newValue) }
    }

    /// What a free slot holds: no strings and no box, so forgetting a result releases its memory.
    static let free = RememberedResult(
        id: StoredID.inline(0, 0, 0, 0, 0, .l0), hash: 0, fingerprint: 0,
        result: StoredResult.empty, at: 0)
}

/// A request id as a remembered result keeps it: up to ``inlineCapacity`` bytes in 24 (the length in the last byte),
/// a UUID in its canonical text form (36 characters, hex digits all lowercase or all uppercase) as its 16 bytes, any
/// other id as its `String` (a heap block besides). A given id always takes the same form, so two are equal exactly
/// when their forms are.
///
/// The inline bytes are split into fields whose last, the form, is an enum of 26 cases: its unused bits tell the two
/// cases apart, so the id takes 24 bytes, not 25 (a tag byte, and 7 of padding in a remembered result).
enum StoredID: Equatable {
    case inline(UInt64, UInt64, UInt32, UInt16, UInt8, InlineForm)
    case long(String)

    /// The longest id kept inline as its bytes.
    static let inlineCapacity = 23

    /// What the inline fields hold: an id of 0 to 23 bytes, or a UUID's 16 bytes and the case of its hex digits.
    enum InlineForm: UInt8 {
        case l0, l1, l2, l3, l4, l5, l6, l7, l8, l9, l10, l11, l12, l13, l14, l15, l16, l17, l18, l19, l20, l21,
            l22, l23
        case uuidLowercase, uuidUppercase
    }

    init(_ id: String) {
        var id = id
        let inline = id.withUTF8 { bytes -> StoredID? in
            if bytes.count == 36, let uuid = Self.uuid(bytes) { return uuid }
            guard bytes.count <= Self.inlineCapacity else { return nil }
            var words: (UInt64, UInt64, UInt64) = (0, 0, 0)
            return withUnsafeMutableBytes(of: &words) { raw in
                raw.copyMemory(from: UnsafeRawBufferPointer(bytes))
                return .inline(
                    raw.loadUnaligned(as: UInt64.self), raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
                    raw.loadUnaligned(fromByteOffset: 16, as: UInt32.self),
                    raw.loadUnaligned(fromByteOffset: 20, as: UInt16.self), raw[22],
                    InlineForm(rawValue: UInt8(bytes.count))!)
            }
        }
        self = inline ?? .long(id)
    }

    /// Whether position `at` of a UUID's canonical text (`8-4-4-4-12`) holds a dash.
    @inline(__always)
    private static func isDash(_ at: Int) -> Bool { at == 8 || at == 13 || at == 18 || at == 23 }

    /// `bytes` as a UUID's 16 bytes when they are a UUID's canonical text (`8-4-4-4-12` hex digits, letters all of
    /// one case; digits only count as lowercase); `nil` otherwise.
    private static func uuid(_ bytes: UnsafeBufferPointer<UInt8>) -> StoredID? {
        var high: UInt64 = 0
        var low: UInt64 = 0
        var lower = false
        var upper = false
        var digits = 0
        for (at, byte) in bytes.enumerated() {
            if Self.isDash(at) {
                guard byte == UInt8(ascii: "-") else { return nil }
                continue
            }
            let value: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"):
                value = byte - UInt8(ascii: "a") + 10
                lower = true
            case UInt8(ascii: "A")...UInt8(ascii: "F"):
                value = byte - UInt8(ascii: "A") + 10
                upper = true
            default: return nil
            }
            if digits < 16 { high = high << 4 | UInt64(value) } else { low = low << 4 | UInt64(value) }
            digits += 1
        }
        guard digits == 32, !(lower && upper) else { return nil }
        return .inline(high, low, 0, 0, 0, upper ? .uuidUppercase : .uuidLowercase)
    }

    /// The id.
    var string: String {
        switch self {
        case .long(let id):
            return id
        case .inline(let high, let low, _, _, _, let form) where form == .uuidLowercase || form == .uuidUppercase:
            let letters = UInt8(ascii: form == .uuidUppercase ? "A" : "a")
            return String(unsafeUninitializedCapacity: 36) { out in
                var digit = 0
                for at in 0..<36 {
                    if Self.isDash(at) {
                        out[at] = UInt8(ascii: "-")
                        continue
                    }
                    let word = digit < 16 ? high : low
                    let value = UInt8(truncatingIfNeeded: word >> UInt64(4 * (15 - digit % 16))) & 0xF
                    out[at] = value < 10 ? UInt8(ascii: "0") + value : letters + value - 10
                    digit += 1
                }
                return 36
            }
        case .inline(let a, let b, let c, let d, let e, let form):
            var words: (UInt64, UInt64, UInt64) = (0, 0, 0)
            return withUnsafeMutableBytes(of: &words) { raw in
                raw.storeBytes(of: a, as: UInt64.self)
                raw.storeBytes(of: b, toByteOffset: 8, as: UInt64.self)
                raw.storeBytes(of: c, toByteOffset: 16, as: UInt32.self)
                raw.storeBytes(of: d, toByteOffset: 20, as: UInt16.self)
                raw[22] = e
                return String(decoding: raw[..<Int(form.rawValue)], as: UTF8.self)
            }
        }
    }
}

/// A remembered ``CommandResult``: an accepted result with no message and no settlement (every accepted bid and
/// open; accepts and orders whose quantities fit 32 bits) in 16 bytes, any other in a box that equal results may
/// share.
enum StoredResult: Sendable {
    /// An accepted result: the price in bits 0-49 of the first word (every amount is at most 10^15 < 2^50), which
    /// numbers are present (``Bits``) and the quantity left's top 8 bits in its bits 56-63; the quantity filled; the
    /// quantity left's low 24 bits (16 and 8); and whether the bidder leads. The last field's unused bits tell the
    /// two cases apart, so a result takes 16 bytes, not 17 (a tag byte, and 7 of padding in a remembered result).
    case accepted(UInt64, UInt32, UInt16, UInt8, Leading)
    case other(ResultBox)

    /// ``CommandResult/leading``.
    enum Leading: UInt8 {
        case absent, no, yes
    }

    /// The flags of ``accepted(_:_:_:_:_:)``'s first word.
    enum Bits {
        static let priceMask: UInt64 = (1 << 50) - 1
        static let price: UInt64 = 1 << 50
        static let filled: UInt64 = 1 << 53
        static let remaining: UInt64 = 1 << 54
        /// Where the quantity left's top 8 bits are.
        static let remainingHighShift: UInt64 = 56
    }

    /// What a free slot holds.
    static let empty = StoredResult.accepted(0, 0, 0, 0, .absent)

    init(_ result: CommandResult) {
        if let inline = Self.inline(result) {
            self = inline
        } else {
            self = .other(ResultBox(result))
        }
    }

    /// `result` in 16 bytes, or `nil` when it needs a box.
    @inline(__always)
    static func inline(_ result: CommandResult) -> StoredResult? {
        guard result.error == nil, result.message.isEmpty, result.settlement == nil, result.settlementState == nil,
            result.minBid == nil, !result.duplicate, !result.requestIDConflict
        else { return nil }
        var flags: UInt64 = 0
        var filled: UInt32 = 0
        var remaining: UInt32 = 0
        if let price = result.price {
            guard price >= 0 && UInt64(price) <= Bits.priceMask else { return nil }
            flags |= UInt64(price) | Bits.price
        }
        let leading: Leading = result.leading.map { $0 ? .yes : .no } ?? .absent
        if let quantity = result.filled {
            guard quantity >= 0 && quantity <= Int64(UInt32.max) else { return nil }
            flags |= Bits.filled
            filled = UInt32(quantity)
        }
        if let quantity = result.remaining {
            guard quantity >= 0 && quantity <= Int64(UInt32.max) else { return nil }
            flags |= Bits.remaining
            remaining = UInt32(quantity)
        }
        flags |= UInt64(remaining >> 24) << Bits.remainingHighShift
        return .accepted(
            flags, filled, UInt16(truncatingIfNeeded: remaining), UInt8(truncatingIfNeeded: remaining >> 16), leading)
    }

    /// The result.
    var result: CommandResult {
        switch self {
        case .other(let box):
            return box.result
        case .accepted(let flags, let filled, let remainingLow, let remainingMiddle, let leading):
            var result = CommandResult.accepted
            if flags & Bits.price != 0 { result.price = Money(flags & Bits.priceMask) }
            switch leading {
            case .absent: break
            case .no: result.leading = false
            case .yes: result.leading = true
            }
            if flags & Bits.filled != 0 { result.filled = Int64(filled) }
            if flags & Bits.remaining != 0 {
                result.remaining =
                    Int64(flags >> Bits.remainingHighShift) << 24 | Int64(remainingMiddle) << 16 | Int64(remainingLow)
            }
            return result
        }
    }
}

/// A command's result as the idempotency table keeps it: the numbers of an accepted result in 16 bytes, any other in
/// a box shared with equal results remembered close by (``StoredResult``), and whether it answers a duplicate.
/// The writer's batch entries hold results this way: 17 bytes that copy without a call, where a ``CommandResult``
/// (about 100 bytes, two strings) was copied three times with `memcpy` into each entry and its strings released
/// when the batch was reset. ``result`` gives the ``CommandResult`` back, equal to the one the engine returned.
public struct PackedResult: Sendable {
    let stored: StoredResult
    /// Whether the result answers a duplicate of a remembered request (``CommandResult/duplicate``).
    public let duplicate: Bool

    init(stored: StoredResult, duplicate: Bool) {
        self.stored = stored
        self.duplicate = duplicate
    }

    /// `result`, packed.
    public init(_ result: CommandResult) {
        var unmarked = result
        unmarked.duplicate = false
        self.init(stored: StoredResult(unmarked), duplicate: result.duplicate)
    }

    /// The result.
    public var result: CommandResult {
        var result = stored.result
        if duplicate { result.duplicate = true }
        return result
    }

    /// Whether the command was accepted (``CommandResult/ok``).
    public var ok: Bool {
        switch stored {
        case .accepted: true
        case .other(let box): box.result.ok
        }
    }

    /// What the idempotency table answered (``CommandResult/requestOutcome``).
    public var requestOutcome: RequestOutcome {
        if duplicate { return .duplicate }
        guard case .other(let box) = stored else { return .applied }
        return box.result.requestOutcome
    }
}

/// A remembered result that is not inline. Immutable, so that equal results remembered close together share one.
final class ResultBox: Sendable {
    let result: CommandResult

    init(_ result: CommandResult) { self.result = result }
}

/// The boxes of the results remembered last, by their hash, so that equal results (a burst of the
/// same refusal) share one box and one message instead of each keeping a copy: a fixed number of entries, so it
/// never grows.
struct ResultBoxes {
    private var recent = [ResultBox?](repeating: nil, count: 256)

    /// `result` as a remembered result keeps it, sharing a recent box with an equal result.
    mutating func store(_ result: CommandResult) -> StoredResult {
        if let inline = StoredResult.inline(result) { return inline }
        var hasher = Hasher()
        hasher.combine(result)
        let index = hasher.finalize() & (recent.count - 1)
        if let box = recent[index], box.result == result { return .other(box) }
        let box = ResultBox(result)
        recent[index] = box
        return .other(box)
    }
}
