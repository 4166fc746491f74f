import GavelCore
@_spi(Manual) import GavelEngine
import GavelJournal
import Synchronization
import Testing

/// The writer's engine settings for these journals: a short idempotency window and a small cap per principal, so
/// that ids are forgotten both ways while the journal is written and a reused id is sometimes new again.
private func engineConfiguration() -> EngineConfiguration {
    var engine = EngineConfiguration()
    engine.closedListingRetentionMs = 5_000
    engine.idempotencyWindowMs = 300
    engine.maxRequestIDsPerPrincipal = 25
    return engine
}

/// `count` commands of a random workload over every format, where (opens aside) 4 % are a command sent again from
/// long ago (its id forgotten by the window or the cap: applied again), a quarter of the rest a recent one sent
/// again (a duplicate: its id still remembered), 15 % of the rest a recent bid's id with another amount (a conflict)
/// and 2 % of the rest have a malformed id.
private func commandsWithRepeats(seed: UInt64, count: Int, prefix: String = "c", start: Millis = 0)
    -> [(command: Command, at: Millis)]
{
    var workload = Workload(seed: seed, prefix: prefix, start: start)
    workload.maxStep = 4
    var rng = SplitMix64(seed: seed ^ 0x5EED)
    var out: [(command: Command, at: Millis)] = []
    var recent: [Command] = []
    var all: [Command] = []
    for _ in 0..<count {
        let (command, at) = workload.next()
        var sent = command
        if case .open = command.body {
            // Every listing is opened: the later commands of the workload are for it.
        } else if all.count > 400 && rng.chance(4) {
            sent = all[rng.int(0...all.count - 300)]
        } else if !recent.isEmpty && rng.chance(25) {
            sent = rng.pick(recent)
        } else if !recent.isEmpty && rng.chance(15), case let earlier = rng.pick(recent),
            case .bid(let bidder, let amount) = earlier.body
        {
            sent = Command(id: earlier.id, listing: earlier.listing, body: .bid(bidder: bidder, amount: amount + 7))
        } else if rng.chance(2) {
            sent = Command(id: "bad id\u{7}", listing: command.listing, body: command.body)
        }
        out.append((sent, at))
        all.append(command)
        recent.append(command)
        if recent.count > 8 { recent.removeFirst() }
    }
    return out
}

/// Submits `commands` through a journaled writer (small segments, no fsync), each at its time, and stops it.
private func journal(_ commands: [(command: Command, at: Millis)], into path: String) throws {
    var writer = WriterConfiguration()
    writer.snapshotOnShutdown = false
    writer.engine = engineConfiguration()
    var options = RecoveryOptions()
    options.engine = writer.engine
    var journal = JournalConfiguration()
    journal.segmentBytes = 8192
    journal.fsync = .none
    let run = try JournaledWriter(path, journal: journal, writer: writer, recovery: options)
    // Commands for listings evicted meanwhile are refused before the journal: not entries.
    for (command, at) in commands { run.offer(command, at: at) }
    run.writer.runUntilIdle()
    run.finish()
}

/// A temporary data directory holding the journal of ``commandsWithRepeats(seed:count:prefix:start:)``.
private func journalWithRepeats(_ name: String, seed: UInt64, count: Int) throws -> (TemporaryDirectory, DataDirectory)
{
    let temp = try TemporaryDirectory("\(name)-\(seed)")
    try journal(commandsWithRepeats(seed: seed, count: count), into: temp.path)
    return (temp, DataDirectory(temp.path))
}

/// One entry as a feed sees it: its lsn, its events, and its refusal (a rejected result that is not a duplicate).
private struct FeedEntry: Equatable, CustomStringConvertible {
    var lsn: UInt64
    var events: [Event]
    var refusal: CommandResult?

    var description: String { "lsn \(lsn): \(events.count) events, refusal \(refusal?.message ?? "none")" }
}

/// Every entry from `since` to the journal's end, through a replay that keeps the idempotency table or one that
/// takes the outcomes from the journal; and the outcome each command's result says, by lsn.
private func feedEntries(_ directory: DataDirectory, from since: UInt64 = 1, requestsFromJournal: Bool) throws
    -> (entries: [FeedEntry], outcomes: [UInt64: RequestOutcome])
{
    let end = try #require(journalRecords(directory).last?.lsn)
    let replay = try JournalReplay(
        directory: directory, from: since, engine: engineConfiguration(), requestsFromJournal: requestsFromJournal)
    var entries: [FeedEntry] = []
    var outcomes: [UInt64: RequestOutcome] = [:]
    while try replay.next(
        upTo: end,
        { lsn, _, _, result, events in
            let refusal = result.flatMap { !$0.ok && !$0.duplicate ? $0 : nil }
            entries.append(FeedEntry(lsn: lsn, events: events, refusal: refusal))
            if let result { outcomes[lsn] = result.requestOutcome }
        })
    {}
    return (entries, outcomes)
}

/// The outcome each command record of `directory` carries, by lsn (`nil` for a version 1 record).
private func recordedOutcomes(_ directory: DataDirectory) throws -> [UInt64: RequestOutcome?] {
    var out: [UInt64: RequestOutcome?] = [:]
    for case .command(let lsn, _, _, _, let outcome) in try journalRecords(directory) { out[lsn] = outcome }
    return out
}

@Suite("Request outcomes in the journal", .serialized)
struct RequestOutcomeTests {
    /// The writer records how the idempotency table answered each command, and that is what a replay keeping the
    /// table finds: duplicates, conflicts and ids used again after they were forgotten are all in this journal.
    @Test(arguments: [UInt64(21), 22])
    func eachCommandRecordCarriesTheOutcomeAReplayWithTheTableFinds(seed: UInt64) throws {
        let (temp, directory) = try journalWithRepeats("outcomes", seed: seed, count: 1_500)
        defer { temp.remove() }
        let recorded = try recordedOutcomes(directory)
        let replayed = try feedEntries(directory, requestsFromJournal: false).outcomes
        #expect(recorded.count == replayed.count)
        #expect(recorded.allSatisfy { $0.value != nil && replayed[$0.key] == $0.value })
        let counts = Dictionary(grouping: recorded.values.compactMap { $0 }, by: { $0 }).mapValues(\.count)
        #expect(counts[.duplicate, default: 0] > 100, "\(counts)")
        #expect(counts[.conflict, default: 0] > 30, "\(counts)")
        #expect(counts[.applied, default: 0] > 500, "\(counts)")
    }

    /// From lsn 1 and from lsns in the middle (whose replay starts from an empty engine and reads past earlier
    /// duplicates silently), a replay that takes the outcomes from the journal hands out the events and the
    /// refusals of one that keeps the table, entry for entry.
    @Test(arguments: [UInt64(23), 24, 25])
    func aReplayTakingOutcomesFromTheJournalHandsOutWhatOneKeepingTheTableDoes(seed: UInt64) throws {
        let (temp, directory) = try journalWithRepeats("outcomes-feed", seed: seed, count: 1_500)
        defer { temp.remove() }
        let end = try #require(journalRecords(directory).last?.lsn)
        var rng = SplitMix64(seed: seed)
        for since in [1, end] + (0..<3).map({ _ in UInt64(rng.int(1...Int(end))) }) {
            let table = try feedEntries(directory, from: since, requestsFromJournal: false).entries
            let journal = try feedEntries(directory, from: since, requestsFromJournal: true).entries
            #expect(table.count == Int(end - since + 1), "since \(since)")
            if since + 300 < end {
                #expect(table.contains { $0.refusal?.requestIDConflict == true }, "since \(since)")
            }
            #expect(journal == table, "since \(since)")
        }
    }

    /// A journal written before outcomes (version 1 records), continued by this build: the replay keeps the table
    /// through the old records, so the new records' duplicates of old ids and the old records' own duplicates give
    /// the same events and refusals either way, and every new record carries its outcome.
    @Test func aJournalOfVersion1RecordsContinuedByThisBuildReplaysTheSameEitherWay() throws {
        let temp = try TemporaryDirectory("outcomes-v1")
        defer { temp.remove() }
        let directory = DataDirectory(temp.path)
        let old = commandsWithRepeats(seed: 26, count: 600)
        try writeJournalRecords(old, to: directory, perBatch: 16)
        // The new part starts by sending the last old commands again (duplicates of ids the table learnt from
        // version 1 records), then goes on with its own.
        let resent = old.suffix(30).map { ($0.command, old.last!.at + 1) }
        let new = commandsWithRepeats(seed: 27, count: 600, prefix: "n", start: old.last!.at + 2)
        try journal(resent + new, into: temp.path)
        let recorded = try recordedOutcomes(directory)
        #expect(recorded.filter { $0.key <= 600 }.allSatisfy { $0.value == nil })
        #expect(recorded.filter { $0.key > 600 }.allSatisfy { $0.value != nil })
        #expect(recorded.contains { $0.key > 600 && $0.value == .duplicate })
        let end = try #require(recorded.keys.max())
        for since: UInt64 in [1, 300, 601, 700] {
            let table = try feedEntries(directory, from: since, requestsFromJournal: false).entries
            let journal = try feedEntries(directory, from: since, requestsFromJournal: true).entries
            #expect(table.count == Int(end - since + 1), "since \(since)")
            #expect(journal == table, "since \(since)")
        }
    }

    /// Recovery (and so the checkpointer's shadow, which applies records the same way) takes an `applied` outcome
    /// as leave not to look the id up: it reaches the state, byte for byte, and the results of a replay that looks
    /// every id up.
    @Test(arguments: [UInt64(28), 29])
    func recoveryTrustingTheOutcomesReachesTheStateOfAReplayLookingEveryIDUp(seed: UInt64) throws {
        let (temp, directory) = try journalWithRepeats("outcomes-recovery", seed: seed, count: 2_000)
        defer { temp.remove() }
        let records = try journalRecords(directory)
        #expect(records.contains { if case .command(_, _, _, _, .duplicate?) = $0 { true } else { false } })
        let reference = replay(records, configuration: engineConfiguration())
        var options = RecoveryOptions()
        options.useSnapshots = false
        options.repair = false
        options.engine = engineConfiguration()
        let collected = Mutex<[UInt64: CommandResult]>([:])
        options.observe = { record, _, result, _ in
            if let result { collected.withLock { $0[record.lsn] = result } }
        }
        let recovered = try Recovery.recover(directory, options: options)
        let results = collected.withLock { $0 }
        #expect(recovered.engine.stateHash() == reference.engine.stateHash())
        #expect(reference.results.allSatisfy { results[$0.lsn] == $0.result })
        #expect(results.count == reference.results.count)
    }

    /// The checkpointer's shadow drops its idempotency table and applies each record by the outcome the journal
    /// gives; its state (the remembered ids included, which a snapshot holds) must be the writer's all the same, and
    /// a lookup afterwards must build the table again rather than take a remembered id for a new one.
    @Test(arguments: [UInt64(30), 31])
    func anEngineWithoutItsIdempotencyTableReplaysToTheSameStateAndBuildsItAgainForALookup(seed: UInt64) throws {
        let (temp, directory) = try journalWithRepeats("outcomes-no-table", seed: seed, count: 2_000)
        defer { temp.remove() }
        let records = try journalRecords(directory)
        let reference = replay(records, configuration: engineConfiguration())
        let shadow = Engine(configuration: engineConfiguration())
        var events: [Event] = []
        for (index, record) in records.enumerated() {
            // Dropped part way, as the checkpointer does once recovery has made its shadow.
            if index == records.count / 3 { shadow.dropRequestIndex() }
            Recovery.apply(record, to: shadow, events: &events)
        }
        #expect(!shadow.indexesRequestIDs)
        #expect(shadow.rememberedCount == reference.engine.rememberedCount)
        #expect(shadow.rememberedCount > 100)
        #expect(shadow.stateHash() == reference.engine.stateHash())
        // The newest commands sent again: duplicates (or conflicts) to both engines, the same answers.
        let last = reference.results.suffix(20)
        for (_, command, _) in last {
            var referenceEvents: [Event] = []
            var shadowEvents: [Event] = []
            let expected = reference.engine.apply(command, events: &referenceEvents)
            #expect(shadow.apply(command, events: &shadowEvents) == expected)
            #expect(shadowEvents == referenceEvents)
        }
        #expect(
            last.contains { _, command, _ in
                var scratch: [Event] = []
                return reference.engine.apply(command, events: &scratch).duplicate
            })
        #expect(shadow.indexesRequestIDs)
        #expect(shadow.stateHash() == reference.engine.stateHash())
    }

    /// `gavel verify` looks every id up on its replay from the start and names a record whose outcome is not what
    /// the table answers (here a duplicate recorded as new, which recovery would otherwise apply as new), and says
    /// so when every outcome matches.
    @Test(arguments: [UInt64(32), 33])
    func anEngineDiscardingEventsReachesTheSameStateAndResultsAndRecoveryLeavesItEmitting(seed: UInt64) throws {
        let (temp, directory) = try journalWithRepeats("discarded-events", seed: seed, count: 3_000)
        defer { temp.remove() }
        let records = try journalRecords(directory)
        let keeping = Engine(configuration: engineConfiguration())
        let discarding = Engine(configuration: engineConfiguration())
        discarding.discardsEvents = true
        var kept: [Event] = []
        var discarded: [Event] = []
        var kinds: Set<String> = []
        for record in records {
            switch record {
            case .command(_, let at, _, let command, _):
                keeping.advance(to: at, events: &kept)
                discarding.advance(to: at, events: &discarded)
                #expect(discarding.apply(command, events: &discarded) == keeping.apply(command, events: &kept))
            case .tick(_, let at):
                keeping.advance(to: at, events: &kept)
                discarding.advance(to: at, events: &discarded)
            case .trailer:
                break
            }
            #expect(discarded.isEmpty)
            kinds.formUnion(kept.map { "\($0.kind)".prefix { $0 != "(" }.description })
            kept.removeAll()
        }
        #expect(discarding.stateHash() == keeping.stateHash())
        // The workload made the events whose building is skipped: public, private, settlements and evictions.
        #expect(kinds.isSuperset(of: ["bidPlaced", "outbid", "closed", "settlement", "evicted", "trade"]), "\(kinds)")
        // Recovery discards events while it replays, and hands out an engine that makes them again.
        var options = RecoveryOptions()
        options.engine = engineConfiguration()
        options.repair = false
        let recovered = try Recovery.recover(directory, options: options).engine
        #expect(!recovered.discardsEvents)
        #expect(recovered.stateHash() == keeping.stateHash())
    }

    @Test func verifyNamesACommandRecordWhoseOutcomeTheReplayDoesNotFind() throws {
        let commands: [(command: Command, at: Millis)] = [
            (
                Command(
                    id: "o", listing: "E",
                    body: .open(seller: "sam", terms: .english(.init(start: 100, closesAt: 10_000)))), 1
            ),
            (Command(id: "b1", listing: "E", body: .bid(bidder: "ann", amount: 200)), 2),
            (Command(id: "b1", listing: "E", body: .bid(bidder: "ann", amount: 200)), 3),
            (Command(id: "b1", listing: "E", body: .bid(bidder: "ann", amount: 300)), 4),
            (Command(id: "b2", listing: "E", body: .bid(bidder: "bob", amount: 300)), 5),
        ]
        let honest: [RequestOutcome] = [.applied, .applied, .duplicate, .conflict, .applied]
        for (name, outcomes) in [
            ("honest", honest), ("falsified", [.applied, .applied, .applied, .conflict, .applied]),
        ] {
            let temp = try TemporaryDirectory("outcomes-verify-\(name)")
            defer { temp.remove() }
            let directory = DataDirectory(temp.path)
            try writeJournalRecords(commands, to: directory, perBatch: 2, outcomes: outcomes)
            let result = Verification.run(directory)
            if outcomes == honest {
                #expect(result.problems.isEmpty, "\(result.problems)")
                #expect(
                    result.notes.contains(
                        "the idempotency outcomes of 5 command records are what the replay from the start finds"))
            } else {
                #expect(result.problems.count == 1, "\(result.problems)")
                #expect(result.problems.first?.contains("lsn 3 says applied, the replay finds duplicate") == true)
            }
        }
    }

    /// A version 2 command record whose outcome byte is none of the three is malformed, not read as some outcome.
    @Test func aCommandRecordWithAnUnknownOutcomeIsMalformed() throws {
        let command = Command(id: "b1", listing: "L", body: .bid(bidder: "bob", amount: 500))
        var bytes: [UInt8] = []
        var scratch = BinaryWriter()
        JournalRecord.command(lsn: 1, at: 5, principal: "bob", command: command, outcome: .conflict)
            .encode(into: &bytes, scratch: &scratch)
        #expect(bytes[8] == 2, "a record with an outcome is version 2")
        #expect(bytes[8 + 2 + 16] == RequestOutcome.conflict.rawValue)
        for byte: UInt8 in [0, 4, 255] {
            var payload = Array(bytes[8...])
            payload[2 + 16] = byte
            var damaged: [UInt8] = []
            withUnsafeBytes(of: UInt32(payload.count).littleEndian) { damaged += $0 }
            withUnsafeBytes(of: CRC32C.checksum(payload).littleEndian) { damaged += $0 }
            damaged += payload
            #expect(throws: JournalRecord.ReadError.self) { _ = try JournalRecord.decode(damaged, at: 0) }
        }
    }
}
