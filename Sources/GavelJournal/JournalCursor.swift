import GavelCore

/// Reads the journal's batches in order across its segments, a window of a segment at a time, and follows the
/// segment being appended to: what a replay that goes on for a long time (a feed's catch-up, the checkpointer's
/// shadow) reads the journal with. A segment (64 MiB by default) is never read whole: a window ends where it ends,
/// and the frame it cut is read again from its start in the next window (a window twice as large when one frame
/// is larger than the window).
///
/// Given the running journal's ``JournalWrittenEnd``, it reads the segment being appended to only up to the end of
/// its last whole frame, and takes what lies past it as not written yet (read again later): the reserved zeros, or
/// a frame being written, which a read can see torn (a page still zero before a page already written) and which
/// would otherwise look like damage. Without one (a journal nobody appends to) it reads every segment to its end.
struct JournalCursor {
    let directory: DataDirectory
    /// The bytes of a segment held at once (more for a frame that does not fit).
    let window: Int
    /// How far the running journal has written, when one is appending to the directory.
    let writtenEnd: JournalWrittenEnd?
    private var reader: SegmentReader?
    /// Where the records' listing and user names come from (``SegmentReader/interning(_:)``), when set; the cursor
    /// is read on one thread, and so is the cache.
    let identifiers: IdentifierCache?
    /// The path of the segment `reader` reads.
    private(set) var segmentPath = ""

    init(
        directory: DataDirectory, window: Int = 4 << 20, writtenEnd: JournalWrittenEnd? = nil,
        identifiers: IdentifierCache? = nil
    ) {
        self.directory = directory
        self.window = max(64, window)
        self.writtenEnd = writtenEnd
        self.identifiers = identifiers
    }

    /// `reader` taking its names from ``identifiers``, when set.
    private func interning(_ reader: SegmentReader) -> SegmentReader {
        identifiers.map { reader.interning($0) } ?? reader
    }

    /// The next batch of the journal, or `nil` when it holds nothing more yet. `wanted` is the lsn after the last
    /// one applied: it picks the segment to open when the one being read ends. `chain` is the journal's chain
    /// before `wanted`, when known, to check a segment opened first against.
    mutating func next(wanted: UInt64, chain: [UInt8]? = nil) throws(ReplayStartError) -> SegmentBatch? {
        while true {
            if reader != nil {
                do {
                    if let batch = try reader?.next() { return batch }
                } catch {
                    guard error.kind == .truncated, try readAgain(at: error.offset) else {
                        throw .unreadable("journal segment \(segmentPath): \(error)")
                    }
                    continue
                }
            }
            guard try openSegment(wanted: wanted, chain: chain) else { return nil }
        }
    }

    /// The window ended inside the frame at `offset`: reads again from that frame (with twice the window when the
    /// frame began the window); `false` when the segment itself (or what the journal has written of it) ends there
    /// (a damaged or torn frame).
    private mutating func readAgain(at offset: Int) throws(ReplayStartError) -> Bool {
        relocateIfMoved()
        guard let current = reader, offset >= current.base,
            readable(segmentPath, firstLSN: current.header.firstLSN) > current.end
        else {
            return false
        }
        let span = offset == current.base ? 2 * (current.end - current.base) : window
        reader = interning(try reread(current, at: offset, limit: max(window, span)))
        return true
    }

    /// Follows the segment being read to the archive when retention moved it there since it was opened
    /// (`--archive-dir`): the same file under another folder, read on from where the reader stands.
    private mutating func relocateIfMoved() {
        guard let current = reader, directory.archive != nil, Files.size(segmentPath) == nil,
            let moved = directory.segments().first(where: { $0.firstLSN == current.header.firstLSN })
        else { return }
        segmentPath = moved.path
    }

    /// The bytes of the segment at `path` (whose first lsn is `firstLSN`) there are to read: all of them, or, of
    /// the running journal's segments, only what it has written whole (nothing yet of one it is still creating).
    private func readable(_ path: String, firstLSN: UInt64) -> Int {
        let size = Files.size(path) ?? 0
        guard let writtenEnd else { return size }
        return writtenEnd.readable(segmentFirstLSN: firstLSN, size: size)
    }

    /// The current segment read again from `offset`, a frame start where `current` stands, `limit` bytes of it (no
    /// further than what there is to read).
    private func reread(_ current: SegmentReader, at offset: Int, limit: Int) throws(ReplayStartError)
        -> SegmentReader
    {
        let available = readable(segmentPath, firstLSN: current.header.firstLSN)
        do {
            return try SegmentReader.resuming(
                segmentPath, at: offset, chain: current.chain, nextLSN: current.nextLSN,
                limit: max(0, min(limit, available - offset)))
        } catch {
            throw .unreadable("journal segment \(segmentPath): \(error)")
        }
    }

    /// Opens the segment that holds lsn `wanted` (or reads the current one again, grown since or past the window's
    /// end); `false` when no segment holds more.
    private mutating func openSegment(wanted: UInt64, chain: [UInt8]?) throws(ReplayStartError) -> Bool {
        guard let segment = directory.segments().last(where: { $0.firstLSN <= wanted }) else {
            throw .notRetained(oldest: JournalReplay.oldestStart(of: directory))
        }
        // The same segment (by its first lsn: retention may have moved it to the archive since it was opened).
        if let current = reader, segment.firstLSN == current.header.firstLSN {
            segmentPath = segment.path
            // The same segment, read again: only what comes after what was read. Where the reader stopped at the
            // segment's reserved space, a small read first: most often the journal has written nothing there yet.
            guard readable(segment.path, firstLSN: segment.firstLSN) > current.offset else { return false }
            let again = try reread(
                current, at: current.offset, limit: current.reachedUnwrittenSpace ? min(window, 64 << 10) : window)
            reader = interning(again)
            return !again.nextFrameUnwritten
        }
        let available = readable(segment.path, firstLSN: segment.firstLSN)
        // A segment the running journal is still creating: nothing in it to read yet, not even all of its header.
        if writtenEnd != nil && available < SegmentHeader.size { return false }
        let next: SegmentReader
        do {
            next = try SegmentReader.opening(
                segment.path, limit: max(0, min(window, available - SegmentHeader.size)))
        } catch {
            throw .unreadable("journal segment \(segment.path): \(error)")
        }
        if let before = reader?.chain ?? chain, next.header.firstLSN == wanted, next.header.previousChain != before {
            throw .unreadable("journal segment \(segment.path) does not chain to the one before")
        }
        reader = interning(next)
        segmentPath = segment.path
        return true
    }
}
