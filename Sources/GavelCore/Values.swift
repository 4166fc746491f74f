/// Money in integer minor units (cents, pence, ...). There is no floating point for money anywhere.
public typealias Money = Int64

/// A point on the engine clock, in integer milliseconds.
public typealias Millis = Int64

/// Limits on values that every command shares.
public enum Limits {
    /// The largest amount, price or quantity a command may carry: 10^15.
    public static let maxAmount: Int64 = 1_000_000_000_000_000

    /// The longest identifier, in bytes.
    public static let maxIdentifierLength = 64

    /// The longest request id the gateway echoes back, in UTF-8 bytes (written as JSON, at most six times as many): an
    /// identifier is at most 64 characters, and a longer string id is echoed in the `bad_request` it gets; one past
    /// this gets `bad_request` with `id` null, so that no answer's envelope can be as large as the message that asked.
    public static let maxEchoedIDBytes = 128

    /// Whether `value` is a positive integer no larger than ``maxAmount``.
    @inlinable
    public static func isValidAmount(_ value: Int64) -> Bool {
        value > 0 && value <= maxAmount
    }
}

/// Identifier rules: 1–64 characters from `[A-Za-z0-9_.:-]`.
public enum Identifier {
    /// Whether `value` is a well-formed identifier.
    @inlinable
    public static func isValid(_ value: String) -> Bool {
        if let valid = value.utf8.withContiguousStorageIfAvailable({ isValid(utf8: $0) }) { return valid }
        return Array(value.utf8).withUnsafeBufferPointer { isValid(utf8: $0) }
    }

    /// Whether `utf8` is a well-formed identifier: one bit test per byte against the allowed ASCII set.
    @inlinable
    public static func isValid(utf8: UnsafeBufferPointer<UInt8>) -> Bool {
        guard isValidLength(utf8.count) else { return false }
        for byte in utf8 where !isValidByte(byte) { return false }
        return true
    }

    /// Whether an identifier of `count` bytes has an allowed length (1 to ``Limits/maxIdentifierLength``).
    @inlinable @inline(__always)
    public static func isValidLength(_ count: Int) -> Bool { count > 0 && count <= Limits.maxIdentifierLength }

    /// Whether `byte` is one of the identifier characters `[A-Za-z0-9_.:-]`: one bit test against the allowed ASCII
    /// set. The one table every identifier check reads (the engine's and the gateway's fast decoder).
    @inlinable @inline(__always)
    public static func isValidByte(_ byte: UInt8) -> Bool {
        let bit = UInt64(1) &<< UInt64(byte & 63)
        switch byte >> 6 {
        case 0: return allowedBelow64 & bit != 0
        case 1: return allowedFrom64 & bit != 0
        default: return false
        }
    }

    /// `-`, `.`, `0-9`, `:` as bits of bytes 0...63.
    @usableFromInline static let allowedBelow64: UInt64 = (1 << 45) | (1 << 46) | (0x3FF << 48) | (1 << 58)
    /// `A-Z`, `_`, `a-z` as bits of bytes 64...127 (bit `byte - 64`).
    @usableFromInline static let allowedFrom64: UInt64 = (0x3FF_FFFF << 1) | (1 << 31) | (0x3FF_FFFF << 33)
}

/// The side of a market order.
public enum Side: String, Sendable, Hashable, CaseIterable {
    case buy
    case sell
}

/// How long a market order's unfilled remainder lives.
public enum TimeInForce: String, Sendable, Hashable, CaseIterable {
    /// Good till cancelled: the remainder rests on the book.
    case gtc
    /// Immediate or cancel: the remainder is cancelled at once.
    case ioc
}

/// Sealed-bid pricing rule.
public enum SealedPricing: String, Sendable, Hashable, CaseIterable {
    /// The winner pays their own amount.
    case first
    /// The winner pays `max(start, reserve, second highest amount)`.
    case second
}

/// The listing formats Gavel runs.
public enum ListingFormat: String, Sendable, Hashable, CaseIterable {
    case english
    case sealed
    case dutch
    case market
}
