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
        var snapshotEvery: UInt64 = 1_000_000
        var snapshotEverySeconds = 600
        var keepSnapshots = 2
        var truncateAfterCorruption = false
    }

    func resolve() throws -> Resolved {
        var r = Resolved()
        let fsyncText = try Setting.value(fsync, "GAVEL_FSYNC", default: "always")
        guard let policy = FsyncPolicy(argument: fsyncText) else {
            throw ValidationError("--fsync must be always, none, or interval:MS with MS a positive integer")
        }
        r.fsync = policy
        r.segmentBytes = try Setting.value(segmentBytes, "GAVEL_SEGMENT_BYTES", default: 64 << 20)
        r.snapshotEvery = try Setting.value(snapshotEvery, "GAVEL_SNAPSHOT_EVERY", default: 1_000_000)
        r.snapshotEverySeconds = try Setting.value(snapshotEverySeconds, "GAVEL_SNAPSHOT_EVERY_SECONDS", default: 600)
        r.keepSnapshots = try Setting.value(keepSnapshots, "GAVEL_KEEP_SNAPSHOTS", default: 2)
        r.truncateAfterCorruption = Setting.flag(truncateAfterCorruptionFlag, "GAVEL_TRUNCATE_AFTER_CORRUPTION")
        guard r.segmentBytes >= 4096 else { throw ValidationError("--segment-bytes must be at least 4096") }
        guard r.keepSnapshots >= 1 else { throw ValidationError("--keep-snapshots must be at least 1") }
        guard r.snapshotEverySeconds >= 0 else {
            throw ValidationError("--snapshot-every-seconds must not be negative")
        }
        return r
    }

    func validate() throws {
        _ = try resolve()
    }

    var resolved: Resolved { (try? resolve()) ?? Resolved() }

    var truncateAfterCorruption: Bool { resolved.truncateAfterCorruption }

    var journalConfiguration: JournalConfiguration {
        let r = resolved
        var c = JournalConfiguration()
        c.fsync = r.fsync
        c.segmentBytes = r.segmentBytes
        c.keepSnapshots = r.keepSnapshots
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
    try claimForWriting(directory)
    var options = RecoveryOptions()
    options.truncateAfterCorruption = truncateAfterCorruption
    options.engine = engine
    let started = monotonicMillis()
    if stderrIsTerminal {
        options.progress = { records, segment in
            printError("recovering: \(records) journal entries replayed (\(segment))")
        }
    }
    let report = try Recovery.recover(directory, options: options)
    describe(report, since: started)
    return report
}

func describe(_ report: RecoveryReport, since started: Int64) {
    for (path, reason) in report.rejectedSnapshots { printError("recovery: skipped snapshot \(path): \(reason)") }
    if let truncation = report.truncation {
        printError("recovery: truncated \(truncation.file) at byte \(truncation.offset): \(truncation.reason)")
    }
    for removed in report.removedSegments { printError("recovery: removed segment \(removed)") }
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
