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

    /// Whether `value` is a positive integer no larger than ``maxAmount``.
    @inlinable
    public static func isValidAmount(_ value: Int64) -> Bool {
        value > 0 && value <= maxAmount
    }
}

/// Identifier rules: 1–64 characters from `[A-Za-z0-9_.:-]`.
public enum Identifier {
    /// Whether `value` is a well-formed identifier.
    public static func isValid(_ value: String) -> Bool {
        var count = 0
        for byte in value.utf8 {
            count += 1
            if count > Limits.maxIdentifierLength { return false }
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "."),
                UInt8(ascii: ":"), UInt8(ascii: "-"):
                continue
            default:
                return false
            }
        }
        return count > 0
    }
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
