import GavelCore
@_spi(Manual) import GavelEngine
import GavelJournal
import Glibc
import Synchronization
import Testing

/// The events of every entry of a data directory's journal, by lsn, from a replay of the whole journal from lsn 1
/// with no snapshot: the reference a feed's catch-up must equal.
private func referenceEvents(_ directory: DataDirectory, engine: EngineConfiguration) throws -> [UInt64: [Event]] {
    let collected = Mutex<[UInt64: [Event]]>([:])
    var options = RecoveryOptions()
    options.useSnapshots = false
    options.repair = false
    options.engine = engine
    options.observe = { record, timers, _, events in
        collected.withLock { $0[record.lsn] = timers + events }
    }
    _ = try Recovery.recover(directory, options: options)
    return collected.withLock { $0 }
}

/// Writes `count` commands of a random workload over every format through a journaled writer with small segments,
/// asking for a snapshot every `snapshotEvery` commands; returns the writer's engine settings. `released` is given
/// what the journal released, at the end.
private func writeJournal(
    _ path: String, seed: UInt64, count: Int, snapshotEvery: Int, keep: Int, segmentBytes: Int = 4096,
    maxInFlightBatches: Int = JournalConfiguration().maxInFlightBatches, released: (ReleasedResults) -> Void = { _ in }
) throws -> EngineConfiguration {
    var writer = WriterConfiguration()
    writer.snapshotOnShutdown = false
    writer.engine.closedListingRetentionMs = 50
    writer.engine.idempotencyWindowMs = 400
    var options = RecoveryOptions()
    options.engine = writer.engine
    var journal = JournalConfiguration()
    journal.segmentBytes = segmentBytes
    journal.keepSnapshots = keep
    journal.fsync = .none
    journal.maxInFlightBatches = maxInFlightBatches
    let run = try JournaledWriter(path, journal: journal, writer: writer, recovery: options)
    var workload = Workload(seed: seed)
    workload.maxStep = 40
    for index in 1...count {
        let (command, at) = workload.next()
        // Commands for listings evicted meanwhile are refused before the journal: not entries.
        run.offer(command, at: at)
        if index % snapshotEvery == 0 {
            run.writer.runUntilIdle()
            #expect(run.writer.requestSnapshot())
            run.writer.runUntilIdle()
            run.journal.waitForSnapshots()
        }
    }
    run.writer.runUntilIdle()
    run.finish()
    released(run.released)
    return writer.engine
}

/// Everything a replay from `since` hands out up to `end`, as (lsn, events).
private func replayed(
    _ directory: DataDirectory, from since: UInt64, to end: UInt64, engine: EngineConfiguration,
    window: Int = 4 << 20, writtenEnd: JournalWrittenEnd? = nil
) throws -> [(UInt64, [Event])] {
    let replay = try JournalReplay(
        directory: directory, from: since, engine: engine, window: window, writtenEnd: writtenEnd)
    var out: [(UInt64, [Event])] = []
    while try replay.next(upTo: end, { lsn, _, _, _, events in out.append((lsn, events)) }) {}
    return out
}

/// The same, through ``JournalReplay/next(upTo:appendingTo:_:)``: the events of many entries appended to one buffer,
/// emptied every `every` entries (as a feed's catch-up hands over its pieces).
private func replayedAppending(
    _ directory: DataDirectory, from since: UInt64, to end: UInt64, engine: EngineConfiguration, every: Int
) throws -> [(UInt64, [Event])] {
    let replay = try JournalReplay(directory: directory, from: since, engine: engine)
    var out: [(UInt64, [Event])] = []
    var buffer: [Event] = []
    var entries: [(UInt64, Range<Int>)] = []
    func handOver() {
        out += entries.map { ($0.0, Array(buffer[$0.1])) }
        entries = []
        buffer = []
    }
    while try replay.next(upTo: end, appendingTo: &buffer, { lsn, _, _, _, events in entries.append((lsn, events)) }) {
        if entries.count == every { handOver() }
    }
    handOver()
    return out
}

/// A journal of one segment, written by ``writeJournal`` and closed: its engine settings, the segment, its bytes
/// and its frames (offset, length, last lsn).
private struct OneSegmentJournal {
    let engine: EngineConfiguration
    let directory: DataDirectory
    let segment: (firstLSN: UInt64, path: String)
    let bytes: [UInt8]
    let frames: [(offset: Int, length: Int, lastLSN: UInt64)]
    var lastLSN: UInt64 { frames.last?.lastLSN ?? 0 }

    init(_ path: String, seed: UInt64, count: Int) throws {
        // One batch in flight: the journal writes each batch as a frame of its own, however far behind the writer
        // its thread runs, so the frames (and the page boundaries the tests cut at) are the same on a busy machine.
        engine = try writeJournal(
            path, seed: seed, count: count, snapshotEvery: 10_000, keep: 100, segmentBytes: 1 << 20,
            maxInFlightBatches: 1)
        directory = DataDirectory(path)
        let segments = directory.segments()
        try #require(segments.count == 1)
        segment = segments[0]
        bytes = try readBytes(segment.path)
        var reader = try SegmentReader(bytes: bytes)
        var frames: [(offset: Int, length: Int, lastLSN: UInt64)] = []
        while let batch = try reader.next() {
            frames.append((batch.offset, batch.length, try #require(batch.records.last?.lsn)))
        }
        self.frames = frames
    }

    /// Writes `bytes` over the segment, followed by reserved zeros as the running journal leaves it.
    func rewrite(_ bytes: [UInt8]) throws {
        try writeBytes(bytes + [UInt8](repeating: 0, count: 64 << 10), to: segment.path)
    }
}

/// The description of the error a replay from lsn 1 to `end` throws, or `nil` when it throws none.
private func replayFailure(
    _ directory: DataDirectory, to end: UInt64, engine: EngineConfiguration, writtenEnd: JournalWrittenEnd?
) -> String? {
    do {
        _ = try replayed(directory, from: 1, to: end, engine: engine, writtenEnd: writtenEnd)
        return nil
    } catch {
        return "\(error)"
    }
}

@Suite("JournalReplay", .serialized)
struct JournalReplayTests {
    /// A read of the segment being appended to can see a frame being written torn: a page still zero before a page
    /// already written, which anywhere else is damage. Given the journal's written end, a replay reads the segment
    /// no further, so it stops there without reporting damage, and once the journal has written past it reads on,
    /// handing out every entry once with the events a clean read gives it. Without it (as the offline tools read),
    /// the same bytes are damage.
    @Test func aReplayOfTheLiveSegmentStopsAtTheWrittenEndAndTakesATornFrameBeyondItForUnwritten() throws {
        let temp = try TemporaryDirectory("replay-torn")
        defer { temp.remove() }
        let journal = try OneSegmentJournal(temp.path, seed: 11, count: 1_200)
        let (engine, directory, segment, whole, last) = (
            journal.engine, journal.directory, journal.segment, journal.bytes, journal.lastLSN
        )
        let reference = try replayed(directory, from: 1, to: last, engine: engine)
        #expect(reference.map(\.0) == Array(1...last))
        // The journal has written up to the end of a frame in the middle; the page the next frame starts in is
        // still zero in what a read copied, the pages after it already hold the frames written after.
        let cut = journal.frames[journal.frames.count / 2]
        let written = cut.offset + cut.length
        let page = (written / 4096 + 1) * 4096
        try #require(page + 4096 < whole.count, "frames after the torn page: \(whole.count) bytes")
        var torn = whole
        for index in written..<page { torn[index] = 0 }
        try journal.rewrite(torn)

        let unbounded = replayFailure(directory, to: last, engine: engine, writtenEnd: nil)
        #expect(
            unbounded?.hasSuffix("no LZ4 frame where one should start at byte \(written)") == true,
            "without the written end the torn page is damage: \(unbounded ?? "no error")")

        let writtenEnd = JournalWrittenEnd(segmentFirstLSN: segment.firstLSN, offset: written)
        let replay = try JournalReplay(directory: directory, from: 1, engine: engine, writtenEnd: writtenEnd)
        var got: [(UInt64, [Event])] = []
        while try replay.next(upTo: cut.lastLSN, { lsn, _, _, _, events in got.append((lsn, events)) }) {}
        #expect(got.map(\.0) == Array(1...cut.lastLSN))
        do {
            _ = try replay.next(upTo: last) { lsn, _, _, _, _ in Issue.record("lsn \(lsn) past the written end") }
            Issue.record("a replay read past the written end")
        } catch {
            #expect(
                "\(error)".contains("the journal ends at lsn \(cut.lastLSN)"), "nothing more yet, not damage: \(error)")
        }

        // The journal wrote the page and went on: the replay reads on from where it stopped.
        try journal.rewrite(whole)
        writtenEnd.publish(segmentFirstLSN: segment.firstLSN, offset: whole.count)
        while try replay.next(upTo: last, { lsn, _, _, _, events in got.append((lsn, events)) }) {}
        #expect(got.map(\.0) == reference.map(\.0))
        #expect(got.map(\.1) == reference.map(\.1))
    }

    /// Damage below the written end is still damage: a frame whose start was zeroed, or a byte changed inside one,
    /// is reported at that frame exactly as a replay that reads the whole file reports it.
    @Test func damageBelowTheWrittenEndIsReportedAsAReplayOfTheWholeFileReportsIt() throws {
        let temp = try TemporaryDirectory("replay-damage")
        defer { temp.remove() }
        let journal = try OneSegmentJournal(temp.path, seed: 12, count: 600)
        let (engine, directory, whole, last) = (journal.engine, journal.directory, journal.bytes, journal.lastLSN)
        let damaged = journal.frames[journal.frames.count / 3]
        var zeroed = whole
        for index in damaged.offset..<damaged.offset + 4 { zeroed[index] = 0 }
        var flipped = whole
        flipped[damaged.offset + damaged.length / 2] ^= 0x5A
        for (name, bytes) in [("zeroed frame start", zeroed), ("changed byte", flipped)] {
            try journal.rewrite(bytes)
            let writtenEnd = JournalWrittenEnd(segmentFirstLSN: journal.segment.firstLSN, offset: whole.count)
            let bounded = replayFailure(directory, to: last, engine: engine, writtenEnd: writtenEnd)
            let unbounded = replayFailure(directory, to: last, engine: engine, writtenEnd: nil)
            #expect(bounded?.contains("at byte \(damaged.offset)") == true, "\(name): \(bounded ?? "no error")")
            #expect(bounded == unbounded, "\(name)")
        }
    }

    /// From lsn 1, from a snapshot's lsn and the one after it, and from random lsns, across segment boundaries: every
    /// entry from `since` on, once, in order, with the events a replay of the whole journal gives it.
    @Test(arguments: [UInt64(3), 4, 5])
    func aReplayFromAnyLSNHandsOutTheEventsOfAReplayFromTheStart(seed: UInt64) throws {
        let temp = try TemporaryDirectory("replay-\(seed)")
        defer { temp.remove() }
        let engine = try writeJournal(temp.path, seed: seed, count: 900, snapshotEvery: 250, keep: 100)
        let directory = DataDirectory(temp.path)
        let reference = try referenceEvents(directory, engine: engine)
        let end = try #require(reference.keys.max())
        let snapshots = directory.snapshotFiles().map(\.lsn)
        #expect(snapshots.count >= 3)
        #expect(directory.segments().count >= 3)
        #expect(reference.values.contains { !$0.isEmpty })
        var rng = SplitMix64(seed: seed)
        var starts: [UInt64] = [1, end]
        for lsn in snapshots { starts += [lsn, lsn + 1] }
        for _ in 0..<4 { starts.append(UInt64(rng.int(1...Int(end)))) }
        for since in starts {
            let got = try replayed(directory, from: since, to: end, engine: engine)
            #expect(got.map(\.0) == Array(since...end), "since \(since)")
            #expect(got.allSatisfy { reference[$0.0] == $0.1 }, "since \(since): events as a replay from lsn 1")
            let appended = try replayedAppending(directory, from: since, to: end, engine: engine, every: 37)
            #expect(appended.map(\.0) == got.map(\.0), "since \(since): appending")
            #expect(appended.map(\.1) == got.map(\.1), "since \(since): appended events as handed out one by one")
        }
    }

    /// A segment is read a window at a time: windows that cut frames anywhere, and windows smaller than one frame
    /// (read again, twice as large, from the frame's start), hand out exactly what one read of the whole file does.
    @Test func aReplayReadingSegmentsInWindowsEqualsOneReadingThemWhole() throws {
        let temp = try TemporaryDirectory("replay-windows")
        defer { temp.remove() }
        let engine = try writeJournal(
            temp.path, seed: 8, count: 2_400, snapshotEvery: 10_000, keep: 100, segmentBytes: 64 << 10)
        let directory = DataDirectory(temp.path)
        let reference = try referenceEvents(directory, engine: engine)
        let end = try #require(reference.keys.max())
        let whole = try replayed(directory, from: 1, to: end, engine: engine, window: Int.max / 2)
        #expect(whole.map(\.0) == Array(1...end))
        #expect(whole.allSatisfy { reference[$0.0] == $0.1 })
        for window in [64, 100, 777, 4096] {
            let got = try replayed(directory, from: 1, to: end, engine: engine, window: window)
            #expect(got.map(\.0) == whole.map(\.0), "window \(window)")
            #expect(got.map(\.1) == whole.map(\.1), "window \(window)")
        }
        let largest = directory.segments().compactMap { Files.size($0.path) }.max() ?? 0
        #expect(largest > 8 * 4096, "segments of several windows: \(largest)")
    }

    /// Retention moving segments to the archive (`--archive-dir`) while a replay reads one of them a window at a
    /// time: the replay follows the file to the archive and hands out exactly what it would have.
    @Test func aReplayFollowsTheSegmentItReadsIntoTheArchive() throws {
        let temp = try TemporaryDirectory("replay-archived")
        defer { temp.remove() }
        let engine = try writeJournal(
            temp.path, seed: 8, count: 1_200, snapshotEvery: 10_000, keep: 100, segmentBytes: 64 << 10)
        let archive = temp.sub("archive")
        let directory = DataDirectory(temp.path, archive: archive)
        try directory.create()
        let reference = try referenceEvents(directory, engine: engine)
        let end = try #require(reference.keys.max())
        let replay = try JournalReplay(directory: directory, from: 1, engine: engine, window: 777)
        var got: [(UInt64, [Event])] = []
        var moved = false
        while try replay.next(upTo: end, { lsn, _, _, _, events in got.append((lsn, events)) }) {
            // Part-way into the first segment, every segment goes to the archive, the one being read included.
            if !moved && got.count == 100 {
                for segment in directory.journalSegments() {
                    let name = String(segment.path.split(separator: "/").last!)
                    #expect(rename(segment.path, archive + "/" + name) == 0)
                }
                moved = true
            }
        }
        #expect(moved && directory.journalSegments().isEmpty)
        #expect(got.map(\.0) == Array(1...end))
        #expect(got.allSatisfy { reference[$0.0] == $0.1 })
    }

    /// Once retention removed the segments a snapshot covers, a replay from before the oldest kept snapshot is
    /// refused with the oldest lsn it can start at, and a replay from that lsn works.
    @Test func aReplayFromBeforeTheRetainedJournalIsRefusedWithTheOldestLSN() throws {
        let temp = try TemporaryDirectory("replay-retained")
        defer { temp.remove() }
        let engine = try writeJournal(temp.path, seed: 9, count: 900, snapshotEvery: 200, keep: 1)
        let directory = DataDirectory(temp.path)
        let oldest = JournalReplay.oldestStart(of: directory)
        #expect(oldest > 1)
        #expect(oldest == (directory.snapshotFiles().last?.lsn ?? 0) + 1)
        do {
            _ = try JournalReplay(directory: directory, from: oldest - 1, engine: engine)
            Issue.record("a replay from before the retained journal started")
        } catch {
            guard case .notRetained(let reported) = error else { throw error }
            #expect(reported == oldest)
        }
        let replay = try JournalReplay(directory: directory, from: oldest, engine: engine)
        var first: UInt64?
        _ = try replay.next(upTo: oldest) { lsn, _, _, _, _ in first = lsn }
        #expect(first == oldest)
    }

    /// A feed checks a consumer's `expect` against the journal batch that holds lsn `since_lsn - 1`. Each batch the
    /// journal releases carries the mark of the journal batch it went into (its last lsn and the chain there, as the
    /// trailer on disk says), and a replay from any lsn it can start at knows the mark of the batch that holds the
    /// lsn before it: from the journal it reads, or from the snapshot it starts at when the segments before are gone.
    @Test func aReplayKnowsTheJournalBatchOfTheLSNBeforeItsFirstAsTheJournalReleasedIt() throws {
        let temp = try TemporaryDirectory("replay-mark")
        defer { temp.remove() }
        var released: [(lsns: ClosedRange<UInt64>, mark: ChainMark?)] = []
        let engine = try writeJournal(temp.path, seed: 21, count: 700, snapshotEvery: 150, keep: 2) {
            released = $0.marks.withLock { $0 }
        }
        let directory = DataDirectory(temp.path)
        var onDisk: [ChainMark] = []
        for segment in directory.segments() {
            var reader = try SegmentReader(bytes: try readBytes(segment.path))
            while let batch = try reader.next() {
                onDisk.append(ChainMark(lsn: try #require(batch.records.last?.lsn), chain: batch.chain))
            }
        }
        let firstOnDisk = try #require(directory.segments().first?.firstLSN)
        let last = try #require(onDisk.last?.lsn)
        /// The journal batch on disk that holds `lsn` (at or after `firstOnDisk`).
        func holding(_ lsn: UInt64) -> ChainMark? { onDisk.first { $0.lsn >= lsn } }
        #expect(released.count > 100 && released.allSatisfy { $0.mark != nil })
        for (lsns, mark) in released where lsns.lowerBound >= firstOnDisk {
            #expect(mark == holding(lsns.lowerBound) && mark == holding(lsns.upperBound), "lsns \(lsns)")
        }
        let oldest = JournalReplay.oldestStart(of: directory)
        // Retention removed the first segments: the oldest replay starts at a snapshot, as do those from right
        // after each snapshot kept (which then read no batch before their first lsn).
        #expect(oldest > 1)
        for from in oldest...(last + 1) {
            let replay = try JournalReplay(directory: directory, from: from, engine: engine)
            let expected: ChainMark?
            if from - 1 >= firstOnDisk {
                expected = holding(from - 1)
            } else {
                let snapshot = try #require(directory.snapshotFiles().first { $0.lsn == from - 1 })
                let file = try SnapshotFile.decode(try readBytes(snapshot.path))
                expected = ChainMark(lsn: file.lsn, chain: file.chain)
                // The snapshot's chain is the one the journal released its batch with.
                #expect(released.contains { $0.mark == expected })
            }
            #expect(replay.batchMark == expected, "from \(from)")
        }
    }
}
