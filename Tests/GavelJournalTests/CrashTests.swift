import Foundation
import GavelCore
import GavelJournal
import GavelWire
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Runs `gavel simulate --data-dir D --fsync always` as a subprocess, feeds it a deterministic command stream, reads
/// the result lines it acknowledges, kills it with SIGKILL at a random moment, and checks the directory after every
/// kill: every acknowledged command is journaled with the content sent and the result acknowledged, the recovered
/// state is exactly a clean replay of the journal (nothing half-applied), and `gavel verify` passes. The stream
/// then continues where the acknowledgements left off: unacknowledged commands are sent again and must come back
/// as duplicates of what the journal holds, or be new.
final class CrashHarness {
    struct Item {
        var command: Command
        var at: Millis
    }

    struct Options {
        var seed: UInt64
        var cycles: Int
        /// Extra arguments for `gavel simulate` (segment size, snapshots).
        var arguments: [String]
        /// The most lines sent in one cycle.
        var maxLinesPerCycle = 1500
        /// The longest a cycle runs before the kill, in ms.
        var maxRunMs = 250
        var maxAcksBeforeKill = 700
    }

    let binary: URL
    let options: Options
    let directory: String
    let log: String
    private var rng: SplitMix64
    private var workload: Workload
    private(set) var items: [Item] = []
    private var indexByID: [String: Int] = [:]
    /// The acknowledgement line of each acknowledged command, by stream index.
    private(set) var acks: [Int: String] = [:]
    /// Stream indexes not acknowledged yet, in stream order (all of them below `items.count`).
    private var unacknowledged: [Int] = []
    /// The engine clock of the last recovery: lines for earlier times go without `at`.
    private var recoveredClock: Millis = 0
    /// What the cycles saw, for the report.
    private(set) var stats = Stats()

    struct Stats: CustomStringConvertible {
        var cycles = 0
        var acknowledged = 0
        var journaled = 0
        var duplicates = 0
        var tornTails = 0
        var killsBeforeFirstAck = 0
        var resentWithoutAt = 0
        var snapshotRecoveries = 0

        var description: String {
            "\(cycles) cycles, \(acknowledged) acknowledged, \(journaled) journal entries, \(duplicates) duplicate "
                + "re-sends, \(tornTails) torn tails cut, \(killsBeforeFirstAck) kills before any ack, "
                + "\(resentWithoutAt) re-sent without at, \(snapshotRecoveries) recoveries from a snapshot"
        }
    }

    init(binary: URL, directory: String, log: String, options: Options) {
        self.binary = binary
        self.options = options
        self.directory = directory
        self.log = log
        rng = SplitMix64(seed: options.seed)
        workload = Workload(seed: options.seed &+ 1, prefix: "k")
        workload.maxStep = 4
        // Settlements and their deadlines too, so that deadlines set before a kill fire after the restart.
        workload.settlements = true
    }

    /// Extends the stream so that at least `count` items are not acknowledged yet.
    private func ensurePending(_ count: Int) {
        while unacknowledged.count < count {
            let (command, at) = workload.next()
            indexByID[command.id] = items.count
            unacknowledged.append(items.count)
            items.append(Item(command: command, at: at))
        }
    }

    private func line(for index: Int) -> String {
        let item = items[index]
        let at: Millis?
        if item.at >= recoveredClock {
            at = item.at
        } else {
            at = nil
            stats.resentWithoutAt += 1
        }
        return String(decoding: CommandEncoder.encode(item.command, at: at), as: UTF8.self)
    }

    // MARK: - One cycle

    /// Starts the binary, feeds it, and kills it after a random number of acknowledgements or milliseconds.
    /// `graceful`: close standard input instead, and wait for a clean exit; `extraLines` are sent after the stream.
    func runCycle(graceful: Bool = false, extraLines: [String] = []) throws -> [String] {
        ensurePending(graceful ? 50 : options.maxLinesPerCycle)
        let sending = Array(unacknowledged.prefix(options.maxLinesPerCycle))
        var payload: [UInt8] = []
        for index in sending {
            payload += Array(line(for: index).utf8)
            payload.append(0x0A)
        }
        for extra in extraLines {
            payload += Array(extra.utf8)
            payload.append(0x0A)
        }
        let killAfterAcks = rng.chance(10) ? 0 : rng.int(1...options.maxAcksBeforeKill)
        let killAfterMs = rng.chance(15) ? rng.int(0...20) : rng.int(0...options.maxRunMs)

        #expect(FileManager.default.createFile(atPath: log, contents: nil), "cannot create \(log)")
        let process = Process()
        process.executableURL = binary
        process.arguments = ["simulate", "--data-dir", directory, "--fsync", "always"] + options.arguments
        let stdin = Pipe()
        let stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = FileHandle(forWritingAtPath: log)
        let started = DispatchTime.now().uptimeNanoseconds
        try process.run()
        let pid = process.processIdentifier
        let inFD = stdin.fileHandleForWriting.fileDescriptor
        let outFD = stdout.fileHandleForReading.fileDescriptor
        _ = fcntl(inFD, F_SETFL, fcntl(inFD, F_GETFL) | O_NONBLOCK)
        _ = fcntl(outFD, F_SETFL, fcntl(outFD, F_GETFL) | O_NONBLOCK)

        var written = 0
        var inputOpen = true
        var buffer: [UInt8] = []
        var lines: [String] = []
        var results = 0
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        // A hard limit on the loop: a graceful run has 30 s, a killed one its delay plus 10 s.
        let limitNanos = UInt64(graceful ? 30_000 : killAfterMs + 10_000) * 1_000_000
        var killed = false

        func readAvailable() -> Bool {
            var sawEOF = false
            while true {
                let n = chunk.withUnsafeMutableBytes { read(outFD, $0.baseAddress, $0.count) }
                if n > 0 {
                    buffer += chunk[0..<n]
                    continue
                }
                if n == 0 { sawEOF = true }
                break
            }
            while let newline = buffer.firstIndex(of: 0x0A) {
                let text = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                lines.append(text)
                if text.hasPrefix(#"{"type":"result""#) { results += 1 }
            }
            return sawEOF
        }

        while true {
            let elapsed = DispatchTime.now().uptimeNanoseconds - started
            if elapsed > limitNanos {
                kill(pid, SIGKILL)
                process.waitUntilExit()
                Issue.record("cycle \(stats.cycles) did not finish within its time limit; log: \(tail(log))")
                break
            }
            let due = (killAfterAcks > 0 && results >= killAfterAcks) || elapsed >= UInt64(killAfterMs) * 1_000_000
            if !graceful && due {
                kill(pid, SIGKILL)
                killed = true
                process.waitUntilExit()
                break
            }
            if !process.isRunning { break }
            var fds = [
                pollfd(fd: outFD, events: Int16(POLLIN), revents: 0),
                pollfd(fd: inputOpen ? inFD : -1, events: Int16(POLLOUT), revents: 0),
            ]
            _ = poll(&fds, 2, 5)
            if inputOpen && written < payload.count {
                let n = payload.withUnsafeBytes { write(inFD, $0.baseAddress! + written, $0.count - written) }
                if n > 0 { written += n }
            }
            if inputOpen && written == payload.count && graceful {
                try stdin.fileHandleForWriting.close()
                inputOpen = false
            }
            if readAvailable() { break }
        }
        // Whatever the process wrote before it died is in the pipe: take it (a line cut short is not an ack).
        _ = readAvailable()
        if inputOpen { try? stdin.fileHandleForWriting.close() }
        try? stdout.fileHandleForReading.close()
        if graceful {
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "a graceful run exits 0; log: \(tail(log))")
        } else if killed {
            #expect(
                process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL
                    || process.terminationReason == .exit && process.terminationStatus == 0,
                "the process died of the kill (or had finished): \(process.terminationReason) \(process.terminationStatus); log: \(tail(log))"
            )
        } else if process.terminationStatus != 0 || process.terminationReason != .exit {
            Issue.record("gavel simulate exited by itself with status \(process.terminationStatus): \(tail(log))")
        }

        // Acknowledgements: the result lines that arrived whole.
        var thisCycle = 0
        let sent = Set(sending)
        for text in lines where text.hasPrefix(#"{"type":"result","id":""#) {
            let rest = text.dropFirst(#"{"type":"result","id":""#.count)
            guard let quote = rest.firstIndex(of: "\"") else { continue }
            let id = String(rest[..<quote])
            guard let index = indexByID[id] else { continue }  // a re-sent extra line; the caller checks it
            guard sent.contains(index) else { continue }
            #expect(acks[index] == nil, "command \(id) acknowledged twice")
            acks[index] = text
            thisCycle += 1
        }
        if thisCycle == 0 && !graceful { stats.killsBeforeFirstAck += 1 }
        stats.acknowledged += thisCycle
        unacknowledged.removeAll { acks[$0] != nil }
        stats.cycles += 1
        return lines
    }

    // MARK: - Checks after a kill

    /// Recovers the directory in process (repairing a torn tail), then checks every acknowledgement against the
    /// journal, the recovered state against a clean replay, and `gavel verify`.
    func check(sourceLocation: SourceLocation = #_sourceLocation) throws {
        let data = DataDirectory(directory)
        let report: RecoveryReport
        do {
            report = try Recovery.recover(data)
        } catch {
            Issue.record("recovery after cycle \(stats.cycles) failed: \(error)", sourceLocation: sourceLocation)
            throw error
        }
        if report.truncation != nil { stats.tornTails += 1 }
        if report.snapshot != nil { stats.snapshotRecoveries += 1 }
        #expect(report.removedSegments.isEmpty, sourceLocation: sourceLocation)
        recoveredClock = report.engine.now

        // The journal as written, read segment by segment: lsns from 1 without a gap.
        let records = try journalRecords(data)
        stats.journaled = records.count
        #expect(records.map(\.lsn) == Array(1..<(UInt64(records.count) + 1)), sourceLocation: sourceLocation)
        #expect(report.lastLSN == UInt64(records.count), sourceLocation: sourceLocation)

        // (b) Nothing half-applied: the recovered state is exactly a clean replay of the journaled records.
        let replayed = replay(records)
        #expect(
            replayed.engine.stateHash() == report.engine.stateHash(),
            "cycle \(stats.cycles): the recovered state differs from a clean replay of the journal",
            sourceLocation: sourceLocation)

        // Every journaled command is one the test sent, with the content it sent.
        var firstRecord: [Int: (lsn: UInt64, result: CommandResult)] = [:]
        var recordCount: [Int: Int] = [:]
        for (lsn, command, result) in replayed.results {
            guard let index = indexByID[command.id] else {
                Issue.record("journal entry \(lsn) holds command \(command.id) that was never sent")
                continue
            }
            #expect(command == items[index].command, "lsn \(lsn): content differs from what was sent")
            if let first = firstRecord[index] {
                // A re-send of a journaled command is a duplicate with the first result.
                var expected = first.result
                expected.duplicate = true
                #expect(result == expected, "lsn \(lsn): a re-sent \(command.id) did not get its first result")
                stats.duplicates += 1
            } else {
                firstRecord[index] = (lsn, result)
            }
            recordCount[index, default: 0] += 1
        }
        for case .command(let lsn, let at, let principal, let command, _) in records {
            guard let index = indexByID[command.id] else { continue }
            #expect(principal == command.principal)
            #expect(at >= items[index].at, "lsn \(lsn) applied at \(at), before the \(items[index].at) it was sent for")
        }

        // (a) Every acknowledged command is in the journal, and its acknowledgement is the result replay gives:
        // the first one's, marked duplicate when the acknowledged line was a re-send of a journaled command.
        for (index, ack) in acks {
            let id = items[index].command.id
            guard let record = firstRecord[index] else {
                Issue.record(
                    "cycle \(stats.cycles): \(id) was acknowledged (\(ack)) but is not in the journal",
                    sourceLocation: sourceLocation)
                continue
            }
            var duplicate = record.result
            duplicate.duplicate = true
            let first = String(decoding: MessageEncoder.result(id: id, record.result), as: UTF8.self)
            let again = String(decoding: MessageEncoder.result(id: id, duplicate), as: UTF8.self)
            #expect(
                ack == first || ack == again && recordCount[index, default: 0] > 1,
                "lsn \(record.lsn): acknowledged \(ack), the journal replays to \(first)",
                sourceLocation: sourceLocation)
        }
        // A command not journaled must be later than every journaled one: a lost command with a later one kept
        // would be a hole.
        for index in unacknowledged where firstRecord[index] == nil {
            #expect(
                items[index].at >= recoveredClock,
                "\(items[index].command.id) (at \(items[index].at)) is missing while later commands are journaled")
        }

        // (c) gavel verify passes; on a kill before the directory was made, it says there is none.
        let verify = try runGavel(["verify", "--data-dir", directory])
        if FileManager.default.fileExists(atPath: directory) {
            #expect(
                verify.status == 0, "gavel verify after cycle \(stats.cycles): \(verify.stdout) \(verify.stderr)",
                sourceLocation: sourceLocation)
        } else {
            #expect(verify.status == 1 && verify.stdout.contains("there is no data directory"))
        }
    }

    /// The index of the command with request id `id`.
    func index(of id: String) -> Int? { indexByID[id] }
}

/// The last lines of a log file.
func tail(_ path: String, lines count: Int = 12) -> String {
    let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    return text.split(separator: "\n").suffix(count).joined(separator: "\n")
}

private let crashCycles = ProcessInfo.processInfo.environment["GAVEL_CRASH_CYCLES"].flatMap { Int($0) } ?? 20

@Suite("Crash: kill -9 of gavel simulate --data-dir", .serialized)
struct CrashTests {
    init() {
        // A write to the standard input of a killed process must fail with EPIPE, not kill the test runner.
        signal(SIGPIPE, SIG_IGN)
    }

    private func crashAndRecover(label: String, seed: UInt64, cycles: Int, arguments: [String]) throws {
        guard let binary = gavelBinary() else { return }
        let temp = try TemporaryDirectory(label)
        // GAVEL_KEEP_CRASH_DIR=1 keeps the data directory and the log for a look after a failure.
        defer { if ProcessInfo.processInfo.environment["GAVEL_KEEP_CRASH_DIR"] == nil { temp.remove() } }
        let harness = CrashHarness(
            binary: binary, directory: temp.sub("data"), log: temp.sub("gavel.log"),
            options: .init(seed: seed, cycles: cycles, arguments: arguments))
        let started = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<cycles {
            _ = try harness.runCycle()
            try harness.check()
        }
        // A last, graceful run: the unacknowledged rest, then re-sends (without `at`) of acknowledged commands,
        // which must all come back as duplicates of their acknowledged results.
        var sample: [Int] = harness.acks.keys.sorted()
        var rng = SplitMix64(seed: seed ^ 0xABCD)
        sample.shuffle(using: &rng)
        sample = Array(sample.prefix(300))
        let resends = sample.map {
            String(decoding: CommandEncoder.encode(harness.items[$0].command), as: UTF8.self)
        }
        let lines = try harness.runCycle(graceful: true, extraLines: resends)
        var duplicates: [String: String] = [:]
        for line in lines.reversed() where line.hasPrefix(#"{"type":"result""#) {
            for index in sample where duplicates[harness.items[index].command.id] == nil {
                if line.hasPrefix(#"{"type":"result","id":"\#(harness.items[index].command.id)","#) {
                    duplicates[harness.items[index].command.id] = line
                    break
                }
            }
        }
        for index in sample {
            let id = harness.items[index].command.id
            guard let original = harness.acks[index], let again = duplicates[id] else {
                Issue.record("no result for the re-sent \(id)")
                continue
            }
            // The same line with "duplicate":true after "ok" (unless the acknowledgement was already one).
            let head = #"{"type":"result","id":"\#(id)","ok":"#
            var expected = original
            if !original.contains(#""duplicate":true"#), let ok = original.range(of: head) {
                let value = original[ok.upperBound...].hasPrefix("true") ? "true" : "false"
                let end = original.index(ok.upperBound, offsetBy: value.count)
                expected = String(original[..<end]) + #","duplicate":true"# + String(original[end...])
            }
            #expect(again == expected, "re-sent \(id)")
        }
        try harness.check()
        #expect(harness.unacknowledgedCount == 0, "the graceful run acknowledged everything it was sent")

        // The audit trail names every acknowledged command.
        let dump = try runGavel(["dump", "--data-dir", temp.sub("data")])
        #expect(dump.status == 0)
        let dumped = Set(
            dump.lines.compactMap { line -> String? in
                guard let range = line.range(of: #""id":""#) else { return nil }
                let rest = line[range.upperBound...]
                return rest.firstIndex(of: "\"").map { String(rest[..<$0]) }
            })
        for index in harness.acks.keys { #expect(dumped.contains(harness.items[index].command.id)) }
        // gavel replay reaches the state recovery reaches.
        let replayRun = try runGavel(["replay", "--data-dir", temp.sub("data"), "--json"])
        let recovered = try Recovery.recover(
            DataDirectory(temp.sub("data")),
            options: {
                var o = RecoveryOptions()
                o.repair = false
                return o
            }())
        #expect(replayRun.stdout.contains(#""state_hash":"\#(recovered.engine.stateHash())""#))
        // The stream took settlements through their states, deadlines included, across the kills.
        let settled = replay(try journalRecords(DataDirectory(temp.sub("data"))))
        #expect(settled.settlementStates.isSuperset(of: [.awaitingPayment, .paid, .paymentExpired, .refunded]))
        #expect(settled.deadlineStates.contains(.paymentExpired), "\(settled.deadlineStates)")

        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        print("crash test \(label) (seed \(seed)): \(harness.stats) in \(String(format: "%.1f", seconds)) s")
        #expect(harness.stats.acknowledged > cycles, "the cycles acknowledged something: \(harness.stats)")
    }

    @Test func killNineAtRandomMomentsLosesNothingAcknowledged() throws {
        try crashAndRecover(
            label: "crash", seed: seed(from: "GAVEL_CRASH_SEED", default: 20_240_601), cycles: crashCycles,
            arguments: ["--segment-bytes", "4096", "--snapshot-every", "0", "--snapshot-every-seconds", "0"])
    }

    @Test func killNineWithSnapshotsRecoversFromSnapshotPlusJournal() throws {
        try crashAndRecover(
            label: "crash-snap", seed: seed(from: "GAVEL_CRASH_SEED", default: 77) &+ 1,
            cycles: max(6, crashCycles / 3),
            arguments: ["--snapshot-every", "150", "--snapshot-every-seconds", "0", "--keep-snapshots", "3"])
    }
}

extension CrashHarness {
    var unacknowledgedCount: Int { items.indices.filter { acks[$0] == nil }.count }
}
