import GavelCore

/// Encodes commands in the protocol's JSON form (the form ``CommandDecoder`` reads).
public enum CommandEncoder {
    /// The command as a JSON object; `prefix` writes leading members (such as an lsn) first.
    public static func encode(
        _ command: Command, at: Millis? = nil, prefix: (inout JSONObjectWriter) -> Void = { _ in }
    )
        -> [UInt8]
    {
        var w = JSONObjectWriter()
        prefix(&w)
        w.field("type", command.typeName)
        w.field("id", command.id)
        w.field("listing", command.listing)
        switch command.body {
        case .open(let seller, let terms):
            w.field("seller", seller)
            w.field("format", terms.format.rawValue)
            switch terms {
            case .english(let t):
                w.field("start", t.start)
                if let reserve = t.reserve { w.field("reserve", reserve) }
                if let buyNow = t.buyNow { w.field("buy_now", buyNow) }
                w.field("closes_at", t.closesAt)
                if let opensAt = t.opensAt { w.field("opens_at", opensAt) }
                if let ladder = t.increments {
                    let text = "[" + ladder.map { "[\($0.from),\($0.step)]" }.joined(separator: ",") + "]"
                    w.field("increments", raw: Array(text.utf8))
                }
                if let soft = t.softClose {
                    var s = JSONObjectWriter()
                    s.field("window_ms", soft.windowMs)
                    s.field("extend_ms", soft.extendMs)
                    if let cap = soft.maxClosesAt { s.field("max_closes_at", cap) }
                    w.field("soft_close", raw: s.finish())
                }
            case .sealed(let t):
                w.field("pricing", t.pricing.rawValue)
                w.field("start", t.start)
                if let reserve = t.reserve { w.field("reserve", reserve) }
                w.field("closes_at", t.closesAt)
                if let opensAt = t.opensAt { w.field("opens_at", opensAt) }
            case .dutch(let t):
                w.field("start", t.start)
                w.field("floor", t.floor)
                w.field("step", t.step)
                w.field("step_every_ms", t.stepEveryMs)
                w.field("quantity", t.quantity)
                w.field("closes_at", t.closesAt)
                if let opensAt = t.opensAt { w.field("opens_at", opensAt) }
            case .market(let t):
                if let closesAt = t.closesAt { w.field("closes_at", closesAt) }
                if let opensAt = t.opensAt { w.field("opens_at", opensAt) }
            }
            for (name, value) in terms.deadlines.fields {
                if let value { w.field(name, value) }
            }
        case .bid(let bidder, let amount):
            w.field("bidder", bidder)
            w.field("amount", amount)
        case .buyNow(let buyer):
            w.field("buyer", buyer)
        case .accept(let bidder, let quantity):
            w.field("bidder", bidder)
            w.field("quantity", quantity)
        case .order(let trader, let side, let price, let quantity, let tif, let expiresAt):
            w.field("trader", trader)
            w.field("side", side.rawValue)
            w.field("price", price)
            w.field("quantity", quantity)
            w.field("tif", tif.rawValue)
            if let expiresAt { w.field("expires_at", expiresAt) }
        case .cancel(let trader, let order):
            w.field("trader", trader)
            w.field("order", order)
        case .cancelListing(let seller):
            w.field("seller", seller)
        case .cancelListingAsAdmin(let admin):
            w.field("by", admin)
            w.field("role", ActorRole.admin.rawValue)
        case .settle(_, let action, let by, let role):
            w.field("settlement", command.settlementID)
            w.field("by", by)
            w.field("role", role.rawValue)
            switch action {
            case .confirmPayment(let ref): w.field("payment_ref", ref)
            case .markShipped(let tracking): w.field("tracking", tracking)
            case .openDispute(let reason): w.field("reason", reason)
            case .resolveDispute(let outcome): w.field("outcome", outcome.rawValue)
            case .confirmDelivery, .refund: break
            }
        case .secondChance(_, let by, let role):
            w.field("by", by)
            w.field("role", role.rawValue)
        }
        if let at { w.field("at", at) }
        return w.finish()
    }
}
