import ArgumentParser
import GavelCore
import GavelEngine
import GavelJournal

#if canImport(Glibc)
    import Glibc
#endif

/// Options shared by the commands that open a data directory for writing.
struct StorageOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "When to fdatasync the journal: always (each batch, before acknowledging), interval:MS, or none. Env GAVEL_FSYNC; default always.",
            valueName: "policy"))
    var fsync: String?

    @Option(
        name: .long,
        help: "Roll to a new journal segment at this many bytes. Env GAVEL_SEGMENT_BYTES; default 67108864.")
    var segmentBytes: Int?

    @Option(
        name: .long,
        help:
            "Keep this many bytes after the open journal segment's last frame written with zeros, so that a sync writes the frames and not the file's block map as well (0: off). Env GAVEL_ZERO_AHEAD_BYTES; default 1048576."
    )
    var zeroAheadBytes: Int?

    @Option(
        name: .long,
        help:
            "Take a snapshot every this many journal entries (0: never by count). Env GAVEL_SNAPSHOT_EVERY; default 1000000."
    )
    var snapshotEvery: UInt64?

    @Option(
        name: .long,
        help:
            "Take a snapshot every this many seconds (0: never by time). Env GAVEL_SNAPSHOT_EVERY_SECONDS; default 600."
    )
    var snapshotEverySeconds: Int?

    @Option(
        name: .long,
        help:
            "Snapshots to keep; journal segments older than the oldest kept one are deleted. Env GAVEL_KEEP_SNAPSHOTS; default 2."
    )
    var keepSnapshots: Int?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Keep journal segments a snapshot covers until they are this old (24h, 30m, 90s, 7d) or while the newer ones hold less than this (10GiB, 500MiB, 1GB), for feed consumers catching up; none (or 0): removed once covered. Env GAVEL_RETAIN_JOURNAL; default none.",
            valueName: "age|bytes"))
    var retainJournal: String?

    @Option(
        name: .long,
        help:
            "Move the journal segments and snapshots retention no longer keeps to this directory instead of deleting them; the feed, verify and dump read it too. Env GAVEL_ARCHIVE_DIR; default none."
    )
    var archiveDir: String?

    @Flag(
        name: .customLong("truncate-after-corruption"),
        help:
            "Start even if the journal is corrupt, discarding everything from the first corruption on. Env GAVEL_TRUNCATE_AFTER_CORRUPTION=1."
    )
    var truncateAfterCorruptionFlag = false

    /// The resolved settings (option, else environment, else default); valid after `validate()`.
    struct Resolved {
        var fsync = FsyncPolicy.always
        var segmentBytes = 64 << 20
        var zeroAheadBytes = 1 << 20
        var snapshotEvery: UInt64 = 1_000_000
        var snapshotEverySeconds = 600
        var keepSnapshots = 2
        var retention = JournalRetention.none
        var archiveDir: String?
        var truncateAfterCorruption = false
    }

    /// The longest `--fsync interval:MS`: past an hour, `none` says what is meant.
    static let maxFsyncIntervalMs = 3_600_000
    /// The largest `--segment-bytes`.
    static let maxSegmentBytes = 1 << 30
    /// The largest `--zero-ahead-bytes`.
    static let maxZeroAheadBytes = 64 << 20
    /// The longest `--snapshot-every-seconds`: the writer compares it in nanoseconds, which must not overflow.
    static let maxSnapshotEverySeconds = 31_536_000

    func resolve() throws -> Resolved {
        var r = Resolved()
        let fsyncText = try Setting.value(fsync, "GAVEL_FSYNC", default: "always")
        guard let policy = FsyncPolicy(argument: fsyncText) else {
            throw ValidationError("--fsync must be always, none, or interval:MS with MS a positive integer")
        }
        if case .interval(let ms) = policy, ms > Self.maxFsyncIntervalMs {
            throw ValidationError(
                "--fsync interval:MS must be at most \(Self.maxFsyncIntervalMs) ms (one hour); use none for no fdatasync"
            )
        }
        r.fsync = policy
        r.segmentBytes = try Setting.value(segmentBytes, "GAVEL_SEGMENT_BYTES", default: 64 << 20)
        r.zeroAheadBytes = try Setting.value(zeroAheadBytes, "GAVEL_ZERO_AHEAD_BYTES", default: 1 << 20)
        r.snapshotEvery = try Setting.value(snapshotEvery, "GAVEL_SNAPSHOT_EVERY", default: 1_000_000)
        r.snapshotEverySeconds = try Setting.value(snapshotEverySeconds, "GAVEL_SNAPSHOT_EVERY_SECONDS", default: 600)
        r.keepSnapshots = try Setting.value(keepSnapshots, "GAVEL_KEEP_SNAPSHOTS", default: 2)
        r.truncateAfterCorruption = try Setting.flag(truncateAfterCorruptionFlag, "GAVEL_TRUNCATE_AFTER_CORRUPTION")
        guard (4096...Self.maxSegmentBytes).contains(r.segmentBytes) else {
            throw ValidationError("--segment-bytes must be 4096 to \(Self.maxSegmentBytes) (1 GiB)")
        }
        guard (0...Self.maxZeroAheadBytes).contains(r.zeroAheadBytes) else {
            throw ValidationError("--zero-ahead-bytes must be 0 (off) to \(Self.maxZeroAheadBytes) (64 MiB)")
        }
        let retainText = try Setting.value(retainJournal, "GAVEL_RETAIN_JOURNAL", default: "none")
        guard let retention = JournalRetention(argument: retainText) else {
            throw ValidationError(
                "--retain-journal must be none (or 0), an age (a positive integer and s, m, h or d: 24h) or a size (a positive integer and B, KiB, MiB, GiB, TiB, KB, MB, GB or TB: 10GiB)"
            )
        }
        r.retention = retention
        let archive = try Setting.value(archiveDir, "GAVEL_ARCHIVE_DIR", default: "")
        r.archiveDir = archive.isEmpty ? nil : archive
        guard (1...1000).contains(r.keepSnapshots) else {
            throw ValidationError("--keep-snapshots must be 1 to 1000")
        }
        guard (0...Self.maxSnapshotEverySeconds).contains(r.snapshotEverySeconds) else {
            throw ValidationError(
                "--snapshot-every-seconds must be 0 to \(Self.maxSnapshotEverySeconds) (a year); 0 turns it off")
        }
        return r
    }

    func validate() throws {
        _ = try resolve()
    }

    var resolved: Resolved { (try? resolve()) ?? Resolved() }

    var truncateAfterCorruption: Bool { resolved.truncateAfterCorruption }

    /// The data directory at `path`, with the archive `--archive-dir` names.
    func directory(_ path: String) -> DataDirectory { DataDirectory(path, archive: resolved.archiveDir) }

    var journalConfiguration: JournalConfiguration {
        let r = resolved
        var c = JournalConfiguration()
        c.fsync = r.fsync
        c.segmentBytes = r.segmentBytes
        c.zeroAheadBytes = r.zeroAheadBytes
        c.keepSnapshots = r.keepSnapshots
        c.retention = r.retention
        return c
    }

    func writerConfiguration(engine: EngineConfiguration) -> WriterConfiguration {
        let r = resolved
        var c = WriterConfiguration()
        c.engine = engine
        c.snapshotEveryEntries = r.snapshotEvery
        c.snapshotEverySeconds = r.snapshotEverySeconds
        return c
    }
}

/// Claims `directory` for this process (``claimForWriting(_:)``: private, locked) and recovers it, reporting what
/// recovery did on standard error.
func recoverForWriting(_ directory: DataDirectory, truncateAfterCorruption: Bool, engine: EngineConfiguration) throws
    -> RecoveryReport
{
    let options = try claimForRecovery(directory, truncateAfterCorruption: truncateAfterCorruption, engine: engine)
    let started = monotonicMillis()
    let report = try Recovery.recover(directory, options: options)
    describe(report, since: started)
    try EngineSettingsFile.keep(report.engine.configuration, in: directory)
    return report
}

/// Claims `directory` for this process (``claimForWriting(_:)``) and says how to recover it: a recovery longer than
/// a second says how far it is on stderr, every second.
func claimForRecovery(_ directory: DataDirectory, truncateAfterCorruption: Bool, engine: EngineConfiguration) throws
    -> RecoveryOptions
{
    try claimForWriting(directory)
    var options = RecoveryOptions()
    options.truncateAfterCorruption = truncateAfterCorruption
    options.engine = engine
    options.progress = { records, segment in
        printError("recovering: \(records) journal entries replayed (\(segment))")
    }
    return options
}

func describe(_ report: RecoveryReport, since started: Int64) {
    for (path, reason) in report.rejectedSnapshots { printError("recovery: skipped snapshot \(path): \(reason)") }
    if report.startedBeforeSettlements, let snapshot = report.snapshot {
        printError(
            "recovery: started from snapshot \(snapshot.path), written by a gavel from before settlements, as the journal no longer reaches back to lsn 1: the sales up to lsn \(snapshot.lsn) have no settlements; settlements start with the sales after it"
        )
    }
    if let truncation = report.truncation, report.setAsideSegments.isEmpty {
        printError("recovery: truncated \(truncation.file) at byte \(truncation.offset): \(truncation.reason)")
    } else if let truncation = report.truncation {
        // Nothing was cut: the journal ended before the snapshot, and starts again after it.
        printError("recovery: \(truncation.file) at byte \(truncation.offset): \(truncation.reason)")
    }
    for removed in report.removedSegments { printError("recovery: removed segment \(removed)") }
    for moved in report.setAsideSegments {
        printError("recovery: moved segment \(moved) out of the journal, to \(DataDirectory.setAsideName)/")
    }
    let ms = monotonicMillis() - started
    let from = report.snapshot.map { "snapshot at lsn \($0.lsn)" } ?? "an empty state"
    if report.lastLSN > 0 || report.snapshot != nil {
        printError(
            "recovery: from \(from), replayed \(report.replayedRecords) journal entries to lsn \(report.lastLSN) in \(ms) ms"
        )
    }
}

func monotonicMillis() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}
