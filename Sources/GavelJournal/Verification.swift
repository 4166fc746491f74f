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
        if let problem = directory.layoutProblem() {
            result.problems.append(problem)
            return result
        }
        let segments = directory.segments()
        // 1. Every segment: header, frames, records, lsn continuity and the chain, also across segments.
        var segmentsOK = true
        var expected: (lsn: UInt64, chain: [UInt8])?
        var entries = 0
        for (index, segment) in segments.enumerated() {
            // Damage at the end of the last segment is a torn tail, as recovery calls it; anywhere else corruption.
            let isLast = index == segments.count - 1
            let bytes: [UInt8]
            do { bytes = try Files.readAll(segment.path) } catch {
                result.problems.append("\(error)")
                segmentsOK = false
                continue
            }
            var reader: SegmentReader
            do {
                reader = try SegmentReader(bytes: bytes)
            } catch {
                let kind = isLast && error.kind == .truncated ? "torn tail" : "corruption"
                result.problems.append("\(segment.path) at byte \(error.offset): \(kind): \(error.reason)")
                segmentsOK = false
                expected = nil
                continue
            }
            if let problem = continuityProblem(of: reader.header, at: segment, after: expected) {
                result.problems.append(problem)
                segmentsOK = false
            }
            do {
                while let batch = try reader.next() { entries += batch.records.count }
                expected = (reader.nextLSN, reader.chain)
            } catch {
                let torn = isLast && (error.kind == .truncated || !reader.validFrameExists(after: error.offset))
                result.problems.append(
                    "\(segment.path) at byte \(error.offset): \(torn ? "torn tail" : "corruption"): \(error.reason)")
                segmentsOK = false
                expected = nil
            }
        }
        if segmentsOK {
            result.notes.append("\(segments.count) segment(s), \(entries) entries, chain and lsns continuous")
        }

        // 2. Every snapshot decodes, restores, matches its own hash and its name, and the journal agrees with it.
        var snapshots: [SnapshotFile] = []
        // The snapshots already reported or noted here, which recovery's own verdict (4.) need not repeat.
        var seen: Set<String> = []
        for candidate in directory.snapshotFiles() {
            seen.insert(candidate.path)
            do {
                let file = try SnapshotFile.decode(try Files.readAll(candidate.path))
                guard file.lsn == candidate.lsn else {
                    // Recovery's words for it.
                    throw SegmentProblem(
                        kind: .corrupt, offset: 0, reason: "names lsn \(candidate.lsn) but holds \(file.lsn)")
                }
                if case .disagrees(let reason)? = Recovery.verdict(
                    of: SnapshotCheck(lsn: file.lsn, chain: file.chain), in: segments)
                {
                    result.problems.append(
                        "snapshot \(candidate.path) at lsn \(file.lsn): \(reason); recovery skips it")
                    continue
                }
                if file.isBeforeSettlements {
                    result.notes.append(
                        "snapshot \(candidate.path) at lsn \(file.lsn) has the format \(file.version) of a gavel from before settlements: recovery skips it while the journal reaches back to lsn 1 and starts from it (its sales without settlements) once the journal does not; replays are not compared with it"
                    )
                    continue
                }
                let engine = try Engine.restore(from: file.state)
                if engine.settlementOrderDerived {
                    // Its settlements' creation numbers come from their times, not from the journal's order.
                    result.notes.append(
                        "snapshot \(candidate.path) at lsn \(file.lsn) holds settlements numbered from a snapshot written before settlements were numbered in creation order: it loads (those settlements ordered by creation time, listing id and number), but replays are not compared with it"
                    )
                    continue
                }
                let version = file.state.prefix(4).reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                // A version 2 state is also what this build writes for an engine without the shortest dutch step
                // and the longest listing duration (`gavel simulate`'s): it re-encodes to the same bytes.
                if version < Engine.stateVersion, engine.encodeState().prefix(4) != file.state.prefix(4) {
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
        // What recovery (`gavel serve`) would do with the directory, in its words: a refusal, or a snapshot it skips
        // that the checks above did not report (the problems they found at the same place take recovery's words).
        var options = RecoveryOptions()
        options.repair = false
        options.progress = progress
        do {
            let report = try Recovery.recover(directory, options: options)
            for (path, reason) in report.rejectedSnapshots where !seen.contains(path) {
                result.problems.append("recovery skips snapshot \(path): \(reason)")
            }
        } catch let error as CorruptionError {
            let problem =
                "\(error.file) at byte \(error.offset): corruption: \(error.reason); recovery refuses to start"
            let place = "\(error.file) at byte \(error.offset):"
            if let same = result.problems.firstIndex(where: { $0.hasPrefix(place) }) {
                result.problems[same] = problem
            } else {
                result.problems.append(problem)
            }
        } catch {
            result.problems.append("recovery refuses to start: \(error)")
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
                    if report.lastLSN != snapshot.lsn {
                        // Not the rules: the journal itself stops short of the snapshot.
                        result.problems.append(
                            "replay from the start to lsn \(snapshot.lsn) ends at lsn \(report.lastLSN): the journal ends before snapshot at lsn \(snapshot.lsn) (lsns \(report.lastLSN + 1)...\(snapshot.lsn) are missing from it)"
                        )
                    } else if report.engine.fastStateHash() != snapshot.stateHash {
                        var problem =
                            "replay from the start to lsn \(snapshot.lsn) does not reach the state of snapshot at lsn \(snapshot.lsn)"
                        if let recorded = try? Engine.restore(from: snapshot.state) {
                            let changes = report.engine.outcomeChanges(comparedTo: recorded)
                            problem +=
                                changes.isEmpty
                                ? otherDifference(recorded: recorded, replayed: report.engine)
                                : changedOutcomes(changes)
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

    /// Whether the segment at `segment`, whose header is `header`, is named for its first lsn and goes on where the
    /// segment before it left off (`expected`: the lsn and chain after it; `nil` for the first one read): the
    /// problem in the words `gavel verify` and `gavel dump` use, or `nil`.
    public static func continuityProblem(
        of header: SegmentHeader, at segment: (firstLSN: UInt64, path: String),
        after expected: (lsn: UInt64, chain: [UInt8])?
    ) -> String? {
        var problems: [String] = []
        if header.firstLSN != segment.firstLSN {
            problems.append("\(segment.path): named for lsn \(segment.firstLSN) but starts at \(header.firstLSN)")
        }
        if let expected, header.firstLSN != expected.lsn {
            problems.append(
                "\(segment.path) at byte 0: starts at lsn \(header.firstLSN) where \(expected.lsn) was expected (a segment is missing or out of order)"
            )
        } else if let expected, header.previousChain != expected.chain {
            problems.append("\(segment.path) at byte 0: does not chain to the previous segment")
        }
        return problems.isEmpty ? nil : problems.joined(separator: "; ")
    }

    /// At most this many changed outcomes are listed per snapshot.
    static let maxListedChanges = 20

    /// What to add to the problem: the requests whose result, as the snapshot remembers it, differs from the
    /// replay's, one per line; empty when none does.
    /// What differs when no remembered outcome does: the timers (a snapshot written by an earlier build keeps
    /// timers this build cancels when they stop applying), or something else of the state; and what to do.
    static func otherDifference(recorded: Engine, replayed: Engine) -> String {
        let what =
            recorded.timerCount != replayed.timerCount
            ? "the snapshot holds \(recorded.timerCount) timers and the replay \(replayed.timerCount) (an earlier build kept timers that stopped applying: a sold-out dutch listing's next step, an answered offer's deadline)"
            : "the states differ elsewhere (a snapshot written by an earlier build with other rules)"
        return """
            ; no remembered request has another outcome: \(what). Recovery uses the snapshot as it is; a snapshot \
            written by this build (`gavel snapshot`) replaces it once --keep-snapshots moves the older ones out, or move \
            them aside (docs/STORAGE.md, "When the rules change")
            """
    }

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
