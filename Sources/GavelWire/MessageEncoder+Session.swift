import GavelCore

/// The messages a gateway session writes itself (not results and events): its `hello`, the answers to
/// `subscribe`, `unsubscribe`, `subscribe_user`, `subscribe_feed`, `list`, `my_settlements` and `get_settlement`,
/// and a private notice. Each takes plain values and already-encoded parts, so the session only gathers them.
///
/// The short messages are written into a buffer the caller keeps (its old content replaced): no allocation once it
/// has grown. The answers that may be large (a snapshot, a page of listings or settlements) are returned as new
/// arrays, so that a connection does not keep a buffer the size of its largest answer.
extension MessageEncoder {
    /// The limits a `hello` announces, under `limits`.
    public struct SessionLimits: Sendable, Equatable {
        public var maxMessageBytes: Int64
        public var maxOutboundBytes: Int64
        public var maxSubscriptions: Int64
        public var ratePerSecond: Int64
        public var rateBurst: Int64
        public var idleTimeoutMs: Int64
        public var historyEvents: Int64
        public var userHistoryEvents: Int64
        public var maxReadBytesPerSecond: Int64

        public init(
            maxMessageBytes: Int64, maxOutboundBytes: Int64, maxSubscriptions: Int64, ratePerSecond: Int64,
            rateBurst: Int64, idleTimeoutMs: Int64, historyEvents: Int64, userHistoryEvents: Int64,
            maxReadBytesPerSecond: Int64
        ) {
            self.maxMessageBytes = maxMessageBytes
            self.maxOutboundBytes = maxOutboundBytes
            self.maxSubscriptions = maxSubscriptions
            self.ratePerSecond = ratePerSecond
            self.rateBurst = rateBurst
            self.idleTimeoutMs = idleTimeoutMs
            self.historyEvents = historyEvents
            self.userHistoryEvents = userHistoryEvents
            self.maxReadBytesPerSecond = maxReadBytesPerSecond
        }
    }

    /// `{"type":"hello","server_time":T,"principal":P|null,"role":R,"limits":{...},"ts":T}`: the first message of a
    /// connection, `now` both its `server_time` and its `ts`.
    public static func hello(
        principal: String?, role: String, limits: SessionLimits, now: Millis, into buffer: inout [UInt8]
    ) {
        FixedJSONWriter.write(into: &buffer) { w in
            w.field("type", word: "hello")
            w.field("server_time", now)
            w.field("principal", principal)
            w.field("role", role)
            var l = JSONObjectWriter()
            l.field("max_message_bytes", limits.maxMessageBytes)
            l.field("max_outbound_bytes", limits.maxOutboundBytes)
            l.field("max_subscriptions", limits.maxSubscriptions)
            l.field("rate_per_second", limits.ratePerSecond)
            l.field("rate_burst", limits.rateBurst)
            l.field("idle_timeout_ms", limits.idleTimeoutMs)
            l.field("history_events", limits.historyEvents)
            l.field("user_history_events", limits.userHistoryEvents)
            l.field("max_read_bytes_per_second", limits.maxReadBytesPerSecond)
            w.field("limits", raw: l.finish())
            w.field("ts", now)
        }
    }

    /// `{"type":"snapshot","listing":L,"seq":N,"state":{...}|null,"recovered":false,"ts":T}`: the public state of
    /// `listing` as of `seq` (`view` `nil`: no such listing yet); `recovered` is written only when given (a
    /// `subscribe` with `since` whose events could not all be given).
    public static func snapshot(
        listing: String, seq: UInt64, view: PublicListingView?, recovered: Bool?, ts: Millis
    ) -> [UInt8] {
        var w = JSONObjectWriter(capacity: 512)
        w.field("type", word: "snapshot")
        w.field("listing", listing)
        w.field("seq", seq)
        if let view {
            w.field("state", raw: listingState(view))
        } else {
            w.field("state", nil as String?)
        }
        if let recovered { w.field("recovered", recovered) }
        w.field("ts", ts)
        return w.finish()
    }

    /// `{"type":"resumed","listing":L,"since":S,"seq":N,"recovered":true,"ts":T}`: the events of `listing` after
    /// `since` up to `seq` follow.
    public static func resumed(listing: String, since: UInt64, seq: UInt64, ts: Millis, into buffer: inout [UInt8]) {
        FixedJSONWriter.write(into: &buffer) { w in
            w.field("type", word: "resumed")
            w.field("listing", listing)
            w.field("since", since)
            w.field("seq", seq)
            w.field("recovered", true)
            w.field("ts", ts)
        }
    }

    /// `{"type":"unsubscribed","listing":L,"ts":T}`.
    public static func unsubscribed(listing: String, ts: Millis, into buffer: inout [UInt8]) {
        FixedJSONWriter.write(into: &buffer) { w in
            w.field("type", word: "unsubscribed")
            w.field("listing", listing)
            w.field("ts", ts)
        }
    }

    /// `{"type":"user_subscribed","id":I,"user":U,"epoch":E,"user_seq":N,"since":S,"recovered":B,"ts":T}`: the
    /// answer to `subscribe_user`; `id` and `since` are written only when given.
    public static func userSubscribed(
        id: String?, user: String, epoch: String, userSeq: UInt64, since: UInt64?, recovered: Bool, ts: Millis,
        into buffer: inout [UInt8]
    ) {
        FixedJSONWriter.write(into: &buffer) { w in
            w.field("type", word: "user_subscribed")
            if let id { w.field("id", id) }
            w.field("user", user)
            w.field("epoch", epoch)
            w.field("user_seq", userSeq)
            if let since { w.field("since", since) }
            w.field("recovered", recovered)
            w.field("ts", ts)
        }
    }

    /// The refusal of a `subscribe_feed`, with the lsn that tells the consumer where it stands:
    /// `{"type":"result","id":I|null,"ok":false,"error":E,"message":M,"<name>":N,"ts":T}`. `feed_lsn_not_retained`
    /// carries `oldest_lsn` (the journal no longer holds its `since_lsn`), `feed_history_diverged` `durable_lsn` (it
    /// handled a history the journal does not hold).
    public static func feedRefused(
        id: String?, _ error: ErrorCode, message: String, _ name: StaticString, lsn: UInt64, ts: Millis,
        into buffer: inout [UInt8]
    ) {
        FixedJSONWriter.write(into: &buffer) { w in
            w.field("type", word: "result")
            w.field("id", id)
            w.field("ok", false)
            w.field("error", error.rawValue)
            w.field("message", message)
            w.field(name, lsn)
            w.field("ts", ts)
        }
    }

    /// `{"type":"feed_mark","lsn":L,"chain":"<64 hex digits>"}`: the feed messages that follow, up to lsn `L`,
    /// belong to the journal batch that ends at `L`, whose chain is `chain`.
    public static func feedMark(lsn: UInt64, chain: [UInt8], into buffer: inout [UInt8]) {
        let hex = SHA256Digest.hexString(chain)
        FixedJSONWriter.write(into: &buffer) { w in
            w.field("type", word: "feed_mark")
            w.field("lsn", lsn)
            w.field("chain", hex)
        }
    }

    /// `{"type":"feed_live","lsn":N}`: the feed's catch-up is over; what follows is live from `lsn` on.
    public static func feedLive(lsn: UInt64, into buffer: inout [UInt8]) {
        FixedJSONWriter.write(into: &buffer) { w in
            w.field("type", word: "feed_live")
            w.field("lsn", lsn)
        }
    }

    /// `{"type":"settlements","id":I,"user":U,"settlements":[...],"offers":[...],"next":N|null,"offers_next":O|null,
    /// "ts":T}`: one page of `my_settlements`, `settlements` and `offers` the already-encoded arrays; `id` is written
    /// only when given.
    public static func settlements(
        id: String?, user: String, settlements: [UInt8], offers: [UInt8], next: String?, offersNext: String?,
        ts: Millis
    ) -> [UInt8] {
        var w = JSONObjectWriter(capacity: settlements.count + offers.count + 256)
        w.field("type", word: "settlements")
        if let id { w.field("id", id) }
        w.field("user", user)
        w.field("settlements", raw: settlements)
        w.field("offers", raw: offers)
        w.field("next", next)
        w.field("offers_next", offersNext)
        w.field("ts", ts)
        return w.finish()
    }

    /// `{"type":"settlement_detail","id":I,"settlement":{...},"ts":T}`: the answer to `get_settlement`, `settlement`
    /// the already-encoded object; `id` is written only when given.
    public static func settlementDetail(id: String?, settlement: [UInt8], ts: Millis) -> [UInt8] {
        var w = JSONObjectWriter(capacity: settlement.count + 96)
        w.field("type", word: "settlement_detail")
        if let id { w.field("id", id) }
        w.field("settlement", raw: settlement)
        w.field("ts", ts)
        return w.finish()
    }

    /// `{"type":"listings","id":I,"status":"open"|"all","listings":[...],"next":N|null,"ts":T}`: one page of `list`,
    /// each of `views` as its ``listingSummary(_:)``; `id` is written only when given.
    public static func listings(
        id: String?, openOnly: Bool, views: [PublicListingView], next: String?, ts: Millis
    ) -> [UInt8] {
        var items: [UInt8] = [UInt8(ascii: "[")]
        items.reserveCapacity(views.count * 192 + 2)
        for (i, view) in views.enumerated() {
            if i > 0 { items.append(UInt8(ascii: ",")) }
            items.append(contentsOf: listingSummary(view))
        }
        items.append(UInt8(ascii: "]"))
        var w = JSONObjectWriter(capacity: items.count + 96)
        w.field("type", word: "listings")
        if let id { w.field("id", id) }
        w.field("status", word: openOnly ? "open" : "all")
        w.field("listings", raw: items)
        w.field("next", next)
        w.field("ts", ts)
        return w.finish()
    }

    /// `{"type":"notice","event":{...},"user_seq":N,"ts":T}`: a private notice of the already-encoded `event`,
    /// numbered `userSeq` in its user's feed. Written into `buffer` (its old content replaced) through
    /// ``JSONObjectWriter/init(reusing:)``, so that no allocation is made once the buffer has grown, whatever the
    /// size of the event.
    public static func notice(event: [UInt8], userSeq: UInt64, ts: Millis, into buffer: inout [UInt8]) {
        var w = JSONObjectWriter(reusing: &buffer)
        w.field("type", word: "notice")
        w.field("event", raw: event)
        w.field("user_seq", userSeq)
        w.field("ts", ts)
        w.finish(into: &buffer)
    }
}
