extension ListingTerms {
    /// Appends the terms in the binary encoding.
    public func encode(into w: inout BinaryWriter) {
        switch self {
        case .english(let t):
            w.write(UInt8(0))
            w.write(t.start)
            w.write(t.reserve)
            w.write(t.buyNow)
            w.write(t.closesAt)
            w.write(t.opensAt)
            if let ladder = t.increments {
                w.write(UInt8(1))
                w.write(UInt32(ladder.count))
                for step in ladder {
                    w.write(step.from)
                    w.write(step.step)
                }
            } else {
                w.write(UInt8(0))
            }
            if let soft = t.softClose {
                w.write(UInt8(1))
                w.write(soft.windowMs)
                w.write(soft.extendMs)
                w.write(soft.maxClosesAt)
            } else {
                w.write(UInt8(0))
            }
        case .sealed(let t):
            w.write(UInt8(1))
            w.write(t.pricing == .first ? UInt8(0) : UInt8(1))
            w.write(t.start)
            w.write(t.reserve)
            w.write(t.closesAt)
            w.write(t.opensAt)
        case .dutch(let t):
            w.write(UInt8(2))
            w.write(t.start)
            w.write(t.floor)
            w.write(t.step)
            w.write(t.stepEveryMs)
            w.write(t.quantity)
            w.write(t.closesAt)
            w.write(t.opensAt)
        case .market(let t):
            w.write(UInt8(3))
            w.write(t.closesAt)
            w.write(t.opensAt)
        }
    }
}

extension Command {
    /// Appends the command in the binary encoding.
    public func encode(into w: inout BinaryWriter) {
        w.write(id)
        w.write(listing)
        switch body {
        case .open(let seller, let terms):
            // Opens with settlement deadlines have their own tag, so that journals written before deadlines
            // existed read unchanged.
            let deadlines = terms.deadlines
            w.write(deadlines.isEmpty ? UInt8(0) : UInt8(7))
            w.write(seller)
            terms.encode(into: &w)
            if !deadlines.isEmpty { deadlines.encode(into: &w) }
        case .bid(let bidder, let amount):
            w.write(UInt8(1))
            w.write(bidder)
            w.write(amount)
        case .buyNow(let buyer):
            w.write(UInt8(2))
            w.write(buyer)
        case .accept(let bidder, let quantity):
            w.write(UInt8(3))
            w.write(bidder)
            w.write(quantity)
        case .order(let trader, let side, let price, let quantity, let tif, let expiresAt):
            w.write(UInt8(4))
            w.write(trader)
            w.write(side == .buy ? UInt8(0) : UInt8(1))
            w.write(price)
            w.write(quantity)
            w.write(tif == .gtc ? UInt8(0) : UInt8(1))
            w.write(expiresAt)
        case .cancel(let trader, let order):
            w.write(UInt8(5))
            w.write(trader)
            w.write(order)
        case .cancelListing(let seller):
            w.write(UInt8(6))
            w.write(seller)
        case .cancelListingAsAdmin(let admin):
            w.write(UInt8(8))
            w.write(admin)
        case .settle(let number, let action, let by, let role):
            w.write(UInt8(9))
            w.write(by)
            w.write(role.code)
            w.write(number)
            action.encode(into: &w)
        case .secondChance(let action, let by, let role):
            w.write(UInt8(10))
            w.write(by)
            w.write(role.code)
            w.write(action.code)
        }
    }
}

extension SettlementDeadlines {
    /// Appends the four given-or-not deadlines in the binary encoding.
    public func encode(into w: inout BinaryWriter) {
        w.write(paymentDueMs)
        w.write(shipDueMs)
        w.write(complaintWindowMs)
        w.write(offerDueMs)
    }

    /// Reads deadlines written by ``encode(into:)``.
    public static func decode(from r: inout BinaryReader) throws(DecodingError) -> SettlementDeadlines {
        SettlementDeadlines(
            paymentDueMs: try r.readOptionalInt64(), shipDueMs: try r.readOptionalInt64(),
            complaintWindowMs: try r.readOptionalInt64(), offerDueMs: try r.readOptionalInt64())
    }

    /// Mixes the deadlines into a command fingerprint.
    func combine(into f: inout Fingerprint) {
        f.combine(paymentDueMs)
        f.combine(shipDueMs)
        f.combine(complaintWindowMs)
        f.combine(offerDueMs)
    }
}

/// A value written as one byte in the binary encodings: its position in `allCases`. Cases are only ever added at the
/// end, so a byte keeps its meaning.
public protocol ByteCoded: CaseIterable, Equatable {}

extension ByteCoded {
    /// The value's byte in the binary encodings.
    public var code: UInt8 {
        var index: UInt8 = 0
        for value in Self.allCases {
            if value == self { break }
            index += 1
        }
        return index
    }

    /// The value of a byte written as ``code``.
    public init?(code: UInt8) {
        for (index, value) in Self.allCases.enumerated() where index == Int(code) {
            self = value
            return
        }
        return nil
    }
}

extension ActorRole: ByteCoded {}
extension OfferAction: ByteCoded {}
extension SettlementState: ByteCoded {}
extension OfferState: ByteCoded {}

extension SettlementAction {
    /// Appends the action in the binary encoding.
    public func encode(into w: inout BinaryWriter) {
        switch self {
        case .confirmPayment(let ref):
            w.write(UInt8(0))
            w.write(ref)
        case .markShipped(let tracking):
            w.write(UInt8(1))
            w.write(tracking)
        case .confirmDelivery:
            w.write(UInt8(2))
        case .openDispute(let reason):
            w.write(UInt8(3))
            w.write(reason)
        case .resolveDispute(let outcome):
            w.write(UInt8(4))
            w.write(outcome == .release ? UInt8(0) : UInt8(1))
        case .refund:
            w.write(UInt8(5))
        }
    }

    /// Reads an action written by ``encode(into:)``.
    public static func decode(from r: inout BinaryReader) throws(DecodingError) -> SettlementAction {
        switch try r.readByte() {
        case 0: return .confirmPayment(paymentRef: try r.readString())
        case 1: return .markShipped(tracking: try r.readString())
        case 2: return .confirmDelivery
        case 3: return .openDispute(reason: try r.readString())
        case 4:
            switch try r.readByte() {
            case 0: return .resolveDispute(.release)
            case 1: return .resolveDispute(.refund)
            default: throw r.fail("unknown dispute outcome")
            }
        case 5: return .refund
        default: throw r.fail("unknown settlement action")
        }
    }

    /// Mixes the action into a command fingerprint.
    func combine(into f: inout Fingerprint) {
        switch self {
        case .confirmPayment(let ref):
            f.combine(byte: 0)
            f.combine(ref)
        case .markShipped(let tracking):
            f.combine(byte: 1)
            f.combine(tracking)
        case .confirmDelivery:
            f.combine(byte: 2)
        case .openDispute(let reason):
            f.combine(byte: 3)
            f.combine(reason)
        case .resolveDispute(let outcome):
            f.combine(byte: 4)
            f.combine(byte: outcome == .release ? 0 : 1)
        case .refund:
            f.combine(byte: 5)
        }
    }
}

extension CommandResult {
    /// Appends the result in the binary encoding (the `duplicate` flag is not part of it).
    public func encode(into w: inout BinaryWriter) {
        w.write(error?.rawValue)
        w.write(message)
        w.write(minBid)
        w.write(price)
        w.write(leading.map { $0 ? Int64(1) : Int64(0) })
        w.write(filled)
        w.write(remaining)
    }
}
