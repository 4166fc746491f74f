import GavelCore
import GavelEngine

/// Why a replay of the journal cannot start at the lsn asked for.
public enum ReplayStartError: Error, Sendable, CustomStringConvertible {
    /// The journal and the snapshots no longer reach back to that lsn: `oldest` is the oldest lsn a replay can
    /// start at.
    case notRetained(oldest: UInt64)
    /// A file that could not be read or is damaged.
    case unreadable(String)

    public var description: String {
        switch self {
        case .notRetained(let oldest): "the journal is retained from lsn \(oldest) only"
        case .unreadable(let reason): reason
        }
    }
}

/// Replays the journal of a data directory from a given lsn, producing each entry's events as the writer did,
/// reading one segment at a time: the events of a durable feed's catch-up.
///
/// It starts from the newest snapshot before the first lsn wanted (or an empty engine when the journal still
/// begins at lsn 1), replays silently up to it, and then hands out entries one at a time. It reads only complete
/// frames up to the limit it is given, so it may follow a journal that is being appended to (the live segment) up
/// to its written end, given the journal's ``JournalWrittenEnd``. Not thread-safe: one owner.
///
/// With `requestsFromJournal` it takes how the idempotency table answered each command from the journal
/// (``RequestOutcome``, in records of version 2) instead of keeping the table itself, which was about 45 % of a
/// feed's replay: the events are the same, a duplicate's result is not (``Engine/apply(journaled:outcome:events:)``).
/// Records of version 1 say nothing, so it keeps the table up to the last of them.
public final class JournalReplay {
    private let engine: Engine
    private let requestsFromJournal: Bool
    /// The last lsn applied.
    public private(set) var lastLSN: UInt64
    /// The first lsn whose entry is handed out; the ones before it are applied silently.
    public let firstLSN: UInt64
    /// The journal batch that holds ``lastLSN`` (its last lsn and the chain there), or the snapshot the replay
    /// started from while it has read no batch after it (a snapshot ends a batch and holds the chain there); `nil`
    /// at lsn 0. Right after `init` it is the batch that holds `from - 1`: what a feed checks a consumer's
    /// `expect` against.
    public private(set) var batchMark: ChainMark?
    private var journal: JournalCursor
    private var records: [JournalRecord] = []
    private var recordIndex = 0
    private var events: [Event] = []

    /// The oldest lsn a replay of `directory` can start at: 1 while the journal begins there (or is empty),
    /// else one past the oldest snapshot the journal continues from.
    public static func oldestStart(of directory: DataDirectory) -> UInt64 {
        let segments = directory.segments()
        guard let first = segments.first, first.firstLSN > 1 else { return 1 }
        let usable = directory.snapshotFiles().filter { $0.lsn + 1 >= first.firstLSN }
        guard let oldest = usable.last else { return first.firstLSN }
        return oldest.lsn + 1
    }

    /// Positions a replay so that the next entry it hands out is `from`.
    ///
    /// - Parameters:
    ///   - directory: the data directory (and its archive, when it has one).
    ///   - from: the first lsn wanted, at least 1.
    ///   - engine: the rules for an engine that starts empty (a snapshot carries its own).
    ///   - window: the bytes of a segment read at once (more for a frame that does not fit).
    ///   - requestsFromJournal: take each command's ``RequestOutcome`` from the journal where it says it, and
    ///     keep no idempotency table from there on: for a replay that wants the events, not the results.
    ///   - writtenEnd: how far the journal appending to `directory` has written, when one is running: the segment
    ///     it appends to is read no further (what lies past it is not written yet, not damage).
    /// - Throws: ``ReplayStartError``.
    public init(
        directory: DataDirectory, from: UInt64, engine configuration: EngineConfiguration, window: Int = 4 << 20,
        requestsFromJournal: Bool = false, writtenEnd: JournalWrittenEnd? = nil
    )
        throws(ReplayStartError)
    {
        self.requestsFromJournal = requestsFromJournal
        journal = JournalCursor(
            directory: directory, window: window, writtenEnd: writtenEnd,
            identifiers: IdentifierCache())
        self.firstLSN = max(1, from)
        let segments = directory.segments()
        var start: (Engine, ChainMark)?
        if let first = segments.first, first.firstLSN > 1 {
            for candidate in directory.snapshotFiles()
            where candidate.lsn < firstLSN && candidate.lsn + 1 >= first.firstLSN {
                guard let bytes = try? Files.readAll(candidate.path), let file = try? SnapshotFile.decode(bytes),
                    file.lsn == candidate.lsn,
                    let engine = try? Engine.restore(from: file.state, defaults: configuration)
                else { continue }
                start = (engine, ChainMark(lsn: file.lsn, chain: file.chain))
                break
            }
            guard start != nil else { throw .notRetained(oldest: Self.oldestStart(of: directory)) }
        }
        engine = start?.0 ?? Engine(configuration: configuration)
        lastLSN = start?.1.lsn ?? 0
        batchMark = start?.1
        events.reserveCapacity(64)
        while lastLSN + 1 < firstLSN {
            guard let record = try nextRecord(upTo: firstLSN - 1) else {
                throw .unreadable("the journal ends at lsn \(lastLSN), before lsn \(firstLSN - 1)")
            }
            step(record, events: &events)
            events.removeAll(keepingCapacity: true)
        }
    }

    /// Applies the next entry, up to `limit`, and hands it to `body` with its events (those of the timers that
    /// moving the clock to its time fired, then its command's); returns `false`, calling nothing, once the entry
    /// at `limit` has been applied.
    ///
    /// - Throws: ``ReplayStartError/unreadable(_:)`` when the journal ends before `limit` or is damaged.
    public func next(
        upTo limit: UInt64,
        _ body: (_ lsn: UInt64, _ at: Millis, _ command: Command?, _ result: CommandResult?, _ events: [Event]) -> Void
    ) throws(ReplayStartError) -> Bool {
        events.removeAll(keepingCapacity: true)
        var entry: (lsn: UInt64, at: Millis, command: Command?, result: CommandResult?)?
        let more = try next(upTo: limit, appendingTo: &events) { lsn, at, command, result, _ in
            entry = (lsn, at, command, result)
        }
        if let entry { body(entry.lsn, entry.at, entry.command, entry.result, events) }
        return more
    }

    /// Applies the next entry as ``next(upTo:_:)`` does, appending its events to `events` (no copy: the engine
    /// writes them there) and handing `body` the range they take.
    public func next(
        upTo limit: UInt64, appendingTo events: inout [Event],
        _ body: (_ lsn: UInt64, _ at: Millis, _ command: Command?, _ result: CommandResult?, _ events: Range<Int>)
            -> Void
    ) throws(ReplayStartError) -> Bool {
        guard lastLSN < limit else { return false }
        guard let record = try nextRecord(upTo: limit) else {
            throw .unreadable("the journal ends at lsn \(lastLSN), before lsn \(limit)")
        }
        let first = events.count
        let result = step(record, events: &events)
        switch record {
        case .command(let lsn, let at, _, let command, _): body(lsn, at, command, result, first..<events.count)
        case .tick(let lsn, let at): body(lsn, at, nil, nil, first..<events.count)
        case .trailer: break
        }
        return true
    }

    @discardableResult
    private func step(_ record: JournalRecord, events: inout [Event]) -> CommandResult? {
        switch record {
        case .command(let lsn, let at, _, let command, let outcome):
            engine.advance(to: at, events: &events)
            lastLSN = lsn
            if requestsFromJournal, let outcome {
                return engine.apply(journaled: command, outcome: outcome, events: &events)
            }
            return engine.apply(command, events: &events)
        case .tick(let lsn, let at):
            engine.advance(to: at, events: &events)
            lastLSN = lsn
            return nil
        case .trailer:
            return nil
        }
    }

    /// The record after ``lastLSN``, reading frames (and segments) as needed but never a frame after the one that
    /// holds `limit`; `nil` when the journal holds nothing more yet.
    private func nextRecord(upTo limit: UInt64) throws(ReplayStartError) -> JournalRecord? {
        while true {
            while recordIndex < records.count {
                let record = records[recordIndex]
                recordIndex += 1
                if record.lsn > lastLSN { return record }
            }
            guard lastLSN < limit else { return nil }
            records.removeAll(keepingCapacity: true)
            recordIndex = 0
            guard let batch = try journal.next(wanted: lastLSN + 1) else { return nil }
            records = batch.records
            if let last = batch.records.last { batchMark = ChainMark(lsn: last.lsn, chain: batch.chain) }
        }
    }
}
