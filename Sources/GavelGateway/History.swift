import NIOCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The recent frames of many histories (every listing's public events, or every user's notices), back to back in
/// one ring of bytes of a fixed size, newest last: a frame is kept until the frames written after it, of any
/// history, fill the ring. Each record is the position of its history's previous record, the frame's length and
/// the frame (``FrameHistory`` keeps only where its newest record is), and no record wraps around the end (the
/// bytes left there are skipped).
///
/// One ring rather than one per history: an event's frame is written where the last one ended, in memory the cache
/// still holds, where a ring per listing was a cold write of the whole frame (and of its length) for every event of
/// a listing not seen lately, and a page fault for each of its pages the first time round; and the memory the
/// histories hold together is the ring's size, however many listings or users there are (a ring per listing held up
/// to about 50 KB each, so memory grew with the listings).
///
/// The ring is mapped with `MAP_NORESERVE`: its pages are committed as they are first written, so a server that
/// writes few events holds little of it.
///
/// - Note: Not thread-safe; its owner's lock guards it.
final class HistoryRing {
    /// A record's header: its history's previous record's position (8 bytes), the frame's length (4).
    static let headerLength = 12
    /// The smallest ring.
    static let minimumCapacity = 4096

    private let base: UnsafeMutableRawPointer
    /// The ring's size in bytes.
    let capacity: Int
    /// Bytes ever written (records and skipped ends): the position the next record starts at, if it fits before
    /// the end. Positions only grow, so the bytes of a position before `written - capacity` are gone.
    private(set) var written: UInt64 = 0
    /// `written`'s place in the ring.
    private var offset = 0

    /// Maps a ring of `capacity` bytes (at least ``minimumCapacity``); throws when the system refuses the mapping
    /// (with overcommit disabled, a size beyond what it would commit), naming `setting`.
    init(capacity: Int, setting: String) throws(HistoryRingError) {
        self.capacity = Swift.max(capacity, Self.minimumCapacity)
        let mapped = mmap(
            nil, self.capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let mapped, mapped != MAP_FAILED else {
            throw HistoryRingError(setting: setting, bytes: self.capacity, code: errno)
        }
        base = mapped
    }

    deinit { munmap(base, capacity) }

    /// The largest frame kept: a quarter of the ring, so that one frame never takes most of every history with it.
    var largestFrame: Int { capacity / 4 - Self.headerLength }

    /// Whether the record at `position` is still whole.
    @inline(__always)
    func holds(_ position: UInt64) -> Bool { position &+ UInt64(capacity) >= written }

    /// Writes a record of the text frame of `payload` after `previous` (its history's record before it); returns
    /// its position, or `nil` when the frame is larger than ``largestFrame`` (nothing is written).
    func append(text payload: [UInt8], previous: UInt64) -> UInt64? {
        let header = ServerFrame.headerLength(payload.count)
        let frame = header + payload.count
        guard frame <= largestFrame else { return nil }
        let length = Self.headerLength + frame
        if offset + length > capacity {
            written += UInt64(capacity - offset)
            offset = 0
        }
        let position = written
        let at = base + offset
        at.storeBytes(of: previous, as: UInt64.self)
        at.storeBytes(of: UInt32(frame), toByteOffset: 8, as: UInt32.self)
        _ = ServerFrame.writeTextHeader(
            count: payload.count, to: UnsafeMutableRawBufferPointer(start: at + Self.headerLength, count: header))
        payload.withUnsafeBytes { bytes in
            guard let source = bytes.baseAddress else { return }
            (at + Self.headerLength + header).copyMemory(from: source, byteCount: bytes.count)
        }
        offset += length
        written += UInt64(length)
        return position
    }

    /// The record at `position` (which ``holds(_:)``): its history's previous record and its frame.
    @inline(__always)
    func record(at position: UInt64) -> (previous: UInt64, frame: UnsafeRawBufferPointer) {
        let at = UnsafeRawPointer(base + Int(position % UInt64(capacity)))
        let previous = at.loadUnaligned(as: UInt64.self)
        let length = Int(at.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        return (previous, UnsafeRawBufferPointer(start: at + Self.headerLength, count: length))
    }
}

/// The system refused to map a history ring.
public struct HistoryRingError: Error, CustomStringConvertible {
    let setting: String
    let bytes: Int
    let code: Int32

    public var description: String {
        let reason = String(cString: strerror(code))
        return "cannot reserve \(bytes) bytes of memory for \(setting) (mmap: \(reason)); lower \(setting)"
    }
}

/// The fan-out's two history rings: the listings' events and the users' notices.
public struct HistoryRings {
    let events: HistoryRing
    let notices: HistoryRing

    /// Rings of `historyBytes` and `userHistoryBytes` (`--history-bytes`, `--user-history-bytes`).
    public init(historyBytes: Int, userHistoryBytes: Int) throws(HistoryRingError) {
        events = try HistoryRing(capacity: historyBytes, setting: "--history-bytes")
        notices = try HistoryRing(capacity: userHistoryBytes, setting: "--user-history-bytes")
    }

    /// Rings of the default sizes (``GatewayConfiguration``'s). Only for embedding and tests: a system that refuses
    /// 80 MiB of address space it need not commit stops here.
    public init() {
        let defaults = GatewayConfiguration()
        do {
            try self.init(historyBytes: defaults.historyBytes, userHistoryBytes: defaults.userHistoryBytes)
        } catch {
            fatalError("\(error)")
        }
    }
}

/// The last frames of one listing's events (or one user's notices), for resuming with `since`: the position of the
/// newest in a shared ``HistoryRing`` and how many of its predecessors are chained behind it, each record naming the
/// one before. 24 bytes and no allocation per history or per frame.
struct FrameHistory {
    /// The `seq` of the newest frame.
    private(set) var lastSeq: UInt64 = 0
    /// The newest frame's record in the ring (when ``count`` > 0).
    private var newest: UInt64 = 0
    /// Frames kept, the newest included (at most the `limit` appended with): each follows the one before in `seq`.
    private(set) var count = 0

    /// Keeps the text frame of `payload`, numbered `seq`, in `ring`, and at most `limit` frames back from it. A
    /// `seq` that does not follow the last one starts the history again.
    mutating func appendText(_ payload: [UInt8], seq: UInt64, limit: Int, in ring: HistoryRing) {
        if seq != lastSeq + 1 { count = 0 }
        lastSeq = seq
        guard limit > 0, let position = ring.append(text: payload, previous: newest) else {
            count = 0
            return
        }
        newest = position
        count = Swift.min(count + 1, limit)
    }

    /// The frames after `since`, oldest first, as slices of one buffer; `nil` when the history does not reach back
    /// that far (more than its `limit` frames back, or frames that newer ones of `ring` overwrote).
    func after(_ since: UInt64, in ring: HistoryRing) -> [ByteBuffer]? {
        guard since <= lastSeq else { return nil }
        let wanted = Int(lastSeq - since)
        guard wanted <= count else { return nil }
        guard wanted > 0 else { return [] }
        // Walks back from the newest (the work is the frames sent, never the whole history), checking each record
        // before reading it: an older record is overwritten first.
        var frames: [UnsafeRawBufferPointer] = []
        frames.reserveCapacity(wanted)
        var position = newest
        var total = 0
        for back in 0..<wanted {
            guard ring.holds(position) else { return nil }
            let record = ring.record(at: position)
            frames.append(record.frame)
            total += record.frame.count
            if back + 1 < wanted { position = record.previous }
        }
        var all = ByteBufferAllocator().buffer(capacity: total)
        for frame in frames.reversed() { all.writeBytes(frame) }
        var out: [ByteBuffer] = []
        out.reserveCapacity(wanted)
        var offset = 0
        for frame in frames.reversed() {
            out.append(all.getSlice(at: offset, length: frame.count)!)
            offset += frame.count
        }
        return out
    }
}
