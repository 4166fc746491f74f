import CGavelShims

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The idempotency table's index: request key → position in the engine's log of remembered results, an
/// open-addressing hash table that grows incrementally, so that no single insert rehashes the whole table.
///
/// A slot is 8 bytes: the low 32 bits of the key's 64-bit hash and its position. The key itself is compared against
/// the log entry at that position (the caller's `matches`) when those bits are equal, so the table holds no strings
/// and no references. The low bits also place the key (its home slot), so a table of up to 2^32 slots can move its
/// entries to a larger one without the rest of the hash; two keys on one probe path that share all 32 bits (about
/// one in 2^(32 - log2(capacity)) of the keys sharing a home slot) cost one extra comparison of the log entry.
/// Half the bytes of a slot holding the whole hash and an `Int` position: half the memory to zero when a table is
/// first touched, and twice the slots in a cache line.
///
/// Growth: when the slots in use (live and deleted) pass three quarters of the capacity, a new table is allocated
/// (at least twice the live count, at least half the old capacity) and every later insert or remove moves
/// ``migrationStep`` slots of the old table into it; lookups look in both while they coexist. The new table has
/// room for every insert until the move completes (see `startResize`), so one never waits for another. Tables are
/// allocated with `mmap` (`MAP_NORESERVE`: memory is committed only as pages are touched), so their pages are zero
/// (empty) and faulted in on first use: allocating a large table costs no pass over it either. A fully moved table
/// is unmapped 64 KB per later insert or remove, not at once.
///
/// Determinism: the layout depends on a per-process random seed (``RequestHash``), but nothing reads the layout
/// except lookups; the state encoding walks the log, not this table.
///
/// - Note: Not thread-safe; one owner (the engine).
final class RequestTable {
    /// A slot: `position + 1` (0: never used, `deleted`: a removed entry that probes go past) and the low 32 bits of
    /// the key's hash.
    struct Slot {
        var tag: UInt32
        var hash: UInt32

        @inline(__always) var isLive: Bool { tag != 0 && tag != RequestTable.deleted }
    }

    static let deleted = UInt32.max
    /// The most positions a table tells apart (tags are 32-bit, two values reserved).
    static let maxPosition = Int(UInt32.max) - 2
    /// Old slots moved per insert or remove while two tables coexist.
    static let migrationStep = 16
    static let minimumCapacity = 16

    private var slots: Storage {
        didSet { current = slots.view }
    }
    /// Where ``slots``' table is, read by lookups without a reference to it: a lookup that read `slots` (a class
    /// reference in a `var`) retained and released the table around the probe. `slots` keeps the memory mapped;
    /// it is replaced only by an insert, a remove or a reset, which a lookup's `matches` never calls.
    private var current: View
    /// Live plus deleted slots of `slots`.
    private var used = 0
    /// The table being emptied into `slots`, and the next of its slots to move.
    private var old: Storage?
    private var moved = 0
    /// A table fully moved, whose memory is given back to the system a little per insert or remove: unmapping 16 MB
    /// at once takes the writer a millisecond or two.
    private var retiring: Storage?
    /// Live entries in both tables.
    private(set) var count = 0

    init(minimumCapacity: Int = 0) {
        slots = Storage(capacity: Self.capacity(for: minimumCapacity))
        current = slots.view
    }

    /// Empties the table and makes room for `minimumCapacity` entries: what a new table would be, in place, so
    /// that its owner holds it in a `let` (a class reference in a `var` is retained around each use).
    func reset(minimumCapacity: Int = 0) {
        old = nil
        retiring = nil
        moved = 0
        used = 0
        count = 0
        slots = Storage(capacity: Self.capacity(for: minimumCapacity))
    }

    /// The power-of-two capacity that holds `entries` below three quarters.
    private static func capacity(for entries: Int) -> Int {
        var capacity = minimumCapacity
        while capacity / 4 * 3 <= entries { capacity *= 2 }
        return capacity
    }

    /// The capacity of the current table (for tests and statistics).
    var capacity: Int { slots.capacity }

    /// Whether an old table is still being moved (for tests).
    var isResizing: Bool { old != nil }

    /// The position of the entry with this hash for which `matches(position)` holds, if any.
    @inline(__always)
    func find(hash: UInt64, where matches: (Int) -> Bool) -> Int? {
        if let position = current.find(hash: hash, where: matches) { return position }
        if let old { return old.view.find(hash: hash, where: matches) }
        return nil
    }

    /// Asks the CPU for the home slot of `hash` in the current table, so that an insert of it a little later finds
    /// it in cache: inserting many known keys in a row (a rebuild) overlaps their cache misses instead of taking
    /// them one after another.
    @inline(__always)
    func prefetch(hash: UInt64) { current.prefetch(UInt32(truncatingIfNeeded: hash)) }

    /// Adds `position` under `hash`. The caller guarantees that no entry for the same key is in the table.
    func insert(hash: UInt64, position: Int) {
        precondition(position >= 0 && position <= Self.maxPosition, "a position the table's 32-bit tags can hold")
        migrate()
        if slots.insert(hash: UInt32(truncatingIfNeeded: hash), tag: UInt32(position + 1)) { used += 1 }
        count += 1
        if used > slots.capacity / 4 * 3 { startResize() }
    }

    /// Removes the entry at `position`, stored under `hash`. Returns whether it was there.
    @discardableResult
    func remove(hash: UInt64, position: Int) -> Bool {
        migrate()
        guard position >= 0 && position <= Self.maxPosition else { return false }
        let (low, tag) = (UInt32(truncatingIfNeeded: hash), UInt32(position + 1))
        let removed = slots.remove(hash: low, tag: tag) || old?.remove(hash: low, tag: tag) == true
        if removed { count -= 1 }
        return removed
    }

    /// Starts moving everything into a fresh table. Only called with no move under way: the new table is sized so
    /// that the move ends before it fills (the `count` live entries come over, and the inserts during the move, one
    /// per `migrationStep` old slots, are at most `oldCapacity/16`; sized for `count + oldCapacity/8`, `used` stays
    /// below 3/4). A table that filled with live entries doubles (3/4 + 1/8 of the old capacity needs twice it), so
    /// it holds 3/8 to 3/4 live slots: twice the slots of the entries at most. Sizing for twice the live count
    /// quadrupled it instead, a table a quarter full right after growing (33 bytes an id at 10^6 ids, not 17).
    private func startResize() {
        if old != nil { finishMigration() }  // unreachable by the sizing above; keeps the table correct regardless
        retiring = nil
        let capacity = max(
            Self.capacity(for: count + slots.capacity / 8), slots.capacity / 2, Self.minimumCapacity)
        old = slots
        moved = 0
        slots = Storage(capacity: capacity)
        used = 0
    }

    /// Moves the next `migrationStep` slots of the old table, and frees it once all are moved.
    @inline(__always)
    private func migrate() {
        if let retiring, retiring.unmapSome() { self.retiring = nil }
        guard let old else { return }
        let end = min(moved + Self.migrationStep, old.capacity)
        for index in moved..<end {
            let slot = old.base[index]
            guard slot.isLive else { continue }
            if slots.insert(hash: slot.hash, tag: slot.tag) { used += 1 }
            old.base[index].tag = Self.deleted
        }
        moved = end
        if moved == old.capacity {
            self.old = nil
            retiring = old
        }
    }

    private func finishMigration() {
        while old != nil { migrate() }
    }

    /// A block of zeroed slots, mapped from the system and unmapped when released.
    final class Storage {
        let base: UnsafeMutablePointer<Slot>
        let capacity: Int
        private let mask: Int
        private let bytes: Int
        /// Bytes from the start already given back (``unmapSome()``); nothing may read the table once it started.
        private var unmapped = 0
        /// What ``unmapSome()`` gives back per call: 16 pages of 4 KB.
        private static let unmapStep = 64 * 1024

        init(capacity: Int) {
            precondition(capacity > 0 && capacity & (capacity - 1) == 0, "a power of two")
            precondition(capacity <= 1 << 32, "a home slot the hash's low 32 bits can give")
            self.capacity = capacity
            mask = capacity - 1
            bytes = capacity * MemoryLayout<Slot>.stride
            let mapped = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
            guard let mapped, mapped != MAP_FAILED else {
                fatalError("out of memory: cannot map \(bytes) bytes for the idempotency table")
            }
            // Huge pages where the system gives them on request (transparent huge pages in `madvise` mode): each
            // probe lands on a random slot, so with 4 KB pages a table of millions of ids misses the TLB on nearly
            // every lookup and takes a page fault for every 4 KB it first touches.
            if bytes >= Self.hugePage { _ = madvise(mapped, bytes, MADV_HUGEPAGE) }
            base = mapped.bindMemory(to: Slot.self, capacity: capacity)
        }

        /// The size of a transparent huge page on x86-64 and most arm64 systems.
        static let hugePage = 2 << 20

        deinit {
            if unmapped < bytes { munmap(UnsafeMutableRawPointer(base) + unmapped, bytes - unmapped) }
        }

        /// Gives the next ``unmapStep`` bytes back to the system; returns `true` once all are given back. For a table
        /// nothing reads any more.
        func unmapSome() -> Bool {
            let length = min(Self.unmapStep, bytes - unmapped)
            munmap(UnsafeMutableRawPointer(base) + unmapped, length)
            unmapped += length
            return unmapped == bytes
        }

        /// Where the slots are, for reading them without a reference to the storage.
        var view: View { View(base: base, mask: mask) }

        @inline(__always)
        private func probe(_ hash: UInt32, _ isIt: (Slot) -> Bool) -> Int? { view.probe(hash, isIt) }

        /// Stores `tag`; returns `true` when it took a never-used slot (not a deleted one).
        @inline(__always)
        func insert(hash: UInt32, tag: UInt32) -> Bool {
            var index = Int(hash) & mask
            while true {
                let current = base[index].tag
                if current == 0 || current == RequestTable.deleted {
                    base[index] = Slot(tag: tag, hash: hash)
                    return current == 0
                }
                index = (index + 1) & mask
            }
        }

        @inline(__always)
        func remove(hash: UInt32, tag: UInt32) -> Bool {
            guard let index = probe(hash, { $0.tag == tag }) else { return false }
            base[index].tag = RequestTable.deleted
            return true
        }
    }
}

extension RequestTable {
    /// A table's slots and mask: a pointer into a ``Storage``, meaningful while the storage is held.
    struct View {
        let base: UnsafeMutablePointer<Slot>
        let mask: Int

        @inline(__always)
        func prefetch(_ hash: UInt32) { gavel_prefetch_for_write(base + (Int(hash) & mask)) }

        @inline(__always)
        func find(hash: UInt64, where matches: (Int) -> Bool) -> Int? {
            let low = UInt32(truncatingIfNeeded: hash)
            return probe(low) { $0.hash == low && matches(Int($0.tag) - 1) }.map { Int(base[$0].tag) - 1 }
        }

        /// The index of the live slot on `hash`'s probe sequence for which `isIt` holds, if any.
        @inline(__always)
        func probe(_ hash: UInt32, _ isIt: (Slot) -> Bool) -> Int? {
            var index = Int(hash) & mask
            while true {
                let slot = base[index]
                if slot.tag == 0 { return nil }
                if slot.tag != RequestTable.deleted && isIt(slot) { return index }
                index = (index + 1) & mask
            }
        }
    }
}

/// The hash of a request key (principal, id): a multiply-fold hash over the UTF-8 bytes, keyed by a random seed drawn
/// once per process, as the per-process-seeded hashes of Go's maps or Rust's foldhash are.
///
/// Hash flooding: a client controls request ids and, through `on_behalf_of`, principals, so an attacker could send
/// keys crafted to collide. Collisions need the 128-bit seed, which never leaves the process and differs on every
/// start; the table also keeps the low 32 bits of each entry's hash, so only keys equal in those are compared as
/// strings. It is not a cryptographic function: like Go's and foldhash's, it resists flooding by an attacker who
/// cannot see hash values (they never leave the process), not one who can. Identifiers are at most 64 bytes, so a
/// key costs at most 20 multiplications.
enum RequestHash {
    private static let seeds: (UInt64, UInt64) = {
        var generator = SystemRandomNumberGenerator()
        return (generator.next() | 1, generator.next() | 1)
    }()

    /// The hash of a principal alone.
    @inline(__always)
    static func of(principal: String) -> UInt64 {
        alone(bytes(principal, seed: seeds.0, seeds.1))
    }

    /// The hash of (principal, id).
    @inline(__always)
    static func of(principal: String, id: String) -> UInt64 {
        let (k0, k1) = seeds
        return of(principalBytes: bytes(principal, seed: k0, k1), id: id)
    }

    /// The hashes of (principal, id) and of the principal alone, the principal's bytes read once for both (every
    /// command's digest needs the two).
    @inline(__always)
    static func both(principal: String, id: String) -> (request: UInt64, principal: UInt64) {
        let p = bytes(principal, seed: seeds.0, seeds.1)
        return (of(principalBytes: p, id: id), alone(p))
    }

    /// The principal's hash from its bytes' hash `p`.
    @inline(__always)
    private static func alone(_ p: UInt64) -> UInt64 { fold(p ^ 0xE703_7ED1_A0B4_28DB, seeds.1) }

    /// The hash of (principal, id) from the principal's bytes' hash `p`.
    @inline(__always)
    private static func of(principalBytes p: UInt64, id: String) -> UInt64 {
        let (k0, k1) = seeds
        return fold(bytes(id, seed: fold(p ^ 0x9E37_79B9_7F4A_7C15, k1), k1), k0)
    }

    @inline(__always)
    private static func fold(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let product = a.multipliedFullWidth(by: b)
        return product.high ^ product.low
    }

    @inline(__always)
    private static func bytes(_ string: String, seed: UInt64, _ k: UInt64) -> UInt64 {
        if let h = string.utf8.withContiguousStorageIfAvailable({ bytes(UnsafeRawBufferPointer($0), seed: seed, k) }) {
            return h
        }
        var copy = string
        return copy.withUTF8 { bytes(UnsafeRawBufferPointer($0), seed: seed, k) }
    }

    @inline(__always)
    private static func bytes(_ buffer: UnsafeRawBufferPointer, seed: UInt64, _ k: UInt64) -> UInt64 {
        var h = seed ^ UInt64(buffer.count)
        var offset = 0
        while offset + 8 <= buffer.count {
            h = fold(h ^ buffer.loadUnaligned(fromByteOffset: offset, as: UInt64.self), k)
            offset += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while offset < buffer.count {
            tail |= UInt64(buffer[offset]) << shift
            shift += 8
            offset += 1
        }
        return fold(h ^ tail ^ 0xA076_1D64_78BD_642F, k)
    }
}
