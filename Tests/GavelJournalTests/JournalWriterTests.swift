import GavelCore
@_spi(Manual) import GavelEngine
import GavelJournal
import Glibc
import Synchronization
import Testing

/// What the writer releases once the journal made it durable: the results of the commands sent to it (command id,
/// result, lsn: `nil` for a command taken but not applied) and every event, in release order.
final class ReleasedResults: ReleaseObserver, ResultRecipient, Sendable {
    let items = Mutex<[(id: String, result: CommandResult, lsn: UInt64?)]>([])
    let events = Mutex<[Event]>([])
    /// Each released batch's lsns and the journal batch the journal says they went into.
    let marks = Mutex<[(lsns: ClosedRange<UInt64>, mark: ChainMark?)]>([])

    func released(_ batch: Batch, endsGroup: Bool) {
        batch.forEachResult(of: self) { command, result, lsn in items.withLock { $0.append((command.id, result, lsn)) }
        }
        events.withLock { $0.append(contentsOf: batch.events) }
        if let lsns = batch.lsnRange { marks.withLock { $0.append((lsns, batch.journalMark)) } }
    }
}

/// A writer driven by hand on the test's thread, journaling to a data directory through ``Journal``.
final class JournaledWriter {
    let directory: DataDirectory
    let recovery: RecoveryReport
    let journal: Journal
    let writer: Writer
    let clock: ManualClock
    /// The engine the writer owns (the test reads it only between `runUntilIdle` calls, on the same thread).
    let engine: Engine
    /// Results as released by the journal: (command id, result, lsn), in release order.
    let released = ReleasedResults()

    init(
        _ path: String, journal configuration: JournalConfiguration = JournalConfiguration(),
        writer writerConfiguration: WriterConfiguration = WriterConfiguration(),
        recovery options: RecoveryOptions = RecoveryOptions()
    ) throws {
        directory = DataDirectory(path)
        try directory.create()
        recovery = try Recovery.recover(directory, options: options)
        journal = try Journal(directory: directory, configuration: configuration, recovery: recovery)
        engine = recovery.engine
        clock = ManualClock(engine.now)
        writer = Writer(
            configuration: writerConfiguration, engine: engine, lastLSN: recovery.lastLSN, sink: journal,
            snapshots: journal, clock: clock, observer: released)
        writer.startManual()
    }

    /// Submits `command` at engine time `at` (turns run first when the clock moves, as `gavel simulate` does).
    func submit(_ command: Command, at: Millis) {
        moveClock(to: at)
        #expect(writer.submit(command, replyTo: released) == nil)
    }

    /// Submits `command` at engine time `at` as ``submit(_:at:)`` does, with no one to answer, and returns the
    /// refusal the writer gives before the journal (a listing evicted meanwhile: not an entry), if any.
    @discardableResult
    func offer(_ command: Command, at: Millis) -> CommandResult? {
        moveClock(to: at)
        return writer.submit(command, replyTo: nil)
    }

    /// Runs the turns of what was submitted, then moves the clock to `at` when that is later.
    private func moveClock(to at: Millis) {
        guard at > clock.now() else { return }
        writer.runUntilIdle()
        clock.set(at)
    }

    /// Applies everything submitted and waits until it is durable and released, and every snapshot asked for is
    /// written (so the test reads a directory that retention is not changing under it).
    func settle() {
        writer.runUntilIdle()
        journal.waitForSnapshots()
    }

    /// Submits the next `count` commands of `workload`, settling every `settleEvery` commands and at the end.
    func feed(_ workload: inout Workload, _ count: Int, settleEvery: Int = 13) {
        for step in 0..<count {
            let (command, at) = workload.next()
            submit(command, at: at)
            if step % settleEvery == 0 { settle() }
        }
        settle()
    }

    func finish() {
        writer.finishManual()
        journal.close()
    }
}

private func writerConfiguration(snapshotEvery: UInt64 = 0, onShutdown: Bool = false) -> WriterConfiguration {
    var c = WriterConfiguration()
    c.snapshotEveryEntries = snapshotEvery
    c.snapshotOnShutdown = onShutdown
    return c
}

private func journalConfiguration(segmentBytes: Int = 64 << 20, keep: Int = 2, fsync: FsyncPolicy = .none)
    -> JournalConfiguration
{
    var c = JournalConfiguration()
    c.segmentBytes = segmentBytes
    c.keepSnapshots = keep
    c.fsync = fsync
    return c
}

/// Checks that the segments are named by their first lsn, chain to each other, and hold lsns without a gap.
private func checkSegments(_ directory: DataDirectory, sourceLocation: SourceLocation = #_sourceLocation) throws {
    var expected: UInt64?
    var chain: [UInt8]?
    for segment in directory.segments() {
        var reader = try SegmentReader(bytes: try readBytes(segment.path))
        #expect(reader.header.firstLSN == segment.firstLSN, sourceLocation: sourceLocation)
        if let expected { #expect(reader.header.firstLSN == expected, sourceLocation: sourceLocation) }
        if let chain { #expect(reader.header.previousChain == chain, sourceLocation: sourceLocation) }
        while try reader.next() != nil {}
        expected = reader.nextLSN
        chain = reader.chain
    }
}

/// Passes batches to an inner sink and keeps, for each release, the batch's first lsn and whether it ended its group.
final class GroupRecordingSink: BatchSink, Sendable {
    let inner: BatchSink
    let releases = Mutex<[(lsn: UInt64, endsGroup: Bool)]>([])

    init(_ inner: BatchSink) { self.inner = inner }

    func write(_ batch: Batch, release: @escaping BatchRelease) {
        inner.write(batch) { [self] released, endsGroup in
            releases.withLock { $0.append((released.entries.first?.lsn ?? 0, endsGroup)) }
            release(released, endsGroup)
        }
    }

    func flush() { inner.flush() }
}

/// Holds the journal thread inside its first fdatasync's observer until ``open()``.
final class FirstSyncHold: Sendable {
    let entered = Atomic<Bool>(false)
    private let opened = Atomic<Bool>(false)
    private let used = Atomic<Bool>(false)

    func observe() {
        guard !used.exchange(true, ordering: .acquiringAndReleasing) else { return }
        entered.store(true, ordering: .releasing)
        while !opened.load(ordering: .acquiring) { usleep(100) }
    }

    func open() { opened.store(true, ordering: .releasing) }
}

@Suite("Journal and writer in process", .serialized)
struct JournalWriterTests {
    @Test func batchesHandedOverDuringAnFsyncAreMadeDurableAndReleasedAsOneGroup() throws {
        let temp = try TemporaryDirectory("group")
        defer { temp.remove() }
        let directory = DataDirectory(temp.path)
        try directory.create()
        let recovery = try Recovery.recover(directory)
        let hold = FirstSyncHold()
        let journal = try Journal(
            directory: directory, configuration: journalConfiguration(fsync: .always), recovery: recovery,
            syncObserver: { _ in hold.observe() })
        let sink = GroupRecordingSink(journal)
        let released = ReleasedResults()
        let writer = Writer(
            configuration: writerConfiguration(), engine: recovery.engine, lastLSN: recovery.lastLSN, sink: sink,
            clock: ManualClock(recovery.engine.now), observer: released)
        writer.startManual()
        func submit(_ command: Command) {
            #expect(writer.submit(command, replyTo: released) == nil)
            writer.runUntilIdle()
        }
        submit(
            Command(
                id: "o1", listing: "L1",
                body: .open(seller: "sam", terms: .english(.init(start: 100, closesAt: 60_000)))
            ))
        while !hold.entered.load(ordering: .acquiring) { usleep(100) }
        // The journal thread is in the first batch's fdatasync: these three batches wait for it.
        for (i, bidder) in ["ann", "bob", "cy"].enumerated() {
            submit(Command(id: "b\(i)", listing: "L1", body: .bid(bidder: bidder, amount: Money(1000 * (i + 1)))))
        }
        #expect(released.items.withLock { $0.isEmpty }, "nothing is released before its fdatasync has returned")
        hold.open()
        journal.flush()
        #expect(sink.releases.withLock { $0.map(\.lsn) } == [1, 2, 3, 4])
        #expect(sink.releases.withLock { $0.map(\.endsGroup) } == [true, false, false, true])
        #expect(released.items.withLock { $0.map(\.id) } == ["o1", "b0", "b1", "b2"])
        #expect(journal.stats.syncs.load(ordering: .relaxed) == 2, "one fdatasync for the three batches that waited")
        writer.finishManual()
        journal.close()
    }

    @Test(arguments: [FsyncPolicy.always, .interval(ms: 5), .none])
    func recoveryReachesTheWritersStateAndEveryResultWasReleasedInLSNOrder(fsync: FsyncPolicy) throws {
        let temp = try TemporaryDirectory("writer")
        defer { temp.remove() }
        let run = try JournaledWriter(
            temp.path, journal: journalConfiguration(fsync: fsync), writer: writerConfiguration())
        var workload = Workload(seed: 21)
        var submitted = 0
        for step in 0..<2000 {
            let (command, at) = workload.next()
            run.submit(command, at: at)
            submitted += 1
            if step % 50 == 0 { run.settle() }
        }
        run.settle()
        let hash = run.engine.stateHash()
        let released = run.released.items.withLock { $0 }
        #expect(released.count == submitted)
        let lsns = released.compactMap(\.lsn)
        #expect(lsns.count == submitted, "every command of the workload is for a listing the engine holds")
        #expect(zip(lsns, lsns.dropFirst()).allSatisfy { $0 < $1 }, "released in lsn order")
        run.finish()

        let report = try Recovery.recover(run.directory)
        #expect(report.engine.stateHash() == hash)
        #expect(report.truncation == nil)
        #expect(report.snapshot == nil)
        #expect(report.lastLSN >= UInt64(submitted), "every command and every tick has an lsn")
        // The journal holds every command with the result it was released with.
        let records = try journalRecords(run.directory)
        #expect(records.map(\.lsn) == Array(1...report.lastLSN))
        let replayed = replay(records)
        #expect(replayed.engine.stateHash() == hash)
        let byLSN = Dictionary(uniqueKeysWithValues: replayed.results.map { ($0.lsn, $0) })
        for entry in released {
            let lsn = try #require(entry.lsn)
            #expect(byLSN[lsn]?.command.id == entry.id)
            #expect(byLSN[lsn]?.result == entry.result)
        }
        #expect(Verification.run(run.directory).problems == [])
    }

    /// A barrier asked for while the writer has nothing to apply reaches the journal as a batch with no entry (alone,
    /// first or last among the batches one commit takes): it is released in its place without a frame, never taken
    /// for a batch with entries (the journal thread once stopped the process on it).
    @Test(arguments: [FsyncPolicy.always, .interval(ms: 2), .none])
    func barriersWithNothingToJournalAreReleasedInOrderWithoutAFrame(fsync: FsyncPolicy) async throws {
        let temp = try TemporaryDirectory("barriers")
        defer { temp.remove() }
        let directory = DataDirectory(temp.path)
        try directory.create()
        let recovery = try Recovery.recover(directory)
        let journal = try Journal(
            directory: directory, configuration: journalConfiguration(fsync: fsync), recovery: recovery)
        let released = ReleasedResults()
        let writer = Writer(
            configuration: writerConfiguration(), engine: recovery.engine, lastLSN: recovery.lastLSN, sink: journal,
            clock: ManualClock(recovery.engine.now), observer: released)
        writer.start()
        var opened = 0
        for round in 0..<120 {
            if round % 3 == 0 {
                let command = Command(
                    id: "o\(round)", listing: "L\(round)",
                    body: .open(seller: "sam", terms: .english(.init(start: 100, closesAt: 60_000))))
                #expect(writer.submit(command, replyTo: released) == nil)
                opened += 1
            }
            await writer.barrier()
            // A barrier waits for everything submitted before it.
            #expect(released.items.withLock { $0.count } == opened)
        }
        await writer.shutdown()
        journal.close()
        let again = try Recovery.recover(directory)
        #expect(again.lastLSN == UInt64(opened))
        #expect(again.engine.listingCount == opened)
    }

    @Test func segmentsRollAtTheConfiguredSizeAndAppendingResumesAfterRecovery() throws {
        let temp = try TemporaryDirectory("roll")
        defer { temp.remove() }
        let journal = journalConfiguration(segmentBytes: 2048)
        var workload = Workload(seed: 5)
        var hash = ""
        // Three runs on the same directory: each recovers what the one before wrote and appends to it.
        for runIndex in 0..<3 {
            let run = try JournaledWriter(temp.path, journal: journal, writer: writerConfiguration())
            if runIndex > 0 {
                #expect(run.engine.stateHash() == hash, "run \(runIndex) starts where the last one ended")
                #expect(run.recovery.activeSegment != nil)
            }
            for step in 0..<700 {
                let (command, at) = workload.next()
                run.submit(command, at: at)
                if step % 7 == 0 { run.settle() }
            }
            run.settle()
            hash = run.engine.stateHash()
            run.finish()
        }
        let directory = DataDirectory(temp.path)
        let segments = directory.segments()
        #expect(segments.count > 10, "2 KiB segments roll often: \(segments.count)")
        #expect(segments.first?.firstLSN == 1)
        for segment in segments.dropLast() {
            let size = try readBytes(segment.path).count
            // A segment is rolled once it reaches the size; the frame that crossed it is the last one.
            #expect(size >= 2048 && size < 2048 + 64 * 1024, "\(segment.path): \(size) bytes")
        }
        try checkSegments(directory)
        #expect(try Recovery.recover(directory).engine.stateHash() == hash)
        #expect(replay(try journalRecords(directory)).engine.stateHash() == hash)
        #expect(Verification.run(directory).problems == [])
    }

    /// What readers of the running journal read the segment it appends to up to: once everything handed over is
    /// released, ``Journal/writtenEnd`` names the last segment and the end of its last frame, across rolls and
    /// across a restart that appends to the segment recovery found.
    @Test func theJournalPublishesTheEndOfTheLastFrameItWroteAcrossRollsAndRestarts() throws {
        let temp = try TemporaryDirectory("written-end")
        defer { temp.remove() }
        let configuration = journalConfiguration(segmentBytes: 2048)
        var workload = Workload(seed: 13)
        for _ in 0..<2 {
            let run = try JournaledWriter(temp.path, journal: configuration, writer: writerConfiguration())
            let start = run.journal.writtenEnd.current
            if let active = run.recovery.activeSegment, active.size < configuration.segmentBytes {
                #expect(start == .init(segmentFirstLSN: active.firstLSN, offset: active.size))
            } else {
                #expect(start == .init(segmentFirstLSN: run.recovery.lastLSN + 1, offset: 0))
            }
            for _ in 0..<20 {
                run.feed(&workload, 30)
                let last = try #require(run.directory.segments().last)
                var reader = try SegmentReader(bytes: try readBytes(last.path))
                while try reader.next() != nil {}
                #expect(
                    run.journal.writtenEnd.current == .init(segmentFirstLSN: last.firstLSN, offset: reader.offset))
            }
            run.finish()
        }
        #expect(DataDirectory(temp.path).segments().count > 5, "2 KiB segments roll often")
    }

    @Test func snapshotsWithRetentionDeleteCoveredSegmentsAndRecoveryFromSnapshotPlusSuffixMatches() throws {
        let temp = try TemporaryDirectory("retention")
        defer { temp.remove() }
        let directory = DataDirectory(temp.path)
        let run = try JournaledWriter(
            temp.path, journal: journalConfiguration(segmentBytes: 2048, keep: 2),
            writer: writerConfiguration(snapshotEvery: 300))
        var workload = Workload(seed: 8)
        var allRecordsSeen: [UInt64: JournalRecord] = [:]
        for step in 0..<3000 {
            let (command, at) = workload.next()
            run.submit(command, at: at)
            if step % 10 == 0 { run.settle() }
            if step % 100 == 0 {
                // Keep a copy of every record ever written, to check the suffix later.
                run.settle()
                for record in try journalRecords(directory) { allRecordsSeen[record.lsn] = record }
            }
        }
        // A suffix after the last snapshot, so recovery has journal to replay.
        run.settle()
        let hash = run.engine.stateHash()
        run.finish()
        for record in try journalRecords(directory) { allRecordsSeen[record.lsn] = record }

        let snapshots = directory.snapshotFiles()
        #expect(snapshots.count == 2, "keepSnapshots = 2: \(snapshots.map(\.lsn))")
        guard let newest = snapshots.first, let oldest = snapshots.last else { return }
        let segments = directory.segments()
        #expect(segments.first!.firstLSN > 1, "segments before the oldest kept snapshot were deleted")
        #expect(
            segments.first!.firstLSN <= oldest.lsn + 1, "the journal still reaches back to the oldest kept snapshot")
        if segments.count > 1 {
            #expect(segments[1].firstLSN > oldest.lsn + 1, "only segments wholly covered are deleted")
        }
        try checkSegments(directory)

        let report = try Recovery.recover(directory)
        #expect(report.snapshot?.lsn == newest.lsn)
        #expect(report.replayedRecords > 0)
        #expect(report.engine.stateHash() == hash)
        // The same state from a clean replay of every record ever written.
        let everything = (1...report.lastLSN).compactMap { allRecordsSeen[$0] }
        #expect(everything.count == Int(report.lastLSN), "the test saw every record before retention removed it")
        #expect(replay(everything).engine.stateHash() == hash)
        // And from the older snapshot: damage the newest one and recovery falls back to it.
        var bytes = try readBytes(newest.path)
        bytes[bytes.count / 2] ^= 0x10
        try writeBytes(bytes, to: newest.path)
        let fallback = try Recovery.recover(directory)
        #expect(fallback.snapshot?.lsn == oldest.lsn)
        #expect(fallback.rejectedSnapshots.map(\.path) == [newest.path])
        #expect(fallback.engine.stateHash() == hash)
        let verification = Verification.run(directory)
        #expect(verification.problems.count == 1)
        #expect(verification.problems.first?.contains(newest.path) == true)
    }

    @Test func aShutdownSnapshotAfterTheClockMovedWithoutEventsVerifiesClean() throws {
        let temp = try TemporaryDirectory("shutdown")
        defer { temp.remove() }
        let run = try JournaledWriter(temp.path, writer: writerConfiguration(onShutdown: true))
        run.submit(
            Command(
                id: "o1", listing: "L1",
                body: .open(seller: "sam", terms: .english(.init(start: 100, closesAt: 60_000)))),
            at: 0)
        run.submit(Command(id: "b1", listing: "L1", body: .bid(bidder: "ann", amount: 1000)), at: 10)
        run.settle()
        // The clock moves with no timer due: nothing to journal, but the engine's clock is part of its state.
        run.clock.set(30_000)
        run.settle()
        let hash = run.engine.stateHash()
        run.finish()
        let directory = DataDirectory(temp.path)
        #expect(directory.snapshotFiles().count == 1)
        #expect(try Recovery.recover(directory).engine.stateHash() == hash)
        #expect(Verification.run(directory).problems == [])
    }

    @Test func verificationOfAHealthyDirectoryWithSnapshotsAndSegmentsReportsNothing() throws {
        let temp = try TemporaryDirectory("verify")
        defer { temp.remove() }
        let run = try JournaledWriter(
            temp.path, journal: journalConfiguration(segmentBytes: 4096, keep: 3),
            writer: writerConfiguration(snapshotEvery: 400, onShutdown: true))
        var workload = Workload(seed: 13)
        run.feed(&workload, 1500)
        run.finish()
        let result = Verification.run(DataDirectory(temp.path))
        #expect(result.problems == [])
        #expect(result.notes.contains { $0.contains("end in the same state") })
    }
}
