import GavelCore
@_spi(Manual) import GavelEngine
import GavelJournal
import Synchronization
import Testing

/// Writer settings whose closed listings are evicted 50 ms after their end, and recovery options that agree.
private func evicting(snapshotEvery: UInt64 = 0, maxRequestIDs: Int = 100_000) -> (WriterConfiguration, RecoveryOptions)
{
    var writer = WriterConfiguration()
    writer.snapshotEveryEntries = snapshotEvery
    writer.engine.closedListingRetentionMs = 50
    writer.engine.maxRequestIDsPerPrincipal = maxRequestIDs
    var options = RecoveryOptions()
    options.engine = writer.engine
    return (writer, options)
}

/// Eviction of closed listings through the writer and the journal: snapshots taken while listings are being
/// evicted restore to the state a replay reaches, and `gavel verify` finds nothing.
@Suite("Eviction in the journal", .serialized)
struct EvictionJournalTests {
    @Test func evictionsReplayToTheSnapshotsStatesAndVerifyClean() throws {
        let temp = try TemporaryDirectory("evict")
        defer { temp.remove() }
        let (writerConfiguration, options) = evicting(snapshotEvery: 250, maxRequestIDs: 40)
        var journal = JournalConfiguration()
        journal.fsync = .none
        journal.keepSnapshots = 4
        let run = try JournaledWriter(temp.path, journal: journal, writer: writerConfiguration, recovery: options)
        var workload = Workload(seed: 21)
        var refused = 0
        for step in 0..<1200 {
            var (command, at) = workload.next()
            // Sales hold their listing in memory until settled: let their payment expire at once.
            if case .open(let seller, var terms) = command.body {
                terms.deadlines = SettlementDeadlines(paymentDueMs: 10)
                command.body = .open(seller: seller, terms: terms)
            }
            // Commands for listings already evicted are refused at submit, unjournaled.
            if let rejected = run.offer(command, at: at) {
                #expect(rejected.error == .unknownListing)
                refused += 1
            }
            if step % 7 == 0 { run.settle() }
        }
        run.settle()
        let hash = run.engine.stateHash()
        let listings = run.engine.listingCount
        run.finish()
        let evictions = run.released.events.withLock { events in
            events.count { if case .evicted = $0.kind { true } else { false } }
        }
        #expect(evictions > 20, "listings were evicted during the run")
        #expect(refused > 0, "some commands found their listing evicted")
        #expect(listings < 60, "memory follows the open listings: \(listings) in memory")

        let directory = DataDirectory(temp.path)
        #expect(directory.snapshotFiles().count >= 2)
        let recovered = try Recovery.recover(directory, options: options)
        #expect(recovered.engine.stateHash() == hash)
        #expect(
            replay(try journalRecords(directory), configuration: writerConfiguration.engine).engine.stateHash() == hash)
        let result = Verification.run(directory)
        #expect(result.problems == [])
        #expect(result.notes.contains { $0.contains("end in the same state") })
    }
}

/// A data directory whose snapshot was written with state version 1 (before eviction): it recovers, listings that
/// close afterwards are evicted, and `gavel verify` notes the old snapshot instead of reporting it.
@Suite("Version 1 snapshots", .serialized)
struct VersionOneSnapshotTests {
    @Test func aVersionOneSnapshotRecoversEvictsLaterClosesAndVerifiesClean() throws {
        let temp = try TemporaryDirectory("v1snap")
        defer { temp.remove() }
        let (writerConfiguration, options) = evicting()
        let first = try JournaledWriter(temp.path, writer: writerConfiguration, recovery: options)
        for (listing, closesAt) in [("A", 100), ("B", 200), ("C", 10_000)] {
            first.submit(
                Command(
                    id: "o-\(listing)", listing: listing,
                    body: .open(seller: "sam", terms: .english(.init(start: 100, closesAt: Millis(closesAt))))),
                at: 0)
        }
        first.settle()
        first.finish()
        // Rewrite the snapshot as the previous build wrote it: version 1 has no retention, request-id cap and
        // resting-order caps after the window (and no evict timers: every listing is still open).
        let directory = DataDirectory(temp.path)
        let snapshot = try #require(directory.snapshotFiles().first)
        let file = try SnapshotFile.decode(try readBytes(snapshot.path))
        var state = file.state
        #expect(state.prefix(4) == [2, 0, 0, 0])
        state.removeSubrange(20..<52)
        state.replaceSubrange(0..<4, with: [1, 0, 0, 0])
        try writeBytes(
            SnapshotFile.make(lsn: file.lsn, now: file.now, chain: file.chain, state: state).encoded(),
            to: snapshot.path)

        let second = try JournaledWriter(temp.path, writer: writerConfiguration, recovery: options)
        #expect(second.recovery.snapshot?.lsn == file.lsn, "the version 1 snapshot was used")
        #expect(second.engine.listingCount == 3)
        second.clock.set(300)
        second.settle()
        #expect(second.engine.listingCount == 1, "A and B closed and were evicted")
        second.submit(Command(id: "late", listing: "C", body: .bid(bidder: "ann", amount: 500)), at: 300)
        second.settle()
        let hash = second.engine.stateHash()
        second.finish()

        #expect(try Recovery.recover(directory, options: options).engine.stateHash() == hash)
        let result = Verification.run(directory)
        #expect(result.problems == [])
        #expect(result.notes.contains { $0.contains("older state version 1") })
    }
}

/// The `open` of an english auction `L` by sam, closing at `closesAt`.
private func openL(closesAt: Millis, id: String) -> Command {
    Command(id: id, listing: "L", body: .open(seller: "sam", terms: .english(.init(start: 100, closesAt: closesAt))))
}

/// ann's bid of 200 on `L`.
private let lateBid = Command(id: "late", listing: "L", body: .bid(bidder: "ann", amount: 200))

/// A command submitted while its listing is still in the engine, but taken in the writer turn whose timers evict
/// that listing, is answered as one submitted after the eviction is: the engine's own answer, neither journaled nor
/// remembered.
@Suite("A command taken in the turn that evicts its listing", .serialized)
struct EvictionTurnTests {
    /// A journaled writer whose listing `L` (an english auction without bids, retention 50 ms) closed at 100 and is
    /// evicted at 150, and a bid for it submitted at 150 before any turn ran at that time: the listing still has its
    /// queue, so the bid is queued, and the turn that takes it first evicts the listing.
    private func bidQueuedForTheEvictionTurn(_ path: String) throws -> JournaledWriter {
        let (writerConfiguration, options) = evicting()
        let run = try JournaledWriter(path, writer: writerConfiguration, recovery: options)
        run.submit(openL(closesAt: 100, id: "first"), at: 0)
        run.settle()
        run.clock.set(100)
        run.settle()
        #expect(run.engine.hasListing("L"), "closed, within its retention")
        run.submit(lateBid, at: 150)
        #expect(run.writer.queue(for: "L")?.depth == 1, "queued: the listing was held when it was submitted")
        run.settle()
        #expect(!run.engine.hasListing("L"), "evicted in the turn that took the bid")
        return run
    }

    @Test func itGetsUnknownListingUnjournaledAndUnrememberedAndItsIdIsAppliedOnceTheListingIsOpenAgain() throws {
        let temp = try TemporaryDirectory("evict-turn")
        defer { temp.remove() }
        let run = try bidQueuedForTheEvictionTurn(temp.path)
        let late = try #require(run.released.items.withLock { $0.last })
        #expect(late.id == "late")
        #expect(late.result == Engine.answerWithoutListing(lateBid, now: 150))
        #expect(late.result.error == .unknownListing)
        #expect(late.lsn == nil, "not journaled")
        #expect(run.engine.rememberedCount(of: "ann") == 0, "not remembered")
        #expect(run.writer.queue(for: "L") == nil, "the evicted listing's queue was freed once drained")

        run.submit(openL(closesAt: 10_000, id: "again"), at: 200)
        run.submit(lateBid, at: 210)
        run.settle()
        let retry = try #require(run.released.items.withLock { $0.last })
        #expect(retry.id == "late")
        #expect(retry.result.ok && !retry.result.duplicate, "applied normally, as a new request")
        #expect(retry.lsn != nil)
        run.finish()
    }

    @Test func theJournalHoldsNoEntryForItAndRecoversTheLiveState() throws {
        let temp = try TemporaryDirectory("evict-turn-recover")
        defer { temp.remove() }
        let (writerConfiguration, options) = evicting()
        let run = try bidQueuedForTheEvictionTurn(temp.path)
        run.submit(openL(closesAt: 10_000, id: "again"), at: 200)
        run.submit(lateBid, at: 210)
        run.settle()
        let hash = run.engine.stateHash()
        run.finish()

        let directory = DataDirectory(temp.path)
        let records = try journalRecords(directory)
        #expect(records.map(\.lsn) == Array(1...UInt64(records.count)), "no lsn was skipped")
        let lateAt: [Millis] = records.compactMap {
            guard case .command(_, let at, _, let command, _) = $0, command.id == "late" else { return nil }
            return at
        }
        #expect(lateAt == [210], "only the bid applied after the listing was opened again is journaled")
        #expect(try Recovery.recover(directory, options: options).engine.stateHash() == hash)
        #expect(replay(records, configuration: writerConfiguration.engine).engine.stateHash() == hash)
        #expect(Verification.run(directory).problems == [])
    }
}
