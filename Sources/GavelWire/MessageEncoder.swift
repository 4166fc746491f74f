import GavelCore

/// Encodes results and events as the protocol's JSON objects.
public enum MessageEncoder {
    /// A `result` message for the command with request id `id`.
    public static func result(id: String?, _ result: CommandResult, ts: Millis? = nil) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(256)
        self.result(id: id, result, ts: ts, into: &bytes)
        return bytes
    }

    /// A `result` message written into `buffer` (its old content replaced), which the caller keeps for the next
    /// message: no allocation once it has grown.
    public static func result(id: String?, _ result: CommandResult, ts: Millis?, into buffer: inout [UInt8]) {
        FixedJSONWriter.write(into: &buffer) { w in
            w.field("type", word: "result")
            w.field("id", id)
            w.field("ok", result.ok)
            if result.duplicate { w.field("duplicate", true) }
            if let error = result.error {
                w.field("error", error.rawValue)
                w.field("message", result.message)
                if let minBid = result.minBid { w.field("min_bid", minBid) }
            } else {
                if let price = result.price { w.field("price", price) }
                if let leading = result.leading { w.field("leading", leading) }
                if let filled = result.filled { w.field("filled", filled) }
                if let remaining = result.remaining { w.field("remaining", remaining) }
                if let settlement = result.settlement { w.field("settlement", settlement) }
                if let state = result.settlementState { w.field("state", state.rawValue) }
            }
            if let ts { w.field("ts", ts) }
        }
    }

    /// A `bad_request` result for input that could not be read as a command.
    public static func badRequest(id: String?, message: String, ts: Millis? = nil) -> [UInt8] {
        result(id: id, .rejected(.badRequest, message), ts: ts)
    }

    /// An event message. Public events carry `seq`; private notices do not.
    public static func event(_ event: Event, ts: Millis? = nil) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(256)
        self.event(event, ts: ts, into: &bytes)
        return bytes
    }

    /// An event message written into `buffer` (its old content replaced), which the caller keeps for the next
    /// message: no allocation once it has grown.
    public static func event(_ event: Event, ts: Millis?, into buffer: inout [UInt8]) {
        FixedJSONWriter.write(into: &buffer) { w in
            fields(of: event, into: &w)
            if let ts { w.field("ts", ts) }
        }
    }

    /// The members every event message starts with: `type`, `listing`, `seq` (public events only) and `at`.
    @inline(__always)
    static func header<W: JSONMemberWriter>(_ type: StaticString, _ event: Event, notice: Bool = false, into w: inout W)
    {
        w.field("type", word: type)
        w.field("listing", event.listing)
        if !notice { w.field("seq", event.seq) }
        w.field("at", event.at)
    }

    /// An event's members: its header, with the ``EventKind/typeName`` of its kind (private notices without `seq`:
    /// ``EventKind/isPrivate``), then the kind's own. One `switch` over the kind: each one copies the kind (81
    /// bytes, its payload's strings retained), so the header is written here rather than read from the kind first.
    /// The golden lines of every kind in `EncoderReuseTests` hold the names here to the kind's.
    static func fields<W: JSONMemberWriter>(of event: Event, into w: inout W) {
        switch event.kind {
        case .opened(let seller, let terms):
            header("opened", event, into: &w)
            w.field("format", terms.format.rawValue)
            w.field("seller", seller)
            terms.publicFields(into: &w)
        case .bidPlaced(let price, let leader, let bids, let closesAt, let reserveMet):
            header("bid_placed", event, into: &w)
            w.field("price", price)
            w.field("leader", leader)
            w.field("bids", bids)
            w.field("closes_at", closesAt)
            w.field("reserve_met", reserveMet)
        case .sealedBidPlaced(let bids):
            header("bid_placed", event, into: &w)
            w.field("bids", bids)
        case .outbid(let bidder, let price):
            header("outbid", event, notice: true, into: &w)
            w.field("bidder", bidder)
            w.field("price", price)
        case .extended(let closesAt):
            header("extended", event, into: &w)
            w.field("closes_at", closesAt)
        case .price(let price):
            header("price", event, into: &w)
            w.field("price", price)
        case .filled(let bidder, let price, let quantity, let remaining):
            header("filled", event, into: &w)
            w.field("bidder", bidder)
            w.field("price", price)
            w.field("quantity", quantity)
            w.field("remaining", remaining)
        case .closed(let winner, let price, let reserveMet):
            header("closed", event, into: &w)
            w.field("winner", winner)
            w.field("price", price)
            w.field("reserve_met", reserveMet)
        case .dutchClosed(let sold):
            header("closed", event, into: &w)
            w.field("sold", sold)
        case .marketClosed:
            header("closed", event, into: &w)
        case .orderPlaced(let order, let trader, let side, let price, let quantity):
            header("order_placed", event, into: &w)
            w.field("order", order)
            w.field("trader", trader)
            w.field("side", side.rawValue)
            w.field("price", price)
            w.field("quantity", quantity)
        case .orderCancelled(let order, let trader, let reason, let remaining):
            header("order_cancelled", event, into: &w)
            w.field("order", order)
            w.field("trader", trader)
            w.field("reason", reason.rawValue)
            w.field("remaining", remaining)
        case .trade(let buyer, let seller, let price, let quantity, let buyOrder, let sellOrder):
            header("trade", event, into: &w)
            w.field("buyer", buyer)
            w.field("seller", seller)
            w.field("price", price)
            w.field("quantity", quantity)
            w.field("buy_order", buyOrder)
            w.field("sell_order", sellOrder)
        case .book(let bestBid, let bestAsk, let bidQuantity, let askQuantity):
            header("book", event, into: &w)
            w.field("best_bid", bestBid)
            w.field("best_ask", bestAsk)
            w.field("bid_quantity", bidQuantity)
            w.field("ask_quantity", askQuantity)
        case .listingCancelled:
            header("listing_cancelled", event, into: &w)
        case .evicted:
            header("evicted", event, into: &w)
        case .settlement(let change):
            header("settlement", event, notice: true, into: &w)
            w.field("settlement", SettlementID.format(listing: event.listing, number: change.number))
            w.field("state", change.state.rawValue)
            w.field("buyer", change.buyer)
            w.field("seller", change.seller)
            w.field("price", change.price)
            w.field("quantity", change.quantity)
            w.field("due_at", change.dueAt)
            w.field("by", change.step.by)
            w.field("role", change.step.role?.rawValue)
            detailFields(change.step.detail, into: &w)
        case .secondChance(let offer):
            header("second_chance", event, notice: true, into: &w)
            w.field("bidder", offer.bidder)
            w.field("seller", offer.seller)
            w.field("price", offer.price)
            w.field("state", offer.state.rawValue)
            w.field("due_at", offer.dueAt)
        case .settlementsPruned(let numbers):
            header("settlements_pruned", event, into: &w)
            w.field("settlements", raw: Array(("[" + numbers.map(String.init).joined(separator: ",") + "]").utf8))
        }
    }
}

extension ListingTerms {
    /// The terms a watcher may see: everything but the amount of a reserve.
    func publicFields<W: JSONMemberWriter>(into w: inout W) {
        switch self {
        case .english(let t):
            w.field("start", t.start)
            w.field("opens_at", t.opensAt)
            w.field("closes_at", t.closesAt)
            w.field("has_reserve", t.reserve != nil)
            w.field("buy_now", t.buyNow)
            var ladder: [UInt8] = [UInt8(ascii: "[")]
            for (i, step) in (t.increments ?? IncrementLadder.standard).enumerated() {
                if i > 0 { ladder.append(UInt8(ascii: ",")) }
                ladder.append(contentsOf: "[\(step.from),\(step.step)]".utf8)
            }
            ladder.append(UInt8(ascii: "]"))
            w.field("increments", raw: ladder)
            if let soft = t.softClose {
                var s = JSONObjectWriter()
                s.field("window_ms", soft.windowMs)
                s.field("extend_ms", soft.extendMs)
                s.field("max_closes_at", soft.maxClosesAt)
                w.field("soft_close", raw: s.finish())
            }
        case .sealed(let t):
            w.field("pricing", t.pricing.rawValue)
            w.field("start", t.start)
            w.field("opens_at", t.opensAt)
            w.field("closes_at", t.closesAt)
            w.field("has_reserve", t.reserve != nil)
        case .dutch(let t):
            w.field("start", t.start)
            w.field("floor", t.floor)
            w.field("step", t.step)
            w.field("step_every_ms", t.stepEveryMs)
            w.field("quantity", t.quantity)
            w.field("opens_at", t.opensAt)
            w.field("closes_at", t.closesAt)
        case .market(let t):
            w.field("opens_at", t.opensAt)
            w.field("closes_at", t.closesAt)
        }
        let deadlines = self.deadlines.effective
        w.field("payment_due_ms", deadlines.paymentDueMs)
        w.field("ship_due_ms", deadlines.shipDueMs)
        w.field("complaint_window_ms", deadlines.complaintWindowMs)
        w.field("offer_due_ms", deadlines.offerDueMs)
    }
}

extension MessageEncoder {
    /// The public state of a listing, as a JSON object: identity, status, the current close, the public terms and
    /// the public book; `outcome` (english, sealed) or `sold` (dutch) once closed.
    public static func listingState(_ view: PublicListingView) -> [UInt8] {
        var w = JSONObjectWriter()
        w.field("listing", view.listing)
        w.field("format", view.format.rawValue)
        w.field("seller", view.seller)
        w.field("status", statusName(view.status))
        w.field("opens_at", view.opensAt)
        w.field("closes_at", view.closesAt)
        var terms = JSONObjectWriter()
        view.terms.publicFields(into: &terms)
        w.field("terms", raw: terms.finish())
        switch view.book {
        case .english(let price, let leader, let bids, let reserveMet):
            w.field("price", price)
            w.field("leader", leader)
            w.field("bids", bids)
            w.field("reserve_met", reserveMet)
        case .sealed(let bids):
            w.field("bids", bids)
        case .dutch(let price, let remaining):
            w.field("price", price)
            w.field("remaining", remaining)
        case .market(let bestBid, let bestAsk, let bidQuantity, let askQuantity):
            w.field("best_bid", bestBid)
            w.field("best_ask", bestAsk)
            w.field("bid_quantity", bidQuantity)
            w.field("ask_quantity", askQuantity)
        }
        if let outcome = view.outcome {
            var o = JSONObjectWriter()
            o.field("winner", outcome.winner)
            o.field("price", outcome.price)
            o.field("reserve_met", outcome.reserveMet)
            w.field("outcome", raw: o.finish())
        }
        if let sold = view.sold { w.field("sold", sold) }
        return w.finish()
    }

    /// One item of a `listings` answer: what a list of listings shows of `view`. `price` is the english current
    /// price or the dutch clock price, `null` for sealed (no amount is shown before or after the close) and market;
    /// `bids` is the english or sealed count, `null` for dutch and market. Never a reserve amount or a sealed bid.
    public static func listingSummary(_ view: PublicListingView) -> [UInt8] {
        var w = JSONObjectWriter(capacity: 192)
        w.field("listing", view.listing)
        w.field("format", view.format.rawValue)
        w.field("status", statusName(view.status))
        w.field("seller", view.seller)
        var price: Money?
        var bids: Int64?
        switch view.book {
        case .english(let p, _, let count, _):
            price = p
            bids = count
        case .sealed(let count):
            bids = count
        case .dutch(let p, _):
            price = p
        case .market:
            break
        }
        w.field("price", price)
        w.field("opens_at", view.opensAt)
        w.field("closes_at", view.closesAt)
        w.field("bids", bids)
        w.field("seq", view.seq)
        return w.finish()
    }

    static func statusName(_ status: ListingStatus) -> String {
        switch status {
        case .open: "open"
        case .closed: "closed"
        case .cancelled: "cancelled"
        }
    }
}

extension MessageEncoder {
    /// A settlement with its whole history, as one JSON object of type `history`:
    /// `{"type":"history","settlement":ID,"listing":L,"buyer":B,"seller":V,"price":P,"quantity":Q,"state":S,
    /// "due_at":T|null,"payment_ref":R|null,"tracking":K|null,"steps":[{"state","at","by","role",...},...]}`.
    public static func settlementHistory(_ s: Settlement) -> [UInt8] {
        var w = JSONObjectWriter()
        w.field("type", "history")
        settlementFields(s, stepsKey: "steps", into: &w)
        return w.finish()
    }

    /// A settlement's fields, `settlement` to `tracking`, then its history under `stepsKey`, each step
    /// `{"state","at","by","role"}` and its detail's field (the gateway's `my_settlements` and `get_settlement`
    /// write the same object with the history under `history`).
    public static func settlementFields(_ s: Settlement, stepsKey: StaticString, into w: inout JSONObjectWriter) {
        w.field("settlement", s.id)
        w.field("listing", s.listing)
        w.field("buyer", s.buyer)
        w.field("seller", s.seller)
        w.field("price", s.price)
        w.field("quantity", s.quantity)
        w.field("state", s.state.rawValue)
        w.field("due_at", s.dueAt)
        w.field("payment_ref", s.paymentRef)
        w.field("tracking", s.tracking)
        var steps: [UInt8] = [UInt8(ascii: "[")]
        for (index, step) in s.history.enumerated() {
            if index > 0 { steps.append(UInt8(ascii: ",")) }
            var o = JSONObjectWriter()
            o.field("state", step.state.rawValue)
            o.field("at", step.at)
            o.field("by", step.by)
            o.field("role", step.role?.rawValue)
            detailFields(step.detail, into: &o)
            steps.append(contentsOf: o.finish())
        }
        steps.append(UInt8(ascii: "]"))
        w.field(stepsKey, raw: steps)
    }

    /// The field a transition's detail adds: `payment_ref`, `tracking`, `reason` or `outcome`.
    static func detailFields<W: JSONMemberWriter>(_ detail: SettlementDetail?, into w: inout W) {
        switch detail {
        case .paymentRef(let ref): w.field("payment_ref", ref)
        case .tracking(let tracking): w.field("tracking", tracking)
        case .reason(let reason): w.field("reason", reason)
        case .outcome(let outcome): w.field("outcome", outcome.rawValue)
        case nil: break
        }
    }
}
