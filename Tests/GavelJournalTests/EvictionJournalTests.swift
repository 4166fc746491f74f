import GavelCore
@_spi(Manual) import GavelEngine
import GavelJournal
import Synchronization
import Testing

/// Eviction of closed listings through the writer and the journal: snapshots taken while listings are being
/// evicted restore to the state a replay reaches, and `gavel verify` finds nothing.
@Suite("Eviction in the journal", .serialized)
struct EvictionJournalTests {
    @Test func evictionsReplayToTheSnapshotsStatesAndVerifyClean() throws {
        let temp = try TemporaryDirectory("evict")
        defer { temp.remove() }
        var writerConfiguration = WriterConfiguration()
        writerConfiguration.snapshotEveryEntries = 250
        writerConfiguration.engine.closedListingRetentionMs = 50
        writerConfiguration.engine.maxRequestIDsPerPrincipal = 40
        var journal = JournalConfiguration()
        journal.fsync = .none
        journal.keepSnapshots = 4
        var options = RecoveryOptions()
        options.engine = writerConfiguration.engine
        let run = try JournaledWriter(temp.path, journal: journal, writer: writerConfiguration, recovery: options)
        var workload = Workload(seed: 21)
        let evictions = Mutex(0)
        _ = run.writer.bus.subscribeAll { event in if event.kind.isInternal { evictions.withLock { $0 += 1 } } }
        var refused = 0
        for step in 0..<1200 {
            let (command, at) = workload.next()
            if at > run.clock.now() {
                run.writer.runUntilIdle()
                run.clock.set(at)
            }
            // Commands for listings already evicted are refused at submit, unjournaled.
            if let rejected = run.writer.submit(command, handler: nil) {
                #expect(rejected.error == .unknownListing)
                refused += 1
            }
            if step % 7 == 0 { run.settle() }
        }
        run.settle()
        let hash = run.engine.stateHash()
        let listings = run.engine.listingCount
        run.finish()
        #expect(evictions.withLock { $0 } > 20, "listings were evicted during the run")
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
