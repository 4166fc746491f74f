import ArgumentParser
import Dispatch
import GavelCore
@_spi(Manual) import GavelEngine
import GavelJournal
import GavelWire
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply JSON-line commands to the engine and print results and events.",
        discussion: """
            Reads one JSON command per line from FILE (or standard input) and writes JSON lines to standard \
            output: exactly one {"type":"result",...} line per command, and the events it causes. A command may \
            carry "at" (engine time in ms); {"type":"advance","at":T} only moves the clock, firing due timers. \
            Settlement and second-chance commands name their actor in "by" and its role in "role" (bidder, \
            seller, service or admin), e.g. {"type":"confirm_payment","id":"p1","settlement":"L1:1","by":"pay",\
            "role":"service","payment_ref":"PAY-1"}. See docs/PROTOCOL.md.

            Without --data-dir the engine is fresh and in memory. With --data-dir, it first recovers what the \
            directory holds, then journals what it applies and writes each result line only once its command is \
            durable, as the server acknowledges; SIGUSR1 (or `gavel snapshot --data-dir D`) asks for a snapshot.

            Example:
              echo '{"type":"open","id":"o1","listing":"L1","seller":"sam","format":"english","start":100,"closes_at":60000,"at":0}' | gavel simulate
            """
    )

    @Argument(help: "A file of JSON lines; standard input when omitted.")
    var file: String?

    @Flag(
        name: .long, help: "End with a {\"type\":\"state_hash\",\"hash\":...} line: a digest of the whole engine state."
    )
    var hash = false

    @Option(name: .long, help: "How long request ids are remembered for idempotency, in engine-time ms.")
    var idempotencyWindowMs: Int64 = 86_400_000

    @Option(
        name: .long,
        help:
            "Recover from and journal to this data directory (created when missing, mode 0700; refused when other users can read or write it, or another process holds it)."
    )
    var dataDir: String?

    @OptionGroup var storage: StorageOptions

    func validate() throws {
        guard idempotencyWindowMs > 0 else {
            throw ValidationError("--idempotency-window-ms must be positive")
        }
    }

    func run() throws {
        let fd: Int32
        if let file {
            fd = open(file, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                // Printed here: a ValidationError thrown from `run` comes with the top-level usage, not this one's.
                printError("gavel simulate: cannot open \(file): \(String(cString: strerror(errno)))")
                printError("Usage: \(Gavel.usageString(for: Self.self))")
                throw ExitCode.validationFailure
            }
        } else {
            fd = 0
        }
        defer { if file != nil { close(fd) } }
        let input = LineReader(fd: fd)
        let out = LineWriter()
        let engineConfiguration = EngineConfiguration(idempotencyWindowMs: idempotencyWindowMs)
        if let dataDir {
            try runDurable(input: input, out: out, directory: storage.directory(dataDir), engine: engineConfiguration)
        } else {
            let simulator = Simulator(engine: Engine(configuration: engineConfiguration))
            while let line = input.readLine() {
                simulator.process(line: line) { out.write($0) }
            }
            if hash { out.write(simulator.stateHashLine()) }
        }
        out.flush()
    }

    private func runDurable(
        input: LineReader, out: LineWriter, directory: DataDirectory, engine configuration: EngineConfiguration
    )
        throws
    {
        let report = try recoverForWriting(
            directory, truncateAfterCorruption: storage.truncateAfterCorruption, engine: configuration)
        let journal = try Journal(directory: directory, configuration: storage.journalConfiguration, recovery: report)
        let engine = report.engine
        let clock = ManualClock(engine.now)
        let lines = OutputLines(out)
        let writer = Writer(
            configuration: storage.writerConfiguration(engine: configuration), engine: engine, lastLSN: report.lastLSN,
            sink: journal, snapshots: journal, clock: clock, observer: lines)
        writer.startManual()
        let snapshotWanted = SignalFlag(SIGUSR1)

        /// Makes everything applied so far durable and its lines written, so lines stay in input order.
        func settle() {
            writer.runUntilIdle()
            journal.flush()
            out.flush()
        }
        var pending = 0
        while true {
            if snapshotWanted.take() {
                writer.requestSnapshot()
                settle()
            }
            if !input.hasInputReady {
                // Group commit: everything read so far becomes durable together before waiting for more input.
                if pending > 0 {
                    settle()
                    pending = 0
                }
                if !input.wait(timeoutMs: 200) { continue }
            }
            guard let line = input.readLine() else { break }
            if line.utf8.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            switch CommandDecoder.decode(line: line) {
            case .invalid(let id, let message):
                settle()
                out.write(MessageEncoder.badRequest(id: id, message: message))
            case .advance(let at):
                guard at >= clock.now() else {
                    settle()
                    out.write(
                        MessageEncoder.badRequest(
                            id: nil,
                            message: "at \(at) is earlier than the engine clock \(clock.now()); time only moves forward"
                        ))
                    continue
                }
                if at != clock.now() { writer.runUntilIdle() }
                clock.set(at)
                writer.runUntilIdle()
                pending += 1
            case .command(let command, let at):
                if let at {
                    guard at >= clock.now() else {
                        settle()
                        out.write(
                            MessageEncoder.badRequest(
                                id: command.id,
                                message:
                                    "at \(at) is earlier than the engine clock \(clock.now()); time only moves forward")
                        )
                        continue
                    }
                    if at != clock.now() {
                        writer.runUntilIdle()
                        clock.set(at)
                        // Fire what is due by `at` first (an eviction among it), so that a command for a listing
                        // that leaves then is answered before the engine, and not remembered, as on a server.
                        writer.runUntilIdle()
                    }
                }
                let rejected = writer.submit(command, replyTo: lines)
                if let rejected {
                    settle()
                    out.write(MessageEncoder.result(id: command.id, rejected))
                }
                pending += 1
                // Bound the group so that queues never fill and output keeps flowing.
                if pending >= 1024 {
                    writer.runUntilIdle()
                    pending = 0
                }
            }
        }
        settle()
        writer.finishManual()
        journal.close()
        if hash {
            var w = JSONObjectWriter()
            w.field("type", "state_hash")
            w.field("hash", engine.fastStateHash())
            out.write(w.finish())
        }
    }
}

/// Remembers that a signal arrived, for a loop to pick up.
///
/// `@unchecked Sendable`: the signal source (not marked `Sendable`) is only set up in `init` and kept alive; what
/// threads share is the atomic flag.
final class SignalFlag: @unchecked Sendable {
    private let raised = Atomic<Bool>(false)
    private let source: DispatchSourceSignal

    init(_ signal: Int32) {
        Glibc.signal(signal, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: signal, queue: .global())
        source.setEventHandler { [self] in self.raised.store(true, ordering: .releasing) }
        source.resume()
    }

    /// Whether the signal arrived since the last call.
    func take() -> Bool { raised.exchange(false, ordering: .acquiringAndReleasing) }
}

/// Writes each durable entry's lines, in order: the result of a command sent to it, then every event of the entry a
/// client could see (not the engine's bookkeeping); and the result of each command sent to it that the writer took
/// but did not apply (its listing had left the engine), where the writer took it.
final class OutputLines: ReleaseObserver, ResultRecipient {
    let out: LineWriter

    init(_ out: LineWriter) { self.out = out }

    func released(_ batch: Batch, endsGroup: Bool) {
        batch.forEachTaken(
            entry: { position in
                if let submission = batch.entries[position].submission, let result = batch.entries[position].result {
                    write(submission, result)
                }
                for index in batch.entries[position].events where !batch.events[index].kind.isInternal {
                    out.write(MessageEncoder.event(batch.events[index]))
                }
            }, unapplied: write)
    }

    private func write(_ submission: Submission, _ result: CommandResult) {
        if submission.recipient === self { out.write(MessageEncoder.result(id: submission.command.id, result)) }
    }
}
