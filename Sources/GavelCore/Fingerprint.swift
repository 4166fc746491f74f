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

    public mutating func combine(_ v: UInt64) {
        var v = v
        for _ in 0..<8 {
            combine(byte: UInt8(truncatingIfNeeded: v))
            v >>= 8
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
        }
        return f.value
    }
}
