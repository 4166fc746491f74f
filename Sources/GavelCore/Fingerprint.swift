/// A 64-bit FNV-1a digest of a command's content, used to tell a retried command (same id, same content) from a
/// reused id (same id, different content) without keeping the whole command for the idempotency window.
///
/// The digest is the same on every run and machine; two different commands collide with probability about 2^-64.
public struct Fingerprint {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    @inline(__always)
    mutating func combine(byte: UInt8) {
        value = (value ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
    }

    /// Combines the 8 bytes of `v`, least significant first. A zero byte only multiplies the digest by the prime, so
    /// the zero bytes above the highest nonzero one (most of a length or an amount) cost one multiplication by a
    /// power of the prime together: the digest is the one byte by byte gives.
    @inline(__always)
    public mutating func combine(_ v: UInt64) {
        var v = v
        var left = 8
        while v != 0 {
            combine(byte: UInt8(truncatingIfNeeded: v))
            v >>= 8
            left -= 1
        }
        value = value &* Self.primePower(left)
    }

    /// The FNV prime to the power `n`, for `n` in 0...8.
    @inline(__always)
    static func primePower(_ n: Int) -> UInt64 {
        switch n {
        case 0: 0x1
        case 1: 0x0000_0100_0000_01B3
        case 2: 0x0003_6600_0002_E329
        case 3: 0x08A9_7B00_04E7_FEAB
        case 4: 0x9FFA_AC08_5635_BC91
        case 5: 0x0CAE_E32A_7D4F_6A63
        case 6: 0xDC96_6432_EDF1_C639
        case 7: 0xC552_7B8A_51D3_D2DB
        default: 0x1EFA_C709_0AEF_4A21
        }
    }

    public mutating func combine(_ v: Int64) { combine(UInt64(bitPattern: v)) }

    public mutating func combine(_ v: Int64?) {
        if let v {
            combine(byte: 1)
            combine(v)
        } else {
            combine(byte: 0)
        }
    }

    public mutating func combine(_ s: String) {
        var s = s
        s.withUTF8 { utf8 in
            combine(UInt64(utf8.count))
            for byte in utf8 { combine(byte: byte) }
        }
    }

    /// Combines `s` as `combine(_ s: String)` does, and returns whether it is a well-formed identifier
    /// (``Identifier/isValid(_:)``), reading its bytes once for both.
    @inline(__always)
    mutating func combineIdentifier(_ s: String) -> Bool {
        if let valid = s.utf8.withContiguousStorageIfAvailable({ combineIdentifier(utf8: $0) }) { return valid }
        var copy = s
        return copy.withUTF8 { combineIdentifier(utf8: $0) }
    }

    @inline(__always)
    private mutating func combineIdentifier(utf8: UnsafeBufferPointer<UInt8>) -> Bool {
        combine(UInt64(utf8.count))
        var valid = Identifier.isValidLength(utf8.count)
        for byte in utf8 {
            valid = Identifier.isValidByte(byte) && valid
            combine(byte: byte)
        }
        return valid
    }
}

extension Command {
    /// The digest of every field of the command.
    public var fingerprint: UInt64 {
        var f = Fingerprint()
        f.combine(id)
        f.combine(listing)
        switch body {
        case .open(let seller, let terms):
            f.combine(byte: 0)
            f.combine(seller)
            // Only given deadlines count, so an open without them keeps the digest it had before deadlines existed.
            if !terms.deadlines.isEmpty {
                f.combine(byte: 7)
                terms.deadlines.combine(into: &f)
            }
            switch terms {
            case .english(let t):
                f.combine(byte: 0)
                f.combine(t.start)
                f.combine(t.reserve)
                f.combine(t.buyNow)
                f.combine(t.closesAt)
                f.combine(t.opensAt)
                if let ladder = t.increments {
                    f.combine(UInt64(ladder.count))
                    for step in ladder {
                        f.combine(step.from)
                        f.combine(step.step)
                    }
                } else {
                    f.combine(byte: 0xFF)
                }
                if let soft = t.softClose {
                    f.combine(byte: 1)
                    f.combine(soft.windowMs)
                    f.combine(soft.extendMs)
                    f.combine(soft.maxClosesAt)
                } else {
                    f.combine(byte: 0)
                }
            case .sealed(let t):
                f.combine(byte: 1)
                f.combine(byte: t.pricing == .first ? 0 : 1)
                f.combine(t.start)
                f.combine(t.reserve)
                f.combine(t.closesAt)
                f.combine(t.opensAt)
            case .dutch(let t):
                f.combine(byte: 2)
                f.combine(t.start)
                f.combine(t.floor)
                f.combine(t.step)
                f.combine(t.stepEveryMs)
                f.combine(t.quantity)
                f.combine(t.closesAt)
                f.combine(t.opensAt)
            case .market(let t):
                f.combine(byte: 3)
                f.combine(t.closesAt)
                f.combine(t.opensAt)
            }
        case .bid(let bidder, let amount):
            f.combine(byte: 1)
            f.combine(bidder)
            f.combine(amount)
        case .buyNow(let buyer):
            f.combine(byte: 2)
            f.combine(buyer)
        case .accept(let bidder, let quantity):
            f.combine(byte: 3)
            f.combine(bidder)
            f.combine(quantity)
        case .order(let trader, let side, let price, let quantity, let tif, let expiresAt):
            f.combine(byte: 4)
            f.combine(trader)
            f.combine(byte: side == .buy ? 0 : 1)
            f.combine(price)
            f.combine(quantity)
            f.combine(byte: tif == .gtc ? 0 : 1)
            f.combine(expiresAt)
        case .cancel(let trader, let order):
            f.combine(byte: 5)
            f.combine(trader)
            f.combine(order)
        case .cancelListing(let seller):
            f.combine(byte: 6)
            f.combine(seller)
        case .cancelListingAsAdmin(let admin):
            f.combine(byte: 8)
            f.combine(admin)
        case .settle(let number, let action, let by, let role):
            f.combine(byte: 9)
            f.combine(by)
            f.combine(byte: role.code)
            f.combine(number)
            action.combine(into: &f)
        case .secondChance(let action, let by, let role):
            f.combine(byte: 10)
            f.combine(by)
            f.combine(byte: role.code)
            f.combine(byte: action.code)
        }
        return f.value
    }
}
