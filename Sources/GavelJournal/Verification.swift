import GavelCore

/// The checks of `gavel verify`.
public enum Verification {
    public struct Result {
        public var problems: [String] = []
        public var notes: [String] = []
    }

    /// Checks every snapshot and segment in `directory`. Read-only.
    /// - Parameter progress: called as ``RecoveryOptions/progress`` is, during the replays from the start.
    public static func run(
        _ directory: DataDirectory, progress: (@Sendable (_ records: Int, _ segment: String) -> Void)? = nil
    ) -> Result {
        var result = Result()
        let segments = directory.segments()
        // 1. Every segment: header, frames, records, lsn continuity and the chain, also across segments.
        var segmentsOK = true
        var expectedLSN: UInt64?
        var chain: [UInt8]?
        var entries = 0
        for segment in segments {
            let bytes: [UInt8]
            do { bytes = try Files.readAll(segment.path) } catch {
                result.problems.append("\(error)")
                segmentsOK = false
                continue
            }
            do {
                var reader = try SegmentReader(bytes: bytes)
                if reader.header.firstLSN != segment.firstLSN {
                    result.problems.append(
                        "\(segment.path): named for lsn \(segment.firstLSN) but starts at \(reader.header.firstLSN)")
                    segmentsOK = false
                }
                if let expectedLSN, reader.header.firstLSN != expectedLSN {
                    result.problems.append(
                        "\(segment.path) at byte 0: starts at lsn \(reader.header.firstLSN) where \(expectedLSN) was expected (a segment is missing)"
                    )
                    segmentsOK = false
                }
                if let chain, reader.header.previousChain != chain {
                    result.problems.append("\(segment.path) at byte 0: does not chain to the previous segment")
                    segmentsOK = false
                }
                while let batch = try reader.next() { entries += batch.records.count }
                expectedLSN = reader.nextLSN
                chain = reader.chain
            } catch {
                let problem = error
                let kind = problem.kind == .truncated ? "torn tail" : "corruption"
                result.problems.append("\(segment.path) at byte \(problem.offset): \(kind): \(problem.reason)")
                segmentsOK = false
                expectedLSN = nil
                chain = nil
            }
        }
        if segmentsOK {
            result.notes.append("\(segments.count) segment(s), \(entries) entries, chain and lsns continuous")
        }

        // 2. Every snapshot decodes, restores, and matches its own hash.
        var snapshots: [SnapshotFile] = []
        for candidate in directory.snapshotFiles() {
            do {
                let file = try SnapshotFile.decode(try Files.readAll(candidate.path))
                if file.isBeforeSettlements {
                    result.notes.append(
                        "snapshot \(candidate.path) at lsn \(file.lsn) has the format \(file.version) of a gavel from before settlements: recovery skips it while the journal reaches back to lsn 1 and starts from it (its sales without settlements) once the journal does not; replays are not compared with it"
                    )
                    continue
                }
                let engine = try Engine.restore(from: file.state)
                let version = file.state.prefix(4).reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                if version < Engine.stateVersion {
                    // It loads (decode checked its hash), but re-encodes in the current version: nothing to compare.
                    result.notes.append(
                        "snapshot \(candidate.path) at lsn \(file.lsn) has the older state version \(version): it loads, but replays are not compared with it"
                    )
                    continue
                }
                guard engine.fastStateHash() == file.stateHash else {
                    result.problems.append("\(candidate.path): restored state does not hash to the recorded state hash")
                    continue
                }
                snapshots.append(file)
                result.notes.append("snapshot \(candidate.path) at lsn \(file.lsn) is valid")
            } catch {
                result.problems.append("\(candidate.path): \(error)")
            }
        }
        guard segmentsOK else { return result }

        // 3. Replays agree: from the start (when the journal reaches back to lsn 1) and from each snapshot.
        var finalHashes: [(String, String)] = []
        let firstLSN = segments.first?.firstLSN ?? 1
        if firstLSN == 1 {
            var options = RecoveryOptions()
            options.repair = false
            options.useSnapshots = false
            options.progress = progress
            if let base = snapshots.first?.state, let engine = try? Engine.restore(from: base) {
                options.engine = engine.configuration
            }
            for snapshot in snapshots {
                options.toLSN = snapshot.lsn
                do {
                    let report = try Recovery.recover(directory, options: options)
                    var events: [Event] = []
                    report.engine.advance(to: snapshot.now, events: &events)
                    if report.lastLSN != snapshot.lsn || report.engine.fastStateHash() != snapshot.stateHash {
                        var problem =
                            "replay from the start to lsn \(snapshot.lsn) does not reach the state of snapshot at lsn \(snapshot.lsn)"
                        if let recorded = try? Engine.restore(from: snapshot.state) {
                            problem += changedOutcomes(report.engine.outcomeChanges(comparedTo: recorded))
                        }
                        result.problems.append(problem)
                    } else {
                        result.notes.append("replay from the start reaches snapshot at lsn \(snapshot.lsn)")
                    }
                } catch {
                    result.problems.append("replay from the start to lsn \(snapshot.lsn): \(error)")
                }
            }
            options.toLSN = nil
            options.checkOutcomes = true
            if let report = try? Recovery.recover(directory, options: options) {
                finalHashes.append(("the start", report.engine.fastStateHash()))
                if report.outcomeMismatchCount > 0 {
                    let listed = report.outcomeMismatches.map {
                        "lsn \($0.lsn) says \($0.recorded), the replay finds \($0.found)"
                    }
                    result.problems.append(
                        "\(report.outcomeMismatchCount) command record(s) carry an idempotency outcome the replay from the start does not find: \(listed.joined(separator: "; "))"
                    )
                } else if report.outcomesChecked > 0 {
                    result.notes.append(
                        "the idempotency outcomes of \(report.outcomesChecked) command records are what the replay from the start finds"
                    )
                }
            }
        }
        for snapshot in snapshots where segments.isEmpty || snapshot.lsn + 1 >= firstLSN {
            do {
                var events: [Event] = []
                let engine = try Engine.restore(from: snapshot.state)
                var lsn = snapshot.lsn
                for segment in segments {
                    var reader = try SegmentReader(bytes: try Files.readAll(segment.path))
                    while let batch = try reader.next() {
                        for record in batch.records where record.lsn > lsn {
                            Recovery.apply(record, to: engine, events: &events)
                            lsn = record.lsn
                        }
                    }
                }
                finalHashes.append(("snapshot at lsn \(snapshot.lsn)", engine.fastStateHash()))
            } catch {
                result.problems.append("replay from snapshot at lsn \(snapshot.lsn): \(error)")
            }
        }
        if let (_, reference) = finalHashes.first {
            for (origin, hash) in finalHashes.dropFirst() where hash != reference {
                result.problems.append(
                    "replay from \(origin) ends in state \(hash), replay from \(finalHashes[0].0) in \(reference)")
            }
            if result.problems.isEmpty {
                result.notes.append(
                    "replays from \(finalHashes.map(\.0).joined(separator: ", ")) end in the same state \(reference)")
            }
        }
        return result
    }

    /// At most this many changed outcomes are listed per snapshot.
    static let maxListedChanges = 20

    /// What to add to the problem: the requests whose result, as the snapshot remembers it, differs from the
    /// replay's, one per line; empty when none does.
    static func changedOutcomes(_ changes: [OutcomeChange]) -> String {
        guard !changes.isEmpty else { return "" }
        var lines = [
            "; \(changes.count) remembered request(s) have a different outcome under this build's rules than the snapshot records:"
        ]
        lines += changes.prefix(maxListedChanges).map { "    \($0.description)" }
        if changes.count > maxListedChanges { lines.append("    ... and \(changes.count - maxListedChanges) more") }
        return lines.joined(separator: "\n")
    }
}
