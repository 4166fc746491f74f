/// A sorted set kept in chunks of at most ``chunkCapacity`` elements each: the listing ids of the `list` message
/// (``SortedIDs``) and each user's settlements in the settlement views.
///
/// Costs, with n elements and chunk capacity c (512): finding where an element belongs is a binary search over the
/// chunks and then within one chunk, O(log n); inserting or removing moves at most c elements inside the chunk (and,
/// when a chunk splits, empties or merges with its neighbour, n / c chunk references), so it stays cheap at millions
/// of elements where one flat sorted array would move them all; reading `limit` elements after a cursor is
/// O(log n + limit). A chunk that falls under a quarter of c after a removal is merged with a neighbour when both fit
/// in one, so there are never more than about 8n / c chunks, whatever was removed.
struct SortedChunks<Element: Comparable> {
    static var chunkCapacity: Int { 512 }

    /// Non-empty, sorted chunks; every element of a chunk sorts below every element of the next.
    private var chunks: [[Element]] = []
    private(set) var count = 0

    init() {}

    var isEmpty: Bool { count == 0 }

    /// The first chunk whose last element is not below `element` (`chunks.count` when every element is below it).
    private func chunk(for element: Element) -> Int {
        var low = 0
        var high = chunks.count
        while low < high {
            let mid = (low + high) / 2
            if chunks[mid][chunks[mid].count - 1] < element { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// The first position in `elements` whose element is not below `element`.
    private static func position(of element: Element, in elements: [Element]) -> Int {
        var low = 0
        var high = elements.count
        while low < high {
            let mid = (low + high) / 2
            if elements[mid] < element { low = mid + 1 } else { high = mid }
        }
        return low
    }

    func contains(_ element: Element) -> Bool {
        let c = chunk(for: element)
        guard c < chunks.count else { return false }
        let p = Self.position(of: element, in: chunks[c])
        return chunks[c][p] == element
    }

    /// Adds `element`; `false` when it was there already.
    @discardableResult
    mutating func insert(_ element: Element) -> Bool {
        if chunks.isEmpty {
            chunks.append([element])
            count = 1
            return true
        }
        // Past the last element: it goes at the end of the last chunk.
        let c = min(chunk(for: element), chunks.count - 1)
        let p = Self.position(of: element, in: chunks[c])
        if p < chunks[c].count && chunks[c][p] == element { return false }
        chunks[c].insert(element, at: p)
        count += 1
        if chunks[c].count > Self.chunkCapacity {
            let half = chunks[c].count / 2
            let upper = Array(chunks[c][half...])
            chunks[c].removeSubrange(half...)
            chunks.insert(upper, at: c + 1)
        }
        return true
    }

    /// Removes `element`; `false` when it was not there.
    @discardableResult
    mutating func remove(_ element: Element) -> Bool {
        let c = chunk(for: element)
        guard c < chunks.count else { return false }
        let p = Self.position(of: element, in: chunks[c])
        guard chunks[c][p] == element else { return false }
        chunks[c].remove(at: p)
        count -= 1
        shrunk(c)
        return true
    }

    /// Removes each of `elements`, which are sorted, ascending; returns how many were there. Each chunk that holds
    /// some of them is filtered once: O(log n + c + n / c) per chunk touched, not per element.
    @discardableResult
    mutating func remove(sorted elements: [Element]) -> Int {
        var removed = 0
        var i = 0
        while i < elements.count {
            let c = chunk(for: elements[i])
            guard c < chunks.count else { break }
            let last = chunks[c][chunks[c].count - 1]
            var end = i + 1
            while end < elements.count && elements[end] <= last { end += 1 }
            let before = chunks[c].count
            if end == i + 1 {
                let p = Self.position(of: elements[i], in: chunks[c])
                if chunks[c][p] == elements[i] { chunks[c].remove(at: p) }
            } else {
                var k = i
                chunks[c].removeAll { element in
                    while k < end && elements[k] < element { k += 1 }
                    return k < end && elements[k] == element
                }
            }
            removed += before - chunks[c].count
            shrunk(c)
            i = end
        }
        count -= removed
        return removed
    }

    /// After removals from chunk `c`: drops it when empty (then its two neighbours meet), and merges a chunk under a
    /// quarter full with a neighbour while both fit in one, so that no two neighbouring chunks are both under a
    /// quarter full.
    private mutating func shrunk(_ c: Int) {
        var c = c
        if chunks[c].isEmpty {
            chunks.remove(at: c)
            guard c > 0 && c < chunks.count else { return }
            if chunks[c - 1].count < chunks[c].count { c -= 1 }
        }
        while chunks[c].count < Self.chunkCapacity / 4 {
            if c + 1 < chunks.count && chunks[c].count + chunks[c + 1].count <= Self.chunkCapacity {
                merge(c)
            } else if c > 0 && chunks[c - 1].count + chunks[c].count <= Self.chunkCapacity {
                merge(c - 1)
                c -= 1
            } else {
                return
            }
        }
    }

    /// Appends chunk `c + 1` to chunk `c`.
    private mutating func merge(_ c: Int) {
        chunks[c].append(contentsOf: chunks[c + 1])
        chunks.remove(at: c + 1)
    }

    /// How many chunks hold the elements (for tests).
    var chunkCount: Int { chunks.count }

    /// Up to `limit` elements, in order, each sorting strictly after `after` (from the first element when `nil`).
    func elements(after: Element?, limit: Int) -> [Element] {
        guard limit > 0 else { return [] }
        var c = 0
        var p = 0
        if let after {
            c = chunk(for: after)
            guard c < chunks.count else { return [] }
            p = Self.position(of: after, in: chunks[c])
            if chunks[c][p] == after { p += 1 }
        }
        var out: [Element] = []
        out.reserveCapacity(min(limit, count))
        while c < chunks.count && out.count < limit {
            let elements = chunks[c]
            while p < elements.count && out.count < limit {
                out.append(elements[p])
                p += 1
            }
            c += 1
            p = 0
        }
        return out
    }
}

/// A sorted set of listing ids, for the `list` message.
typealias SortedIDs = SortedChunks<String>

extension SortedChunks where Element == String {
    /// Up to `limit` ids, in order, each sorting strictly after `after` (from the first id when `nil`).
    func ids(after: String?, limit: Int) -> [String] { elements(after: after, limit: limit) }
}
