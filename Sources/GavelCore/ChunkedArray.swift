#if canImport(Glibc)
    import Glibc
#endif

/// The engine's remembered results, each in its slot.
typealias RememberedSlots = ChunkedArray<RememberedResult>
/// References to the engine's remembered results in the order they were applied.
typealias RememberedOrder = ChunkedArray<RememberedRef>

/// An array in fixed-size chunks, so that appending never copies more than one chunk's worth (an `Array` that
/// doubles copies every element, a pause proportional to its size on the writer thread) and dropping a prefix frees
/// whole chunks without moving the rest.
///
/// The first chunk grows as an `Array` does, up to ``chunkSize`` entries, unless ``reserveCapacity(_:)`` allocated it
/// whole: many small ones (a market book's slots and names, one set per listing) then cost what they hold, not a
/// chunk each of 4,096 entries, faulted in by ``populate(_:)``.
///
/// Indices run from 0 (the oldest element kept) to `count`; ``removeFirst(_:)`` shifts them down.
struct ChunkedArray<Element>: RandomAccessCollection, MutableCollection {
    static var chunkShift: Int { 12 }
    static var chunkSize: Int { 1 << chunkShift }
    private static var chunkMask: Int { chunkSize - 1 }

    private var chunks: [[Element]] = []
    /// The place of entry 0 in `chunks[0]`.
    private var offset = 0
    private(set) var count = 0
    /// Chunks allocated ahead (``reserveCapacity(_:)``), used before allocating new ones.
    private var spare: [[Element]] = []

    var startIndex: Int { 0 }
    var endIndex: Int { count }

    @inline(__always)
    subscript(index: Int) -> Element {
        get {
            let place = index + offset
            return chunks[place >> Self.chunkShift][place & Self.chunkMask]
        }
        set {
            let place = index + offset
            chunks[place >> Self.chunkShift][place & Self.chunkMask] = newValue
        }
        // In place: through `get` and `set`, changing one field of an entry (a remembered result's `next`) copied
        // the whole entry out and back, retaining and releasing what it holds.
        _modify {
            let place = index + offset
            yield &chunks[place >> Self.chunkShift][place & Self.chunkMask]
        }
    }

    /// Appends `entry`; allocates a chunk (or takes a reserved one) once every ``chunkSize`` entries.
    mutating func append(_ entry: Element) {
        let place = count + offset
        if place & Self.chunkMask == 0 {
            if let reserved = spare.popLast() {
                chunks.append(reserved)
            } else {
                chunks.append(chunks.isEmpty ? [] : Self.newChunk())
            }
            Self.populate(&chunks[chunks.count - 1])
        }
        chunks[place >> Self.chunkShift].append(entry)
        count += 1
    }

    /// Asks the system for the pages of `chunk`, which is about to be filled, all at once: one call instead of a
    /// page fault every 4 KB as appends first write to each page (a fault every 46 remembered results, most of the
    /// cost of remembering one on a VM). Only chunks of ``populateBytes`` or more (the system maps those fresh, or
    /// the allocator's heap grows for them, so their pages are not there yet); a hint, which changes nothing else
    /// and may be refused. The pages are those the chunk's entries fill next, so memory grows by no more than the
    /// chunk ahead of them.
    private static func populate(_ chunk: inout [Element]) {
        #if os(Linux)
            let bytes = chunk.capacity * MemoryLayout<Element>.stride
            guard bytes >= populateBytes else { return }
            chunk.withUnsafeMutableBufferPointer { buffer in
                guard let base = buffer.baseAddress else { return }
                let page = 4096
                let start = (UInt(bitPattern: base) + UInt(page - 1)) & ~UInt(page - 1)
                let end = (UInt(bitPattern: base) + UInt(bytes)) & ~UInt(page - 1)
                guard end > start, let address = UnsafeMutableRawPointer(bitPattern: start) else { return }
                _ = madvise(address, Int(end - start), populateWrite)
            }
        #endif
    }

    /// The smallest chunk ``populate(_:)`` asks pages for: the order of remembered results' chunks (4,096 8-byte
    /// references) are this size, and their first writes were 2 % of the writer's samples; smaller blocks come
    /// from pages the allocator's heap mostly has already.
    private static var populateBytes: Int { 32 * 1024 }

    /// `MADV_POPULATE_WRITE` (Linux 5.14): fault the range in, writable. An older kernel refuses it (`EINVAL`),
    /// and the pages then come one fault at a time as before.
    private static var populateWrite: Int32 { 23 }

    /// Drops the first `n` entries; frees the chunks they filled.
    mutating func removeFirst(_ n: Int) {
        precondition(n >= 0 && n <= count, "removeFirst(\(n)) of \(count) entries")
        offset += n
        count -= n
        let emptied = offset >> Self.chunkShift
        if emptied > 0 {
            chunks.removeFirst(emptied)
            offset &= Self.chunkMask
        }
    }

    /// Drops the last `n` entries; frees the chunks they alone filled.
    mutating func removeLast(_ n: Int) {
        precondition(n >= 0 && n <= count, "removeLast(\(n)) of \(count) entries")
        guard n > 0 else { return }
        count -= n
        let end = count + offset
        let kept = (end + Self.chunkMask) >> Self.chunkShift
        chunks.removeLast(chunks.count - kept)
        if kept > 0 {
            let last = kept - 1
            chunks[last].removeLast(chunks[last].count - (end - last << Self.chunkShift))
        }
    }

    /// How many entries the chunks allocated so far hold room for, reserved ones included.
    var allocatedCapacity: Int { (chunks + spare).reduce(0) { $0 + $1.capacity } }

    /// Allocates the chunks for `capacity` entries now, so that appending up to it allocates nothing.
    mutating func reserveCapacity(_ capacity: Int) {
        let wanted = (capacity + Self.chunkMask) >> Self.chunkShift
        let have = chunks.count + spare.count
        guard wanted > have else { return }
        chunks.reserveCapacity(wanted)
        spare.reserveCapacity(wanted - have)
        for _ in have..<wanted { spare.append(Self.newChunk()) }
    }

    private static func newChunk() -> [Element] {
        var chunk: [Element] = []
        chunk.reserveCapacity(chunkSize)
        return chunk
    }
}

/// Each principal's chain of live remembered results, by principal: chains in a ``ChunkedArray`` whose freed slots
/// are reused, found through a ``RequestTable`` on the principal's hash, so that neither grows by copying or
/// rehashing everything at once (a `Dictionary` keyed by principal did both).
struct PrincipalChains {
    private struct Chain {
        var name: String
        var hash: UInt64
        var requests: PrincipalRequests
    }

    private var chains = ChunkedArray<Chain>()
    /// The first free slot, -1 for none; a free chain's `requests.oldest` links to the next.
    private var firstFree = -1
    private let index = RequestTable()

    /// The number of principals with a chain.
    var count: Int { index.count }

    /// Whether no principal has a chain.
    var isEmpty: Bool { count == 0 }

    /// The slot of `name`'s chain, if it has one.
    @inline(__always)
    func slot(of name: String) -> Int? {
        slot(of: name, hash: RequestHash.of(principal: name))
    }

    /// The slot of `name`, whose ``RequestHash/of(principal:)`` is `hash`, if it has a chain.
    @inline(__always)
    func slot(of name: String, hash: UInt64) -> Int? {
        index.find(hash: hash) { chains[$0].name == name }
    }

    /// The name of the principal whose chain is in `slot`.
    @inline(__always)
    func name(of slot: Int) -> String { chains[slot].name }

    /// The chain in `slot`.
    @inline(__always)
    subscript(slot: Int) -> PrincipalRequests {
        get { chains[slot].requests }
        set { chains[slot].requests = newValue }
    }

    /// Adds a chain for `name`, which has none; returns its slot.
    mutating func add(_ name: String, _ requests: PrincipalRequests) -> Int {
        add(name, hash: RequestHash.of(principal: name), requests)
    }

    /// Adds a chain for `name`, whose ``RequestHash/of(principal:)`` is `hash` and which has none; returns its slot.
    mutating func add(_ name: String, hash: UInt64, _ requests: PrincipalRequests) -> Int {
        let chain = Chain(name: name, hash: hash, requests: requests)
        let slot: Int
        if firstFree >= 0 {
            slot = firstFree
            firstFree = chains[slot].requests.oldest
            chains[slot] = chain
        } else {
            slot = chains.count
            chains.append(chain)
        }
        index.insert(hash: chain.hash, position: slot)
        return slot
    }

    /// Removes the chain in `slot`; the slot is reused by a later ``add(_:_:)``.
    mutating func remove(slot: Int) {
        index.remove(hash: chains[slot].hash, position: slot)
        chains[slot].name = ""
        chains[slot].requests = PrincipalRequests(oldest: firstFree, newest: -1)
        firstFree = slot
    }
}
