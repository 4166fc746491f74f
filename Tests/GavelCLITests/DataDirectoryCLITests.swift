import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A `gavel` process, its standard error collected as it runs. Every wait is bounded.
final class GavelProcess: @unchecked Sendable {
    let process = Process()
    private let lock = NSLock()
    private var errors = Data()
    private var output = Data()
    /// Standard output and error once each has reached its end.
    private var finishedPipes = 0

    /// Starts `gavel arguments` with the `GAVEL_*` variables of this environment removed and `environment` added,
    /// under `umask` (octal text) when given, with `input` (or nothing) on standard input.
    init(_ arguments: [String], environment: [String: String] = [:], umask: String? = nil, input: String = "") throws {
        guard let gavelBinary else { throw CocoaError(.fileNoSuchFile) }
        if let umask {
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "umask \(umask) && exec \"$0\" \"$@\"", gavelBinary.path] + arguments
        } else {
            process.executableURL = gavelBinary
            process.arguments = arguments
        }
        process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("GAVEL_") }
            .merging(environment) { $1 }
        let inputPipe = Pipe()
        process.standardInput = inputPipe
        process.standardError = collect { [self] in errors.append($0) }
        process.standardOutput = collect { [self] in output.append($0) }
        try process.run()
        inputPipe.fileHandleForWriting.write(Data(input.utf8))
        try inputPipe.fileHandleForWriting.close()
    }

    /// A pipe whose every chunk goes to `append`, under the lock, as it arrives; read by a thread of its own
    /// with blocking reads up to its end.
    private func collect(_ append: @escaping @Sendable (Data) -> Void) -> Pipe {
        let pipe = Pipe()
        let reader = pipe.fileHandleForReading
        Thread.detachNewThread { [self] in
            while true {
                let chunk = reader.availableData
                lock.withLock {
                    append(chunk)
                    if chunk.isEmpty { finishedPipes += 1 }
                }
                if chunk.isEmpty { return }
            }
        }
        return pipe
    }

    var pid: Int32 { process.processIdentifier }
    var standardError: String { lock.withLock { String(decoding: errors, as: UTF8.self) } }
    var standardOutput: String { lock.withLock { String(decoding: output, as: UTF8.self) } }

    /// Waits up to `seconds` for `text` on standard error.
    func waitForError(_ text: String, seconds: Double = 60) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if standardError.contains(text) { return true }
            if !process.isRunning { return standardError.contains(text) }
            usleep(20_000)
        }
        return false
    }

    /// The exit status once it has exited, waiting up to `seconds`; `nil` (and the process is killed) if it is
    /// still running then.
    func exitStatus(within seconds: Double = 60) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        guard !process.isRunning else {
            kill(pid, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        // The rest of its output, up to the end of both pipes.
        let drained = Date().addingTimeInterval(10)
        while lock.withLock({ finishedPipes < 2 }) && Date() < drained { usleep(10_000) }
        return process.terminationStatus
    }

    /// How long a process that should refuse to start is given to do so.
    static let refusalSeconds = 20.0

    /// Sends `signal` and waits for the exit.
    func stop(_ signal: Int32 = SIGTERM) -> Int32? {
        kill(pid, signal)
        return exitStatus()
    }
}

/// Runs `body` with the path of a data directory that does not exist yet, in a fresh folder removed afterwards.
func withDataDirectory(_ body: (String) throws -> Void) throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gavel-dd-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
    defer { try? FileManager.default.removeItem(atPath: folder) }
    try body(folder + "/data")
}

/// The permission bits of `path`.
func mode(_ path: String) -> mode_t? {
    var st = stat()
    return stat(path, &st) == 0 ? st.st_mode & 0o7777 : nil
}

/// Every file and directory under `root` (not `root` itself).
func everything(under root: String) -> [String] {
    (FileManager.default.subpaths(atPath: root) ?? []).map { root + "/" + $0 }
}

let openCommand =
    #"{"type":"open","id":"o1","listing":"L1","seller":"sam","format":"english","start":100,"closes_at":60000,"at":0}"#
let strongSecret = "data-directory-cli-tests-secret-0123456789"

/// `gavel serve` on a data directory with free ports, ready once it says where it listens.
func startServe(_ directory: String, _ extra: [String] = [], umask: String? = nil) throws -> GavelProcess {
    try GavelProcess(
        ["serve", "--data-dir", directory, "--host", "127.0.0.1", "--port", "0", "--admin-port=-1"] + extra,
        umask: umask)
}

@Suite(
    .serialized,
    .enabled(if: gavelBinary != nil, "no .build/debug/gavel under the package root; run `swift build` first"))
/// What `gavel serve`, `simulate --data-dir`, `snapshot`, `token` and the read-only tools do with a data directory:
/// private modes, loose directories and key files, short secrets, and the one-writer lock. Serialized: each test
/// starts several processes.
struct DataDirectoryCLITests {
    @Test func simulateAndSnapshotMakeOwnerOnlyDirectoriesAndFilesWhateverTheUmask() throws {
        try withDataDirectory { data in
            let simulate = try GavelProcess(["simulate", "--data-dir", data], umask: "000", input: openCommand + "\n")
            #expect(simulate.exitStatus() == 0, "\(simulate.standardError)")
            let snapshot = try GavelProcess(["snapshot", "--data-dir", data], umask: "000")
            #expect(snapshot.exitStatus() == 0, "\(snapshot.standardError)")
            #expect(mode(data) == 0o700)
            let inside = everything(under: data)
            #expect(inside.contains { $0.hasSuffix(".seg") } && inside.contains { $0.hasSuffix(".snap") })
            #expect(inside.contains(data + "/LOCK"))
            for path in inside {
                var isDirectory: ObjCBool = false
                _ = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
                #expect(mode(path) == (isDirectory.boolValue ? 0o700 : 0o600), "\(path)")
            }
        }
    }

    @Test func serveInLocalModeMakesAPrivateKeyAndLocalCodeAndPrintsThePageAddressWithTheCode() throws {
        try withDataDirectory { data in
            let serve = try startServe(data, umask: "000")
            #expect(serve.waitForError("local mode: open http://127.0.0.1:"), "\(serve.standardError)")
            let code = (try? String(contentsOfFile: data + "/local-code", encoding: .utf8)) ?? ""
            #expect(code.count == 33 && code.hasSuffix("\n"))
            #expect(serve.standardError.contains("/#code=\(code.dropLast()) "))
            let expected: [String: mode_t] = [
                "": 0o700, "/journal": 0o700, "/snapshots": 0o700, "/jwt-secret": 0o600, "/local-code": 0o600,
                "/LOCK": 0o600,
            ]
            for (name, wanted) in expected { #expect(mode(data + name) == wanted, "\(name)") }
            #expect(serve.stop() == 0)
            #expect(!FileManager.default.fileExists(atPath: data + "/local-code"), "the code goes with the server")
        }
    }

    @Test func looseDataDirectoryIsRefusedByServeAndSimulateWithTheChmodThatFixesIt() throws {
        try withDataDirectory { data in
            try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: false)
            for loose: mode_t in [0o755, 0o770, 0o701] {
                chmod(data, loose)
                let serve = try startServe(data, ["--jwt-secret", strongSecret])
                #expect(
                    serve.exitStatus(within: GavelProcess.refusalSeconds) == 1,
                    "serve on a \(String(loose, radix: 8)) directory")
                #expect(serve.standardError.contains("chmod 700 \(data)"), "\(serve.standardError)")
                let simulate = try GavelProcess(["simulate", "--data-dir", data], input: openCommand + "\n")
                #expect(simulate.exitStatus(within: GavelProcess.refusalSeconds) == 1)
                #expect(simulate.standardError.contains("chmod 700 \(data)"), "\(simulate.standardError)")
                #expect(simulate.standardOutput.isEmpty)
            }
            #expect(everything(under: data).isEmpty, "nothing is written into a refused directory")
        }
    }

    @Test func readOnlyToolsReadALooseDirectoryAndWarn() throws {
        try withDataDirectory { data in
            let simulate = try GavelProcess(["simulate", "--data-dir", data], input: openCommand + "\n")
            #expect(simulate.exitStatus() == 0)
            chmod(data, 0o755)
            for tool in ["verify", "dump", "replay"] {
                let run = try GavelProcess([tool, "--data-dir", data])
                #expect(run.exitStatus() == 0, "\(tool): \(run.standardError)")
                #expect(
                    run.standardError.contains("warning") && run.standardError.contains("chmod 700 \(data)"), "\(tool)")
            }
        }
    }

    @Test func looseKeyFileIsRefusedByServeAndTokenWithTheChmodThatFixesIt() throws {
        try withDataDirectory { data in
            mkdir(data, 0o700)
            let key = data + "/jwt-secret"
            try (String(repeating: "ab", count: 32) + "\n").write(toFile: key, atomically: false, encoding: .utf8)
            for loose: mode_t in [0o644, 0o640, 0o602] {
                chmod(key, loose)
                let serve = try startServe(data)
                #expect(
                    serve.exitStatus(within: GavelProcess.refusalSeconds) == 1,
                    "serve with a \(String(loose, radix: 8)) key")
                #expect(serve.standardError.contains("chmod 600 \(key)"), "\(serve.standardError)")
                let token = try GavelProcess(["token", "--sub", "ann", "--role", "bidder", "--data-dir", data])
                #expect(token.exitStatus(within: GavelProcess.refusalSeconds) == 1)
                #expect(token.standardError.contains("chmod 600 \(key)"), "\(token.standardError)")
                #expect(
                    token.standardError.contains("could read the key and sign tokens that act for anyone")
                        && !token.standardError.contains("sealed bids"), "the risk is the key's: \(token.standardError)"
                )
                #expect(token.standardOutput.isEmpty)
            }
            chmod(key, 0o600)
            let token = try GavelProcess(["token", "--sub", "ann", "--role", "bidder", "--data-dir", data])
            #expect(token.exitStatus() == 0 && token.standardOutput.hasPrefix("eyJ"))
        }
    }

    @Test func aKeyFileThatIsAFIFOOrALinkToNothingIsRefusedSayingSo() throws {
        try withDataDirectory { data in
            mkdir(data, 0o700)
            let key = data + "/jwt-secret"
            #expect(mkfifo(key, 0o600) == 0)
            let fifo = try GavelProcess(["token", "--sub", "ann", "--role", "bidder", "--data-dir", data])
            #expect(fifo.exitStatus(within: GavelProcess.refusalSeconds) == 1)
            #expect(fifo.standardError.contains("\(key) is not a regular file"), "\(fifo.standardError)")
            unlink(key)
            #expect(symlink("/nonexistent/gavel-key", key) == 0)
            let dangling = try GavelProcess(["token", "--sub", "ann", "--role", "bidder", "--data-dir", data])
            #expect(dangling.exitStatus(within: GavelProcess.refusalSeconds) == 1)
            #expect(
                dangling.standardError.contains("is a symbolic link to /nonexistent/gavel-key, which does not exist"),
                "\(dangling.standardError)")
            #expect(
                (try? FileManager.default.destinationOfSymbolicLink(atPath: key)) == "/nonexistent/gavel-key",
                "the link is left as it was")
        }
    }

    @Test func secretsShorterThan32BytesAreRefusedByServeAndToken() throws {
        try withDataDirectory { data in
            let short = String(repeating: "k", count: 31)
            for (arguments, environment) in [
                (["--jwt-secret", ""], [:]), (["--jwt-secret", "x"], [:]), (["--jwt-secret", short], [:]),
                ([], ["GAVEL_JWT_SECRET": short]),
            ] as [([String], [String: String])] {
                let serve = try GavelProcess(
                    ["serve", "--data-dir", data, "--port", "0", "--admin-port=-1"] + arguments,
                    environment: environment)
                #expect(serve.exitStatus(within: GavelProcess.refusalSeconds) != 0, "\(arguments) \(environment)")
                #expect(serve.standardError.contains("must be at least 32 bytes"), "\(serve.standardError)")
                let token = try GavelProcess(
                    ["token", "--sub", "ann", "--role", "service", "--data-dir", data] + arguments,
                    environment: environment)
                #expect(
                    token.exitStatus(within: GavelProcess.refusalSeconds) != 0 && token.standardOutput.isEmpty,
                    "\(arguments) \(environment)")
                #expect(token.standardError.contains("must be at least 32 bytes"))
            }
            #expect(!FileManager.default.fileExists(atPath: data), "refused before the data directory is touched")
            let token = try GavelProcess(
                ["token", "--sub", "ann", "--role", "bidder", "--jwt-secret", String(repeating: "k", count: 32)])
            #expect(token.exitStatus() == 0 && token.standardOutput.hasPrefix("eyJ"))
            // A key file that is too short is refused too.
            mkdir(data, 0o700)
            try "abc\n".write(toFile: data + "/jwt-secret", atomically: false, encoding: .utf8)
            chmod(data + "/jwt-secret", 0o600)
            let fromFile = try GavelProcess(["token", "--sub", "ann", "--role", "bidder", "--data-dir", data])
            #expect(fromFile.exitStatus() != 0 && fromFile.standardError.contains("must be at least 32 bytes"))
        }
    }

    @Test func aSecondWriterIsRefusedNamingTheHoldersPidWhileReadersAndSnapshotWork() throws {
        try withDataDirectory { data in
            let seeded = try GavelProcess(["simulate", "--data-dir", data], input: openCommand + "\n")
            #expect(seeded.exitStatus() == 0)
            let holder = try startServe(data, ["--jwt-secret", strongSecret])
            defer { _ = holder.stop(SIGKILL) }
            #expect(holder.waitForError("ws://127.0.0.1:"), "\(holder.standardError)")
            #expect((try? String(contentsOfFile: data + "/LOCK", encoding: .utf8)) == "\(holder.pid)\n")

            let second = try startServe(data, ["--jwt-secret", strongSecret])
            #expect(second.exitStatus(within: GavelProcess.refusalSeconds) == 1)
            #expect(second.standardError.contains("in use by process \(holder.pid)"), "\(second.standardError)")
            let simulate = try GavelProcess(["simulate", "--data-dir", data], input: openCommand + "\n")
            #expect(simulate.exitStatus(within: GavelProcess.refusalSeconds) == 1)
            #expect(simulate.standardError.contains("in use by process \(holder.pid)"), "\(simulate.standardError)")
            #expect(simulate.standardOutput.isEmpty, "nothing applied")

            for tool in ["verify", "dump", "replay"] {
                let reader = try GavelProcess([tool, "--data-dir", data])
                #expect(reader.exitStatus() == 0, "\(tool) alongside the server: \(reader.standardError)")
            }
            let snapshot = try GavelProcess(["snapshot", "--data-dir", data, "--timeout", "20"])
            #expect(snapshot.exitStatus() == 0, "\(snapshot.standardError)")
            #expect(snapshot.standardOutput.contains("written by process \(holder.pid)"))
            #expect(holder.process.isRunning, "asking for a snapshot does not stop the holder")
        }
    }

    @Test func theLockGoesWithItsHolderEvenOnKill9() throws {
        try withDataDirectory { data in
            let holder = try startServe(data, ["--jwt-secret", strongSecret])
            #expect(holder.waitForError("ws://127.0.0.1:"), "\(holder.standardError)")
            #expect(holder.stop(SIGKILL) != 0)
            let next = try GavelProcess(["simulate", "--data-dir", data], input: openCommand + "\n")
            #expect(next.exitStatus() == 0, "\(next.standardError)")
            #expect(next.standardOutput.contains(#""id":"o1","ok":true"#))
            // An offline snapshot takes the lock itself and leaves the next writer free to start.
            let snapshot = try GavelProcess(["snapshot", "--data-dir", data])
            #expect(snapshot.exitStatus() == 0, "\(snapshot.standardError)")
            let after = try startServe(data, ["--jwt-secret", strongSecret])
            #expect(after.waitForError("ws://127.0.0.1:"), "\(after.standardError)")
            #expect(after.stop() == 0)
        }
    }
}

/// A command whose own `at` moves the clock past its listing's eviction is answered as on a server, before the
/// engine: not remembered, so its id may be used again once the listing is open.
@Suite(.enabled(if: gavelBinary != nil, "no .build/debug/gavel under the package root; run `swift build` first"))
struct SimulateEvictionCLITests {
    @Test func aCommandWhoseTimeEvictsItsListingIsNotRememberedWithADataDirectory() throws {
        // Retention is an hour: the market closed at 100 is evicted at 3,600,100.
        let lines = [
            #"{"type":"open","id":"o1","listing":"E","seller":"sue","format":"market","closes_at":100,"at":0}"#,
            #"{"type":"order","id":"q1","listing":"E","trader":"bob","side":"buy","price":100,"quantity":3,"at":3600200}"#,
            #"{"type":"open","id":"o2","listing":"E","seller":"sue","format":"market","at":3600300}"#,
            #"{"type":"order","id":"q1","listing":"E","trader":"bob","side":"buy","price":100,"quantity":5,"at":3600400}"#,
        ]
        let input = lines.joined(separator: "\n") + "\n"
        try withDataDirectory { data in
            let durable = try runGavel(["simulate", "--data-dir", data, "--fsync", "none"], input: input)
            #expect(durable.status == 0, "\(durable.standardError)")
            let results = durable.standardOutput.split(separator: "\n").filter { $0.contains(#""type":"result""#) }
            #expect(results.count == 4)
            #expect(results.count == 4 && results[1].contains(#""error":"unknown_listing""#))
            #expect(results.count == 4 && results[3].contains(#""ok":true"#), "\(results)")
        }
    }

    /// Commands read in one group go into one writer turn: one queued behind an `open` the engine refuses finds no
    /// listing when its turn comes, and is answered in its place, as on a server, without being remembered.
    @Test func aCommandQueuedBehindARefusedOpenIsNotRememberedWithADataDirectory() throws {
        let lines = [
            #"{"type":"open","id":"o1","listing":"E","seller":"sue","format":"market","closes_at":0}"#,
            #"{"type":"order","id":"q1","listing":"E","trader":"bob","side":"buy","price":100,"quantity":3}"#,
            #"{"type":"open","id":"o2","listing":"E","seller":"sue","format":"market"}"#,
            #"{"type":"order","id":"q1","listing":"E","trader":"bob","side":"buy","price":100,"quantity":5}"#,
        ]
        try withDataDirectory { data in
            let durable = try runGavel(
                ["simulate", "--data-dir", data, "--fsync", "none"], input: lines.joined(separator: "\n") + "\n")
            #expect(durable.status == 0, "\(durable.standardError)")
            let results = durable.standardOutput.split(separator: "\n").filter { $0.contains(#""type":"result""#) }
            let expected = [
                #""id":"o1","ok":false,"error":"bad_request""#, #""id":"q1","ok":false,"error":"unknown_listing""#,
                #""id":"o2","ok":true"#, #""id":"q1","ok":true"#,
            ]
            #expect(results.count == 4, "\(results)")
            for (result, prefix) in zip(results, expected) {
                #expect(result.contains(prefix), "\(results)")
            }
            let verify = try runGavel(["verify", "--data-dir", data])
            #expect(verify.status == 0, "\(verify.standardOutput)\(verify.standardError)")
        }
    }

    @Test func aClockMovedWithNothingJournaledSurvivesAStopWhetherOrNotAListingIsHeld() throws {
        let open =
            #"{"type":"open","id":"o1","listing":"L1","seller":"sam","format":"english","start":100,"closes_at":9000}"#
        for first in [
            #"{"type":"advance","at":3100}"#,
            #"{"type":"open","id":"k","listing":"K","seller":"zz","format":"market","at":0}"# + "\n"
                + #"{"type":"advance","at":3100}"#,
        ] {
            try withDataDirectory { data in
                let before = try runGavel(
                    ["simulate", "--data-dir", data, "--snapshot-every", "1"], input: first + "\n")
                #expect(before.status == 0, "\(before.standardError)")
                let after = try runGavel(["simulate", "--data-dir", data], input: open + "\n")
                #expect(after.standardOutput.contains(#""opens_at":3100"#), "\(after.standardOutput)")
                let verify = try runGavel(["verify", "--data-dir", data])
                #expect(verify.status == 0, "\(verify.standardOutput)\(verify.standardError)")
            }
        }
    }
}
