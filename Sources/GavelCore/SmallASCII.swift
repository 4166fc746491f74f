/// Builds the `String` of up to 15 ASCII bytes the way the standard library stores it inline (a *small string*:
/// the bytes in the value's two words, the count and flags in its top byte), from two loads instead of a
/// validation pass and a copy. Used only where ``layoutHolds``: on a 64-bit little-endian platform whose standard
/// library builds exactly these bits for every length (checked once, against `String(decoding:as:)`); anywhere
/// else the decoders (the gateway's fast path, ``BinaryReader``) build their strings with `String(decoding:as:)`.
public enum SmallASCII {
    /// The most bytes a small string holds.
    public static let capacity = 15

    /// Whether ``string(_:count:readableBefore:)`` builds the same value as `String(decoding:as:)` for every length.
    public static let layoutHolds: Bool = {
        #if _endian(little) && _pointerBitWidth(_64)
            let sample: [UInt8] = Array("0123456789abcde-0123456789abcde".utf8)
            return sample.withUnsafeBufferPointer { bytes in
                (0...capacity).allSatisfy { count in
                    // From the start (nothing readable before) and from the middle (8 bytes readable before).
                    [0, 8].allSatisfy { offset in
                        let start = bytes.baseAddress! + offset
                        let expected = String(decoding: UnsafeBufferPointer(start: start, count: count), as: UTF8.self)
                        let built = make(start, count: count, readableBefore: offset)
                        return unsafeBitCast(built, to: (UInt64, UInt64).self)
                            == unsafeBitCast(expected, to: (UInt64, UInt64).self) && built == expected
                    }
                }
            }
        #else
            return false
        #endif
    }()

    /// The string of the `count` (at most 15) ASCII bytes at `start`; `readableBefore` bytes before `start` may be
    /// read too (a word ending at the last byte is read when at least 8 bytes end there). Only where
    /// ``layoutHolds``.
    @inlinable @inline(__always)
    public static func string(_ start: UnsafePointer<UInt8>, count: Int, readableBefore: Int) -> String {
        make(start, count: count, readableBefore: readableBefore)
    }

    @usableFromInline @inline(__always)
    static func make(_ start: UnsafePointer<UInt8>, count: Int, readableBefore: Int) -> String {
        let raw = UnsafeRawPointer(start)
        var low: UInt64 = 0
        var high: UInt64 = 0
        if count >= 8 {
            low = UInt64(littleEndian: raw.loadUnaligned(as: UInt64.self))
            if count > 8 {
                // The word ending at the last byte, shifted down to the bytes past the first eight.
                let tail = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: count - 8, as: UInt64.self))
                high = tail >> (UInt64(16 - count) * 8)
            }
        } else if count > 0 {
            if readableBefore + count >= 8 {
                let tail = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: count - 8, as: UInt64.self))
                low = tail >> (UInt64(8 - count) * 8)
            } else {
                for i in 0..<count { low |= UInt64(start[i]) << (UInt64(i) * 8) }
            }
        }
        // The discriminator: immortal, small, ASCII, and the count.
        high |= (0xE0 | UInt64(count)) << 56
        return unsafeBitCast((low, high), to: String.self)
    }
}
