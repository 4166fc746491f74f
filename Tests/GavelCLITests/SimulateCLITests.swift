import Foundation
import Testing

private let exampleLines = [
    #"{"type":"open","id":"o1","listing":"L1","seller":"sam","format":"english","start":100,"closes_at":60000,"at":0}"#,
    #"{"type":"bid","id":"b1","listing":"L1","bidder":"ann","amount":1000,"at":10}"#,
]

/// A longer session over every format, with an invalid line, a duplicate and timers.
private let sessionLines =
    exampleLines + [
        #"{"type":"bid","id":"b2","listing":"L1","bidder":"bob","amount":500,"at":20}"#,
        #"{"type":"open","id":"o2","listing":"S1","seller":"sam","format":"sealed","pricing":"second","start":10,"closes_at":50000}"#,
        #"{"type":"bid","id":"s1","listing":"S1","bidder":"ann","amount":300}"#,
        #"{"type":"bid","id":"s2","listing":"S1","bidder":"bob","amount":200}"#,
        #"{"type":"open","id":"o3","listing":"D1","seller":"sam","format":"dutch","start":1000,"floor":500,"step":100,"step_every_ms":1000,"quantity":3,"closes_at":40000}"#,
        #"{"type":"accept","id":"a1","listing":"D1","bidder":"cyd","at":2500}"#,
        #"{"type":"open","id":"o4","listing":"M1","seller":"sam","format":"market","closes_at":30000}"#,
        #"{"type":"order","id":"q1","listing":"M1","trader":"ann","side":"sell","price":100,"quantity":3}"#,
        #"{"type":"order","id":"q2","listing":"M1","trader":"bob","side":"buy","price":101,"quantity":5,"tif":"ioc"}"#,
        "this is not json",
        #"{"type":"bid","id":"b1","listing":"L1","bidder":"ann","amount":1000}"#,
        #"{"type":"advance","at":70000}"#,
    ]

/// The number of lines that are commands (everything but `advance` and blank lines).
private func commandCount(_ lines: [String]) -> Int {
    lines.filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty && !$0.contains(#""type":"advance""#) }.count
}

/// `gavel simulate arguments` with `stdin` (or nothing) on standard input.
private func simulate(_ arguments: [String], stdin: String? = nil) throws -> GavelRun {
    try runGavel(["simulate"] + arguments, input: stdin ?? "")
}

@Suite(.enabled(if: gavelBinary != nil, "no .build/debug/gavel under the package root; run `swift build` first"))
struct SimulateCLITests {
    @Test func specExampleOnStandardInput() throws {
        let run = try simulate([], stdin: exampleLines.joined(separator: "\n") + "\n")
        #expect(run.status == 0)
        let results = run.lines.filter { $0.hasPrefix(#"{"type":"result""#) }
        #expect(
            results == [
                #"{"type":"result","id":"o1","ok":true}"#,
                #"{"type":"result","id":"b1","ok":true,"price":100,"leading":true}"#,
            ])
        #expect(run.lines.count == 4)
        #expect(
            run.lines.last
                == #"{"type":"bid_placed","listing":"L1","seq":2,"at":10,"price":100,"leader":"ann","bids":1,"closes_at":60000,"reserve_met":true}"#
        )
    }

    @Test func fileArgumentGivesOneResultLinePerCommand() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("gavel-cli-\(UUID().uuidString).jsonl")
        try (sessionLines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let run = try simulate([file.path])
        #expect(run.status == 0)
        let results = run.lines.filter { $0.hasPrefix(#"{"type":"result""#) }
        #expect(results.count == commandCount(sessionLines))
        #expect(
            results.contains(
                #"{"type":"result","id":null,"ok":false,"error":"bad_request","message":"invalid JSON at byte 0: unexpected character"}"#
            ))
        #expect(results.contains { $0.contains(#""id":"b1""#) && $0.contains(#""duplicate":true"#) })
        #expect(run.lines.contains { $0.hasPrefix(#"{"type":"closed","listing":"S1""#) })
        #expect(run.lines.contains { $0.hasPrefix(#"{"type":"trade","listing":"M1""#) })
        #expect(!run.lines.contains { $0.hasPrefix(#"{"type":"state_hash""#) }, "no hash without --hash")
    }

    @Test func fileAndStandardInputGiveTheSameOutput() throws {
        let text = sessionLines.joined(separator: "\n") + "\n"
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("gavel-cli-\(UUID().uuidString).jsonl")
        try text.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        #expect(try simulate([file.path]).standardOutput == simulate([], stdin: text).standardOutput)
    }

    @Test func hashIsTheLastLineAndTheSameOnEveryRun() throws {
        let text = sessionLines.joined(separator: "\n") + "\n"
        let first = try simulate(["--hash"], stdin: text)
        let second = try simulate(["--hash"], stdin: text)
        #expect(first.status == 0)
        guard let last = first.lines.last else {
            Issue.record("no output")
            return
        }
        #expect(last.hasPrefix(#"{"type":"state_hash","hash":""#))
        let hex = last.dropFirst(#"{"type":"state_hash","hash":""#.count).dropLast(2)
        #expect(hex.count == 64)
        #expect(hex.allSatisfy { "0123456789abcdef".contains($0) })
        #expect(second.lines.last == last)
        let other = try simulate(["--hash"], stdin: exampleLines.joined(separator: "\n") + "\n")
        #expect(other.lines.last != last, "a different input gives a different hash")
    }

    @Test func sameInputTwiceGivesByteIdenticalOutput() throws {
        let text = sessionLines.joined(separator: "\n") + "\n"
        let first = try simulate(["--hash"], stdin: text)
        let second = try simulate(["--hash"], stdin: text)
        #expect(!first.standardOutput.isEmpty)
        #expect(first.standardOutput == second.standardOutput)
    }

    @Test func lastLineWithoutNewlineAndCRLFAreRead() throws {
        let run = try simulate([], stdin: exampleLines.joined(separator: "\r\n"))
        #expect(run.status == 0)
        #expect(run.lines.filter { $0.hasPrefix(#"{"type":"result""#) }.count == 2)
        #expect(run.lines.allSatisfy { !$0.contains("bad_request") })
    }

    @Test func emptyInputExitsZeroWithNoOutput() throws {
        let run = try simulate([], stdin: "")
        #expect(run.status == 0)
        #expect(run.standardOutput.isEmpty)
    }

    /// docs/PROTOCOL.md's `gavel simulate --hash quick.jsonl` example, its input and its output as the document
    /// shows them, state hash included: the document stays what the binary prints.
    @Test func theDocumentedHashExamplePrintsWhatTheDocumentShows() throws {
        let document = try String(
            contentsOf: packageRoot.appendingPathComponent("docs/PROTOCOL.md"), encoding: .utf8)
        func block(after marker: String, fence: String) throws -> String {
            let start = try #require(document.range(of: marker)).upperBound
            let open = try #require(document.range(of: fence, range: start..<document.endIndex)).upperBound
            let close = try #require(document.range(of: "```", range: open..<document.endIndex)).lowerBound
            return String(document[open..<close]).trimmingCharacters(in: .newlines)
        }
        let shown = try block(after: "$ gavel simulate --hash quick.jsonl", fence: "\n")
        let input = try block(after: "with `quick.jsonl`:", fence: "```json\n")
        let run = try simulate(["--hash"], stdin: input + "\n")
        #expect(run.status == 0)
        #expect(run.standardOutput.trimmingCharacters(in: .newlines) == shown)
    }

    @Test func aMissingFileIsAUsageErrorNamingTheFileWithSimulatesOwnUsage() throws {
        let run = try simulate(["/nonexistent/gavel-input.jsonl"])
        #expect(run.status == 64)
        #expect(run.standardOutput.isEmpty)
        #expect(
            run.standardError.hasPrefix(
                "gavel simulate: cannot open /nonexistent/gavel-input.jsonl: No such file or directory\nUsage: gavel simulate"
            ), "\(run.standardError)")
    }
}

@Suite(.enabled(if: gavelBinary != nil, "no .build/debug/gavel under the package root; run `swift build` first"))
struct ServeOptionsCLITests {
    /// `gavel serve` with `arguments` and `environment` added: its exit status and standard error (it refuses
    /// before it binds a port or touches a data directory).
    func serve(_ arguments: [String], environment: [String: String] = [:]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = gavelBinary
        process.arguments = ["serve", "--data-dir", "/nonexistent/gavel-serve-options"] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let data = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test func expectedRequestIDsOutOfRangeOrNotANumberIsRefusedByName() throws {
        for value in ["-1", "1000000001"] {
            let (status, message) = try serve(["--expected-request-ids=\(value)"])
            #expect(status != 0 && message.contains("--expected-request-ids must be 0 to 1000000000"), "\(value)")
        }
        let (status, message) = try serve([], environment: ["GAVEL_EXPECTED_REQUEST_IDS": "many"])
        #expect(status != 0 && message.contains("GAVEL_EXPECTED_REQUEST_IDS=many is not a valid value"))
    }

    /// Settings the server multiplies into nanoseconds, adds to times or allocates by are bounded at start, so an
    /// operator's typo is refused by name instead of overflowing on the writer thread later.
    @Test func settingsPastTheirBoundsAreRefusedByNameBeforeAnythingStarts() throws {
        let cases: [([String], String)] = [
            (["--snapshot-every-seconds", "99999999999"], "--snapshot-every-seconds must be 0 to 31536000"),
            (["--snapshot-every-seconds=-1"], "--snapshot-every-seconds must be 0 to 31536000"),
            (["--fsync", "interval:9999999999999"], "--fsync interval:MS must be at most 3600000 ms"),
            (["--segment-bytes", "1099511627776"], "--segment-bytes must be 4096 to 1073741824"),
            (["--zero-ahead-bytes=-1"], "--zero-ahead-bytes must be 0 (off) to 67108864"),
            (["--zero-ahead-bytes", "1073741824"], "--zero-ahead-bytes must be 0 (off) to 67108864"),
            (["--keep-snapshots", "0"], "--keep-snapshots must be 1 to 1000"),
            (["--idle-timeout-ms", "9223372036854775807"], "--idle-timeout-ms must be 0 to 86400000"),
            (["--idempotency-window-ms", "9223372036854775807"], "--idempotency-window-ms must be 1 to 2592000000"),
            (["--history-events", "1000000000"], "--history-events must be 0 to 100000"),
            (["--threads", "100000"], "--threads must be 0 to 256"),
            (["--max-outbound-bytes", "9223372036854775807"], "--max-outbound-bytes must be 4096 to 1073741824"),
        ]
        for (arguments, expected) in cases {
            let (status, message) = try serve(arguments)
            #expect(status != 0 && message.contains(expected), "\(arguments): \(message)")
        }
    }

    @Test func stateBoundsOutOfRangeAreRefusedByName() throws {
        let cases: [([String], [String: String], String)] = [
            (["--max-listing-queues=0"], [:], "--max-listing-queues must be 1 to 100000000"),
            ([], ["GAVEL_MAX_LISTING_QUEUES": "-5"], "--max-listing-queues must be 1 to 100000000"),
            (["--listing-queue-capacity=15"], [:], "--listing-queue-capacity must be 16 to 1000000"),
            ([], ["GAVEL_LISTING_QUEUE_CAPACITY": "1000001"], "--listing-queue-capacity must be 16 to 1000000"),
            (["--closed-listing-retention-ms=-1"], [:], "--closed-listing-retention-ms must be 0 to 31536000000"),
            ([], ["GAVEL_MAX_REQUEST_IDS_PER_PRINCIPAL": "0"], "--max-request-ids-per-principal must be 1 to"),
        ]
        try expectRefused(cases)
    }

    @Test func restingOrderCapsOutOfRangeAreRefusedByName() throws {
        let cases: [([String], [String: String], String)] = [
            (["--max-resting-orders-per-listing=0"], [:], "--max-resting-orders-per-listing must be 1 to 10000000"),
            (
                [], ["GAVEL_MAX_RESTING_ORDERS_PER_LISTING": "10000001"],
                "--max-resting-orders-per-listing must be 1 to 10000000"
            ),
            (["--max-resting-orders-per-trader=-1"], [:], "--max-resting-orders-per-trader must be 1 to 10000000"),
            (
                [], ["GAVEL_MAX_RESTING_ORDERS_PER_TRADER": "0"],
                "--max-resting-orders-per-trader must be 1 to 10000000"
            ),
        ]
        try expectRefused(cases)
    }

    /// Starts `gavel serve` with each case's arguments and environment and expects it to exit non-zero with the
    /// case's message.
    private func expectRefused(
        _ cases: [([String], [String: String], String)], sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        for (arguments, environment, expected) in cases {
            let (status, message) = try serve(arguments, environment: environment)
            #expect(
                status != 0 && message.contains(expected), "\(arguments) \(environment): \(message)",
                sourceLocation: sourceLocation)
        }
    }
}
