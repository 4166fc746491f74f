import GavelJournal
import Testing

@testable import GavelCore

/// The audit's journal: a market listing, then 9,224 buy orders of 10^15 at price 1 from 25 traders, then honest
/// orders at that price. A build without the level check trapped on the 9,224th (while applying it, and again on
/// every replay of a journal that holds it); the next honest order at that price trapped too.
private func auditCommands() -> [(command: Command, at: Millis)] {
    func order(_ id: String, _ trader: String, _ side: Side, _ quantity: Int64, at: Millis) -> (Command, Millis) {
        let body = CommandBody.order(
            trader: trader, side: side, price: 1, quantity: quantity, tif: .gtc, expiresAt: nil)
        return (Command(id: id, listing: "M", body: body), at)
    }
    var commands = [(Command(id: "o", listing: "M", body: .open(seller: "sam", terms: .market(.init()))), Millis(0))]
    for n in 1...9_224 { commands.append(order("q\(n)", "t\(n % 25)", .buy, Limits.maxAmount, at: Millis(n))) }
    commands.append(order("honest", "ann", .buy, 1, at: 10_000))
    commands.append(order("sell", "sue", .sell, Limits.maxAmount, at: 10_001))
    return commands
}

private func readOnly() -> RecoveryOptions {
    var options = RecoveryOptions()
    options.repair = false
    return options
}

@Suite struct PoisonedJournalTests {
    @Test func aJournalHoldingTheOverflowingOrderRecoversDeterministicallyWithThatOrderRefused() throws {
        let temporary = try TemporaryDirectory("poisoned")
        defer { temporary.remove() }
        let directory = DataDirectory(temporary.path)
        let commands = auditCommands()
        _ = try writeJournalRecords(commands, to: directory, perBatch: 1000)

        let first = try Recovery.recover(directory, options: readOnly())
        let second = try Recovery.recover(directory, options: readOnly())
        #expect(first.lastLSN == UInt64(commands.count))
        #expect(first.engine.stateHash() == second.engine.stateHash(), "recovery is deterministic")

        guard case .market(let book)? = first.engine.listings["M"]?.book else {
            Issue.record("no market M after recovery")
            return
        }
        // 9,223 orders of 10^15 fit; the 9,224th is refused; the honest order of 1 fits; the sell takes 10^15.
        #expect(book.bids.last?.total == 9_223 * Limits.maxAmount + 1 - Limits.maxAmount)
        #expect(book.order(OrderKey(trader: "t\(9_224 % 25)", id: "q9224")) == nil)
        let remembered = first.engine.outcomeChanges(comparedTo: Engine())
        #expect(remembered.isEmpty, "an empty engine remembers nothing to compare")
        var events: [Event] = []
        let retry = first.engine.apply(auditCommands()[9_224].command, events: &events)
        #expect(retry.duplicate && retry.error == .limitExceeded, "the replay remembered the refusal")

        let verification = Verification.run(directory)
        #expect(verification.problems.isEmpty, "\(verification.problems)")
    }

    @Test func verifyNamesTheRequestsWhoseOutcomeDiffersFromWhatASnapshotRecorded() throws {
        let temporary = try TemporaryDirectory("poisoned-snapshot")
        defer { temporary.remove() }
        let directory = DataDirectory(temporary.path)
        let commands = auditCommands()
        let chain = try writeJournalRecords(commands, to: directory, perBatch: 1000)
        let report = try Recovery.recover(directory, options: readOnly())

        // A snapshot as an earlier build with other rules would have written it: it remembers the 9,224th order as
        // accepted (here the one remembered result is changed; nothing else is).
        let engine = report.engine
        let key = RequestKey(principal: "t\(9_224 % 25)", id: "q9224")
        guard let position = engine.remembered[key] else {
            Issue.record("q9224 is not remembered")
            return
        }
        engine.rememberedSlots[position].result = CommandResult(
            error: nil, message: "", price: 1, filled: 0, remaining: Limits.maxAmount)
        let file = SnapshotFile.make(lsn: report.lastLSN, now: engine.now, chain: chain, state: engine.encodeState())
        try writeBytes(
            file.encoded(), to: directory.snapshots + "/" + DataDirectory.snapshotName(lsn: report.lastLSN))

        let verification = Verification.run(directory)
        // Two problems: the replay does not reach the snapshot, and so the replays end in different states.
        #expect(verification.problems.count == 2, "\(verification.problems)")
        let reach = "replay from the start to lsn \(report.lastLSN) does not reach the state of snapshot"
        let problem = verification.problems.first { $0.hasPrefix(reach) } ?? ""
        #expect(problem.contains("; 1 remembered request(s) have a different outcome"))
        #expect(
            problem.contains("\n    request q9224 of t\(9_224 % 25) at 9224: recorded ok, replayed limit_exceeded ("),
            "\(problem)")
    }

    @Test func verifyShowsTheFieldsThatDifferWhenARememberedResultKeepsItsCode() throws {
        let temporary = try TemporaryDirectory("differing-fields")
        defer { temporary.remove() }
        let directory = DataDirectory(temporary.path)
        func order(_ trader: String, _ side: Side, _ quantity: Int64) -> CommandBody {
            .order(trader: trader, side: side, price: 100, quantity: quantity, tif: .gtc, expiresAt: nil)
        }
        let commands: [(command: Command, at: Millis)] = [
            (Command(id: "o", listing: "M", body: .open(seller: "sam", terms: .market(.init()))), 0),
            (Command(id: "s1", listing: "M", body: order("sue", .sell, 5)), 1),
            (Command(id: "b1", listing: "M", body: order("ann", .buy, 3)), 2),
            (Command(id: "c1", listing: "M", body: .cancel(trader: "ann", order: "nothing")), 3),
            (Command(id: "c2", listing: "M", body: .cancel(trader: "bob", order: "nothing")), 4),
        ]
        let chain = try writeJournalRecords(commands, to: directory, perBatch: 10)
        let report = try Recovery.recover(directory, options: readOnly())
        let engine = report.engine
        func change(_ principal: String, _ id: String, _ body: (inout CommandResult) -> Void) throws {
            let position = try #require(engine.remembered[RequestKey(principal: principal, id: id)])
            body(&engine.rememberedSlots[position].result)
        }
        // As a build with other matching rules would have remembered them: the same code, other fields.
        try change("ann", "b1") { result in
            #expect(result.ok && result.filled == 3 && result.remaining == 0)
            result.filled = 2
            result.remaining = 1
        }
        try change("ann", "c1") { result in
            #expect(result.error == .unknownOrder)
            result.message = "no such order"
        }
        // Another code with a message of 1,000 characters: the line shows its start only.
        try change("bob", "c2") { result in result = .rejected(.badRequest, String(repeating: "x", count: 1_000)) }
        let file = SnapshotFile.make(lsn: report.lastLSN, now: engine.now, chain: chain, state: engine.encodeState())
        try writeBytes(
            file.encoded(), to: directory.snapshots + "/" + DataDirectory.snapshotName(lsn: report.lastLSN))

        let problems = Verification.run(directory).problems
        let problem = try #require(problems.first { $0.contains("3 remembered request(s) have a different outcome") })
        let lines = problem.split(separator: "\n").map(String.init)
        #expect(
            lines.contains(
                "    request b1 of ann at 2: recorded ok filled 2 remaining 1, replayed ok filled 3 remaining 0"))
        let c1 = try #require(lines.first { $0.hasPrefix("    request c1 of ann at 3: ") })
        #expect(
            c1.hasPrefix("    request c1 of ann at 3: recorded unknown_order (no such order), replayed unknown_order (")
        )
        #expect(!c1.hasSuffix("replayed unknown_order ()"), "\(c1)")
        let c2 = try #require(lines.first { $0.hasPrefix("    request c2 of bob at 4: ") })
        #expect(c2.hasPrefix("    request c2 of bob at 4: recorded bad_request (xxx"), "\(c2)")
        #expect(c2.contains("...), replayed unknown_order ("), "\(c2)")
        #expect(c2.count < 400, "\(c2.count) characters")
    }
}
