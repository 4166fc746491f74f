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
            w.write(UInt8(0))
            w.write(seller)
            terms.encode(into: &w)
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
