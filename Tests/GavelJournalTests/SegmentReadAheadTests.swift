import Dispatch
import GavelCore
import Synchronization
import Testing

@testable import GavelJournal

#if canImport(Glibc)
    import Glibc
#endif

/// A segment of `count` commands, three to a batch: many more batches than the read-ahead holds at once.
private func segment(_ label: String, count: Int) throws -> (TemporaryDirectory, [UInt8]) {
    let temporary = try TemporaryDirectory(label)
    let directory = DataDirectory(temporary.path)
    var workload = Workload(seed: 0x5EAD)
    try writeJournalRecords((0..<count).map { _ in workload.next() }, to: directory, perBatch: 3)
    return (temporary, try readBytes(directory.segments()[0].path))
}

/// Every batch `reader` gives, and the problem it ends with (if any).
private func batches(of reader: inout SegmentReader) -> ([SegmentBatch], SegmentProblem?) {
    var read: [SegmentBatch] = []
    do {
        while let batch = try reader.next() { read.append(batch) }
    } catch {
        return (read, error)
    }
    return (read, nil)
}

/// Every batch `readAhead` hands out, and the problem it ends with (if any).
private func batches(of readAhead: SegmentReadAhead) -> ([SegmentBatch], SegmentProblem?) {
    var read: [SegmentBatch] = []
    do {
        while let (batch, _, _) = try readAhead.next() { read.append(batch) }
    } catch {
        return (read, error)
    }
    return (read, nil)
}

extension SegmentReadAhead {
    /// The digests and listing hashes of `batch`'s records after `lsn`, in new arrays.
    static func digestsAndListingHashes(of batch: SegmentBatch, after lsn: UInt64) -> ([CommandDigest?], [UInt64]) {
        var digests: [CommandDigest?] = []
        var listingHashes: [UInt64] = []
        digestsAndListingHashes(of: batch, after: lsn, into: &digests, &listingHashes)
        return (digests, listingHashes)
    }
}

@Suite struct SegmentReadAheadTests {
    @Test func handsOutTheReadersBatchesInOrderEachDecodedOnceAndLeavesTheReaderWhereItEnded() throws {
        let (temporary, bytes) = try segment("read-ahead", count: 600)
        defer { temporary.remove() }
        var direct = try SegmentReader(bytes: bytes)
        let (expected, problem) = batches(of: &direct)
        #expect(problem == nil && expected.count == 200 && expected.count > 2 * SegmentReadAhead.capacity)

        let readAhead = SegmentReadAhead(try SegmentReader(bytes: bytes))
        var got: [SegmentBatch] = []
        while let (batch, digests, listingHashes) = try readAhead.next() {
            // Whichever thread decoded it, a batch comes with a digest and a listing hash for each record.
            #expect(digests.count == batch.records.count && listingHashes.count == batch.records.count)
            got.append(batch)
        }
        let reader = readAhead.finish()
        #expect(got.map(\.records) == expected.map(\.records))
        #expect(got.map(\.chain) == expected.map(\.chain))
        #expect(got.map(\.offset) == expected.map(\.offset))
        #expect(reader.nextLSN == direct.nextLSN && reader.chain == direct.chain)
        // Every batch and the end, each decoded by one of the two threads only.
        #expect(readAhead.decodes.total == expected.count + 1)
    }

    @Test func computesNoDigestForTheRecordsOnlyReadPast() throws {
        let (temporary, bytes) = try segment("read-ahead-past", count: 600)
        defer { temporary.remove() }
        var reader = try SegmentReader(bytes: bytes)
        var (before, after) = (0, 0)
        while let batch = try reader.next() {
            let (digests, listingHashes) = SegmentReadAhead.digestsAndListingHashes(of: batch, after: 300)
            #expect(digests.count == batch.records.count && listingHashes.count == batch.records.count)
            for (index, record) in batch.records.enumerated() {
                guard case .command(let lsn, _, _, let command, let outcome) = record else {
                    #expect(digests[index] == nil && listingHashes[index] == 0)
                    continue
                }
                if lsn <= 300 {
                    before += 1
                    #expect(digests[index] == nil && listingHashes[index] == 0)
                } else {
                    after += 1
                    #expect((digests[index] != nil) == (outcome ?? .applied == .applied))
                    #expect(listingHashes[index] == ListingHandle.hash(of: command.listing))
                }
            }
        }
        #expect(before > 0 && after > 0)
    }

    @Test func stopsWhenTheApplierStopsEarly() throws {
        let (temporary, bytes) = try segment("read-ahead-early", count: 600)
        defer { temporary.remove() }
        for taken in [0, 1, SegmentReadAhead.capacity, 3 * SegmentReadAhead.capacity] {
            let readAhead = SegmentReadAhead(try SegmentReader(bytes: bytes))
            for _ in 0..<taken { _ = try readAhead.next() }
            _ = readAhead.finish()
        }
    }

    @Test func endsWithTheProblemTheReaderFindsAfterTheBatchesBeforeIt() throws {
        let (temporary, intact) = try segment("read-ahead-damaged", count: 600)
        defer { temporary.remove() }
        var bytes = intact
        bytes[bytes.count * 2 / 3] ^= 0xFF
        var direct = try SegmentReader(bytes: bytes)
        let (expected, problem) = batches(of: &direct)
        let found = try #require(problem)

        let readAhead = SegmentReadAhead(try SegmentReader(bytes: bytes))
        var got: [SegmentBatch] = []
        do {
            while let (batch, _, _) = try readAhead.next() { got.append(batch) }
            Issue.record("the damaged frame was read")
        } catch {
            #expect(error.offset == found.offset && error.kind == found.kind && error.reason == found.reason)
        }
        let reader = readAhead.finish()
        #expect(got.map(\.records) == expected.map(\.records))
        #expect(reader.nextLSN == direct.nextLSN && reader.chain == direct.chain)
    }

    @Test func decodesEachBatchOnceWhenTheReaderIsStalledHoldingItsClaim() throws {
        let (temporary, bytes) = try segment("read-ahead-once", count: 600)
        defer { temporary.remove() }
        var direct = try SegmentReader(bytes: bytes)
        let (expected, _) = batches(of: &direct)

        // The reading thread is held up now and then with a batch claimed (as when the scheduler stops it in the
        // middle of one) and before claiming one: the applying thread decodes some batches and waits for others.
        let readAhead = SegmentReadAhead(try SegmentReader(bytes: bytes)) { step in
            switch step {
            case .claimed(let batch) where batch % 5 == 0: usleep(300)
            case .beforeClaiming where Int.random(in: 0..<4) == 0: usleep(200)
            default: break
            }
        }
        let (got, problem) = batches(of: readAhead)
        let reader = readAhead.finish()
        #expect(problem == nil)
        #expect(got.map(\.records) == expected.map(\.records))
        #expect(got.map(\.chain) == expected.map(\.chain) && got.map(\.offset) == expected.map(\.offset))
        #expect(reader.nextLSN == direct.nextLSN && reader.chain == direct.chain)
        // Every batch and the end, each decoded by one thread only.
        #expect(readAhead.decodes.total == expected.count + 1)
    }

    @Test func theApplierDecodesEveryBatchOnceWhileTheReaderNeverRuns() throws {
        let (temporary, bytes) = try segment("read-ahead-stalled", count: 600)
        defer { temporary.remove() }
        var direct = try SegmentReader(bytes: bytes)
        let (expected, _) = batches(of: &direct)

        let release = DispatchSemaphore(value: 0)
        let held = Atomic(false)
        let readAhead = SegmentReadAhead(try SegmentReader(bytes: bytes)) { step in
            if step == .beforeClaiming, !held.exchange(true, ordering: .relaxed) { release.wait() }
        }
        var got: [SegmentBatch] = []
        while let (batch, digests, listingHashes) = try readAhead.next() {
            // Decoded by the applying thread, with the same digests and listing hashes the reading thread gives.
            let (wanted, wantedHashes) = SegmentReadAhead.digestsAndListingHashes(of: batch, after: 0)
            #expect(digests.map { $0?.listingHash } == wanted.map { $0?.listingHash } && listingHashes == wantedHashes)
            #expect(listingHashes.contains { $0 != 0 })
            got.append(batch)
        }
        #expect(readAhead.decodes == SegmentReadAhead.Decodes(byReader: 0, byApplier: expected.count + 1))
        release.signal()
        let reader = readAhead.finish()
        #expect(got.map(\.records) == expected.map(\.records))
        #expect(got.map(\.chain) == expected.map(\.chain) && got.map(\.offset) == expected.map(\.offset))
        #expect(reader.nextLSN == direct.nextLSN && reader.chain == direct.chain)
    }

    @Test func withoutAReadingThreadTheApplierDecodesEveryBatchOnce() throws {
        let (temporary, bytes) = try segment("read-ahead-one-cpu", count: 600)
        defer { temporary.remove() }
        var direct = try SegmentReader(bytes: bytes)
        let (expected, _) = batches(of: &direct)
        let readAhead = SegmentReadAhead(try SegmentReader(bytes: bytes), readingThread: false)
        let (got, problem) = batches(of: readAhead)
        let reader = readAhead.finish()
        #expect(problem == nil && got.map(\.records) == expected.map(\.records))
        #expect(got.map(\.chain) == expected.map(\.chain) && got.map(\.offset) == expected.map(\.offset))
        #expect(reader.nextLSN == direct.nextLSN && reader.chain == direct.chain)
        #expect(readAhead.decodes == SegmentReadAhead.Decodes(byReader: 0, byApplier: expected.count + 1))
    }
}
