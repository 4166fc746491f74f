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
        help: "When to fdatasync the journal: always (each batch, before acknowledging), interval:MS, or none.")
    var fsync: String = "always"

    @Option(name: .long, help: "Roll to a new journal segment at this many bytes.")
    var segmentBytes: Int = 64 << 20

    @Option(name: .long, help: "Take a snapshot every this many journal entries (0: never by count).")
    var snapshotEvery: UInt64 = 1_000_000

    @Option(name: .long, help: "Take a snapshot every this many seconds (0: never by time).")
    var snapshotEverySeconds: Int = 600

    @Option(name: .long, help: "Snapshots to keep; journal segments older than the oldest kept one are deleted.")
    var keepSnapshots: Int = 2

    @Flag(
        name: .long, help: "Start even if the journal is corrupt, discarding everything from the first corruption on.")
    var truncateAfterCorruption = false

    func validate() throws {
        guard FsyncPolicy(argument: fsync) != nil else {
            throw ValidationError("--fsync must be always, none, or interval:MS with MS a positive integer")
        }
        guard segmentBytes >= 4096 else { throw ValidationError("--segment-bytes must be at least 4096") }
        guard keepSnapshots >= 1 else { throw ValidationError("--keep-snapshots must be at least 1") }
        guard snapshotEverySeconds >= 0 else { throw ValidationError("--snapshot-every-seconds must not be negative") }
    }

    var journalConfiguration: JournalConfiguration {
        var c = JournalConfiguration()
        c.fsync = FsyncPolicy(argument: fsync) ?? .always
        c.segmentBytes = segmentBytes
        c.keepSnapshots = keepSnapshots
        return c
    }

    func writerConfiguration(engine: EngineConfiguration) -> WriterConfiguration {
        var c = WriterConfiguration()
        c.engine = engine
        c.snapshotEveryEntries = snapshotEvery
        c.snapshotEverySeconds = snapshotEverySeconds
        return c
    }
}

/// Recovers `directory`, reporting what recovery did on standard error.
func recoverForWriting(_ directory: DataDirectory, truncateAfterCorruption: Bool, engine: EngineConfiguration) throws
    -> RecoveryReport
{
    try directory.create()
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
