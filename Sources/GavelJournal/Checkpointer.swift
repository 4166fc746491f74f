import CGavelShims
import Dispatch
import GavelCore
import GavelEngine
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Writes snapshots off the writer thread and off the journal thread, from a *shadow engine* of its own.
///
/// The journal is a deterministic command log: replaying it to lsn S reaches the writer's state at S exactly (the
/// writer journals a `tick` first when its clock moved with nothing journaled). So at a snapshot point the writer
/// copies nothing; the journal thread, once S is durable, hands (S, the engine time, the chain at S) to
/// ``request(lsn:now:chain:pauseNanos:)`` and goes on committing. The checkpointer's thread brings the shadow
/// forward by reading the durable segments up to S (never past it), checks the chain at S against the journal's,
/// encodes the shadow's state and writes the snapshot file (`Files.writeAtomically`: temporary file, fsync, rename,
/// directory fsync), then applies snapshot retention.
///
/// The shadow is made the first time by ``Recovery/recover(_:options:)`` to S and then kept between snapshots, so
/// each snapshot replays only the entries since the one before. A request that comes while one is in progress
/// replaces any request still waiting (the newest wins): the checkpointer never queues more than one.
///
/// A failure (a read error, a chain mismatch, a full disk) is logged, counted in
/// ``JournalStats/snapshotFailures`` and never stops the process; the newest good snapshot is left as it was.
///
/// Contract: ``request(lsn:now:chain:pauseNanos:)`` and ``finish()`` are called by one thread (the journal's).
///
/// `@unchecked Sendable`: the journal thread reaches it through the mutex-guarded request and the semaphore; the
/// shadow engine and the segment reader are the checkpointer thread's, checked by ``Confinement`` in debug builds.
final class Checkpointer: @unchecked Sendable {
    struct Request {
        var lsn: UInt64
        var now: Millis
        var chain: [UInt8]
        var pauseNanos: UInt64
    }

    private struct Shared {
        var waiting: Request?
        var busy = false
        /// A snapshot point came while one was still being written: the checkpointer is a whole interval behind.
        var behind = false
        var stopping = false
        var idleWaiters: [DispatchSemaphore] = []
    }

    private let directory: DataDirectory
    private let keepSnapshots: Int
    private let retention: JournalRetention
    private let engineConfiguration: EngineConfiguration
    private let logger: Logger
    private let stats: JournalStats
    /// How far the journal has written: the shadow reads the segment being appended to no further.
    private let writtenEnd: JournalWrittenEnd
    private let shared = Mutex(Shared())
    private let wake = DispatchSemaphore(value: 0)
    private var thread: pthread_t?
    /// The shadow's one user at a time (debug builds).
    private let confinement = Confinement("the checkpointer's shadow engine")
    /// The checkpointer thread's kernel id, once it runs (for moving it to another scheduling class).
    private let threadID = Atomic<Int32>(0)
    /// The nice value a snapshot that fell behind is written at: a share of a busy core (about a tenth of what a
    /// normal thread gets), enough to catch up, not enough to hold the writer and the event loops up.
    static let catchUpNice: Int32 = 10

    // Checkpointer thread state.
    private var shadow: Engine?
    private var shadowLSN: UInt64 = 0
    private var shadowChain = Chain.genesis
    /// Where the shadow stands in the journal: the segment it last read, a window of it at a time.
    private var journal: JournalCursor
    private var events: [Event] = []
    /// The shadow's listings by the hash of their id, kept from one snapshot's replay to the next.
    private var listings = ReplayListings()
    /// The listing and user names the shadow's journal reads, shared from one record to the next (the checkpointer's
    /// thread only; as many slots as an event loop's, for the shadow reads every listing's commands).
    private let identifiers: IdentifierCache
    /// The digests and listing hashes of the batch being replayed, their storage kept from one batch to the next.
    private var digests: [CommandDigest?] = []
    private var listingHashes: [UInt64] = []

    init(
        directory: DataDirectory, keepSnapshots: Int, retention: JournalRetention = .none, engine: EngineConfiguration,
        stats: JournalStats, writtenEnd: JournalWrittenEnd, logger: Logger
    ) {
        self.directory = directory
        self.writtenEnd = writtenEnd
        let identifiers = IdentifierCache()
        self.identifiers = identifiers
        journal = JournalCursor(directory: directory, writtenEnd: writtenEnd, identifiers: identifiers)
        self.keepSnapshots = max(1, keepSnapshots)
        self.retention = retention
        self.engineConfiguration = engine
        self.stats = stats
        self.logger = logger
        events.reserveCapacity(64)
        thread = startDedicatedThread("checkpointer") { [self] in confinement.exclusively { run() } }
    }

    /// Asks for a snapshot at `lsn`, which must be durable. Returns at once; a request still waiting is replaced.
    func request(lsn: UInt64, now: Millis, chain: [UInt8], pauseNanos: UInt64) {
        let (replaced, fellBehind) = shared.withLock { state -> (UInt64?, Bool) in
            defer { state.waiting = Request(lsn: lsn, now: now, chain: chain, pauseNanos: pauseNanos) }
            // A point while a snapshot is still being written: the checkpointer is a whole interval behind.
            let fellBehind = state.busy && !state.behind
            if state.busy { state.behind = true }
            return (state.waiting?.lsn, fellBehind)
        }
        if fellBehind {
            // Finish the snapshot being written with a share of the core (see run()).
            let tid = threadID.load(ordering: .acquiring)
            if tid != 0 { Self.foreground(tid, nice: Self.catchUpNice) }
            logger.info(
                "the checkpointer fell a snapshot interval behind: it writes in the normal scheduling class at nice \(Self.catchUpNice) and the default I/O class until it catches up"
            )
        }
        if let replaced {
            stats.snapshotsMerged.wrappingAdd(1, ordering: .relaxed)
            logger.info("snapshot at lsn \(replaced) skipped: the checkpointer is busy; lsn \(lsn) is written instead")
        }
        wake.signal()
    }

    /// Blocks until every snapshot asked for so far is written (or has failed).
    func waitUntilIdle() {
        let done = DispatchSemaphore(value: 0)
        let idle = shared.withLock { state -> Bool in
            if state.waiting == nil && !state.busy { return true }
            state.idleWaiters.append(done)
            return false
        }
        if !idle { done.wait() }
    }

    /// Writes the snapshot still asked for, then stops the thread.
    func finish() {
        shared.withLock { $0.stopping = true }
        wake.signal()
        if let thread { pthread_join(thread, nil) }
        thread = nil
    }

    // MARK: - The checkpointer thread

    /// Makes the calling thread background work: the idle scheduling class, and the idle I/O class, so that a disk
    /// scheduler that honours priorities (mq-deadline, bfq) sends the snapshot's writes to the device only while no
    /// journal write waits. Why the I/O class: a journal `fdatasync` waits for every write the device holds, and a
    /// snapshot's writes queued ahead of it are what make the slow seconds of a run with snapshots
    /// (docs/PERFORMANCE.md).
    private static func background() {
        _ = gavel_lower_thread_priority(20)
        // Advice only: where refused, the writes keep the default class.
        _ = gavel_thread_io_idle(0, 1)
    }

    /// Puts thread `tid` (the checkpointer's, from itself or another thread) in the normal scheduling class at
    /// `nice` and back in the default I/O class: a snapshot someone waits for, or one that fell behind.
    private static func foreground(_ tid: Int32, nice: Int32) {
        _ = gavel_thread_to_nice(tid, nice)
        _ = gavel_thread_io_idle(tid, 0)
    }

    private func run() {
        // Background work: the writer, the journal and the event loops go first when the cores are busy.
        let tid = gavel_thread_id()
        threadID.store(tid, ordering: .releasing)
        Self.background()
        while true {
            wake.wait()
            while true {
                let (next, stop, behind) = shared.withLock { state -> (Request?, Bool, Bool) in
                    defer { state.waiting = nil }
                    state.busy = state.waiting != nil
                    if !state.busy {
                        for waiter in state.idleWaiters { waiter.signal() }
                        state.idleWaiters.removeAll()
                    }
                    let behind = state.behind
                    if state.busy { state.behind = false }
                    return (state.waiting, state.stopping, behind)
                }
                guard let next else {
                    if stop { return }
                    break
                }
                // Someone waits for the shutdown snapshot: the normal class. The points come faster than the idle
                // class lets the snapshots be written (a core kept busy by the server itself): a share of the core
                // at a high nice value, or the shadow and the journal would grow without bound (`request` moves a
                // snapshot that falls behind there while it is written). Otherwise, the idle class again.
                if stop {
                    Self.foreground(tid, nice: 0)
                } else if behind {
                    Self.foreground(tid, nice: Self.catchUpNice)
                } else {
                    Self.background()
                }
                write(next)
            }
        }
    }

    private func write(_ request: Request) {
        let started = monotonicNanos()
        let engine: Engine
        do {
            engine = try catchUp(to: request)
        } catch {
            // The shadow may be part way: the next snapshot makes a new one from recovery.
            shadow = nil
            journal = JournalCursor(directory: directory, writtenEnd: writtenEnd, identifiers: identifiers)
            fail(request, "\(error)")
            return
        }
        let caughtUp = monotonicNanos()
        let path = directory.snapshots + "/" + DataDirectory.snapshotName(lsn: request.lsn)
        let stateBytes: Int
        do {
            stateBytes = try SnapshotFile.write(
                engine: engine, lsn: request.lsn, now: request.now, chain: request.chain, to: path,
                directory: directory.snapshots
            ).stateBytes
        } catch {
            unlink(path + ".tmp")
            fail(request, "\(error)")
            return
        }
        let took = monotonicNanos() - started
        stats.snapshots.wrappingAdd(1, ordering: .relaxed)
        stats.lastSnapshotPauseNanos.store(request.pauseNanos, ordering: .relaxed)
        stats.lastSnapshotNanos.store(took, ordering: .relaxed)
        logger.info(
            "snapshot at lsn \(request.lsn): \(stateBytes) state bytes; writer paused \(request.pauseNanos / 1000) µs, checkpointer caught up in \((caughtUp - started) / 1_000_000) ms and wrote it in \((monotonicNanos() - caughtUp) / 1_000_000) ms",
            metadata: ["lsn": "\(request.lsn)"])
        do {
            try applyRetention()
        } catch {
            stats.retentionFailures.wrappingAdd(1, ordering: .relaxed)
            logger.error("snapshot retention failed (old files are kept, nothing is lost): \(error)")
        }
    }

    private func fail(_ request: Request, _ reason: String) {
        stats.snapshotFailures.wrappingAdd(1, ordering: .relaxed)
        logger.error(
            "SNAPSHOT FAILED at lsn \(request.lsn): \(reason). The server goes on serving; the newest good snapshot is unchanged, and the next snapshot point tries again.",
            metadata: ["lsn": "\(request.lsn)"])
    }

    /// Brings the shadow engine to `request.lsn` and checks it against the journal's chain and clock there.
    private func catchUp(to request: Request) throws -> Engine {
        let engine: Engine
        if let shadow, shadowLSN <= request.lsn {
            engine = shadow
            try replay(into: engine, to: request.lsn)
        } else {
            var options = RecoveryOptions()
            options.toLSN = request.lsn
            options.repair = false
            options.engine = engineConfiguration
            // The shadow takes every command's outcome from the journal and never looks an id up, and nobody reads
            // its events.
            options.buildsRequestIndex = false
            let report = try Recovery.recover(directory, options: options)
            engine = report.engine
            engine.dropRequestIndex()
            engine.discardsEvents = true
            shadow = engine
            listings = ReplayListings()
            shadowLSN = report.lastLSN
            shadowChain = report.chain
            journal = JournalCursor(directory: directory, writtenEnd: writtenEnd, identifiers: identifiers)
        }
        guard shadowLSN == request.lsn else {
            throw CheckpointError("the journal ends at lsn \(shadowLSN), before the snapshot's lsn \(request.lsn)")
        }
        guard shadowChain == request.chain else {
            throw CheckpointError(
                "the chain at lsn \(request.lsn) read back from the journal differs from the journal's")
        }
        guard engine.now == request.now else {
            throw CheckpointError(
                "the replayed engine time at lsn \(request.lsn) is \(engine.now), the writer's was \(request.now)")
        }
        return engine
    }

    /// Applies the durable batches after the shadow's lsn, up to and including `target`; never reads past it.
    private func replay(into engine: Engine, to target: UInt64) throws {
        while shadowLSN < target {
            let batch: SegmentBatch?
            do {
                batch = try journal.next(wanted: shadowLSN + 1, chain: shadowChain)
            } catch {
                throw CheckpointError("\(error)")
            }
            guard let batch else {
                throw CheckpointError("the journal ends at lsn \(shadowLSN), before lsn \(target)")
            }
            guard let last = batch.records.last, last.lsn > shadowLSN else { continue }
            guard last.lsn <= target else {
                throw CheckpointError("a batch of \(journal.segmentPath) runs past the snapshot's lsn \(target)")
            }
            // The records' digests and listing hashes first, then each applied with its listing found by hash and
            // the listings a few commands ahead loaded meanwhile: the shadow's listings are cold (the writer's
            // copies are the ones in the cache), and a lookup by `String` id and a wait for each was most of its
            // rules' time.
            SegmentReadAhead.digestsAndListingHashes(
                of: batch, after: shadowLSN, into: &digests, &listingHashes)
            for position in batch.records.indices where batch.records[position].lsn > shadowLSN {
                Recovery.applyPlain(
                    batch.records, at: position, digests: digests, listingHashes: listingHashes,
                    listings: &listings, to: engine, events: &events)
            }
            shadowLSN = last.lsn
            shadowChain = batch.chain
        }
    }

    /// Keeps the newest `keepSnapshots` snapshots and, once that many exist, removes the segments wholly covered by
    /// the oldest one kept: until then the journal reaches back to the start, so nothing is lost for audit before
    /// the retention window is full. The shadow stands at the newest snapshot, so no segment it still needs goes.
    /// The last segment (the one the journal appends to) is never removed. With a ``JournalRetention``, a covered
    /// segment goes only once it is beyond the retention too, and the oldest older snapshot that can start a replay
    /// inside what remains is kept, so the feed can serve the whole retained journal. "Removed" means moved to the
    /// archive when the directory has one.
    private func applyRetention() throws {
        let snapshots = directory.keptSnapshots()
        if case .none = retention {
            for old in snapshots.dropFirst(keepSnapshots) { try directory.retire(old.path) }
        }
        guard snapshots.count >= keepSnapshots, let oldestKept = snapshots.prefix(keepSnapshots).last else { return }
        let segments = directory.journalSegments()
        let sizes = segments.map { Files.size($0.path) ?? 0 }
        var after = sizes.reduce(0, +)
        let now = Files.wallClockSeconds()
        for (index, segment) in segments.enumerated() {
            guard index + 1 < segments.count else { break }
            // Every lsn in this segment is below the next segment's first lsn.
            guard segments[index + 1].firstLSN <= oldestKept.lsn + 1 else { break }
            after -= sizes[index]
            // Kept: the segments after it hold fewer bytes than retained, or its newest entry (written when the file
            // was last modified) is younger than the retention.
            if case .bytes(let keep) = retention, after < keep { break }
            if case .seconds(let keep) = retention, Files.modifiedSeconds(segment.path).map({ now - $0 < keep }) ?? true
            {
                break
            }
            try directory.retire(segment.path)
            if journal.segmentPath == segment.path {
                journal = JournalCursor(directory: directory, writtenEnd: writtenEnd, identifiers: identifiers)
            }
            logger.debug(
                "journal segment \(segment.path) \(directory.archive == nil ? "removed" : "archived"): covered by snapshot at lsn \(oldestKept.lsn)"
            )
        }
        if case .none = retention { return }
        let first = directory.journalSegments().first?.firstLSN ?? 1
        let older = snapshots.dropFirst(keepSnapshots)
        let anchor = first <= 1 ? nil : older.last(where: { $0.lsn + 1 >= first })
        for old in older where old.path != anchor?.path { try directory.retire(old.path) }
    }
}

/// Why the checkpointer could not bring its shadow engine to a snapshot's lsn.
struct CheckpointError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
