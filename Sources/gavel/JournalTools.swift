import ArgumentParser
import GavelCore
@_spi(Manual) import GavelEngine
import GavelJournal
import GavelWire

#if canImport(Glibc)
    import Glibc
#endif

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rebuild the engine state from a data directory (snapshot + journal) and print a summary.",
        discussion: """
            Read-only: nothing in the directory is changed, a torn tail is only reported. Exit status 2 when the \
            directory cannot be read or recovery refuses it (damage, in recovery's words); 64 when --to-lsn or \
            --from-start asks for a state before the oldest one the directory holds (its oldest snapshot, once \
            retention has removed the journal before it): nothing is damaged, and the message names that snapshot.
            """
    )

    @Option(name: .long, help: "The data directory.")
    var dataDir: String

    @Option(name: .long, help: "Also read the segments and snapshots archived here (serve's --archive-dir).")
    var archiveDir: String?

    /// The data directory with its archive.
    var directory: DataDirectory { DataDirectory(dataDir, archive: archiveDir) }

    @Option(
        name: .long,
        help:
            "Stop after this lsn: once retention has removed the journal's start, at or after the oldest snapshot's lsn."
    )
    var toLSN: UInt64?

    @Flag(
        name: .long,
        help:
            "Ignore snapshots and replay the journal from its first entry: the journal (with its --archive-dir) must reach back to lsn 1."
    )
    var fromStart = false

    @Flag(name: .long, help: "Print the summary as one JSON object.")
    var json = false

    func run() throws {
        var options = RecoveryOptions()
        options.repair = false
        options.toLSN = toLSN
        options.useSnapshots = !fromStart
        // The replayed engine is only counted and hashed, never asked for a request id: the index from request key
        // to result (a table of megabytes, built at the end of a recovery) would be thrown away unread.
        options.buildsRequestIndex = false
        // A replay longer than a second says how far it is, every second.
        options.progress = { records, segment in printError("replaying: \(records) entries (\(segment))") }
        let started = monotonicNanos()
        let report: RecoveryReport
        warnIfLoose(directory, tool: "gavel replay")
        if let problem = directory.layoutProblem() {
            printError("gavel replay: \(problem)")
            throw ExitCode(2)
        }
        do {
            report = try Recovery.recover(directory, options: options)
        } catch let refusal as StateNotRetained {
            // Not damage: the state asked for is older than what the directory keeps. A usage status, as for an
            // option the directory cannot satisfy.
            printError("gavel replay: \(refusal)")
            throw ExitCode.validationFailure
        } catch {
            printError("gavel replay: \(error)")
            throw ExitCode(2)
        }
        if let toLSN, report.lastLSN < toLSN {
            printError(
                "gavel replay: the journal ends at lsn \(report.lastLSN), before --to-lsn \(toLSN): the state shown is at its end"
            )
        }
        let seconds = Double(monotonicNanos() - started) / 1e9
        let hash = report.engine.fastStateHash()
        let rate = seconds > 0 ? Int(Double(report.replayedRecords) / seconds) : 0
        let out = LineWriter()
        if json {
            var w = JSONObjectWriter()
            w.field("listings", Int64(report.engine.listingCount))
            w.field("open", Int64(report.engine.openListingCount))
            w.field("remembered_request_ids", Int64(report.engine.rememberedCount))
            w.field("timers", Int64(report.engine.timerCount))
            w.field("lsn", report.lastLSN)
            w.field("engine_time", report.engine.now)
            w.field("state_hash", hash)
            w.field("snapshot_lsn", report.snapshot.map { Int64($0.lsn) })
            w.field("replayed", Int64(report.replayedRecords))
            w.field("journal_bytes", Int64(report.bytesRead))
            w.field("millis", Int64(seconds * 1000))
            w.field("entries_per_second", Int64(rate))
            if let t = report.truncation { w.field("torn_tail", "\(t.file) at byte \(t.offset)") }
            out.write(w.finish())
        } else {
            out.write("listings:     \(report.engine.listingCount) (\(report.engine.openListingCount) open)")
            out.write("request ids:  \(report.engine.rememberedCount) remembered")
            out.write("timers:       \(report.engine.timerCount) scheduled")
            out.write("lsn:          \(report.lastLSN)")
            out.write("engine time:  \(report.engine.now) ms")
            out.write("state hash:   \(hash)")
            out.write(
                "started from: \(report.snapshot.map { "snapshot at lsn \($0.lsn)" } ?? "the first journal entry")")
            out.write(
                "replayed:     \(report.replayedRecords) entries, \(report.bytesRead) journal bytes in \(String(format3(seconds))) s (\(rate) entries/s)"
            )
            if let t = report.truncation { out.write("torn tail:    \(t.file) at byte \(t.offset) (\(t.reason))") }
        }
        out.flush()
    }
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check every snapshot and journal segment of a data directory; exit non-zero on any problem.",
        discussion: """
            Checks frames, record CRCs, lsn continuity, the SHA-256 chain (an edited, removed or reordered batch \
            breaks it), that replaying from each snapshot reaches the same state as replaying from the start \
            where the segments allow, and that each command's recorded idempotency outcome (new, duplicate or \
            conflict) is what the replay from the start finds; when a replay does not reach a snapshot's state, it \
            names the remembered requests whose result differs. Read-only.
            """
    )

    @Option(name: .long, help: "The data directory.")
    var dataDir: String

    @Option(name: .long, help: "Also read the segments and snapshots archived here (serve's --archive-dir).")
    var archiveDir: String?

    /// The data directory with its archive.
    var directory: DataDirectory { DataDirectory(dataDir, archive: archiveDir) }

    func run() throws {
        warnIfLoose(directory, tool: "gavel verify")
        // A replay longer than a second says how far it is, every second.
        let result = Verification.run(directory) { records, segment in
            printError("verify: replaying from the start: \(records) entries (\(segment))")
        }
        let out = LineWriter()
        for line in result.notes { out.write("ok: \(line)") }
        for problem in result.problems { out.write("PROBLEM: \(problem)") }
        out.write(result.problems.isEmpty ? "verify: no problems" : "verify: \(result.problems.count) problem(s)")
        out.flush()
        if !result.problems.isEmpty { throw ExitCode(1) }
    }
}

struct Dump: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the journal as JSON lines: the audit trail of who did what, when.",
        discussion: """
            Each line has the entry's lsn, engine time (at), principal, request id and the command in its protocol \
            form; clock ticks that fired timers are {"lsn":N,"at":T,"type":"tick"}.

            With --settlement L:N, one transaction's whole history instead, found by replaying the journal: each \
            command that acted on it (with its result, refusals included) or created it, followed by the \
            `settlement` events it caused, the deadlines that fired as their events, and a last \
            {"type":"history",...} line with the settlement's steps as the engine holds them.
            """
    )

    @Option(name: .long, help: "The data directory.")
    var dataDir: String

    @Option(name: .long, help: "Also read the segments and snapshots archived here (serve's --archive-dir).")
    var archiveDir: String?

    /// The data directory with its archive.
    var directory: DataDirectory { DataDirectory(dataDir, archive: archiveDir) }

    @Option(name: .long, help: "Only entries for this listing.")
    var listing: String?

    @Option(name: .long, help: "Start at this lsn.")
    var fromLSN: UInt64 = 0

    @Option(name: .long, help: "Print one settlement's history (an id such as L1:1) instead of the journal.")
    var settlement: String?

    @Option(name: .long, help: "Output format: json (the only one).")
    var format: String = "json"

    func validate() throws {
        guard format == "json" else { throw ValidationError("--format must be json") }
        if let settlement, SettlementID.parse(settlement) == nil {
            throw ValidationError("--settlement must be <listing>:<n>, such as L1:1")
        }
        if settlement != nil && (listing != nil || fromLSN != 0) {
            throw ValidationError("--settlement prints a whole history: it takes no --listing or --from-lsn")
        }
    }

    func run() throws {
        let out = LineWriter()
        warnIfLoose(directory, tool: "gavel dump")
        if let problem = directory.layoutProblem() {
            printError("gavel dump: \(problem)")
            throw ExitCode(1)
        }
        if let settlement { return try dumpSettlement(settlement, directory, out) }
        let segments = directory.segments()
        guard !segments.isEmpty else {
            printError("gavel dump: no journal segments in \(directory.journal)")
            throw ExitCode(1)
        }
        var first = 0
        for (index, segment) in segments.enumerated() where segment.firstLSN <= fromLSN { first = index }
        // Where the segment before left off: the next one must go on from there (a missing segment or segments in
        // the wrong order are a gap in the audit trail, reported as such, never skipped).
        var expected: (lsn: UInt64, chain: [UInt8])?
        for segment in segments[first...] {
            var reader: SegmentReader
            do {
                reader = try SegmentReader(bytes: try readFile(segment.path))
            } catch {
                out.flush()
                printError("gavel dump: \(segment.path): \(error)")
                throw ExitCode(1)
            }
            if let problem = Verification.continuityProblem(
                of: reader.header, at: segment, after: expected)
            {
                out.flush()
                printError("gavel dump: \(problem); the entries before it are printed, none after")
                throw ExitCode(1)
            }
            while true {
                let batch: SegmentBatch?
                do {
                    batch = try reader.next()
                } catch {
                    out.flush()
                    printError("gavel dump: \(segment.path) at byte \(error.offset): \(error.reason)")
                    throw ExitCode(1)
                }
                guard let batch else { break }
                for record in batch.records where record.lsn >= fromLSN {
                    switch record {
                    case .command(let lsn, let at, let principal, let command, _):
                        if let listing, command.listing != listing { continue }
                        out.write(
                            CommandEncoder.encode(command) { w in
                                w.field("lsn", lsn)
                                w.field("at", at)
                                w.field("principal", principal)
                            })
                    case .tick(let lsn, let at):
                        if listing != nil { continue }
                        var w = JSONObjectWriter()
                        w.field("lsn", lsn)
                        w.field("at", at)
                        w.field("type", "tick")
                        out.write(w.finish())
                    case .trailer:
                        break
                    }
                }
            }
            expected = (reader.nextLSN, reader.chain)
        }
        out.flush()
    }
}

struct Snapshot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Take a snapshot of a data directory now.",
        discussion: """
            If a gavel process is running on the directory (it holds <data-dir>/LOCK, which names its pid), it is \
            asked to snapshot (SIGUSR1) and this waits for the new file. Otherwise this takes the lock itself, \
            recovers the directory and writes a snapshot directly.
            """
    )

    @Option(name: .long, help: "The data directory.")
    var dataDir: String

    @Option(name: .long, help: "Seconds to wait for a running process to write the snapshot.")
    var timeout: Int = 30

    @OptionGroup var storage: StorageOptions

    func run() throws {
        let directory = storage.directory(dataDir)
        let before = directory.snapshotFiles().first
        var holder: Int32?
        do throws(DirectoryLock.Failure) {
            try DirectoryLock.acquire(directory)
        } catch {
            // No directory or lock file yet: claiming it below makes them, or says why it cannot.
            if case .held(let pid) = error { holder = pid ?? 0 }
        }
        if let named = holder {
            // Signal the process the kernel says holds the lock, never merely the pid the file names: a holder in
            // another pid namespace wrote a number that here belongs to some other process.
            guard let pid = DirectoryLock.holder(directory) else {
                guard named > 0 else { throw Refusal("the process holding \(directory.path) is starting; try again") }
                throw Refusal(
                    "\(DirectoryLock.path(directory)) is locked and names pid \(named), but this system's lock table "
                        + "(/proc/locks) does not show which process holds it here (a server in another pid namespace or "
                        + "on another host?): send SIGUSR1 to that server where it runs")
            }
            if named > 0 && named != pid {
                printError(
                    "gavel snapshot: the lock file names pid \(named) (another pid namespace); signalling pid \(pid), which "
                        + "holds the lock")
            }
            kill(pid, SIGUSR1)
            let deadline = monotonicNanos() + UInt64(timeout) * 1_000_000_000
            while monotonicNanos() < deadline {
                if let newest = directory.snapshotFiles().first, newest.path != before?.path || before == nil {
                    print("snapshot: \(newest.path) (lsn \(newest.lsn)) written by process \(pid)")
                    return
                }
                usleep(50_000)
            }
            printError(
                "gavel snapshot: process \(pid) wrote no new snapshot within \(timeout) s (nothing new to snapshot?)")
            throw ExitCode(1)
        }
        let report = try recoverForWriting(
            directory, truncateAfterCorruption: storage.truncateAfterCorruption, engine: .served)
        let journal = try Journal(directory: directory, configuration: storage.journalConfiguration, recovery: report)
        let writer = Writer(
            configuration: storage.writerConfiguration(engine: report.engine.configuration), engine: report.engine,
            lastLSN: report.lastLSN, sink: journal, snapshots: journal, clock: ManualClock(report.engine.now))
        writer.startManual()
        writer.requestSnapshot()
        writer.runUntilIdle()
        journal.close()
        guard journal.stats.snapshotFailures.load(ordering: .relaxed) == 0,
            journal.stats.snapshots.load(ordering: .relaxed) > 0,
            let newest = directory.snapshotFiles().first
        else {
            printError(
                "gavel snapshot: no snapshot was written (the reason is logged above); the snapshots of \(directory.snapshots) are as they were"
            )
            throw ExitCode(1)
        }
        print("snapshot: \(newest.path) (lsn \(newest.lsn))")
    }
}

func readFile(_ path: String) throws -> [UInt8] {
    do {
        return try Files.readAll(path)
    } catch {
        throw ValidationError("cannot read \(path): \(String(cString: strerror(error.code)))")
    }
}

func format3(_ value: Double) -> String {
    let millis = Int((value * 1000).rounded())
    let fraction = String(millis % 1000)
    return "\(millis / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)"
}

extension Dump {
    /// The lines `gavel dump --settlement` prints while the journal is replayed.
    ///
    /// `@unchecked Sendable`: recovery's `observe` hook is typed `@Sendable`, but recovery calls it on the thread
    /// that called `Recovery.recover`, one entry after another, and this object is read only once it returned.
    private final class SettlementLines: @unchecked Sendable {
        let id: String
        let listing: String
        var lines: [[UInt8]] = []

        init(id: String, listing: String) {
            self.id = id
            self.listing = listing
        }

        func concerns(_ event: Event) -> Bool {
            guard event.listing == listing, case .settlement(let change) = event.kind else { return false }
            return SettlementID.format(listing: listing, number: change.number) == id
        }

        func observe(_ record: JournalRecord, timers: [Event], result: CommandResult?, events: [Event]) {
            for event in timers where concerns(event) { lines.append(MessageEncoder.event(event)) }
            guard case .command(let lsn, let at, let principal, let command, _) = record else { return }
            let caused = events.filter(concerns)
            guard command.settlementID == id || !caused.isEmpty else { return }
            lines.append(
                CommandEncoder.encode(command) { w in
                    w.field("lsn", lsn)
                    w.field("at", at)
                    w.field("principal", principal)
                })
            if let result { lines.append(MessageEncoder.result(id: command.id, result)) }
            for event in caused { lines.append(MessageEncoder.event(event)) }
        }
    }

    /// Replays the journal (from its start when it reaches back to lsn 1, else from the newest snapshot) and prints
    /// what concerned settlement `id`.
    func dumpSettlement(_ id: String, _ directory: DataDirectory, _ out: LineWriter) throws {
        guard let (listing, _) = SettlementID.parse(id) else { throw ExitCode(2) }
        let lines = SettlementLines(id: id, listing: listing)
        var options = RecoveryOptions()
        options.repair = false
        options.useSnapshots = directory.segments().first?.firstLSN != 1
        options.observe = { lines.observe($0, timers: $1, result: $2, events: $3) }
        let report: RecoveryReport
        do {
            report = try Recovery.recover(directory, options: options)
        } catch {
            printError("gavel dump: \(error)")
            throw ExitCode(2)
        }
        if let snapshot = report.snapshot {
            var w = JSONObjectWriter()
            w.field("type", "note")
            w.field(
                "message",
                "the journal before lsn \(snapshot.lsn + 1) is gone (snapshot \(snapshot.path)); the history line holds the steps before it"
            )
            out.write(w.finish())
        }
        for line in lines.lines { out.write(line) }
        guard let settlement = report.engine.settlement(id) else {
            out.flush()
            if lines.lines.isEmpty {
                printError("gavel dump: no settlement \(id) in the journal of \(dataDir)")
                throw ExitCode(1)
            }
            return
        }
        out.write(MessageEncoder.settlementHistory(settlement))
        out.flush()
    }
}
