import GavelCore
import GavelEngine

/// Corruption that recovery will not repair by itself: the file, the byte offset, what is wrong and what to do.
public struct CorruptionError: Error, CustomStringConvertible, Sendable {
    public var file: String
    public var offset: Int
    public var reason: String
    /// What to do, when it is not the usual (verify, restore, or truncate at the offset).
    public var remedy: String?

    public init(file: String, offset: Int, reason: String, remedy: String? = nil) {
        self.file = file
        self.offset = offset
        self.reason = reason
        self.remedy = remedy
    }

    public var description: String {
        "journal corruption in \(file) at byte \(offset): \(reason).\n"
            + (remedy
                ?? """
                Nothing after this point was applied. To proceed: run `gavel verify --data-dir \(dataDirectory)` for \
                a full report; restore the data directory from a backup; or restart with --truncate-after-corruption \
                to discard everything from this offset on (commands after it are lost).
                """)
    }

    /// The data directory that holds `file` (a segment in its `journal`, or a snapshot in its `snapshots`), as
    /// the file was named; `<dir>` when the file is elsewhere.
    var dataDirectory: String {
        var parts = file.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 2, ["journal", "snapshots"].contains(parts[parts.count - 2]) else { return "<dir>" }
        parts.removeLast(2)
        let directory = parts.joined(separator: "/")
        if directory.isEmpty { return file.hasPrefix("/") ? "/" : "." }
        return directory
    }
}

/// A replay asked for a state before the oldest one the data directory holds: the journal starts after lsn 1 (the
/// segments before it were removed by retention once a snapshot covered them) and the lsn asked for
/// (``RecoveryOptions/toLSN``), or the journal's start (without ``RecoveryOptions/useSnapshots``), is before the
/// oldest snapshot a replay can start from. Nothing is damaged: a replay to that snapshot's lsn or later works.
public struct StateNotRetained: Error, CustomStringConvertible, Sendable {
    /// The lsn asked for; `nil` for a replay of the journal from its start.
    public var lsn: UInt64?
    /// The first lsn the journal holds.
    public var journalStart: UInt64
    /// The oldest snapshot a replay can start from.
    public var oldestSnapshotLSN: UInt64
    public var oldestSnapshotPath: String

    public init(lsn: UInt64?, journalStart: UInt64, oldestSnapshotLSN: UInt64, oldestSnapshotPath: String) {
        self.lsn = lsn
        self.journalStart = journalStart
        self.oldestSnapshotLSN = oldestSnapshotLSN
        self.oldestSnapshotPath = oldestSnapshotPath
    }

    public var description: String {
        let removed =
            "the journal starts at lsn \(journalStart): the entries before it were removed by retention once a snapshot covered them (--keep-snapshots, --retain-journal)"
        let oldest = "the snapshot at lsn \(oldestSnapshotLSN) (\(oldestSnapshotPath))"
        guard let lsn else {
            return """
                a replay from the journal's start needs the journal from lsn 1, but \(removed). The oldest state this \
                directory holds is \(oldest): replay from the snapshots (without --from-start), or with an --archive-dir \
                that holds the segments from lsn 1. Nothing is damaged.
                """
        }
        return """
            lsn \(lsn) is before the oldest state this directory holds: \(oldest); \(removed). Replay to lsn \
            \(oldestSnapshotLSN) or later, or with an --archive-dir that holds the older segments. Nothing is damaged.
            """
    }
}

/// How to recover.
public struct RecoveryOptions: Sendable {
    /// Truncate the journal at the first corruption instead of refusing to start (loses what follows).
    public var truncateAfterCorruption = false
    /// Stop after this lsn (for `gavel replay --to-lsn`); snapshots past it are not used.
    public var toLSN: UInt64?
    /// Start from the newest valid snapshot (true) or replay the journal from its first segment (false).
    public var useSnapshots = true
    /// Repair files (truncate a torn tail) — false for read-only tools.
    public var repair = true
    /// Rules settings for a journal replayed from the start.
    public var engine = EngineConfiguration()
    /// Look every command's id up, and compare what the table answers with the outcome its record carries (version
    /// 2), listing the records where they differ (``RecoveryReport/outcomeMismatches``): for `gavel verify`. Without
    /// it, a command whose record says its id was new is applied without the lookup.
    public var checkOutcomes = false
    /// Whether the recovered engine gets its idempotency index (request key to remembered result) back at the end.
    /// A plain replay keeps none while it replays and builds it once at the end; an engine that never looks an id
    /// up (the checkpointer's shadow) does without it.
    public var buildsRequestIndex = true
    /// Called on the recovering thread ``progressIntervalNanos`` (a second) after recovery started and then every
    /// such interval, with the number of records replayed so far and the segment being read; never for a recovery
    /// shorter than the interval.
    public var progress: (@Sendable (_ records: Int, _ segment: String) -> Void)?
    /// How often ``progress`` is called, and how long recovery runs before the first call: a second.
    public var progressIntervalNanos: UInt64 = 1_000_000_000
    /// Called after each journal record is applied, with the record, the events of the timers that fired before it
    /// (moving the clock to its time), and for a command its result and events (`gavel dump --settlement`).
    public var observe:
        (@Sendable (_ record: JournalRecord, _ timers: [Event], _ result: CommandResult?, _ events: [Event]) -> Void)?

    public init() {}
}

/// What recovery found and did.
public struct RecoveryReport {
    public var engine: Engine
    /// The last lsn applied (0 for an empty journal).
    public var lastLSN: UInt64
    /// The chain hash after the last batch applied.
    public var chain: [UInt8]
    /// The snapshot recovery started from.
    public var snapshot: (lsn: UInt64, path: String)?
    /// Snapshots that were newer but did not validate, with the reason.
    public var rejectedSnapshots: [(path: String, reason: String)] = []
    /// Journal records applied after the snapshot.
    public var replayedRecords = 0
    /// Journal bytes read: segment headers and the frames read, not a segment's reserved space after its frames.
    public var bytesRead = 0
    /// Where a torn tail (or, with `truncateAfterCorruption`, corruption) was cut off.
    public var truncation: (file: String, offset: Int, reason: String)?
    /// Segments deleted because they followed a corruption that was truncated.
    public var removedSegments: [String] = []
    /// Segments moved to ``DataDirectory/setAside`` because the journal ended before the snapshot recovery started
    /// from (with ``RecoveryOptions/truncateAfterCorruption``); the journal starts again after the snapshot.
    public var setAsideSegments: [String] = []
    /// The segment new batches go to: its path, first lsn and valid size; `nil` when there is none yet.
    public var activeSegment: (path: String, firstLSN: UInt64, size: Int)?
    /// Whether recovery started from a snapshot written before sales created settlements (format 1), because the
    /// journal no longer reaches back to lsn 1: the sales before its lsn have no settlements.
    public var startedBeforeSettlements = false
    /// With ``RecoveryOptions/checkOutcomes``: the first ten command records whose recorded outcome is not what the
    /// idempotency table answered on replay (lsn, recorded, found), and how many there were in all.
    public var outcomeMismatches: [(lsn: UInt64, recorded: RequestOutcome, found: RequestOutcome)] = []
    public var outcomeMismatchCount = 0
    /// With ``RecoveryOptions/checkOutcomes``: the command records that carried an outcome (version 2).
    public var outcomesChecked = 0
}

/// Why recovery did not start from a snapshot that is intact.
struct SkippedSnapshot: Error, CustomStringConvertible {
    var description: String
}

/// A data directory that cannot be read as one: the path is missing or not a directory, or its `journal` or
/// `snapshots` is not a directory.
public struct DataDirectoryError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// The journal does not agree with the snapshot recovery was starting from: recovery starts again without it.
struct SnapshotDisagreement: Error {
    var path: String
    var reason: String
}

/// Whether the journal agrees with a snapshot at `lsn` whose chain is `chain`. The chain is defined per batch (a
/// frame), and a snapshot is only ever taken where a frame ends (the journal commits every batch up to the
/// snapshot's lsn before it hands the point over), so the journal of the same history has a batch that ends at
/// `lsn` with that chain, or a segment that starts at `lsn + 1` whose header holds it.
public struct SnapshotCheck: Sendable {
    public var lsn: UInt64
    public var chain: [UInt8]

    public enum Verdict: Sendable, Equatable {
        case agrees
        case disagrees(String)
    }

    public init(lsn: UInt64, chain: [UInt8]) {
        self.lsn = lsn
        self.chain = chain
    }

    /// The verdict of a segment's header: decided when the segment starts right after the snapshot's lsn.
    public func judge(_ header: SegmentHeader, in path: String) -> Verdict? {
        guard header.firstLSN == lsn + 1 else { return nil }
        return header.previousChain == chain
            ? .agrees
            : .disagrees(
                "the journal's chain at lsn \(lsn) (the header of \(path)) is not the snapshot's: it is not a snapshot of this journal"
            )
    }

    /// The verdict of a batch read after the snapshot's segment header: decided by the batch that holds `lsn`.
    public func judge(_ batch: SegmentBatch, in path: String) -> Verdict? {
        guard let first = batch.records.first?.lsn, let last = batch.records.last?.lsn, last >= lsn else { return nil }
        if last > lsn {
            return .disagrees(
                "lsn \(lsn) falls inside the journal's batch of lsns \(first)...\(last) (at byte \(batch.offset) of \(path)), and a snapshot is taken only where a batch ends: it is not a snapshot of this journal"
            )
        }
        return batch.chain == chain
            ? .agrees
            : .disagrees(
                "the journal's chain at lsn \(lsn) (the batch at byte \(batch.offset) of \(path)) is not the snapshot's: it is not a snapshot of this journal"
            )
    }
}

/// Rebuilds the engine from a data directory: the newest snapshot that validates, then the journal after it.
public enum Recovery {
    /// Recovers `directory`. A snapshot the journal disagrees with (another directory's, or one of another history)
    /// is skipped like a damaged one, with the reason in ``RecoveryReport/rejectedSnapshots``, and recovery starts
    /// again from an older one or from the journal's start.
    public static func recover(_ directory: DataDirectory, options given: RecoveryOptions = RecoveryOptions()) throws
        -> RecoveryReport
    {
        // A path with nothing there is an empty data directory (the tools that only read refuse it themselves).
        if Files.isDirectory(directory.path) != nil, let problem = directory.layoutProblem() {
            throw DataDirectoryError(description: problem)
        }
        // The settings the directory's first start fixed, for a journal replayed from its start (a snapshot holds
        // its own): without them a restart with other options would replay under other rules.
        var options = given
        if let kept = try EngineSettingsFile.load(directory, into: options.engine) { options.engine = kept }
        var disagreeing: [(path: String, reason: String)] = []
        while true {
            do {
                return try recover(directory, options: options, skipping: disagreeing)
            } catch let disagreement as SnapshotDisagreement {
                // Found before anything after the snapshot was applied or any file repaired.
                disagreeing.append((disagreement.path, disagreement.reason))
            }
        }
    }

    /// The verdict of the journal in `segments` on `check`, read from the last segment that starts at or before its
    /// lsn + 1; `nil` when the journal does not reach that far or cannot be read up to there (its damage is another
    /// problem).
    public static func verdict(of check: SnapshotCheck, in segments: [(firstLSN: UInt64, path: String)])
        -> SnapshotCheck.Verdict?
    {
        guard let index = segments.lastIndex(where: { $0.firstLSN <= check.lsn + 1 }) else { return nil }
        for segment in segments[index...] {
            guard let bytes = try? Files.readAll(segment.path), var reader = try? SegmentReader(bytes: bytes) else {
                return nil
            }
            if let verdict = check.judge(reader.header, in: segment.path) { return verdict }
            guard reader.header.firstLSN <= check.lsn + 1 else { return nil }
            while true {
                let batch: SegmentBatch?
                do { batch = try reader.next() } catch { return nil }
                guard let batch else { break }
                if let verdict = check.judge(batch, in: segment.path) { return verdict }
            }
        }
        return nil
    }

    /// What the message of a journal that ends before the snapshot recovery starts from says to do.
    static func lostJournalRemedy(_ directory: DataDirectory, snapshot: String, lsn: UInt64) -> String {
        """
        Nothing was changed. To proceed: restore the missing journal (segments) from a backup; if \(snapshot) is \
        not this directory's, move it out of \(directory.snapshots); or restart with --truncate-after-corruption to \
        start from that snapshot with a new journal at lsn \(lsn + 1) (the segments are moved to \
        \(directory.setAside); the state is the snapshot's, but the commands missing from the journal are gone from \
        its audit trail).
        """
    }

    private static func recover(
        _ directory: DataDirectory, options: RecoveryOptions, skipping disagreeing: [(path: String, reason: String)]
    ) throws -> RecoveryReport {
        let segments = directory.segments()
        var rejected: [(path: String, reason: String)] = []
        var start: (engine: Engine, lsn: UInt64, chain: [UInt8], path: String)?
        var startedBeforeSettlements = false
        if options.useSnapshots {
            for candidate in directory.snapshotFiles() {
                if let limit = options.toLSN, candidate.lsn > limit { continue }
                if let skipped = disagreeing.first(where: { $0.path == candidate.path }) {
                    rejected.append(skipped)
                    continue
                }
                do {
                    let (engine, file) = try restored(candidate, journal: segments, options)
                    start = (engine, file.lsn, file.chain, candidate.path)
                    startedBeforeSettlements = file.isBeforeSettlements
                    break
                } catch {
                    rejected.append((candidate.path, "\(error)"))
                }
            }
        }
        let engine = start?.engine ?? Engine(configuration: options.engine)
        let base = start?.lsn ?? 0
        var report = RecoveryReport(
            engine: engine, lastLSN: base, chain: start?.chain ?? Chain.genesis,
            snapshot: start.map { ($0.lsn, $0.path) }, rejectedSnapshots: rejected)
        report.startedBeforeSettlements = startedBeforeSettlements

        // The segments to read: from the last one that starts at or before base + 1.
        var first = 0
        for (index, segment) in segments.enumerated() where segment.firstLSN <= base + 1 { first = index }
        if let segment = segments.first, start == nil, segment.firstLSN != 1 {
            // A replay asked (--to-lsn, --from-start) for a state before every snapshot it may use: when a valid one
            // the journal goes on from exists, the journal before it was removed (retention) and nothing is damaged.
            let tried = Set(rejected.map(\.path) + disagreeing.map(\.path))
            if let oldest = oldestSnapshot(directory, skipping: tried, options) {
                throw StateNotRetained(
                    lsn: options.useSnapshots ? options.toLSN : nil, journalStart: segment.firstLSN,
                    oldestSnapshotLSN: oldest.lsn, oldestSnapshotPath: oldest.path)
            }
            throw CorruptionError(
                file: segment.path, offset: 0,
                reason: "the journal starts at lsn \(segment.firstLSN) and no valid snapshot covers what came before")
        }
        // Until the journal is read to the snapshot's lsn, whether it agrees with the snapshot is open.
        var pending = start.map { SnapshotCheck(lsn: $0.lsn, chain: $0.chain) }
        // The last lsn the journal holds, as far as it was read, and where and why its reading stopped early.
        var journalEnd: UInt64 = 0
        var stop: (file: String, offset: Int, reason: String)?
        // A torn tail to cut once recovery knows it is one (its file, offset, whether the whole file goes, why).
        var torn: (file: String, offset: Int, removesFile: Bool, reason: String)?
        var expectedLSN: UInt64? = nil
        var chain: [UInt8]? = nil
        var events: [Event] = []
        events.reserveCapacity(64)
        // Recovery throws the events away (unless an observer reads them): the rules need not build them.
        engine.discardsEvents = options.observe == nil
        defer { engine.discardsEvents = false }
        // A plain replay (one without an observer or the outcomes' check) looks no id up (the journal says which
        // were new; duplicates and conflicts changed nothing), so it keeps no idempotency index while it replays and
        // builds it once at the end, from the ids still remembered: no insert or removal of a random slot per
        // command. A record without an outcome (version 1) looks its id up, which builds the index there.
        let plain = options.observe == nil && !options.checkOutcomes
        if plain { engine.dropRequestIndex() }
        // Handles on the listings commands apply to, for a plain replay: no lookup by id per command, and each
        // listing prefetched `listingLookahead` commands ahead.
        var listings = ReplayListings()
        var index = first
        var nextProgress = monotonicNanos() + options.progressIntervalNanos
        reading: while index < segments.count {
            let segment = segments[index]
            let isLast = index == segments.count - 1
            let bytes = try Files.readAll(segment.path)
            var reader: SegmentReader
            do {
                reader = try SegmentReader(bytes: bytes)
                if let expected = expectedLSN, reader.header.firstLSN != expected {
                    throw SegmentProblem(
                        kind: .corrupt, offset: 0,
                        reason: "segment starts at lsn \(reader.header.firstLSN) where \(expected) was expected")
                }
                if let chain, reader.header.previousChain != chain {
                    throw SegmentProblem(
                        kind: .corrupt, offset: 0, reason: "segment header does not chain to the one before")
                }
                if let check = pending, reader.header.firstLSN > check.lsn + 1 {
                    throw SegmentProblem(
                        kind: .corrupt, offset: 0,
                        reason:
                            "segment starts at lsn \(reader.header.firstLSN), but the journal after snapshot \(start?.path ?? "") must go on at lsn \(check.lsn + 1)"
                    )
                }
            } catch let problem as SegmentProblem {
                if isLast && problem.kind == .truncated {
                    // A crash while creating the segment: nothing in it was acknowledged.
                    if let check = pending, segment.firstLSN == check.lsn + 1 {
                        // Made right after the snapshot's lsn: the segment before it (if still there) ends there.
                        if case .disagrees(let reason)? = verdict(of: check, in: Array(segments[..<index])) {
                            throw SnapshotDisagreement(path: start!.path, reason: reason)
                        }
                        pending = nil
                        journalEnd = check.lsn
                    }
                    torn = (segment.path, 0, true, problem.reason)
                    stop = (segment.path, 0, "torn tail: \(problem.reason)")
                    break reading
                }
                if options.truncateAfterCorruption {
                    stop = (segment.path, problem.offset, problem.reason)
                    if pending == nil {
                        try cut(
                            at: problem.offset, in: segment.path, after: Array(segments[index...]), report: &report,
                            options, problem.reason)
                    }
                    break reading
                }
                throw CorruptionError(file: segment.path, offset: problem.offset, reason: problem.reason)
            }
            journalEnd = reader.header.firstLSN - 1
            // Journal bytes count the header and the frames read, not the space reserved after them.
            report.bytesRead += reader.offset
            if let check = pending, let verdict = check.judge(reader.header, in: segment.path) {
                if case .disagrees(let reason) = verdict {
                    throw SnapshotDisagreement(path: start!.path, reason: reason)
                }
                pending = nil
            }
            var validSize = reader.offset
            // The batches are decoded on a thread of their own, a few ahead of their apply here; `reader` keeps
            // what does not change as they are read (the header, the bytes).
            // The records up to the snapshot's lsn are only read past: no digest is computed for them.
            let readAhead = SegmentReadAhead(reader, appliedAfter: base)
            defer { readAhead.finish() }
            while true {
                let next: SegmentReadAhead.Batch?
                do {
                    next = try readAhead.next()
                } catch let problem {
                    let isTorn =
                        isLast && (problem.kind == .truncated || !reader.validFrameExists(after: problem.offset))
                    if isTorn {
                        torn = (segment.path, problem.offset, false, problem.reason)
                        stop = (segment.path, problem.offset, "torn tail: \(problem.reason)")
                        report.activeSegment = (segment.path, reader.header.firstLSN, problem.offset)
                        break reading
                    }
                    if options.truncateAfterCorruption {
                        stop = (segment.path, problem.offset, problem.reason)
                        if pending == nil {
                            try cut(
                                at: problem.offset, in: segment.path, after: Array(segments[(index + 1)...]),
                                report: &report, options, problem.reason)
                            report.activeSegment = (segment.path, reader.header.firstLSN, problem.offset)
                        }
                        break reading
                    }
                    throw CorruptionError(file: segment.path, offset: problem.offset, reason: problem.reason)
                }
                guard let (batch, digests, listingHashes) = next else { break }
                validSize = batch.offset + batch.length
                report.bytesRead += batch.length
                journalEnd = batch.records[batch.records.count - 1].lsn
                if let check = pending, let verdict = check.judge(batch, in: segment.path) {
                    if case .disagrees(let reason) = verdict {
                        throw SnapshotDisagreement(path: start!.path, reason: reason)
                    }
                    pending = nil
                }
                // The records are read in place (`batch.records[position]`), not copied into a local: a copy of a
                // command (its strings, its enum's cases) and its destruction were a share of the applying thread.
                for position in batch.records.indices {
                    let lsn = batch.records[position].lsn
                    guard lsn > base else { continue }
                    if let limit = options.toLSN, lsn > limit { break reading }
                    if let observe = options.observe {
                        observed(batch.records[position], to: engine, observe)
                    } else if options.checkOutcomes {
                        checked(
                            batch.records[position], to: engine, events: &events, report: &report,
                            digest: digests[position])
                    } else {
                        applyPlain(
                            batch.records, at: position, digests: digests, listingHashes: listingHashes,
                            listings: &listings, to: engine, events: &events)
                    }
                    report.lastLSN = lsn
                    report.replayedRecords += 1
                }
                if let progress = options.progress, monotonicNanos() >= nextProgress {
                    progress(report.replayedRecords, segment.path)
                    nextProgress = monotonicNanos() + options.progressIntervalNanos
                }
                report.chain = batch.chain
                // Stop at the limit without reading the next frame, which a running journal may be writing; not
                // before the batch that reaches it (the batches before a snapshot's lsn are only read past).
                if let limit = options.toLSN, journalEnd >= limit { break reading }
            }
            reader = readAhead.finish()
            expectedLSN = reader.nextLSN
            chain = reader.chain
            report.activeSegment = (segment.path, reader.header.firstLSN, validSize)
            index += 1
        }
        if let check = pending, let snapshot = start, !segments.isEmpty {
            // The journal ends (torn, damaged or with segments missing) before the snapshot's lsn: the entries up to
            // it were durable (a snapshot is only taken of durable entries), so this is lost journal, not a torn tail.
            let end =
                stop ?? (
                    report.activeSegment?.path ?? segments[segments.count - 1].path,
                    report.activeSegment?.size ?? 0, "the journal ends here"
                )
            let lost =
                "the journal ends at lsn \(journalEnd) (\(end.reason)), but snapshot \(snapshot.path) holds the state at lsn \(check.lsn): lsns \(journalEnd + 1)...\(check.lsn) were durable and are missing from the journal (a segment lost or damaged, not a torn tail)"
            guard options.truncateAfterCorruption else {
                throw CorruptionError(
                    file: end.file, offset: end.offset, reason: lost,
                    remedy: lostJournalRemedy(directory, snapshot: snapshot.path, lsn: check.lsn))
            }
            // Start from the snapshot with a new journal at its lsn + 1: the segments (every entry in them is at or
            // before the snapshot's lsn, or past a gap) leave the journal, so no lsn gap stays in it.
            let next = directory.journal + "/" + DataDirectory.segmentName(firstLSN: check.lsn + 1)
            let header = SegmentHeader(firstLSN: check.lsn + 1, previousChain: check.chain).encoded()
            report.activeSegment = nil
            if options.repair {
                try Files.makeDirectory(directory.setAside)
                for segment in directory.journalSegments() {
                    let name = String(segment.path.split(separator: "/").last ?? "")
                    // A name left there by an earlier use of this way out is kept: this one gets a suffix.
                    var target = directory.setAside + "/" + name
                    var copy = 0
                    while Files.exists(target) {
                        copy += 1
                        target = directory.setAside + "/" + name + ".\(copy)"
                    }
                    try Files.move(segment.path, to: target, directory: directory.setAside)
                    report.setAsideSegments.append(segment.path)
                }
                // The journal's next segment, made now (its header chained to the snapshot), so that the directory
                // reads as a journal that goes on from the snapshot even when nothing is written after this start.
                try Files.writeAtomically(header, to: next, directory: directory.journal)
                report.activeSegment = (next, check.lsn + 1, header.count)
            }
            report.truncation = (
                end.file, end.offset,
                "corruption handled on request: \(lost); the journal starts again at lsn \(check.lsn + 1) from that snapshot, its segments moved to \(directory.setAside)"
            )
            report.lastLSN = check.lsn
            report.chain = check.chain
            report.replayedRecords = 0
        } else if let torn {
            // Damage after the snapshot's lsn at the end of the last segment: what a crash during a write leaves,
            // nothing in it acknowledged.
            if options.repair {
                if torn.removesFile {
                    try Files.remove(torn.file)
                } else {
                    try Files.truncate(torn.file, to: torn.offset)
                }
            }
            report.truncation = (torn.file, torn.offset, torn.removesFile ? torn.reason : "torn tail: \(torn.reason)")
        }
        if plain && options.buildsRequestIndex { engine.rebuildRequestIndex() }
        return report
    }

    /// The engine restored from the snapshot `candidate`, and its file, when recovery may start from it with the
    /// journal `segments`: it decodes, is named for its lsn, the journal goes on from it, and it restores.
    ///
    /// - Throws: why recovery may not start from it.
    private static func restored(
        _ candidate: (lsn: UInt64, path: String), journal segments: [(firstLSN: UInt64, path: String)],
        _ options: RecoveryOptions
    ) throws -> (engine: Engine, file: SnapshotFile) {
        let file = try SnapshotFile.decode(try Files.readAll(candidate.path))
        // A format 1 snapshot's sales have no settlements. While the journal still reaches back to lsn 1, a replay
        // makes them; once it does not, the snapshot is the only way up (an upgrade of a data directory whose old
        // segments are gone), and settlements start with the sales after it.
        if file.isBeforeSettlements, (segments.first?.firstLSN ?? 1) <= 1 {
            throw SkippedSnapshot(
                description:
                    "it has the snapshot format \(file.version) of a gavel from before settlements, whose sales have none; recovering from the journal instead"
            )
        }
        guard file.lsn == candidate.lsn else {
            throw SegmentProblem(kind: .corrupt, offset: 0, reason: "names lsn \(candidate.lsn) but holds \(file.lsn)")
        }
        if let first = segments.first, first.firstLSN > file.lsn + 1 {
            throw SegmentProblem(
                kind: .corrupt, offset: 0,
                reason: "the journal starts at lsn \(first.firstLSN), after this snapshot's lsn \(file.lsn)")
        }
        return (try Engine.restore(from: file.state, defaults: options.engine), file)
    }

    /// The oldest snapshot, of those not `skipping`, a recovery of `directory` could start from (``restored(_:journal:_:)``)
    /// and that the journal agrees with. `nil` when there is none: then nothing covers what came before the journal.
    private static func oldestSnapshot(
        _ directory: DataDirectory, skipping: Set<String>, _ options: RecoveryOptions
    ) -> (lsn: UInt64, path: String)? {
        let segments = directory.segments()
        for candidate in directory.snapshotFiles().reversed() where !skipping.contains(candidate.path) {
            guard let (_, file) = try? restored(candidate, journal: segments, options) else { continue }
            if case .disagrees? = verdict(of: SnapshotCheck(lsn: file.lsn, chain: file.chain), in: segments) {
                continue
            }
            return (file.lsn, candidate.path)
        }
        return nil
    }

    private static func cut(
        at offset: Int, in path: String, after later: [(firstLSN: UInt64, path: String)], report: inout RecoveryReport,
        _ options: RecoveryOptions, _ reason: String
    ) throws {
        if options.repair {
            try Files.truncate(path, to: offset)
            for segment in later where segment.path != path {
                try Files.remove(segment.path)
                report.removedSegments.append(segment.path)
            }
        }
        report.truncation = (path, offset, "corruption truncated on request: \(reason)")
    }

    /// Applies `record` looking its id up whatever its outcome, and notes in `report` an outcome that differs.
    private static func checked(
        _ record: JournalRecord, to engine: Engine, events: inout [Event], report: inout RecoveryReport,
        digest: CommandDigest?
    ) {
        let result = step(record, to: engine, events: &events, trustingOutcome: false, digest: digest).result
        events.removeAll(keepingCapacity: true)
        guard case .command(let lsn, _, _, _, let recorded?) = record, let found = result?.requestOutcome else {
            return
        }
        report.outcomesChecked += 1
        guard found != recorded else { return }
        report.outcomeMismatchCount += 1
        if report.outcomeMismatches.count < 10 { report.outcomeMismatches.append((lsn, recorded, found)) }
    }

    /// Applies `record` as ``apply(_:to:events:)`` does, and tells `observe` what it caused.
    private static func observed(
        _ record: JournalRecord, to engine: Engine,
        _ observe: (JournalRecord, [Event], CommandResult?, [Event]) -> Void
    ) {
        var events: [Event] = []
        let (timers, result) = step(record, to: engine, events: &events)
        observe(record, Array(events[..<timers]), result, Array(events[timers...]))
    }

    /// Applies one journal record to `engine` exactly as the writer did. A command the journal says was a duplicate
    /// or a request-id conflict changed nothing but the clock, so it is not looked up: an engine without its
    /// idempotency table (the checkpointer's shadow) replays the journal as one with it does. `digest`, when given,
    /// is the command's, computed earlier (``SegmentReadAhead`` computes it).
    public static func apply(
        _ record: JournalRecord, to engine: Engine, events: inout [Event], digest: CommandDigest? = nil
    ) {
        if case .command(_, let at, _, _, let outcome?) = record, outcome != .applied {
            engine.advance(to: at, events: &events)
        } else {
            _ = step(record, to: engine, events: &events, digest: digest)
        }
        events.removeAll(keepingCapacity: true)
    }

    /// How many commands ahead of its apply a plain replay prefetches a command's listing (and, as many again
    /// before that, its slot in ``ReplayListings``): enough for a cache miss to be over when the command comes.
    static let listingLookahead = 4

    /// Applies `records[position]` as a replay that reads no outcome and keeps no events does (recovery's plain
    /// replay, the checkpointer's shadow): each command's listing found in `listings` by the hash its batch's
    /// reading computed (`listingHashes`, with the `digests`, one of each per record, as
    /// ``SegmentReadAhead/digestsAndListingHashes(of:after:into:_:)`` gives them), not by its `String` id, and the slot
    /// and then the listing of the commands a few ahead loaded into the cache meanwhile.
    @inline(__always)
    static func applyPlain(
        _ records: [JournalRecord], at position: Int, digests: [CommandDigest?], listingHashes: [UInt64],
        listings: inout ReplayListings, to engine: Engine, events: inout [Event]
    ) {
        let ahead = position + listingLookahead
        if ahead + listingLookahead < listingHashes.count {
            listings.prefetchSlot(listingHashes[ahead + listingLookahead])
        }
        if ahead < listingHashes.count { listings.prefetchListing(listingHashes[ahead]) }
        if let digest = digests[position] {
            apply(records[position], to: engine, events: &events, digest: digest) { id in
                listings.handle(for: id, hash: listingHashes[position], in: engine)
            }
        } else {
            apply(records[position], to: engine, events: &events)
        }
    }

    /// Applies `record` as ``apply(_:to:events:digest:)`` does, with its command's `digest`; `listing` gives the
    /// handle on a command's listing (by its id), which the engine uses when it is current and the command's.
    @inline(__always)
    static func apply(
        _ record: JournalRecord, to engine: Engine, events: inout [Event], digest: CommandDigest,
        listing: (String) -> ListingHandle?
    ) {
        switch record {
        case .command(_, let at, _, let command, let outcome):
            engine.advance(to: at, events: &events)
            if outcome == .applied {
                _ = engine.apply(new: command, digest: digest, listing: listing(command.listing), events: &events)
            } else if outcome == nil {
                _ = engine.apply(command, digest: digest, listing: listing(command.listing), events: &events)
            }
        case .tick(_, let at):
            engine.advance(to: at, events: &events)
        case .trailer:
            break
        }
        events.removeAll(keepingCapacity: true)
    }

    /// Applies `record`, appending to `events` what the timers it moved the clock past fired (the first `timers`
    /// of them) and then what its command caused; `result` is the command's.
    /// With `trustingOutcome`, a command whose record says its id was new is applied without looking the id up.
    /// `digest` is the command's when computed earlier.
    private static func step(
        _ record: JournalRecord, to engine: Engine, events: inout [Event], trustingOutcome: Bool = true,
        digest: CommandDigest? = nil
    ) -> (timers: Int, result: CommandResult?) {
        switch record {
        case .command(_, let at, _, let command, let outcome):
            engine.advance(to: at, events: &events)
            let timers = events.count
            let digest = digest ?? CommandDigest(command)
            // The writer found the id new: no need to look it up again (one probe of the table less a command).
            if trustingOutcome, outcome == .applied {
                return (timers, engine.apply(new: command, digest: digest, events: &events))
            }
            return (timers, engine.apply(command, digest: digest, listing: nil, events: &events))
        case .tick(_, let at):
            engine.advance(to: at, events: &events)
            return (events.count, nil)
        case .trailer:
            return (events.count, nil)
        }
    }
}
