import Crypto
import GavelCore

/// A snapshot file: the whole engine state at an `lsn`, LZ4-compressed behind a checksummed header.
///
/// Layout: `"GVLSNAP1"`, `u32 version`, `u64 lsn`, `i64 engine time`, 32-byte journal chain at `lsn`, 32-byte
/// SHA-256 of the state, `u64 state length`, `u32 crc32c` of everything before it; then one LZ4 frame holding the
/// state as ``Engine/encodeState()`` writes it.
public struct SnapshotFile: Sendable {
    public static let magic: [UInt8] = Array("GVLSNAP1".utf8)
    /// The file format written by this build. 2: written by a build whose sales create settlements. A version 1
    /// snapshot holds sales without their settlements, so recovery does not start from one (see
    /// ``isBeforeSettlements``) but from the journal.
    public static let version: UInt32 = 2
    /// The size of the header before the state's frame.
    public static let headerSize = 8 + 4 + 8 + 8 + 32 + 32 + 8 + 4

    public var lsn: UInt64
    public var now: Millis
    public var chain: [UInt8]
    /// SHA-256 of the state bytes, hex: the engine's state hash.
    public var stateHash: String
    public var state: [UInt8]
    /// The file format the snapshot was written in.
    public var version: UInt32 = SnapshotFile.version

    /// Whether the snapshot was written by a build from before settlements (format 1): its sales have none.
    public var isBeforeSettlements: Bool { version < 2 }

    /// The header: everything before the compressed state.
    private var header: [UInt8] {
        Self.header(
            lsn: lsn, now: now, chain: chain,
            digest: SHA256Digest.bytes(hex: stateHash) ?? Array(SHA256.hash(data: state)), length: state.count)
    }

    private static func header(lsn: UInt64, now: Millis, chain: [UInt8], digest: [UInt8], length: Int) -> [UInt8] {
        var w = BinaryWriter(capacity: headerSize)
        w.bytes.append(contentsOf: magic)
        w.write(version)
        w.write(lsn)
        w.write(now)
        w.bytes.append(contentsOf: chain)
        w.bytes.append(contentsOf: digest)
        w.write(UInt64(length))
        w.write(CRC32C.checksum(w.bytes))
        return w.bytes
    }

    /// Writes a snapshot of `engine`'s state at `lsn` to `path` atomically, encoding, hashing and compressing the
    /// state a piece of `pieceBytes` at a time straight into the file, so neither the state nor its compressed copy
    /// is ever held whole (a state of hundreds of MB would otherwise be allocated, and given back, at every
    /// snapshot). The header, which holds the state's hash and length, is written last, over the zeros that kept
    /// its place; the state's frame does not declare its size (the header does). Returns the state's hash (hex)
    /// and its length in bytes.
    public static func write(
        engine: Engine, lsn: UInt64, now: Millis, chain: [UInt8], to path: String, directory: String,
        pieceBytes: Int = 4 << 20
    ) throws(FileError) -> (stateHash: String, stateBytes: Int) {
        var hasher = SHA256()
        var length = 0
        var digest: [UInt8] = []
        try Files.writeAtomically(to: path, directory: directory) { (sink: inout TricklingWriter) throws(FileError) in
            try sink.write([UInt8](repeating: 0, count: headerSize))
            let compressor = LZ4Frame.Compressor(contentSize: 0)
            try compressor.begin { (piece) throws(FileError) in try sink.write(piece) }
            try engine.encodeState(pieceBytes: pieceBytes) { (piece: [UInt8]) throws(FileError) in
                hasher.update(data: piece)
                length += piece.count
                try withBytes(of: piece) { (bytes) throws(FileError) in
                    try compressor.update(bytes) { (out) throws(FileError) in try sink.write(out) }
                }
            }
            try compressor.end { (piece) throws(FileError) in try sink.write(piece) }
            digest = Array(hasher.finalize())
            try sink.overwrite(header(lsn: lsn, now: now, chain: chain, digest: digest, length: length), at: 0)
        }
        return (SHA256Digest.hexString(digest), length)
    }

    /// Encodes the file, compressing the state.
    public func encoded() -> [UInt8] {
        var out = header
        LZ4Frame.compress(state, appendingTo: &out)
        return out
    }

    /// Builds a snapshot of `state`, computing its hash.
    public static func make(lsn: UInt64, now: Millis, chain: [UInt8], state: [UInt8]) -> SnapshotFile {
        SnapshotFile(
            lsn: lsn, now: now, chain: chain, stateHash: SHA256Digest.hexString(Array(SHA256.hash(data: state))),
            state: state)
    }

    /// Reads and validates a snapshot file's bytes: header checksum, frame checksums, and the state's SHA-256.
    public static func decode(_ bytes: [UInt8]) throws(SegmentProblem) -> SnapshotFile {
        func bad(_ offset: Int, _ reason: String) -> SegmentProblem {
            SegmentProblem(kind: .corrupt, offset: offset, reason: reason)
        }
        guard bytes.count >= headerSize, Array(bytes[0..<8]) == magic else { throw bad(0, "not a Gavel snapshot") }
        var r = BinaryReader(bytes, offset: 8, end: headerSize)
        do {
            let version = try r.readUInt32()
            guard version >= 1 && version <= Self.version else { throw bad(8, "unknown snapshot version \(version)") }
            let lsn = try r.readUInt64()
            let now = try r.readInt64()
            let chain = Array(try r.readBytes(32))
            let digest = Array(try r.readBytes(32))
            let length = try r.readUInt64()
            let crc = try r.readUInt32()
            guard CRC32C.checksum(bytes[0..<(headerSize - 4)]) == crc else { throw bad(0, "header checksum mismatch") }
            let content: [UInt8]
            switch Result(catching: { () throws(LZ4Frame.DecodeError) in
                try LZ4Frame.decode(
                    bytes, at: headerSize, maxContent: Int(clamping: length), expectedContent: Int(clamping: length))
            }) {
            case .success(let decoded):
                guard decoded.length + headerSize == bytes.count else {
                    throw bad(headerSize + decoded.length, "unexpected bytes after the state")
                }
                content = decoded.content
            case .failure(.truncated): throw bad(headerSize, "state frame cut short")
            case .failure(.corrupt(let why)): throw bad(headerSize, "damaged state frame (\(why))")
            }
            guard UInt64(content.count) == length, Array(SHA256.hash(data: content)) == digest else {
                throw bad(headerSize, "state does not match its SHA-256")
            }
            return SnapshotFile(
                lsn: lsn, now: now, chain: chain, stateHash: SHA256Digest.hexString(digest), state: content,
                version: version)
        } catch let problem as SegmentProblem {
            throw problem
        } catch {
            throw bad(r.offset, "malformed header")
        }
    }
}
