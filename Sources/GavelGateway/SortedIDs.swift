/// A sorted set of listing ids, kept in chunks of at most ``chunkCapacity`` ids each, for the `list` message.
///
/// Costs, with n ids and chunk capacity c (512): finding where an id belongs is a binary search over the chunks and
/// then within one chunk, O(log n); inserting or removing moves at most c ids inside the chunk (and, when a chunk
/// splits or empties, n / c chunk references), so it stays cheap at millions of ids where one flat sorted array
/// would move them all; reading `limit` ids after a cursor is O(log n + limit).
struct SortedIDs {
    static let chunkCapacity = 512

    /// Non-empty, sorted chunks; every id of a chunk sorts below every id of the next.
    private var chunks: [[String]] = []
    private(set) var count = 0

    init() {}

    /// The first chunk whose last id is not below `id` (`chunks.count` when every id is below it).
    private func chunk(for id: String) -> Int {
        var low = 0
        var high = chunks.count
        while low < high {
            let mid = (low + high) / 2
            if chunks[mid][chunks[mid].count - 1] < id { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// The first position in `ids` whose id is not below `id`.
    private static func position(of id: String, in ids: [String]) -> Int {
        var low = 0
        var high = ids.count
        while low < high {
            let mid = (low + high) / 2
            if ids[mid] < id { low = mid + 1 } else { high = mid }
        }
        return low
    }

    func contains(_ id: String) -> Bool {
        let c = chunk(for: id)
        guard c < chunks.count else { return false }
        let p = Self.position(of: id, in: chunks[c])
        return chunks[c][p] == id
    }

    /// Adds `id`; `false` when it was there already.
    @discardableResult
    mutating func insert(_ id: String) -> Bool {
        if chunks.isEmpty {
            chunks.append([id])
            count = 1
            return true
        }
        // Past the last id: it goes at the end of the last chunk.
        let c = min(chunk(for: id), chunks.count - 1)
        let p = Self.position(of: id, in: chunks[c])
        if p < chunks[c].count && chunks[c][p] == id { return false }
        chunks[c].insert(id, at: p)
        count += 1
        if chunks[c].count > Self.chunkCapacity {
            let half = chunks[c].count / 2
            let upper = Array(chunks[c][half...])
            chunks[c].removeSubrange(half...)
            chunks.insert(upper, at: c + 1)
        }
        return true
    }

    /// Removes `id`; `false` when it was not there.
    @discardableResult
    mutating func remove(_ id: String) -> Bool {
        let c = chunk(for: id)
        guard c < chunks.count else { return false }
        let p = Self.position(of: id, in: chunks[c])
        guard chunks[c][p] == id else { return false }
        chunks[c].remove(at: p)
        count -= 1
        if chunks[c].isEmpty { chunks.remove(at: c) }
        return true
    }

    /// Up to `limit` ids, in order, each sorting strictly after `after` (from the first id when `nil`).
    func ids(after: String?, limit: Int) -> [String] {
        guard limit > 0 else { return [] }
        var c = 0
        var p = 0
        if let after {
            c = chunk(for: after)
            guard c < chunks.count else { return [] }
            p = Self.position(of: after, in: chunks[c])
            if chunks[c][p] == after { p += 1 }
        }
        var out: [String] = []
        out.reserveCapacity(min(limit, count))
        while c < chunks.count && out.count < limit {
            let ids = chunks[c]
            while p < ids.count && out.count < limit {
                out.append(ids[p])
                p += 1
            }
            c += 1
            p = 0
        }
        return out
    }
}
