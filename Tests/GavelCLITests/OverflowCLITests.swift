import Foundation
import Testing

/// Runs `gavel arguments` with `input` on standard input: its exit status and standard output.
private func gavelRun(_ arguments: [String], input: String = "") throws -> (status: Int32?, lines: [String]) {
    let run = try runGavel(arguments, input: input)
    return (run.status, run.lines)
}

/// The audit's input: a market listing and 9,224 buy orders of 10^15 at price 1 from 25 traders, then one honest
/// order of 1 at that price.
private let auditInput: String = {
    var lines = [#"{"type":"open","id":"o","listing":"M","seller":"sam","format":"market","at":0}"#]
    for n in 1...9_224 {
        lines.append(
            #"{"type":"order","id":"q\#(n)","listing":"M","trader":"t\#(n % 25)","side":"buy","price":1,"quantity":1000000000000000}"#
        )
    }
    lines.append(#"{"type":"order","id":"honest","listing":"M","trader":"ann","side":"buy","price":1,"quantity":1}"#)
    return lines.joined(separator: "\n") + "\n"
}()

private func results(_ lines: [String]) -> [String] { lines.filter { $0.hasPrefix(#"{"type":"result""#) } }

@Suite(.enabled(if: gavelBinary != nil, "no .build/debug/gavel under the package root; run `swift build` first"))
struct OverflowCLITests {
    /// Checks the results of ``auditInput``: every order accepted but the 9,224th, refused with `limit_exceeded`.
    private func expectAuditResults(_ lines: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        let all = results(lines)
        #expect(all.count == 9_226, sourceLocation: sourceLocation)
        let refused = all.filter { !$0.contains(#""ok":true"#) }
        #expect(refused.count == 1, "\(refused.prefix(3))", sourceLocation: sourceLocation)
        #expect(
            refused.first?.hasPrefix(#"{"type":"result","id":"q9224","ok":false,"error":"limit_exceeded""#) == true,
            sourceLocation: sourceLocation)
    }

    @Test func simulateRefusesThe9224thOrderOf10To15AtOnePriceInsteadOfCrashing() throws {
        let run = try gavelRun(["simulate", "--hash"], input: auditInput)
        #expect(run.status == 0, "the simulator exits normally (it used to die of an arithmetic overflow)")
        expectAuditResults(run.lines)
        #expect(run.lines.last?.hasPrefix(#"{"type":"state_hash""#) == true)
    }

    @Test func aDataDirectoryWithTheAuditsOrdersRecoversVerifiesAndReplaysToOneHash() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("gavel-overflow-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let written = try gavelRun(["simulate", "--data-dir", directory, "--hash"], input: auditInput)
        #expect(written.status == 0)
        expectAuditResults(written.lines)
        guard let hash = written.lines.last, hash.hasPrefix(#"{"type":"state_hash""#) else {
            Issue.record("no state hash")
            return
        }
        // Recovery twice: the same state, and the next order at the full price is refused, not a crash.
        for round in 1...2 {
            let next =
                #"{"type":"order","id":"after\#(round)","listing":"M","trader":"bob","side":"buy","price":1,"quantity":1000000000000000}"#
            let again = try gavelRun(["simulate", "--data-dir", directory, "--hash"], input: next + "\n")
            #expect(again.status == 0)
            #expect(again.lines.first?.contains(#""error":"limit_exceeded""#) == true, "\(again.lines.prefix(1))")
        }
        let first = try gavelRun(["simulate", "--data-dir", directory, "--hash"])
        let second = try gavelRun(["simulate", "--data-dir", directory, "--hash"])
        #expect(first.status == 0 && first.lines.count == 1 && first.lines == second.lines, "recovery is deterministic")
        let verify = try gavelRun(["verify", "--data-dir", directory])
        #expect(verify.status == 0, "\(verify.lines)")
        let replay = try gavelRun(["replay", "--data-dir", directory])
        #expect(replay.status == 0)
    }
}
