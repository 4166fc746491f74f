import CGavelShims
import Dispatch
import GavelCore
import GavelEngine
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// When the journal calls fdatasync.
public enum FsyncPolicy: Sendable, Equatable, CustomStringConvertible {
    /// fdatasync every flushed batch before any of its results or events is released (the default).
    case always
    /// Release after the write; fdatasync at most every `ms` milliseconds. A power loss can lose the last interval.
    case interval(ms: Int)
    /// Never fdatasync (the OS writes back when it likes). A power loss can lose anything not yet written back.
    case none

    /// Parses `always`, `interval:MS` or `none`.
    public init?(argument: String) {
        switch argument {
        case "always": self = .always
        case "none": self = .none
        default:
            guard argument.hasPrefix("interval:"), let ms = Int(argument.dropFirst(9)), ms > 0 else { return nil }
            self = .interval(ms: ms)
        }
    }

    public var description: String {
        switch self {
        case .always: "always"
        case .interval(let ms): "interval:\(ms)"
        case .none: "none"
        }
    }
}

/// Settings of the journal. Every limit has a default.
/// How long covered journal segments are kept (`--retain-journal`): a segment a snapshot covers is removed (or
/// archived) only once it is beyond this.
public enum JournalRetention: Sendable, Equatable {
    /// Removed as soon as the oldest kept snapshot covers it.
    case none
    /// Kept until its newest entry is this many seconds old.
    case seconds(Int64)
    /// Kept while the segments after it hold fewer than this many bytes.
    case bytes(Int)

    /// Reads `24h`, `30m`, `90s`, `7d` or `10GiB`, `500MiB`, `64KiB`, `1GB`, `4096B`; `none` or `0`: ``none``.
    public init?(argument: String) {
        let text = argument
        if text == "none" || text == "0" {
            self = .none
            return
        }
        let digits = text.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, let value = Int64(digits), value > 0 else { return nil }
        let units: [String: (Int64, Bool)] = [
            "s": (1, false), "m": (60, false), "h": (3600, false), "d": (86400, false),
            "B": (1, true), "KiB": (1 << 10, true), "MiB": (1 << 20, true), "GiB": (1 << 30, true),
            "TiB": (1 << 40, true), "KB": (1000, true), "MB": (1_000_000, true), "GB": (1_000_000_000, true),
            "TB": (1_000_000_000_000, true),
        ]
        guard let (factor, isBytes) = units[String(text.dropFirst(digits.count))] else { return nil }
        let (total, overflow) = value.multipliedReportingOverflow(by: factor)
        guard !overflow else { return nil }
        self = isBytes ? .bytes(Int(total)) : .seconds(total)
    }
}

public struct JournalConfiguration: Sendable {
    public var fsync: FsyncPolicy = .always
    /// Roll to a new segment once the current one reaches this size.
    public var segmentBytes = 64 << 20
    /// Snapshots to keep; segments are deleted once the oldest kept snapshot covers them.
    public var keepSnapshots = 2
    /// How much covered journal to keep beyond what snapshots need, for feed consumers catching up.
    public var retention = JournalRetention.none
    /// Batches handed to the journal and not yet durable before the writer waits (backpressure).
    public var maxInFlightBatches = 64
    /// How far ahead of its last frame the journal keeps the open segment written with zeros, at least (0: not at
    /// all). A frame that lands on reserved space nothing was written to yet makes the file system record those
    /// blocks as written, so that frame's sync also writes the file's block map; over blocks already written (as
    /// zeros) it writes the frame alone. Whenever fewer are left ahead of the frames, the next this many are written
    /// (so one to two steps stay ahead) and their writeback starts at once (docs/STORAGE.md, "Reserved space").
    public var zeroAheadBytes = 1 << 20

    public init() {}
}

/// The write-ahead journal: the writer loop's durable ``BatchSink``.
///
/// The writer hands it batches; a journal thread encodes every batch waiting into records, compresses them into
/// one LZ4 frame with a SHA-256 chain trailer, appends it to the current segment, fdatasyncs (per the policy) and
/// only then releases the batches' results and events, in order. While one group is being synced the writer keeps
/// building the next ones (group commit). A snapshot point is handed to the ``Checkpointer`` once every batch up
/// to it is durable, so a snapshot never covers an entry the journal lacks; the checkpointer writes the file on a
/// thread of its own, so neither the writer nor group commits wait for it.
///
/// `@unchecked Sendable`: the writer and other threads reach it only through the mutex-guarded queue, the
/// semaphores and the atomics; the open segment, the chain and the record buffers are the journal thread's, checked by
/// ``Confinement`` in debug builds.
public final class Journal: BatchSink, SnapshotSink, @unchecked Sendable {
    public let directory: DataDirectory
    public let configuration: JournalConfiguration
    private let logger: Logger

    private enum Item {
        case batch(Batch, BatchRelease)
        case snapshot(lsn: UInt64, now: Millis, pauseNanos: UInt64)
        case flush(DispatchSemaphore)
    }

    private let queue = Mutex<[Item]>([])
    private let wake = DispatchSemaphore(value: 0)
    private let inFlight: DispatchSemaphore
    private let stopping = Atomic<Bool>(false)
    private var thread: pthread_t?
    private let checkpointer: Checkpointer
    /// The journal thread's state's one user at a time (debug builds).
    private let confinement = Confinement("the journal's open segment and chain")

    /// The process's exit status when a journal write or sync fails (74, `EX_IOERR` of sysexits.h).
    public static let writeFailureStatus: Int32 = 74

    // Journal thread state.
    private var fd: Int32 = -1
    private var segmentPath = ""
    /// The first lsn of the open segment.
    private var segmentFirstLSN: UInt64 = 0
    private var segmentSize = 0
    private var lastLSN: UInt64
    /// The last lsn an `fdatasync` made durable.
    private var durableLSN: UInt64
    private var chain: [UInt8]
    private var lastSync: UInt64 = 0
    private var dirty = false
    /// Whether reserving a segment's space failed once (logged once).
    private var preallocationFailed = false
    /// Where the bytes written to the open segment end: its frames, then the zeros written ahead of them.
    private var zeroedEnd = 0
    /// Whether writing zeros ahead failed once (logged once; the journal then stops writing them).
    private var zeroingFailed = false
    private var records: [UInt8] = []
    private var frame: [UInt8] = []
    private var scratch = BinaryWriter(capacity: 256)

    /// Statistics, readable from any thread.
    public let stats = JournalStats()
    /// How far the journal has written, readable from any thread: what readers of the running journal (the
    /// checkpointer, the feed's catch-ups) read up to.
    public let writtenEnd: JournalWrittenEnd
    /// Called on the journal thread with the duration of each fdatasync, in nanoseconds.
    private let syncObserver: (@Sendable (UInt64) -> Void)?

    /// Opens the journal after `recovery` (which must have repaired the directory), ready to append at
    /// `recovery.lastLSN + 1`.
    public init(
        directory: DataDirectory, configuration: JournalConfiguration = JournalConfiguration(),
        recovery: RecoveryReport,
        logger: Logger = Logger(label: "gavel.journal"),
        syncObserver: (@Sendable (_ nanos: UInt64) -> Void)? = nil
    ) throws {
        self.syncObserver = syncObserver
        self.directory = directory
        self.configuration = configuration
        self.logger = logger
        self.lastLSN = recovery.lastLSN
        self.durableLSN = recovery.lastLSN
        self.chain = recovery.chain
        self.inFlight = DispatchSemaphore(value: max(1, configuration.maxInFlightBatches))
        // Until a segment is opened: every segment there is whole, and the next one starts after the last lsn.
        let writtenEnd = JournalWrittenEnd(segmentFirstLSN: recovery.lastLSN + 1, offset: 0)
        self.writtenEnd = writtenEnd
        self.checkpointer = Checkpointer(
            directory: directory, keepSnapshots: configuration.keepSnapshots, retention: configuration.retention,
            engine: recovery.engine.configuration, stats: stats, writtenEnd: writtenEnd, logger: logger)
        try directory.create()
        if let active = recovery.activeSegment, active.size < configuration.segmentBytes {
            let fd = open(active.path, O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { throw FileError(path: active.path, operation: "open", code: errno) }
            guard lseek(fd, off_t(active.size), SEEK_SET) >= 0 else {
                throw FileError(path: active.path, operation: "seek", code: errno)
            }
            self.fd = fd
            segmentPath = active.path
            segmentFirstLSN = active.firstLSN
            segmentSize = active.size
            zeroedEnd = active.size
            writtenEnd.publish(segmentFirstLSN: active.firstLSN, offset: active.size)
            preallocate()
        }
        try checkRoom()
        records.reserveCapacity(1 << 20)
        frame.reserveCapacity(1 << 20)
        thread = startDedicatedThread("journal") { [self] in confinement.exclusively { run() } }
    }

    // MARK: - BatchSink

    public func write(_ batch: Batch, release: @escaping BatchRelease) {
        inFlight.wait()
        queue.withLock { $0.append(.batch(batch, release)) }
        wake.signal()
    }

    public func flush() {
        let done = DispatchSemaphore(value: 0)
        queue.withLock { $0.append(.flush(done)) }
        wake.signal()
        done.wait()
    }

    public func snapshot(lsn: UInt64, now: Millis, pauseNanos: UInt64) {
        queue.withLock { $0.append(.snapshot(lsn: lsn, now: now, pauseNanos: pauseNanos)) }
        wake.signal()
    }

    /// Blocks until every batch written so far is released and every snapshot asked for so far is written (or has
    /// failed, see ``JournalStats/snapshotFailures``).
    public func waitForSnapshots() {
        flush()
        checkpointer.waitUntilIdle()
    }

    /// Flushes everything, writes the snapshot still asked for (the shutdown snapshot), and stops the journal and
    /// checkpointer threads.
    public func close() {
        flush()
        stopping.store(true, ordering: .releasing)
        wake.signal()
        if let thread { pthread_join(thread, nil) }
        thread = nil
        checkpointer.finish()
        if fd >= 0 {
            // The segment ends where its frames end again: no reserved space left after a clean stop.
            _ = ftruncate(fd, off_t(segmentSize))
            _ = try? Files.syncData(fd, path: segmentPath)
            Glibc.close(fd)
            fd = -1
        }
    }

    // MARK: - The journal thread

    private func run() {
        var pending: [(Batch, BatchRelease)] = []
        while true {
            let timeout: DispatchTime
            if case .interval(let ms) = configuration.fsync, dirty {
                timeout = .now() + .milliseconds(ms)
            } else {
                timeout = .distantFuture
            }
            _ = wake.wait(timeout: timeout)
            let items = queue.withLock { items -> [Item] in
                defer { items.removeAll(keepingCapacity: true) }
                return items
            }
            do {
                for item in items {
                    switch item {
                    case .batch(let batch, let release):
                        append(batch)
                        pending.append((batch, release))
                    case .snapshot(let lsn, let now, let pause):
                        try commit(&pending)
                        try handOffSnapshot(lsn: lsn, now: now, pauseNanos: pause)
                    case .flush(let done):
                        try commit(&pending)
                        if dirty { try syncNow() }
                        done.signal()
                    }
                }
                try commit(&pending)
                if case .interval(let ms) = configuration.fsync, dirty,
                    monotonicNanos() - lastSync >= UInt64(ms) * 1_000_000
                {
                    try syncNow()
                }
                // Once the group's results are on their way: the zeros are not what anyone waits for.
                zeroAhead()
            } catch {
                // The journal can no longer promise durability: stop the process rather than acknowledge a lie. Not a
                // crash (no trap, no backtrace): a full disk or an I/O error is the disk's fault, and an operator's
                // supervisor sees the documented status. Nothing after the last durable entry was acknowledged.
                let outOfDescriptors = (error as? FileError).map { $0.code == EMFILE || $0.code == ENFILE } ?? false
                let remedy =
                    outOfDescriptors
                    ? "Raise the open-file limit (ulimit -n; LimitNOFILE= for systemd)"
                    : "Free space (or fix the disk)"
                logger.critical(
                    """
                    journal write failed, stopping with exit status \(Self.writeFailureStatus): \(error). Entries to lsn \
                    \(durableLSN) were synced to disk (with --fsync always nothing after them was acknowledged). \
                    \(remedy) and start again: recovery cuts what was written after them.
                    """)
                _exit(Self.writeFailureStatus)
            }
            if stopping.load(ordering: .acquiring) && queue.withLock({ $0.isEmpty }) { return }
        }
    }

    /// Encodes `batch` into the pending record buffer.
    private func append(_ batch: Batch) {
        for index in batch.entries.indices {
            // Field by field and the command borrowed: a copy of the entry or of its command retained and released
            // every string the command holds.
            let lsn = batch.entries[index].lsn
            let at = batch.entries[index].at
            guard let submission = batch.entries[index].submission else {
                JournalRecord.tick(lsn: lsn, at: at).encode(into: &records, scratch: &scratch)
                continue
            }
            let outcome = batch.entries[index].packedResult?.requestOutcome ?? .applied
            submission.withCommand { command, _ in
                JournalRecord.encodeCommand(
                    lsn: lsn, at: at, command: command, outcome: outcome, into: &records, scratch: &scratch)
            }
        }
    }

    /// Writes the pending records as one frame, syncs per the policy, and releases the batches in order. A batch
    /// may hold no entry (the writer hands over a turn that only carries barriers, which wait for what came before
    /// it to be released): it adds nothing to the frame, and pending batches that are all empty write no frame.
    private func commit(_ pending: inout [(Batch, BatchRelease)]) throws {
        guard !pending.isEmpty else { return }
        if let first = pending.first(where: { !$0.0.entries.isEmpty })?.0.entries.first,
            let last = pending.last(where: { !$0.0.entries.isEmpty })?.0.entries.last
        {
            try writeFrame(firstLSN: first.lsn, lastLSN: last.lsn, count: pending.reduce(0) { $0 + $1.0.entries.count })
        }
        let last = pending.count - 1
        let mark = ChainMark(lsn: lastLSN, chain: chain)
        for (index, (batch, release)) in pending.enumerated() {
            if !batch.entries.isEmpty { batch.journalMark = mark }
            release(batch, index == last)
            inFlight.signal()
        }
        pending.removeAll(keepingCapacity: true)
    }

    /// Writes the pending records (lsn `firstLSN` to `lastLSN`, `count` of them) as one frame with its trailer, and
    /// syncs per the policy.
    private func writeFrame(firstLSN: UInt64, lastLSN: UInt64, count: Int) throws {
        if fd < 0 || segmentSize >= configuration.segmentBytes { try roll(firstLSN: firstLSN) }
        let next = Chain.next(chain, records: records[...])
        JournalRecord.trailer(firstLSN: firstLSN, lastLSN: lastLSN, count: UInt32(count), chain: next)
            .encode(into: &records, scratch: &scratch)
        frame.removeAll(keepingCapacity: true)
        LZ4Frame.compress(records, appendingTo: &frame)
        let started = monotonicNanos()
        try Files.writeAll(fd, frame, path: segmentPath)
        segmentSize += frame.count
        writtenEnd.publish(segmentFirstLSN: segmentFirstLSN, offset: segmentSize)
        dirty = true
        chain = next
        self.lastLSN = lastLSN
        if configuration.fsync == .always { try syncNow() }
        stats.record(
            entries: count, rawBytes: records.count, frameBytes: frame.count, nanos: monotonicNanos() - started)
        records.removeAll(keepingCapacity: true)
    }

    private func syncNow() throws {
        let started = monotonicNanos()
        try Files.syncData(fd, path: segmentPath)
        durableLSN = lastLSN
        lastSync = monotonicNanos()
        syncObserver?(lastSync - started)
        dirty = false
        stats.syncs.wrappingAdd(1, ordering: .relaxed)
    }

    /// Closes the current segment (cut to the end of its frames) and starts `<firstLSN>.seg`.
    private func roll(firstLSN: UInt64) throws {
        if fd >= 0 {
            guard ftruncate(fd, off_t(segmentSize)) == 0 else {
                throw FileError(path: segmentPath, operation: "truncate", code: errno)
            }
            if dirty || configuration.fsync != .none { try syncNow() }
            Glibc.close(fd)
        }
        let path = directory.journal + "/" + DataDirectory.segmentName(firstLSN: firstLSN)
        fd = try Files.openPrivate(path, O_WRONLY | O_CREAT | O_TRUNC)
        segmentPath = path
        preallocate()
        let header = SegmentHeader(firstLSN: firstLSN, previousChain: chain).encoded()
        try Files.writeAll(fd, header, path: path)
        segmentFirstLSN = firstLSN
        segmentSize = header.count
        zeroedEnd = header.count
        try Files.syncData(fd, path: path)
        try Files.syncDirectory(directory.journal)
        // Only now do readers take the new segment for the one being appended to (and the one before it as whole).
        writtenEnd.publish(segmentFirstLSN: firstLSN, offset: segmentSize)
        logger.debug("journal segment \(path) started at lsn \(firstLSN)")
    }

    /// Reserves the open segment's full size up front (`segmentBytes`, as zeros after the frames). Appending a
    /// frame then writes over reserved space and leaves the file's size alone, so each `fdatasync` writes the
    /// frame's pages and no size update with them (about a third less CPU and latency per sync on ext4 here;
    /// docs/STORAGE.md; ``zeroAhead()`` spares the block map's update too). Readers take zeros where a frame would
    /// start as the end of the frames. Where the file system cannot reserve space the segment grows as it is written,
    /// as before.
    private func preallocate() {
        guard gavel_preallocate(fd, Int64(configuration.segmentBytes)) != 0, !preallocationFailed else { return }
        let reason = String(cString: strerror(errno))
        preallocationFailed = true
        logger.notice(
            "journal segments are not preallocated (\(reason)): each sync also writes the file's new size")
    }

    /// Writes the next ``JournalConfiguration/zeroAheadBytes`` of zeros after the open segment's frames whenever fewer
    /// than that are left ahead of the last frame (never past the segment's size), and starts their writeback, so
    /// the frames to come land on blocks already written: their syncs then write the frames alone, not the file's
    /// block map as well (on ext4 here about 40 % less CPU and latency per sync for frames of a few KiB,
    /// docs/PERFORMANCE.md). Only ever past the last frame, on the journal thread: the frames and the zeros never
    /// overlap. A failure (a full disk where the segment could not be reserved) only stops the zeros: the frames
    /// are written as before.
    private func zeroAhead() {
        let step = configuration.zeroAheadBytes
        guard step > 0, fd >= 0, !zeroingFailed else { return }
        zeroedEnd = max(zeroedEnd, segmentSize)
        guard zeroedEnd - segmentSize < step, zeroedEnd < configuration.segmentBytes else { return }
        let length = min(step, configuration.segmentBytes - zeroedEnd)
        guard gavel_write_zeros(fd, Int64(zeroedEnd), Int64(length)) == 0 else {
            zeroingFailed = true
            logger.notice(
                "journal: writing zeros ahead of the frames failed (\(String(cString: strerror(errno)))); each sync may also write the segment's block map"
            )
            return
        }
        _ = gavel_writeback(fd, Int64(zeroedEnd), Int64(length), 0)
        zeroedEnd += length
        stats.zeroedBytes.wrappingAdd(UInt64(length), ordering: .relaxed)
    }

    /// The least room for journal frames a start needs (free space on the journal's disk plus what the open segment
    /// has reserved past its frames), or the segment size when that is smaller.
    public static let minimumRoomAtStart = 1 << 20

    /// Refuses a start on a disk too full to journal: the server would take commands only to stop at the first
    /// write that finds no space.
    private func checkRoom() throws {
        var fs = statvfs()
        guard statvfs(directory.journal, &fs) == 0 else { return }
        var room = Int(fs.f_bavail) &* Int(fs.f_frsize)
        var st = stat()
        if fd >= 0, fstat(fd, &st) == 0 { room += max(0, Int(st.st_blocks) * 512 - segmentSize) }
        let needed = min(Self.minimumRoomAtStart, configuration.segmentBytes)
        guard room >= needed else {
            if fd >= 0 { Glibc.close(fd) }
            throw NoRoom(path: directory.journal, room: room, needed: needed)
        }
    }

    /// A start refused because the journal's disk is full.
    public struct NoRoom: Error, CustomStringConvertible {
        public var path: String
        public var room: Int
        public var needed: Int

        public var description: String {
            "the journal's disk is full: \(path) has room for \(room) bytes, at least \(needed) are needed to start; "
                + "free space on its disk and start again"
        }
    }

    /// Makes everything up to `lsn` durable (whatever the fsync policy) and hands the snapshot point to the
    /// checkpointer, which returns at once.
    private func handOffSnapshot(lsn: UInt64, now: Millis, pauseNanos: UInt64) throws {
        if dirty { try syncNow() }
        precondition(lsn == lastLSN, "snapshot at lsn \(lsn) but the journal is at \(lastLSN)")
        checkpointer.request(lsn: lsn, now: now, chain: chain, pauseNanos: pauseNanos)
    }
}

/// How far the running journal has written: the first lsn of the segment it appends to and the offset just past the
/// last frame it wrote there whole. The journal thread publishes it once each frame's write has returned (and a new
/// segment's once its header is written and synced); any thread reads it.
///
/// What a reader of the running journal reads up to: past it the segment being appended to holds its reserved
/// zeros or a frame being written, which a read can see torn (a page still zero before a page already written), and
/// which is not damage but bytes to read again later. The segments before it are whole (cut to their frames when
/// the journal moved on); one after it is still being created.
public final class JournalWrittenEnd: Sendable {
    public struct Position: Sendable, Equatable {
        /// The first lsn of the segment the journal appends to.
        public var segmentFirstLSN: UInt64
        /// The offset in it just past the last whole frame (or its header).
        public var offset: Int

        public init(segmentFirstLSN: UInt64, offset: Int) {
            self.segmentFirstLSN = segmentFirstLSN
            self.offset = offset
        }
    }

    private let position: Mutex<Position>

    public init(segmentFirstLSN: UInt64, offset: Int) {
        position = Mutex(Position(segmentFirstLSN: segmentFirstLSN, offset: offset))
    }

    /// The position last published.
    public var current: Position { position.withLock { $0 } }

    /// Publishes that everything up to `offset` of the segment that starts at lsn `segmentFirstLSN` is written.
    public func publish(segmentFirstLSN: UInt64, offset: Int) {
        position.withLock { $0 = Position(segmentFirstLSN: segmentFirstLSN, offset: offset) }
    }

    /// How many bytes of the segment that starts at lsn `firstLSN`, `size` bytes long, there are to read: all of one
    /// before the segment being appended to, what the journal wrote whole of that one, none of one after it.
    public func readable(segmentFirstLSN firstLSN: UInt64, size: Int) -> Int {
        let end = current
        if firstLSN < end.segmentFirstLSN { return size }
        if firstLSN > end.segmentFirstLSN { return 0 }
        return min(size, end.offset)
    }
}

/// Counters of journal activity.
public final class JournalStats: Sendable {
    public let entries = Atomic<UInt64>(0)
    public let frames = Atomic<UInt64>(0)
    public let rawBytes = Atomic<UInt64>(0)
    public let frameBytes = Atomic<UInt64>(0)
    public let syncs = Atomic<UInt64>(0)
    public let writeNanos = Atomic<UInt64>(0)
    /// Zeros written ahead of the frames in open segments (``JournalConfiguration/zeroAheadBytes``).
    public let zeroedBytes = Atomic<UInt64>(0)
    /// Snapshots written.
    public let snapshots = Atomic<UInt64>(0)
    /// Snapshots that failed (logged with the reason); the newest good snapshot stays as it was.
    public let snapshotFailures = Atomic<UInt64>(0)
    /// Snapshot points skipped because a newer one came while the checkpointer was busy.
    public let snapshotsMerged = Atomic<UInt64>(0)
    /// Retention passes after a snapshot that failed (logged with the reason: a full `--archive-dir`, a file that
    /// cannot be removed); the files they would have archived or deleted stay where they are.
    public let retentionFailures = Atomic<UInt64>(0)
    /// How long the writer stopped for the last snapshot point.
    public let lastSnapshotPauseNanos = Atomic<UInt64>(0)
    /// How long the checkpointer took for the last snapshot: bringing its shadow forward, encoding and writing.
    public let lastSnapshotNanos = Atomic<UInt64>(0)

    func record(entries: Int, rawBytes: Int, frameBytes: Int, nanos: UInt64) {
        self.entries.wrappingAdd(UInt64(entries), ordering: .relaxed)
        frames.wrappingAdd(1, ordering: .relaxed)
        self.rawBytes.wrappingAdd(UInt64(rawBytes), ordering: .relaxed)
        self.frameBytes.wrappingAdd(UInt64(frameBytes), ordering: .relaxed)
        writeNanos.wrappingAdd(nanos, ordering: .relaxed)
    }
}
