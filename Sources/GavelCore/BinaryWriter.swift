/// Appends values in Gavel's compact binary encoding: fixed-width little-endian integers, length-prefixed UTF-8
/// strings, and a presence byte before optional values.
public struct BinaryWriter: Sendable {
    public var bytes: [UInt8]

    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    @inlinable
    public mutating func write(_ value: UInt8) { bytes.append(value) }

    @inlinable
    public mutating func write(_ value: Bool) { bytes.append(value ? 1 : 0) }

    @inlinable
    public mutating func write(_ value: UInt32) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    @inlinable
    public mutating func write(_ value: UInt64) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    @inlinable
    public mutating func write(_ value: Int64) { write(UInt64(bitPattern: value)) }

    @inlinable
    public mutating func write(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            write(UInt32(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    @inlinable
    public mutating func write(_ value: Int64?) {
        if let value {
            write(UInt8(1))
            write(value)
        } else {
            write(UInt8(0))
        }
    }

    @inlinable
    public mutating func write(_ value: String?) {
        if let value {
            write(UInt8(1))
            write(value)
        } else {
            write(UInt8(0))
        }
    }
}

extension BinaryWriter {
    /// Hands the bytes written so far to `emit` and starts again, keeping the capacity, once they reach `limit`.
    @inline(__always)
    mutating func flush<E: Error>(over limit: Int, to emit: ([UInt8]) throws(E) -> Void) throws(E) {
        guard bytes.count >= limit else { return }
        try emit(bytes)
        bytes.removeAll(keepingCapacity: true)
    }
}
