import GavelCore

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
/// to its durable end. Not thread-safe: one owner.
public final class JournalReplay {
    private let directory: DataDirectory
    private let engine: Engine
    /// The last lsn applied.
    public private(set) var lastLSN: UInt64
    /// The first lsn whose entry is handed out; the ones before it are applied silently.
    public let firstLSN: UInt64
    private var reader: SegmentReader?
    private var segmentPath = ""
    /// The bytes of a segment held at once: a segment (64 MiB by default) is read a window at a time.
    private let window: Int
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
    /// - Throws: ``ReplayStartError``.
    ///   - window: the bytes of a segment read at once (more for a frame that does not fit).
    public init(
        directory: DataDirectory, from: UInt64, engine configuration: EngineConfiguration, window: Int = 4 << 20
    )
        throws(ReplayStartError)
    {
        self.directory = directory
        self.window = max(64, window)
        self.firstLSN = max(1, from)
        let segments = directory.segments()
        var start: (Engine, UInt64)?
        if let first = segments.first, first.firstLSN > 1 {
            for candidate in directory.snapshotFiles()
            where candidate.lsn < firstLSN && candidate.lsn + 1 >= first.firstLSN {
                guard let bytes = try? Files.readAll(candidate.path), let file = try? SnapshotFile.decode(bytes),
                    file.lsn == candidate.lsn,
                    let engine = try? Engine.restore(from: file.state, defaults: configuration)
                else { continue }
                start = (engine, file.lsn)
                break
            }
            guard start != nil else { throw .notRetained(oldest: Self.oldestStart(of: directory)) }
        }
        engine = start?.0 ?? Engine(configuration: configuration)
        lastLSN = start?.1 ?? 0
        events.reserveCapacity(64)
        while lastLSN + 1 < firstLSN {
            guard let record = try nextRecord(upTo: firstLSN - 1) else {
                throw .unreadable("the journal ends at lsn \(lastLSN), before lsn \(firstLSN - 1)")
            }
            step(record)
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
        guard lastLSN < limit else { return false }
        guard let record = try nextRecord(upTo: limit) else {
            throw .unreadable("the journal ends at lsn \(lastLSN), before lsn \(limit)")
        }
        events.removeAll(keepingCapacity: true)
        let result = step(record)
        switch record {
        case .command(let lsn, let at, _, let command): body(lsn, at, command, result, events)
        case .tick(let lsn, let at): body(lsn, at, nil, nil, events)
        case .trailer: break
        }
        return true
    }

    @discardableResult
    private func step(_ record: JournalRecord) -> CommandResult? {
        switch record {
        case .command(let lsn, let at, _, let command):
            engine.advance(to: at, events: &events)
            lastLSN = lsn
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
            if reader != nil {
                do {
                    if let batch = try reader?.next() {
                        records = batch.records
                        continue
                    }
                } catch {
                    guard error.kind == .truncated, try readAgain(at: error.offset) else {
                        throw .unreadable("journal segment \(segmentPath): \(error)")
                    }
                    continue
                }
            }
            guard try openSegment() else { return nil }
        }
    }

    /// The window ended inside the frame at `offset`: reads again from that frame (with twice the window when the
    /// frame began the window); `false` when the segment itself ends there (a damaged or torn frame).
    private func readAgain(at offset: Int) throws(ReplayStartError) -> Bool {
        guard let current = reader, offset >= current.base, (Files.size(segmentPath) ?? 0) > current.end else {
            return false
        }
        let span = offset == current.base ? 2 * (current.end - current.base) : window
        reader = try reread(current, at: offset, limit: max(window, span))
        return true
    }

    /// The current segment read again from `offset`, a frame start where `current` stands, `limit` bytes of it.
    private func reread(_ current: SegmentReader, at offset: Int, limit: Int) throws(ReplayStartError)
        -> SegmentReader
    {
        do {
            return try SegmentReader.resuming(
                segmentPath, at: offset, chain: current.chain, nextLSN: current.nextLSN, limit: limit)
        } catch {
            throw .unreadable("journal segment \(segmentPath): \(error)")
        }
    }

    /// Opens the segment that holds lsn ``lastLSN`` + 1 (or reads the current one again, grown since), positioned
    /// after ``lastLSN``; `false` when no segment holds more.
    private func openSegment() throws(ReplayStartError) -> Bool {
        let wanted = lastLSN + 1
        guard let segment = directory.segments().last(where: { $0.firstLSN <= wanted }) else {
            throw .notRetained(oldest: Self.oldestStart(of: directory))
        }
        if let current = reader, segment.path == segmentPath {
            // The segment being appended to, read again: only what was appended since.
            guard (Files.size(segment.path) ?? 0) > current.offset else { return false }
            reader = try reread(current, at: current.offset, limit: window)
            return true
        }
        let next: SegmentReader
        do {
            next = try SegmentReader.opening(segment.path, limit: window)
        } catch {
            throw .unreadable("journal segment \(segment.path): \(error)")
        }
        if let reader, next.header.firstLSN == wanted, next.header.previousChain != reader.chain {
            throw .unreadable("journal segment \(segment.path) does not chain to the one before")
        }
        reader = next
        segmentPath = segment.path
        return true
    }
}
