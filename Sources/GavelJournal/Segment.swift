import Crypto
import GavelCore

/// The header of a journal segment, kept in an LZ4 skippable frame at its start.
public struct SegmentHeader: Sendable, Equatable {
    public static let tag: [UInt8] = Array("GVLSEG".utf8)
    public static let version: UInt16 = 1
    /// Skippable-frame header (8) + tag (6) + version (2) + first lsn (8) + previous chain (32).
    public static let size = 8 + 6 + 2 + 8 + 32

    public var firstLSN: UInt64
    /// The chain hash of the batch before this segment's first batch (32 zero bytes at the very start).
    public var previousChain: [UInt8]

    public init(firstLSN: UInt64, previousChain: [UInt8]) {
        self.firstLSN = firstLSN
        self.previousChain = previousChain
    }

    public func encoded() -> [UInt8] {
        var payload = Self.tag
        withUnsafeBytes(of: Self.version.littleEndian) { payload.append(contentsOf: $0) }
        withUnsafeBytes(of: firstLSN.littleEndian) { payload.append(contentsOf: $0) }
        payload.append(contentsOf: previousChain)
        var out: [UInt8] = []
        SkippableFrame.append(payload, to: &out)
        return out
    }

    /// Reads the header at the start of `bytes`, or `nil` when it is missing or damaged.
    public static func decode(_ bytes: [UInt8]) -> SegmentHeader? {
        guard bytes.count >= size, bytes.uint32(at: 0) == SkippableFrame.magic,
            bytes.uint32(at: 4) == UInt32(size - 8), Array(bytes[8..<14]) == tag
        else { return nil }
        let version = UInt16(bytes[14]) | UInt16(bytes[15]) << 8
        guard version >= 1 && version <= Self.version else { return nil }
        var lsn: UInt64 = 0
        for i in 0..<8 { lsn |= UInt64(bytes[16 + i]) << (8 * UInt64(i)) }
        return SegmentHeader(firstLSN: lsn, previousChain: Array(bytes[24..<56]))
    }
}

/// The chain hash of a batch: SHA-256 over the previous batch's chain and this batch's record bytes.
public enum Chain {
    public static let genesis = [UInt8](repeating: 0, count: 32)

    public static func next(_ previous: [UInt8], records: ArraySlice<UInt8>) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(data: previous)
        records.withUnsafeBytes { hasher.update(bufferPointer: $0) }
        return Array(hasher.finalize())
    }
}

/// One decoded batch frame of a segment.
public struct SegmentBatch: Sendable {
    /// Byte offset of the frame in its segment.
    public var offset: Int
    /// Length of the frame on disk.
    public var length: Int
    public var records: [JournalRecord]
    public var chain: [UInt8]
}

/// A problem found while reading a segment, with the byte offset where it is.
public struct SegmentProblem: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The bytes end inside a frame or record: what a crash during a write leaves.
        case truncated
        /// Bytes that are not what was written: a damaged frame, a failed checksum, a broken chain or lsn gap.
        case corrupt
    }
    public var kind: Kind
    public var offset: Int
    public var reason: String

    public var description: String { "\(reason) at byte \(offset)" }

    /// The problem of a segment whose first bytes, `head`, are not a header. A header cut short, or one never
    /// written (nothing but zeros where it goes: the journal creates a segment and reserves its size before it
    /// writes the header, and a crash between the two leaves that), is what a crash while the segment was being
    /// created leaves, and ``Kind/truncated``: recovery takes such a last segment for a torn tail (nothing in it was
    /// acknowledged: a segment's header is durable before its first frame is written). Anything else is damage.
    static func header(_ head: [UInt8]) -> SegmentProblem {
        if head.count < SegmentHeader.size {
            return SegmentProblem(kind: .truncated, offset: 0, reason: "missing or damaged segment header")
        }
        if head[..<SegmentHeader.size].allSatisfy({ $0 == 0 }) {
            return SegmentProblem(kind: .truncated, offset: 0, reason: "segment header never written (only zeros)")
        }
        return SegmentProblem(kind: .corrupt, offset: 0, reason: "missing or damaged segment header")
    }
}

/// Reads a segment's batches in order.
public struct SegmentReader {
    /// The segment's bytes from ``base`` on (all of them unless made with ``init(header:tail:at:chain:nextLSN:)``).
    public let bytes: [UInt8]
    /// The offset in the segment of `bytes[0]`; offsets are always counted from the segment's start.
    public let base: Int
    public let header: SegmentHeader
    public private(set) var offset: Int
    /// The chain after the last batch read.
    public private(set) var chain: [UInt8]
    /// The lsn the next record must have.
    public private(set) var nextLSN: UInt64
    /// One LZ4 context for all the segment's frames (shared by copies of the reader: see ``using(_:)``).
    private var decoder = LZ4Frame.Decoder()
    /// Where the records' listing and user names come from (``BinaryReader/readIdentifier()``), when set: like
    /// ``decoder``, one per thread (see ``using(_:identifiers:)``).
    private var identifiers: IdentifierCache?
    /// Whether the last ``next()`` stopped at the segment's reserved space: nothing but zeros from ``offset`` to the
    /// end of the bytes held, where the journal has not written yet (it reserves a segment's size up front).
    public private(set) var reachedUnwrittenSpace = false

    public init(bytes: [UInt8]) throws(SegmentProblem) {
        guard let header = SegmentHeader.decode(bytes) else { throw SegmentProblem.header(bytes) }
        self.bytes = bytes
        self.base = 0
        self.header = header
        self.offset = SegmentHeader.size
        self.chain = header.previousChain
        self.nextLSN = header.firstLSN
    }

    /// A reader of the segment whose first bytes are `header` and whose bytes from `base` on are `tail`, positioned
    /// at `base`, the start of a frame after the batch whose chain is `chain`: a reader that applied the segment up
    /// to there before (the checkpointer, a feed following the live segment) reads only what was appended since.
    public init(header bytes: [UInt8], tail: [UInt8], at base: Int, chain: [UInt8], nextLSN: UInt64)
        throws(SegmentProblem)
    {
        guard base >= SegmentHeader.size, let header = SegmentHeader.decode(bytes) else {
            throw SegmentProblem.header(bytes)
        }
        self.bytes = tail
        self.base = base
        self.header = header
        self.offset = base
        self.chain = chain
        self.nextLSN = nextLSN
    }

    /// This reader reading with `decoder`, an LZ4 context, and taking the records' names from `identifiers`: a copy
    /// that reads on another thread than the reader it was made from takes ones of its own.
    func using(_ decoder: LZ4Frame.Decoder?, identifiers: IdentifierCache?) -> SegmentReader {
        var copy = self
        copy.decoder = decoder
        copy.identifiers = identifiers
        return copy
    }

    /// This reader taking the records' listing and user names longer than 15 bytes from `identifiers`, so that a
    /// name read again shares the storage of the first (``IdentifierCache``); to be used on one thread only.
    public func interning(_ identifiers: IdentifierCache) -> SegmentReader {
        var copy = self
        copy.identifiers = identifiers
        return copy
    }

    /// The offset just past the bytes this reader holds.
    public var end: Int { base + bytes.count }

    /// Whether the byte where the next frame would start is a zero: reserved space the journal has not written yet
    /// (or damage, which ``next()`` tells apart).
    public var nextFrameUnwritten: Bool { offset < end && bytes[offset - base] == 0 }

    /// A reader of the segment at `path` positioned at `offset`, a frame start after the batch whose chain is
    /// `chain`, reading only the header and the bytes from `offset` on (`limit` of them at most: a frame the limit
    /// cuts is reported as truncated at its start).
    public static func resuming(
        _ path: String, at offset: Int, chain: [UInt8], nextLSN: UInt64, limit: Int = .max
    ) throws -> SegmentReader {
        try SegmentReader(
            header: try Files.read(path, from: 0, limit: SegmentHeader.size),
            tail: try Files.read(path, from: offset, limit: limit), at: offset, chain: chain, nextLSN: nextLSN)
    }

    /// A reader of the segment at `path` from its first frame, holding its header and `limit` bytes after it.
    public static func opening(_ path: String, limit: Int) throws -> SegmentReader {
        let head = try Files.read(path, from: 0, limit: SegmentHeader.size)
        guard let header = SegmentHeader.decode(head) else { throw SegmentProblem.header(head) }
        return try resuming(
            path, at: SegmentHeader.size, chain: header.previousChain, nextLSN: header.firstLSN, limit: limit)
    }

    /// The next batch, or `nil` at the end of the segment: the end of its bytes, or zeros from where the next frame
    /// would start to the end of them (the reserved space after the last frame; ``reachedUnwrittenSpace``). Zeros
    /// followed by anything else are damage, reported as such.
    public mutating func next() throws(SegmentProblem) -> SegmentBatch? {
        reachedUnwrittenSpace = false
        while offset < end {
            if Self.onlyZeros(bytes, from: offset - base) {
                reachedUnwrittenSpace = true
                return nil
            }
            guard let magic = bytes.uint32(at: offset - base) else {
                throw SegmentProblem(kind: .truncated, offset: offset, reason: "partial frame header")
            }
            if magic & 0xFFFF_FFF0 == SkippableFrame.magic {
                guard let length = bytes.uint32(at: offset - base + 4), offset + 8 + Int(length) <= end else {
                    throw SegmentProblem(kind: .truncated, offset: offset, reason: "partial skippable frame")
                }
                offset += 8 + Int(length)
                continue
            }
            guard magic == LZ4Frame.magic else {
                throw SegmentProblem(kind: .corrupt, offset: offset, reason: "no LZ4 frame where one should start")
            }
            let decoded: (content: [UInt8], length: Int)
            switch Result(catching: { () throws(LZ4Frame.DecodeError) in
                if let decoder { return try decoder.decode(bytes, at: offset - base) }
                return try LZ4Frame.decode(bytes, at: offset - base)
            }) {
            case .success(let value): decoded = value
            case .failure(.truncated):
                throw SegmentProblem(kind: .truncated, offset: offset, reason: "LZ4 frame cut short")
            case .failure(.corrupt(let why)):
                throw SegmentProblem(kind: .corrupt, offset: offset, reason: "damaged LZ4 frame (\(why))")
            }
            let (content, length) = decoded
            let batch = try decodeBatch(content, frameOffset: offset, frameLength: length)
            offset += length
            return batch
        }
        return nil
    }

    private mutating func decodeBatch(_ content: [UInt8], frameOffset: Int, frameLength: Int) throws(SegmentProblem)
        -> SegmentBatch
    {
        var records: [JournalRecord] = []
        // No record is shorter than a tick's 26 bytes: room for all of them at once, no regrowth while decoding.
        records.reserveCapacity(content.count / 26 + 1)
        var position = 0
        var trailerStart = -1
        while position < content.count {
            let start = position
            do {
                let (record, end) = try JournalRecord.decode(content, at: position, identifiers: identifiers)
                // Matched before it is appended: `records.last` would be a copy of the record, and copying and
                // destroying a command (its strings, its enum's cases) was a sizeable share of decoding a batch.
                if case .trailer = record { trailerStart = start }
                records.append(record)
                position = end
            } catch {
                throw SegmentProblem(
                    kind: .corrupt, offset: frameOffset, reason: "in the frame, \(error.description)")
            }
        }
        guard case .trailer(let first, let last, let count, let chain)? = records.last, trailerStart >= 0,
            position == content.count
        else {
            throw SegmentProblem(kind: .corrupt, offset: frameOffset, reason: "batch frame without its trailer")
        }
        records.removeLast()
        guard records.count == Int(count), let firstRecord = records.first, firstRecord.lsn == first,
            records.last?.lsn == last
        else {
            throw SegmentProblem(
                kind: .corrupt, offset: frameOffset, reason: "batch trailer does not match its records")
        }
        // By index, not `for record in records`, which copies each record.
        for index in records.indices {
            let lsn = records[index].lsn
            guard lsn == nextLSN else {
                throw SegmentProblem(
                    kind: .corrupt, offset: frameOffset,
                    reason: "lsn \(lsn) where \(nextLSN) was expected (a batch is missing or out of order)")
            }
            if case .trailer = records[index] {
                throw SegmentProblem(kind: .corrupt, offset: frameOffset, reason: "trailer inside a batch")
            }
            nextLSN += 1
        }
        let expected = Chain.next(self.chain, records: content[0..<trailerStart])
        guard expected == chain else {
            throw SegmentProblem(
                kind: .corrupt, offset: frameOffset,
                reason: "SHA-256 chain mismatch (a batch was edited, removed or reordered)")
        }
        self.chain = chain
        return SegmentBatch(offset: frameOffset, length: frameLength, records: records, chain: chain)
    }

    /// Whether `bytes` hold nothing but zeros from `start` to their end (at least one byte).
    public static func onlyZeros(_ bytes: [UInt8], from start: Int) -> Bool {
        // A frame's first byte is never 0 (an LZ4 frame's is 0x04, a skippable one's 0x5_): most calls stop here.
        guard start < bytes.count, bytes[start] == 0 else { return false }
        return bytes.withUnsafeBytes { raw in
            var position = start
            while position + 8 <= raw.count {
                if raw.loadUnaligned(fromByteOffset: position, as: UInt64.self) != 0 { return false }
                position += 8
            }
            while position < raw.count {
                if raw[position] != 0 { return false }
                position += 1
            }
            return true
        }
    }

    /// Whether a complete, valid LZ4 frame starts anywhere after `offset`: if so, damage at `offset` is not a torn
    /// tail but corruption in the middle.
    public func validFrameExists(after offset: Int) -> Bool {
        var position = offset - base + 1
        let magic: [UInt8] = [0x04, 0x22, 0x4D, 0x18]
        while position + 4 <= bytes.count {
            if bytes[position] == magic[0] && bytes[position + 1] == magic[1] && bytes[position + 2] == magic[2]
                && bytes[position + 3] == magic[3]
            {
                if (try? LZ4Frame.decode(bytes, at: position)) != nil { return true }
            }
            position += 1
        }
        return false
    }
}
