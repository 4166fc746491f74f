import CGavelShims
import GavelCore
@_spi(Manual) import GavelEngine
import GavelJournal
import Glibc
import Synchronization
import Testing

/// Writer settings with timers and evictions in play (closed listings evicted 50 ms after their end, a small cap of
/// request ids per principal), and recovery options that agree.
private func busyEngine(maxRequestIDs: Int = 60) -> (WriterConfiguration, RecoveryOptions) {
    var writer = WriterConfiguration()
    writer.snapshotOnShutdown = false
    writer.engine.closedListingRetentionMs = 50
    writer.engine.maxRequestIDsPerPrincipal = maxRequestIDs
    writer.engine.idempotencyWindowMs = 400
    var options = RecoveryOptions()
    options.engine = writer.engine
    return (writer, options)
}

private func journal(segmentBytes: Int, keep: Int, fsync: FsyncPolicy = .none) -> JournalConfiguration {
    var c = JournalConfiguration()
    c.segmentBytes = segmentBytes
    c.keepSnapshots = keep
    c.fsync = fsync
    return c
}

/// The snapshots the checkpointer writes from its shadow engine, compared with the writer's own engine.
@Suite("Checkpointer", .serialized)
struct CheckpointerTests {
    /// Random command streams over every format, with timers firing, request ids expiring and listings evicted; at
    /// random points the test copies the writer's state stop-the-world and asks for a snapshot: each file holds
    /// exactly those bytes, at that lsn, whether the shadow came from recovery or was carried forward, across
    /// segment rolls.
    @Test(arguments: [UInt64(1), 2, 3, 4, 5, 6])
    func snapshotsAreByteIdenticalToAStopTheWorldCopyAtTheSameLSN(seed: UInt64) throws {
        let temp = try TemporaryDirectory("checkpoint-\(seed)")
        defer { temp.remove() }
        let (writerConfiguration, options) = busyEngine()
        let run = try JournaledWriter(
            temp.path, journal: journal(segmentBytes: 4096, keep: 100), writer: writerConfiguration,
            recovery: options)
        var workload = Workload(seed: seed &* 7919)
        workload.maxStep = 40
        var rng = SplitMix64(seed: seed)
        var expected: [UInt64: [UInt8]] = [:]
        var formats = Set<String>()
        for _ in 0..<1500 {
            let (command, at) = workload.next()
            if case .open(_, let terms) = command.body { formats.insert("\(terms.format)") }
            run.offer(command, at: at)
            if rng.chance(1) {
                // Sometimes the clock moves on with nothing journaled first: the snapshot journals a tick.
                if rng.chance(50) { run.clock.set(run.clock.now() + 7) }
                run.writer.runUntilIdle()
                #expect(run.writer.requestSnapshot())
                run.writer.runUntilIdle()
                expected[try lastLSN(run)] = run.engine.encodeState()
                // Half the time the next point comes while this one is being written: it is merged or queued.
                if rng.chance(50) { run.journal.waitForSnapshots() }
            }
        }
        run.writer.runUntilIdle()
        #expect(run.writer.requestSnapshot())
        run.writer.runUntilIdle()
        expected[try lastLSN(run)] = run.engine.encodeState()
        run.journal.waitForSnapshots()
        let written = DataDirectory(temp.path).snapshotFiles()
        run.finish()

        #expect(formats.count >= 3, "the stream opened listings of several formats: \(formats)")
        #expect(expected.count >= 3, "several snapshot points")
        let merged = Int(run.journal.stats.snapshotsMerged.load(ordering: .relaxed))
        #expect(written.count >= 3)
        #expect(written.count + merged == expected.count, "every snapshot point was written or merged into a later one")
        #expect(written.first?.lsn == expected.keys.max(), "the last point is always written")
        for (lsn, path) in written {
            let file = try SnapshotFile.decode(try readBytes(path))
            #expect(file.lsn == lsn)
            #expect(file.state == expected[lsn], "snapshot at lsn \(lsn) holds the writer's state at \(lsn)")
        }
        #expect(Verification.run(DataDirectory(temp.path)).problems == [])
    }

    /// A threaded writer takes commands from another thread while snapshots are asked for: every snapshot holds the
    /// state that replaying the journal from its start reaches at the snapshot's lsn, and nothing waited on it.
    @Test func snapshotsTakenWhileCommandsKeepFlowingHoldTheStateAtTheirLSN() throws {
        let temp = try TemporaryDirectory("checkpoint-flowing")
        defer { temp.remove() }
        let directory = DataDirectory(temp.path)
        try directory.create()
        var (writerConfiguration, options) = busyEngine(maxRequestIDs: 1000)
        writerConfiguration.snapshotOnShutdown = true
        let recovery = try Recovery.recover(directory, options: options)
        let journal = try Journal(
            directory: directory, configuration: journal(segmentBytes: 16 << 10, keep: 50), recovery: recovery)
        let clock = ManualClock(0)
        let answered = ReleasedResults()
        let writer = Writer(
            configuration: writerConfiguration, engine: recovery.engine, sink: journal, snapshots: journal,
            clock: clock, observer: answered)
        writer.start()
        var workload = Workload(seed: 99)
        var submitted = 0
        for step in 0..<6000 {
            let (command, at) = workload.next()
            if at > clock.now() { clock.set(at) }
            if writer.submit(command, replyTo: answered) == nil {
                submitted += 1
            }
            if step % 500 == 250 { #expect(writer.requestSnapshot()) }
            if step % 64 == 0 { writer.wake() }
        }
        let stopped = Mutex(false)
        Task {
            await writer.shutdown()
            stopped.withLock { $0 = true }
        }
        while !stopped.withLock({ $0 }) { usleep(1000) }
        journal.close()
        #expect(answered.items.withLock { $0.count } == submitted, "every command was answered")

        let snapshots = directory.snapshotFiles()
        // Points that came while one was being written were merged; the shutdown snapshot is always written.
        let final = try Recovery.recover(directory, options: options)
        #expect(snapshots.first?.lsn == final.lastLSN, "snapshots at \(snapshots.map(\.lsn))")
        var replayOptions = options
        replayOptions.useSnapshots = false
        replayOptions.repair = false
        for (lsn, path) in snapshots {
            let file = try SnapshotFile.decode(try readBytes(path))
            replayOptions.toLSN = lsn
            let replayed = try Recovery.recover(directory, options: replayOptions)
            #expect(replayed.lastLSN == lsn)
            #expect(file.state == replayed.engine.encodeState(), "snapshot at lsn \(lsn)")
            #expect(file.chain == replayed.chain)
        }
        #expect(journal.stats.snapshotFailures.load(ordering: .relaxed) == 0)
    }

    /// A snapshot that cannot be written (its temporary file's name is taken by a directory) is logged and counted;
    /// the writer goes on applying and releasing, the newest good snapshot is unchanged, and the next snapshot point
    /// is written.
    @Test func aSnapshotThatCannotBeWrittenKeepsTheServerServingAndTheOldSnapshotIntact() throws {
        let temp = try TemporaryDirectory("checkpoint-fail")
        defer { temp.remove() }
        let directory = DataDirectory(temp.path)
        let options = RecoveryOptions()
        let run = try JournaledWriter(temp.path, journal: journal(segmentBytes: 4096, keep: 2))
        var workload = Workload(seed: 5)
        run.feed(&workload, 200)
        #expect(run.writer.requestSnapshot())
        run.writer.runUntilIdle()
        run.journal.waitForSnapshots()
        let good = try #require(directory.snapshotFiles().first)
        let goodBytes = try readBytes(good.path)

        run.feed(&workload, 200)
        let blocked = try lastLSN(run)
        // The checkpointer writes <lsn>.snap.tmp first: a directory in its way makes the write fail.
        let obstacle = directory.snapshots + "/" + DataDirectory.snapshotName(lsn: blocked) + ".tmp"
        #expect(mkdir(obstacle, 0o700) == 0)
        #expect(run.writer.requestSnapshot())
        run.writer.runUntilIdle()
        run.journal.waitForSnapshots()
        #expect(run.journal.stats.snapshotFailures.load(ordering: .relaxed) == 1)
        #expect(directory.snapshotFiles().map(\.lsn) == [good.lsn], "no snapshot at lsn \(blocked)")
        #expect(try readBytes(good.path) == goodBytes, "the good snapshot is untouched")

        // Still serving: commands are applied, made durable and answered.
        let answeredBefore = run.released.items.withLock { $0.count }
        run.feed(&workload, 100)
        #expect(run.released.items.withLock { $0.count } == answeredBefore + 100)
        rmdir(obstacle)
        #expect(run.writer.requestSnapshot())
        run.writer.runUntilIdle()
        let state = run.engine.encodeState()
        let lsn = try lastLSN(run)
        run.journal.waitForSnapshots()
        let newest = try #require(directory.snapshotFiles().first)
        #expect(newest.lsn == lsn)
        #expect(try SnapshotFile.decode(try readBytes(newest.path)).state == state)
        run.finish()
        #expect(try Recovery.recover(directory, options: options).engine.encodeState() == state)
    }

    /// With two snapshots kept, the checkpointer deletes the segments the older one covers, never one its shadow
    /// still has to read: many snapshot points over many small segments all succeed and recovery matches.
    @Test func retentionWhileTheShadowReadsOnNeverDeletesASegmentItNeeds() throws {
        let temp = try TemporaryDirectory("checkpoint-retention")
        defer { temp.remove() }
        let directory = DataDirectory(temp.path)
        let options = RecoveryOptions()
        var writerConfiguration = WriterConfiguration()
        writerConfiguration.snapshotEveryEntries = 97
        let run = try JournaledWriter(
            temp.path, journal: journal(segmentBytes: 2048, keep: 2), writer: writerConfiguration, recovery: options)
        var workload = Workload(seed: 17)
        run.feed(&workload, 3000)
        #expect(run.writer.requestSnapshot())
        run.writer.runUntilIdle()
        let state = run.engine.encodeState()
        run.journal.waitForSnapshots()
        run.finish()
        #expect(run.journal.stats.snapshotFailures.load(ordering: .relaxed) == 0)
        #expect(run.journal.stats.snapshots.load(ordering: .relaxed) >= 2)
        let snapshots = directory.snapshotFiles()
        #expect(snapshots.count == 2)
        let oldest = try #require(snapshots.last)
        let segments = directory.segments()
        #expect(segments.first!.firstLSN > 1, "covered segments were deleted")
        #expect(segments.first!.firstLSN <= oldest.lsn + 1, "the journal reaches back to the oldest kept snapshot")
        #expect(try Recovery.recover(directory, options: options).engine.encodeState() == state)
        #expect(Verification.run(directory).problems == [])
    }
}

/// The lsn of the last entry the writer applied (read on the writer's own thread).
private func lastLSN(_ run: JournaledWriter) throws -> UInt64 {
    let lsn = Mutex<UInt64>(0)
    _ = run.writer.inspect { _, current in lsn.withLock { $0 = current } }
    run.writer.runUntilIdle()
    return lsn.withLock { $0 }
}

/// Recovery's progress is time-based: nothing for a short recovery, and a line each interval for a long one.
@Suite("Recovery progress")
struct RecoveryProgressTests {
    private func journalOf(_ count: Int, in path: String) throws -> DataDirectory {
        let run = try JournaledWriter(path, journal: journal(segmentBytes: 4096, keep: 2, fsync: .none))
        var workload = Workload(seed: 3)
        run.feed(&workload, count, settleEvery: 50)
        run.finish()
        return DataDirectory(path)
    }

    @Test func aRecoveryShorterThanASecondReportsNoProgress() throws {
        let temp = try TemporaryDirectory("progress-short")
        defer { temp.remove() }
        let directory = try journalOf(300, in: temp.path)
        let calls = Mutex<[Int]>([])
        var options = RecoveryOptions()
        options.useSnapshots = false
        options.progress = { records, _ in calls.withLock { $0.append(records) } }
        let report = try Recovery.recover(directory, options: options)
        #expect(report.replayedRecords >= 300)
        #expect(calls.withLock { $0 }.isEmpty)
    }

    @Test func aRecoveryLongerThanTheIntervalReportsGrowingCountsEachInterval() throws {
        let temp = try TemporaryDirectory("progress-long")
        defer { temp.remove() }
        let directory = try journalOf(300, in: temp.path)
        let calls = Mutex<[Int]>([])
        var options = RecoveryOptions()
        options.useSnapshots = false
        // An interval of zero stands for a recovery that takes many intervals: a line after every batch.
        options.progressIntervalNanos = 0
        options.progress = { records, _ in calls.withLock { $0.append(records) } }
        let report = try Recovery.recover(directory, options: options)
        let seen = calls.withLock { $0 }
        #expect(seen.count >= 6, "one line per batch read: \(seen.count)")
        #expect(seen == seen.sorted() && seen.last == report.replayedRecords)
    }
}

/// The checkpointer stays out of the server's way: background CPU and background disk I/O.
@Suite struct CheckpointerPriorityTests {
    /// The threads of this process named `name`, by kernel id.
    private func threads(named name: String) -> [Int32] {
        guard let dir = opendir("/proc/self/task") else { return [] }
        defer { closedir(dir) }
        var found: [Int32] = []
        while let entry = readdir(dir) {
            let tid = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard let id = Int32(tid),
                let comm = try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8),
                comm.trimmingCharacters(in: .whitespacesAndNewlines) == name
            else { continue }
            found.append(id)
        }
        return found
    }

    /// A snapshot's writes go to the disk in the idle I/O class (and its CPU in the idle scheduling class), so that
    /// the journal's writes and `fdatasync`s go first.
    @Test func theCheckpointerWritesInTheIdleIOAndSchedulingClasses() throws {
        let temp = try TemporaryDirectory("checkpointer-classes")
        defer { temp.remove() }
        let run = try JournaledWriter(temp.path, journal: journal(segmentBytes: 1 << 20, keep: 2))
        var workload = Workload(seed: 5)
        run.feed(&workload, 200, settleEvery: 50)
        #expect(run.writer.requestSnapshot())
        run.settle()
        // Other suites' checkpointers may be catching up or stopping (the default classes); this one is idle.
        let schedIdle: Int32 = 5  // SCHED_IDLE, which Glibc's module does not export
        let idle = threads(named: "checkpointer").filter {
            gavel_thread_io_class($0) == 3 && sched_getscheduler($0) == schedIdle
        }
        #expect(!idle.isEmpty, "an idle checkpointer in the idle I/O and scheduling classes")
        run.finish()
    }
}
