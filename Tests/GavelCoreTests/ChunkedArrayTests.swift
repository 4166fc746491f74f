import Testing

@testable import GavelCore

/// `ChunkedArray`: what it allocates for a few entries, and that entries keep their values and order across chunks,
/// dropped prefixes and suffixes.
@Suite struct ChunkedArrayTests {
    @Test func aFewEntriesTakeRoomForAFewNotAWholeChunk() {
        // A market book keeps its slots, names and expiries in three of these per listing: a chunk of 4,096 entries
        // each (faulted in whole) made a book with one order hold hundreds of kilobytes.
        var small = ChunkedArray<UInt64>()
        for n in 0..<3 { small.append(UInt64(n)) }
        #expect(small.allocatedCapacity < 64, "\(small.allocatedCapacity) entries of room for 3")
        #expect(Array(small) == [0, 1, 2])
    }

    @Test func reservedChunksAreWholeAndAppendingIntoThemAllocatesNoMore() {
        var reserved = ChunkedArray<UInt64>()
        reserved.reserveCapacity(2 * ChunkedArray<UInt64>.chunkSize)
        let room = reserved.allocatedCapacity
        #expect(room >= 2 * ChunkedArray<UInt64>.chunkSize)
        for n in 0..<(2 * ChunkedArray<UInt64>.chunkSize) { reserved.append(UInt64(n)) }
        #expect(reserved.allocatedCapacity == room)
    }

    @Test func entriesKeepTheirValuesAcrossChunksAndDroppedEnds() {
        let size = ChunkedArray<Int>.chunkSize
        var array = ChunkedArray<Int>()
        var model: [Int] = []
        for n in 0..<(3 * size + 17) {
            array.append(n)
            model.append(n)
        }
        #expect(Array(array) == model)
        array.removeFirst(size + 5)
        model.removeFirst(size + 5)
        array.removeLast(size - 3)
        model.removeLast(size - 3)
        array[7] += 1_000_000
        model[7] += 1_000_000
        #expect(Array(array) == model)
        array.removeFirst(array.count)
        model.removeAll()
        for n in 0..<(size + 2) {
            array.append(-n)
            model.append(-n)
        }
        #expect(Array(array) == model)
        #expect(array.count == model.count)
    }
}
