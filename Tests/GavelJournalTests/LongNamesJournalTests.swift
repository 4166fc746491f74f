import GavelCore
@_spi(Manual) import GavelEngine
import GavelJournal
import Testing

/// `name` made longer than the 15 bytes a Swift small string holds inline (UUID-like, as marketplaces name listings
/// and users), so that readers take it from their ``IdentifierCache``; still an identifier of at most 64 bytes.
private func long(_ name: String) -> String { "n-4f1c2b9e-8d7a-4c31-" + name }

/// `command` with its listing and every user it names made long; the request id stays as it was.
private func withLongNames(_ command: Command) -> Command {
    var changed = command
    changed.listing = long(command.listing)
    switch command.body {
    case .open(let seller, let terms): changed.body = .open(seller: long(seller), terms: terms)
    case .bid(let bidder, let amount): changed.body = .bid(bidder: long(bidder), amount: amount)
    case .buyNow(let buyer): changed.body = .buyNow(buyer: long(buyer))
    case .accept(let bidder, let quantity): changed.body = .accept(bidder: long(bidder), quantity: quantity)
    case .order(let trader, let side, let price, let quantity, let tif, let expiresAt):
        changed.body = .order(
            trader: long(trader), side: side, price: price, quantity: quantity, tif: tif, expiresAt: expiresAt)
    case .cancel(let trader, let order): changed.body = .cancel(trader: long(trader), order: order)
    case .cancelListing(let seller): changed.body = .cancelListing(seller: long(seller))
    case .cancelListingAsAdmin(let admin): changed.body = .cancelListingAsAdmin(admin: long(admin))
    case .settle(let number, let action, let by, let role):
        changed.body = .settle(number: number, action: action, by: long(by), role: role)
    case .secondChance(let action, let by, let role): changed.body = .secondChance(action, by: long(by), role: role)
    }
    return changed
}

/// Listing and user names of more than 15 bytes, which the journal's readers (recovery's read-ahead, the
/// checkpointer's cursor, a feed's replay) and the snapshot loader take from caches that share one storage per name:
/// what they rebuild is the state the writer had, hash for hash.
@Suite("Long names through the journal", .serialized)
struct LongNamesJournalTests {
    @Test func longNamesRecoverReplayAndSnapshotToTheWritersState() throws {
        let temp = try TemporaryDirectory("longnames")
        var writerConfiguration = WriterConfiguration()
        writerConfiguration.snapshotEveryEntries = 150
        writerConfiguration.engine.closedListingRetentionMs = 50
        var options = RecoveryOptions()
        options.engine = writerConfiguration.engine
        var journal = JournalConfiguration()
        journal.segmentBytes = 16_384
        journal.fsync = .none
        // Every segment kept, for the replays from the start below.
        journal.keepSnapshots = 1_000
        let run = try JournaledWriter(temp.path, journal: journal, writer: writerConfiguration, recovery: options)
        var workload = Workload(seed: 33)
        var offered = 0
        for step in 0..<1_000 {
            let (command, at) = workload.next()
            let changed = withLongNames(command)
            #expect(changed.listing.utf8.count > 15 && changed.principal.utf8.count > 15)
            if run.offer(changed, at: at) == nil { offered += 1 }
            if step % 9 == 0 { run.settle() }
        }
        run.settle()
        let hash = run.engine.stateHash()
        run.finish()
        #expect(offered > 500)

        let directory = DataDirectory(temp.path)
        #expect(directory.snapshotFiles().count >= 2, "the checkpointer wrote snapshots of long names")
        let recovered = try Recovery.recover(directory, options: options)
        #expect(recovered.engine.stateHash() == hash)
        var fromStart = options
        fromStart.useSnapshots = false
        #expect(try Recovery.recover(directory, options: fromStart).engine.stateHash() == hash)
        #expect(
            replay(try journalRecords(directory), configuration: writerConfiguration.engine).engine.stateHash() == hash)
        // A feed's replay of the whole journal (its cursor takes names from a cache too) reads every entry.
        let replayed = try JournalReplay(directory: directory, from: 1, engine: writerConfiguration.engine)
        var entries = 0
        while try replayed.next(upTo: recovered.lastLSN, { _, _, _, _, _ in entries += 1 }) {}
        #expect(replayed.lastLSN == recovered.lastLSN && entries > 500)
        let verified = Verification.run(directory)
        #expect(verified.problems == [])
        #expect(verified.notes.contains { $0.contains("end in the same state") })
    }
}
