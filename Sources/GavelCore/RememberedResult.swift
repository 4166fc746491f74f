/// A remembered result, with its request id and the digest of the command that produced it. Its principal is named
/// by its chain (``principalSlot``), once however many ids the principal has.
///
/// One is kept per remembered request id (10^6 by default), so its layout is what the idempotency table costs: the
/// id inline (``StoredID``: no heap allocation up to 23 bytes), the result as the numbers of an accepted command
/// (``StoredResult``; a result with a message or a settlement is a shared box), the chain link and the principal as
/// 32-bit slots, and of the key's hash the 32 bits the index uses. 88 bytes, where a `String` id, a
/// ``CommandResult``, the whole hash, a 64-bit sequence and 64-bit links took 160, and a heap block for an id over
/// 15 bytes.
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
        id: StoredID.inline(0, 0, 0), hash: 0, fingerprint: 0,
        result: StoredResult.empty, at: 0)
}

/// A request id as a remembered result keeps it: up to ``inlineCapacity`` bytes in three words (the length in the
/// last byte), a longer one as its `String`. A given id always takes the same form, so two are equal exactly when
/// their forms are.
enum StoredID: Equatable {
    case inline(UInt64, UInt64, UInt64)
    case long(String)

    /// The longest id kept inline, in bytes.
    static let inlineCapacity = 23

    init(_ id: String) {
        var id = id
        let inline = id.withUTF8 { bytes -> (UInt64, UInt64, UInt64)? in
            guard bytes.count <= Self.inlineCapacity else { return nil }
            var words: (UInt64, UInt64, UInt64) = (0, 0, 0)
            withUnsafeMutableBytes(of: &words) { raw in
                raw.copyMemory(from: UnsafeRawBufferPointer(bytes))
                raw[Self.inlineCapacity] = UInt8(bytes.count)
            }
            return words
        }
        if let inline {
            self = .inline(inline.0, inline.1, inline.2)
        } else {
            self = .long(id)
        }
    }

    /// The id.
    var string: String {
        switch self {
        case .long(let id):
            return id
        case .inline(let a, let b, let c):
            let words = (a, b, c)
            return withUnsafeBytes(of: words) { raw in
                String(decoding: raw[..<Int(raw[Self.inlineCapacity])], as: UTF8.self)
            }
        }
    }
}

/// A remembered ``CommandResult``: an accepted result with no message and no settlement (every accepted bid and
/// open; accepts and orders whose quantities fit 32 bits) in two words, any other in a box that equal results may
/// share.
enum StoredResult: Sendable {
    /// An accepted result. The first word: the price in bits 0-49 (every amount is at most 10^15 < 2^50) and which
    /// numbers are present (``Bits``); the second: the quantity filled in its low 32 bits and the quantity left in
    /// its high 32.
    case accepted(UInt64, UInt64)
    case other(ResultBox)

    /// The flags of ``accepted(_:_:)``'s first word.
    enum Bits {
        static let priceMask: UInt64 = (1 << 50) - 1
        static let price: UInt64 = 1 << 50
        static let leadingFalse: UInt64 = 1 << 51
        static let leadingTrue: UInt64 = 1 << 52
        static let filled: UInt64 = 1 << 53
        static let remaining: UInt64 = 1 << 54
    }

    /// What a free slot holds.
    static let empty = StoredResult.accepted(0, 0)

    init(_ result: CommandResult) {
        if let inline = Self.inline(result) {
            self = inline
        } else {
            self = .other(ResultBox(result))
        }
    }

    /// `result` in two words, or `nil` when it needs a box.
    @inline(__always)
    static func inline(_ result: CommandResult) -> StoredResult? {
        guard result.error == nil, result.message.isEmpty, result.settlement == nil, result.settlementState == nil,
            result.minBid == nil, !result.duplicate, !result.requestIDConflict
        else { return nil }
        var flags: UInt64 = 0
        var quantities: UInt64 = 0
        if let price = result.price {
            guard price >= 0 && UInt64(price) <= Bits.priceMask else { return nil }
            flags |= UInt64(price) | Bits.price
        }
        if let leading = result.leading { flags |= leading ? Bits.leadingTrue : Bits.leadingFalse }
        if let filled = result.filled {
            guard filled >= 0 && filled <= Int64(UInt32.max) else { return nil }
            flags |= Bits.filled
            quantities |= UInt64(filled)
        }
        if let remaining = result.remaining {
            guard remaining >= 0 && remaining <= Int64(UInt32.max) else { return nil }
            flags |= Bits.remaining
            quantities |= UInt64(remaining) << 32
        }
        return .accepted(flags, quantities)
    }

    /// The result.
    var result: CommandResult {
        switch self {
        case .other(let box):
            return box.result
        case .accepted(let flags, let quantities):
            var result = CommandResult.accepted
            if flags & Bits.price != 0 { result.price = Money(flags & Bits.priceMask) }
            if flags & Bits.leadingTrue != 0 { result.leading = true }
            if flags & Bits.leadingFalse != 0 { result.leading = false }
            if flags & Bits.filled != 0 { result.filled = Int64(quantities & 0xFFFF_FFFF) }
            if flags & Bits.remaining != 0 { result.remaining = Int64(quantities >> 32) }
            return result
        }
    }
}

/// A command's result as the idempotency table keeps it: the numbers of an accepted result in two words, any other
/// in a box shared with equal results remembered close by (``StoredResult``), and whether it answers a duplicate.
/// The writer's batch entries hold results this way: 24 bytes that copy without a call, where a ``CommandResult``
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
