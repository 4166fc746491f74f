import CGavelShims
import GavelCore

/// CRC-32C (Castagnoli).
public enum CRC32C {
    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { gavel_crc32c(0, $0.baseAddress, $0.count) }
    }

    public static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        bytes.withUnsafeBytes { gavel_crc32c(0, $0.baseAddress, $0.count) }
    }
}

/// One journal record: an applied command, a clock tick that fired timers, or the trailer that closes a batch.
public enum JournalRecord: Sendable, Equatable {
    /// `outcome`: how the idempotency table answered the command; `nil` in a version 1 record, which did not say.
    case command(lsn: UInt64, at: Millis, principal: String, command: Command, outcome: RequestOutcome?)
    case tick(lsn: UInt64, at: Millis)
    /// Closes a flushed batch: its lsn range and the SHA-256 chaining it to the previous batch.
    case trailer(firstLSN: UInt64, lastLSN: UInt64, count: UInt32, chain: [UInt8])

    /// The record format version written by this build; readers accept this one and older ones. Version 2 added
    /// a command's ``RequestOutcome``.
    public static let version: UInt8 = 2

    /// Bytes before the payload: `u32 length` and `u32 crc32c(payload)`.
    public static let headerSize = 8

    /// The largest payload a reader accepts.
    public static let maxPayload = 1 << 20

    /// Appends the record (header and payload) to `output`.
    public func encode(into output: inout [UInt8], scratch w: inout BinaryWriter) {
        w.bytes.removeAll(keepingCapacity: true)
        switch self {
        case .command(let lsn, let at, let principal, let command, let outcome):
            Self.writeCommand(lsn: lsn, at: at, principal: principal, command: command, outcome: outcome, to: &w)
        case .tick(let lsn, let at):
            w.write(Self.version)
            w.write(UInt8(2))
            w.write(lsn)
            w.write(at)
        case .trailer(let first, let last, let count, let chain):
            w.write(Self.version)
            w.write(UInt8(3))
            w.write(first)
            w.write(last)
            w.write(count)
            w.bytes.append(contentsOf: chain)
        }
        Self.seal(w.bytes, into: &output)
    }

    /// Appends the record of `command` applied at `lsn`: the bytes ``encode(into:scratch:)`` appends for
    /// ``command(lsn:at:principal:command:outcome:)`` with the command's own principal, written from the command as it
    /// is. The journal's path, which has the command borrowed from its submission and builds no record value (that
    /// copied the command, retaining its strings).
    public static func encodeCommand(
        lsn: UInt64, at: Millis, command: Command, outcome: RequestOutcome, into output: inout [UInt8],
        scratch w: inout BinaryWriter
    ) {
        w.bytes.removeAll(keepingCapacity: true)
        writeCommand(lsn: lsn, at: at, principal: command.principal, command: command, outcome: outcome, to: &w)
        seal(w.bytes, into: &output)
    }

    @inline(__always)
    private static func writeCommand(
        lsn: UInt64, at: Millis, principal: String, command: Command, outcome: RequestOutcome?,
        to w: inout BinaryWriter
    ) {
        // A command without its outcome is written as a version 1 record (as journals written before version 2
        // hold them; for tests of reading those).
        w.write(outcome == nil ? 1 : Self.version)
        w.write(UInt8(1))
        w.write(lsn)
        w.write(at)
        if let outcome { w.write(outcome.rawValue) }
        w.write(principal)
        command.encode(into: &w)
    }

    /// Appends the header (length, CRC-32C) and `payload` to `output`.
    @inline(__always)
    private static func seal(_ payload: [UInt8], into output: inout [UInt8]) {
        withUnsafeBytes(of: UInt32(payload.count).littleEndian) { output.append(contentsOf: $0) }
        withUnsafeBytes(of: CRC32C.checksum(payload).littleEndian) { output.append(contentsOf: $0) }
        output.append(contentsOf: payload)
    }

    /// Why a record could not be read.
    public enum ReadError: Error, Equatable, CustomStringConvertible {
        case truncated(offset: Int)
        case badChecksum(offset: Int)
        case malformed(offset: Int, reason: String)

        public var offset: Int {
            switch self {
            case .truncated(let o), .badChecksum(let o), .malformed(let o, _): o
            }
        }

        public var description: String {
            switch self {
            case .truncated(let o): "record at byte \(o) is cut short"
            case .badChecksum(let o): "record at byte \(o) fails its CRC32C"
            case .malformed(let o, let reason): "record at byte \(o) is malformed: \(reason)"
            }
        }
    }

    /// Reads the record at `offset` in `bytes`; returns it and the offset after it. Its listing and user names
    /// longer than 15 bytes come from `identifiers` when given (``BinaryReader/readIdentifier()``).
    public static func decode(_ bytes: [UInt8], at offset: Int, identifiers: IdentifierCache? = nil) throws(ReadError)
        -> (JournalRecord, Int)
    {
        guard let length = bytes.uint32(at: offset), let crc = bytes.uint32(at: offset + 4) else {
            throw .truncated(offset: offset)
        }
        let start = offset + headerSize
        guard Int(length) <= maxPayload else {
            throw .malformed(offset: offset, reason: "length \(length) is over the \(maxPayload)-byte limit")
        }
        let end = start + Int(length)
        guard end <= bytes.count else { throw .truncated(offset: offset) }
        let actual = bytes.withUnsafeBytes { gavel_crc32c(0, $0.baseAddress! + start, Int(length)) }
        guard actual == crc else { throw .badChecksum(offset: offset) }
        var r = BinaryReader(bytes, offset: start, end: end, identifiers: identifiers)
        do {
            let version = try r.readByte()
            guard version >= 1 && version <= Self.version else {
                throw ReadError.malformed(offset: offset, reason: "unknown record version \(version)")
            }
            let record: JournalRecord
            switch try r.readByte() {
            case 1:
                let lsn = try r.readUInt64()
                let at = try r.readInt64()
                var outcome: RequestOutcome?
                if version >= 2 {
                    let byte = try r.readByte()
                    guard let known = RequestOutcome(rawValue: byte) else {
                        throw ReadError.malformed(offset: offset, reason: "unknown request outcome \(byte)")
                    }
                    outcome = known
                }
                let principal = try r.readIdentifier()
                record = .command(
                    lsn: lsn, at: at, principal: principal, command: try Command.decode(from: &r), outcome: outcome)
            case 2:
                record = .tick(lsn: try r.readUInt64(), at: try r.readInt64())
            case 3:
                let first = try r.readUInt64()
                let last = try r.readUInt64()
                let count = try r.readUInt32()
                record = .trailer(firstLSN: first, lastLSN: last, count: count, chain: Array(try r.readBytes(32)))
            case let kind:
                throw ReadError.malformed(offset: offset, reason: "unknown record kind \(kind)")
            }
            guard r.isAtEnd else { throw ReadError.malformed(offset: offset, reason: "trailing bytes in the record") }
            return (record, end)
        } catch let error as ReadError {
            throw error
        } catch let error as DecodingError {
            throw .malformed(offset: offset, reason: error.reason)
        } catch {
            throw .malformed(offset: offset, reason: "\(error)")
        }
    }

    /// The record's lsn (the last lsn for a trailer).
    public var lsn: UInt64 {
        switch self {
        case .command(let lsn, _, _, _, _), .tick(let lsn, _): lsn
        case .trailer(_, let last, _, _): last
        }
    }
}
