/// The engine's remembered results in the order they were applied: a sequence of fixed-size chunks, so that
/// appending never copies what is already there (an `Array` that doubles copies every entry, a pause proportional to
/// the table on the writer thread) and dropping the expired prefix frees whole chunks without moving the rest.
///
/// Indices run from 0 (the oldest entry kept) to `count`; ``removeFirst(_:)`` shifts them down.
struct RememberedLog: RandomAccessCollection, MutableCollection {
    static let chunkShift = 12
    static let chunkSize = 1 << chunkShift
    private static let chunkMask = chunkSize - 1

    private var chunks: [[RememberedResult]] = []
    /// The place of entry 0 in `chunks[0]`.
    private var offset = 0
    private(set) var count = 0
    /// Chunks allocated ahead (``reserveCapacity(_:)``), used before allocating new ones.
    private var spare: [[RememberedResult]] = []

    var startIndex: Int { 0 }
    var endIndex: Int { count }

    @inline(__always)
    subscript(index: Int) -> RememberedResult {
        get {
            let place = index + offset
            return chunks[place >> Self.chunkShift][place & Self.chunkMask]
        }
        set {
            let place = index + offset
            chunks[place >> Self.chunkShift][place & Self.chunkMask] = newValue
        }
    }

    /// Appends `entry`; allocates a chunk (or takes a reserved one) once every ``chunkSize`` entries.
    mutating func append(_ entry: RememberedResult) {
        let place = count + offset
        if place & Self.chunkMask == 0 {
            chunks.append(spare.popLast() ?? Self.newChunk())
        }
        chunks[place >> Self.chunkShift].append(entry)
        count += 1
    }

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

    /// Allocates the chunks for `capacity` entries now, so that appending up to it allocates nothing.
    mutating func reserveCapacity(_ capacity: Int) {
        let wanted = (capacity + Self.chunkMask) >> Self.chunkShift
        let have = chunks.count + spare.count
        guard wanted > have else { return }
        chunks.reserveCapacity(wanted)
        spare.reserveCapacity(wanted - have)
        for _ in have..<wanted { spare.append(Self.newChunk()) }
    }

    private static func newChunk() -> [RememberedResult] {
        var chunk: [RememberedResult] = []
        chunk.reserveCapacity(chunkSize)
        return chunk
    }
}
