import Foundation
import GavelCore
@_spi(Manual) import GavelEngine
import GavelJournal
import Glibc
import Testing

/// Recovery starts from a snapshot only when the journal agrees with it, and treats a journal that ends before the
/// snapshot it starts from as lost journal, not a torn tail; `gavel verify` says what recovery would do.
@Suite("Snapshots against their journal", .serialized)
struct SnapshotAgreementTests {
    /// `count` commands of a workload seeded `seed`.
    private func commands(_ count: Int, seed: UInt64, prefix: String) -> [(command: Command, at: Millis)] {
        var workload = Workload(seed: seed, prefix: prefix)
        return (0..<count).map { _ in workload.next() }
    }

    /// An engine that applied `commands`, as a replay of their journal does.
    private func engine(after commands: ArraySlice<(command: Command, at: Millis)>) -> Engine {
        let engine = Engine(configuration: EngineConfiguration())
        var events: [Event] = []
        for (command, at) in commands {
            engine.advance(to: at, events: &events)
            _ = engine.apply(command, events: &events)
            events.removeAll(keepingCapacity: true)
        }
        return engine
    }

    /// The chain after the batch of `directory`'s journal that ends at `lsn`.
    private func chain(at lsn: UInt64, in directory: DataDirectory) throws -> [UInt8]? {
        for segment in directory.segments() {
            var reader = try SegmentReader(bytes: try readBytes(segment.path))
            while let batch = try reader.next() {
                if batch.records.last?.lsn == lsn { return batch.chain }
            }
        }
        return nil
    }

    private func writeSnapshot(_ engine: Engine, lsn: UInt64, chain: [UInt8], in directory: DataDirectory) throws
        -> String
    {
        let path = directory.snapshots + "/" + DataDirectory.snapshotName(lsn: lsn)
        _ = try SnapshotFile.write(
            engine: engine, lsn: lsn, now: engine.now, chain: chain, to: path, directory: directory.snapshots)
        return path
    }

    @Test func aSnapshotOfAnotherHistoryWhoseLSNFallsInsideABatchIsSkippedForAnOlderOwnOne() throws {
        let temp = try TemporaryDirectory("foreign-inside")
        defer { temp.remove() }
        let directory = DataDirectory(temp.path)
        let own = commands(300, seed: 31, prefix: "a")
        try writeJournalRecords(own, to: directory, perBatch: 10)
        let fromStart = try Recovery.recover(directory).engine.stateHash()
        // This journal's own snapshot at 100 (a batch end), and another history's at 125 (inside a batch).
        let ownPath = try writeSnapshot(
            engine(after: own[..<100]), lsn: 100, chain: try #require(try chain(at: 100, in: directory)), in: directory)
        let foreign = commands(125, seed: 77, prefix: "z")
        let foreignPath = try writeSnapshot(
            engine(after: foreign[...]), lsn: 125, chain: [UInt8](repeating: 7, count: 32), in: directory)

        let report = try Recovery.recover(directory)
        #expect(report.snapshot?.path == ownPath)
        #expect(report.rejectedSnapshots.map(\.path) == [foreignPath])
        #expect(report.rejectedSnapshots.first?.reason.contains("lsn 125 falls inside the journal's batch") == true)
        #expect(report.engine.stateHash() == fromStart)
        #expect(report.lastLSN == 300)
        // Read-only tools too.
        var readOnly = RecoveryOptions()
        readOnly.repair = false
        #expect(try Recovery.recover(directory, options: readOnly).engine.stateHash() == fromStart)
        let problems = Verification.run(directory).problems
        #expect(problems.contains { $0.contains(foreignPath) && $0.contains("recovery skips it") }, "\(problems)")
        #expect(!problems.contains { $0.contains("under this build's rules") }, "\(problems)")
    }

    @Test func aSnapshotWhoseChainDiffersAtABatchEndIsSkippedAndTheJournalReplayedFromItsStart() throws {
        let temp = try TemporaryDirectory("foreign-boundary")
        defer { temp.remove() }
        let directory = DataDirectory(temp.path)
        let own = commands(200, seed: 32, prefix: "a")
        try writeJournalRecords(own, to: directory, perBatch: 10)
        let fromStart = try Recovery.recover(directory).engine.stateHash()
        let foreign = commands(120, seed: 78, prefix: "z")
        let foreignPath = try writeSnapshot(
            engine(after: foreign[...]), lsn: 120, chain: [UInt8](repeating: 9, count: 32), in: directory)

        let report = try Recovery.recover(directory)
        #expect(report.snapshot == nil)
        #expect(report.rejectedSnapshots.first?.path == foreignPath)
        #expect(report.rejectedSnapshots.first?.reason.contains("chain at lsn 120") == true)
        #expect(report.engine.stateHash() == fromStart)
    }

    /// A directory written by the real journal: 2 KiB segments, one snapshot at the end (a clean stop).
    private func stoppedDirectory(_ temp: TemporaryDirectory, commands count: Int = 600) throws -> (
        directory: DataDirectory, hash: String, snapshot: UInt64
    ) {
        var journal = JournalConfiguration()
        journal.segmentBytes = 2048
        journal.fsync = .none
        var writer = WriterConfiguration()
        writer.snapshotEveryEntries = 0
        writer.snapshotOnShutdown = true
        let run = try JournaledWriter(temp.path, journal: journal, writer: writer)
        var workload = Workload(seed: 41)
        run.feed(&workload, count, settleEvery: 7)
        let hash = run.engine.stateHash()
        run.finish()
        let directory = DataDirectory(temp.path)
        return (directory, hash, try #require(directory.snapshotFiles().first).lsn)
    }

    @Test func damageAtTheEndOfTheLastSegmentBelowTheSnapshotIsRefusedAsLostJournalNotCutAsATornTail() throws {
        let temp = try TemporaryDirectory("torn-below")
        defer { temp.remove() }
        let (directory, hash, snapshot) = try stoppedDirectory(temp)
        let last = try #require(directory.segments().last).path
        let size = try #require(Files.size(last))
        #expect(truncate(last, off_t(size - 100)) == 0)

        #expect {
            try Recovery.recover(directory)
        } throws: { error in
            let text = "\(error)"
            return text.contains(last) && text.contains("were durable and are missing from the journal")
                && text.contains("lsn \(snapshot)") && text.contains("--truncate-after-corruption")
        }
        #expect(Files.size(last) == size - 100, "nothing is cut when recovery refuses")
        #expect(Verification.run(directory).problems.contains { $0.contains("were durable and are missing") })

        // A file an earlier use of the way out left under the same name is kept, not overwritten.
        let earlier = directory.setAside + "/" + String(last.split(separator: "/").last ?? "")
        try FileManager.default.createDirectory(atPath: directory.setAside, withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: earlier, contents: Data("earlier".utf8)))

        // The way out: start from the snapshot, the journal again at its lsn + 1, no gap left behind.
        var options = RecoveryOptions()
        options.truncateAfterCorruption = true
        let run = try JournaledWriter(temp.path, recovery: options)
        #expect(FileManager.default.contents(atPath: earlier) == Data("earlier".utf8))
        #expect(Files.size(earlier + ".1") == size - 100)
        #expect(run.recovery.lastLSN == snapshot)
        #expect(run.engine.stateHash() == hash)
        // The journal goes on from the snapshot at once, in a segment of its own: a start that writes nothing
        // (an offline tool's) leaves a directory that verifies and dumps.
        #expect(directory.segments().map(\.firstLSN) == [snapshot + 1])
        #expect(Verification.run(directory).problems == [])
        #expect(!run.recovery.setAsideSegments.isEmpty)
        var workload = Workload(seed: 42, prefix: "n", start: run.engine.now)
        run.feed(&workload, 50)
        let after = run.engine.stateHash()
        run.finish()
        #expect(directory.segments().first?.firstLSN == snapshot + 1)
        #expect(try Recovery.recover(directory).engine.stateHash() == after)
        #expect(Verification.run(directory).problems == [])
    }

    @Test func aMissingLastSegmentBelowTheSnapshotIsRefusedAsLostJournal() throws {
        let temp = try TemporaryDirectory("missing-last")
        defer { temp.remove() }
        let (directory, _, snapshot) = try stoppedDirectory(temp)
        let segments = directory.segments()
        #expect(segments.count > 2)
        #expect(unlink(try #require(segments.last).path) == 0)
        #expect {
            try Recovery.recover(directory)
        } throws: { error in
            "\(error)".contains("lsn \(snapshot)")
                && "\(error)".contains("missing from the journal")
        }
        let problems = Verification.run(directory).problems
        #expect(problems.contains { $0.contains("missing from the journal") }, "\(problems)")
        #expect(!problems.contains { $0.contains("under this build's rules") }, "\(problems)")
    }

    @Test func recoveryToTheSnapshotsLSNEndsWithTheChainAtThatLSN() throws {
        let temp = try TemporaryDirectory("to-lsn-chain")
        defer { temp.remove() }
        let (directory, _, snapshot) = try stoppedDirectory(temp)
        let file = try SnapshotFile.decode(try readBytes(try #require(directory.snapshotFiles().first).path))
        var options = RecoveryOptions()
        options.toLSN = snapshot
        options.repair = false
        let report = try Recovery.recover(directory, options: options)
        #expect(report.lastLSN == snapshot)
        #expect(report.chain == file.chain)
    }

    @Test func verifyReportsWhatRecoveryRefusesOrSkips() throws {
        let temp = try TemporaryDirectory("verify-recovery")
        defer { temp.remove() }
        var journal = JournalConfiguration()
        journal.segmentBytes = 2048
        journal.fsync = .none
        journal.keepSnapshots = 2
        var writer = WriterConfiguration()
        writer.snapshotEveryEntries = 200
        let run = try JournaledWriter(temp.path, journal: journal, writer: writer)
        var workload = Workload(seed: 43)
        run.feed(&workload, 900, settleEvery: 7)
        run.finish()
        let directory = DataDirectory(temp.path)
        #expect(try #require(directory.segments().first).firstLSN > 1)
        #expect(Verification.run(directory).problems == [])

        // A misnamed snapshot: recovery skips it.
        let newest = try #require(directory.snapshotFiles().first).path
        let misnamed = directory.snapshots + "/" + DataDirectory.snapshotName(lsn: 99_999_999)
        #expect(rename(newest, misnamed) == 0)
        var problems = Verification.run(directory).problems
        #expect(problems.contains { $0.contains(misnamed) && $0.contains("names lsn 99999999") }, "\(problems)")
        #expect(rename(misnamed, newest) == 0)

        // No snapshot left while the journal starts after lsn 1: recovery refuses.
        let aside = temp.sub("aside")
        #expect(rename(directory.snapshots, aside) == 0)
        #expect(mkdir(directory.snapshots, 0o700) == 0)
        problems = Verification.run(directory).problems
        #expect(problems.contains { $0.contains("no valid snapshot covers what came before") }, "\(problems)")

        // `snapshots` is a file: neither verify nor recovery reads the directory as a data directory.
        #expect(rmdir(directory.snapshots) == 0)
        #expect(creat(directory.snapshots, 0o600) >= 0)
        problems = Verification.run(directory).problems
        #expect(problems.contains { $0.contains("snapshots is not a directory") }, "\(problems)")
        #expect(throws: DataDirectoryError.self) { try Recovery.recover(directory) }

        // A path with nothing there, and a file.
        #expect(
            Verification.run(DataDirectory(temp.sub("nothing"))).problems.first?.contains("no data directory") == true)
        #expect(
            Verification.run(DataDirectory(directory.snapshots)).problems.first?.contains("not a directory") == true)
    }

    @Test func verifyCallsAnEmptyMiddleSegmentCorruptionAsRecoveryDoes() throws {
        let temp = try TemporaryDirectory("empty-middle")
        defer { temp.remove() }
        let (directory, _, _) = try stoppedDirectory(temp)
        let segments = directory.segments()
        #expect(segments.count > 2)
        #expect(truncate(segments[1].path, 0) == 0)
        let problems = Verification.run(directory).problems
        #expect(problems.contains { $0.contains(segments[1].path) && $0.contains("corruption") }, "\(problems)")
        #expect(!problems.contains { $0.contains("torn tail") }, "\(problems)")
    }
}
