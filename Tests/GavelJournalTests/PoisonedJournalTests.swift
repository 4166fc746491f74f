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
        #expect(book.resting[OrderKey(trader: "t\(9_224 % 25)", id: "q9224")] == nil)
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
}
