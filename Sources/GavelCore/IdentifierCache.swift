import CGavelShims

/// A small direct-mapped cache of the identifier strings too long to be Swift small strings (more than 15 bytes),
/// so that a decoder reading the same listing id or user name again and again hands out one shared `String` (a
/// retain) instead of building a new one each time (an allocation, a copy, and a free when the command is done).
///
/// Shared strings also compare at once: `==` on two values of the same storage is true without reading the bytes,
/// as when the writer's rules compare a bid's bidder with the leader it stored, or a dictionary keyed by listing id
/// finds its key.
///
/// Each slot holds the last string whose bytes hashed to it; a string that finds its slot holding other bytes
/// replaces them. So it holds at most ``slotCount`` strings (each an identifier of at most 64 bytes: about
/// 100 bytes each with the allocation's header), never grows, and a value it returns is always equal to the
/// bytes it was given: the cache changes which storage a string has, never its value.
///
/// Not thread-safe: one per thread (an event loop's sessions, one journal reader). Only ASCII bytes go in (the
/// callers check that, as identifiers are ASCII).
public final class IdentifierCache {
    /// The number of slots: enough for the listings and users one event loop or one replay sees in a stretch of
    /// commands (each slot 24 bytes, its string about 100 more once filled); a power of two.
    public static let defaultSlotCount = 4_096

    public let slotCount: Int
    private let shift: UInt64
    /// Each slot's string and the hash its bytes had (compared first: a slot holding other bytes is told apart
    /// without reading its string).
    private var slots: [(hash: UInt64, string: String)]

    /// Strings handed out from a slot (counted for tests and benchmarks).
    public private(set) var hits = 0
    /// Strings built and stored.
    public private(set) var misses = 0

    /// A cache of `slotCount` (rounded up to a power of two, at least 2) slots.
    public init(slotCount: Int = IdentifierCache.defaultSlotCount) {
        var count = 2
        while count < slotCount { count <<= 1 }
        self.slotCount = count
        shift = UInt64(64 - count.trailingZeroBitCount)
        slots = Array(repeating: (0, ""), count: count)
    }

    /// The string of the `count` ASCII bytes at `start`: the cached one when its slot holds these bytes, else a new
    /// one, stored. For a count of at most 15, where a string is stored inline and costs nothing to build, the
    /// caller should build it itself (``SmallASCII``); this works for any count all the same.
    @inline(__always)
    public func string(_ start: UnsafePointer<UInt8>, count: Int) -> String {
        guard count > 0 else { return "" }
        let hash = Self.hash(start, count: count)
        let slot = Int(truncatingIfNeeded: hash >> shift)
        if slots[slot].hash == hash, Self.holds(slots[slot].string, start, count: count) {
            hits &+= 1
            return slots[slot].string
        }
        misses &+= 1
        let built = String(decoding: UnsafeBufferPointer(start: start, count: count), as: UTF8.self)
        slots[slot] = (hash, built)
        return built
    }

    /// Whether `string`'s UTF-8 bytes are the `count` bytes at `start`.
    @inline(__always)
    public static func holds(_ string: String, _ start: UnsafePointer<UInt8>, count: Int) -> Bool {
        string.utf8.count == count
            && string.utf8.withContiguousStorageIfAvailable { utf8 in
                utf8.baseAddress.map { gavel_bytes_equal($0, start, count) != 0 } ?? (count == 0)
            } == true
    }

    /// The hash of the bytes: their first, middle and last eight bytes (or fewer for a short string) and their
    /// count, mixed by one multiplication; its top bits index the slots.
    @inline(__always)
    private static func hash(_ start: UnsafePointer<UInt8>, count: Int) -> UInt64 {
        let raw = UnsafeRawPointer(start)
        var mixed = UInt64(truncatingIfNeeded: count)
        if count >= 8 {
            let first = raw.loadUnaligned(as: UInt64.self)
            let middle = raw.loadUnaligned(fromByteOffset: (count - 8) / 2, as: UInt64.self)
            let last = raw.loadUnaligned(fromByteOffset: count - 8, as: UInt64.self)
            mixed ^= first ^ (middle &* 0xFF51_AFD7_ED55_8CCD) ^ (last << 29 | last >> 35)
        } else {
            for i in 0..<count { mixed ^= UInt64(start[i]) << (8 * UInt64(i) + 8) }
        }
        mixed ^= mixed >> 31
        return mixed &* 0x9E37_79B9_7F4A_7C15
    }
}
