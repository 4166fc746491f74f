import GavelCore
import GavelEngine
import GavelWire
import NIOCore
import NIOWebSocket

/// The session's reads and subscriptions: listing subscriptions, the user's private feed, the durable event feed,
/// the settlement queries and `list`.
extension WebSocketSession {
    // MARK: - Subscriptions

    func subscribe(_ value: JSONValue, id: String?) {
        guard case .string(let listing)? = value["listing"], Identifier.isValid(listing) else {
            return sendResult(id: id, .rejected(.badRequest, CommandDecoder.identifierRule("listing")))
        }
        var since: UInt64?
        if let field = value["since"], field != .null {
            guard case .integer(let n) = field, n >= 0 else {
                return sendResult(id: id, .rejected(.badRequest, "since must be a non-negative integer (a seq)"))
            }
            since = UInt64(n)
        }
        guard readAllowed(id: id, query: "subscribe") else { return }
        let existing = subscriptions[listing]
        let limit = configuration.maxSubscriptions(for: principal.role)
        if existing == nil && subscriptions.count >= limit {
            return sendResult(
                id: id,
                .rejected(
                    .tooManySubscriptions, "this connection holds \(limit) subscriptions; unsubscribe from one first"))
        }
        let reply = fanOut.subscribe(listing: listing, since: since, loop: loopIndex, renew: existing != nil)
        let subscription = existing ?? Subscription(listing: listing, session: self, lastSeq: 0)
        if existing == nil {
            subscriptions[listing] = subscription
            loop?.add(subscription)
            metrics.subscriptions.increment()
        }
        let ts = SystemClock().now()
        switch reply {
        case .snapshot(let seq, let view):
            subscription.lastSeq = seq
            let json = MessageEncoder.snapshot(
                listing: listing, seq: seq, view: view, recovered: since == nil ? nil : false, ts: ts)
            readBudget.charge(json.count)
            send(json)
        case .resumed(let since, let seq, let frames):
            subscription.lastSeq = seq
            MessageEncoder.resumed(listing: listing, since: since, seq: seq, ts: ts, into: &resultBytes)
            send(resultBytes)
            for frame in frames {
                readBudget.charge(frame.readableBytes)
                send(frame: frame)
            }
        }
    }

    func unsubscribe(_ value: JSONValue, id: String?) {
        guard case .string(let listing)? = value["listing"], Identifier.isValid(listing) else {
            return sendResult(id: id, .rejected(.badRequest, CommandDecoder.identifierRule("listing")))
        }
        if let subscription = subscriptions.removeValue(forKey: listing) {
            loop?.remove(subscription)
            fanOut.unsubscribe(listing: listing, loop: loopIndex)
            metrics.subscriptions.decrement()
        }
        MessageEncoder.unsubscribed(listing: listing, ts: SystemClock().now(), into: &resultBytes)
        send(resultBytes)
    }

    // MARK: - The user's private feed

    /// Answers `subscribe_user`: the user's feed epoch and newest `user_seq`, and with `since` (and the `epoch` it
    /// belongs to) the notices missed since then, or `recovered: false` when they cannot all be given.
    func subscribeUser(_ value: JSONValue, id: String?) {
        guard let user = principal.name else {
            return sendResult(
                id: id,
                .rejected(.notAuthorized, "an anonymous connection has no private feed; connect with a token"))
        }
        var since: UInt64?
        if let field = value["since"], field != .null {
            guard case .integer(let n) = field, n >= 0 else {
                return sendResult(
                    id: id, .rejected(.badRequest, "since must be a non-negative integer (a user_seq)"))
            }
            since = UInt64(n)
        }
        var epoch: String?
        if let field = value["epoch"], field != .null {
            guard case .string(let s) = field, s.utf8.count <= 64 else {
                return sendResult(
                    id: id, .rejected(.badRequest, "epoch must be the string a subscribe_user answer gave"))
            }
            epoch = s
        }
        guard readAllowed(id: id, query: "subscribe_user") else { return }
        let reply = fanOut.subscribeUser(user, since: since, epoch: epoch)
        lastUserSeq = reply.seq
        MessageEncoder.userSubscribed(
            id: id, user: user, epoch: reply.epoch, userSeq: reply.seq, since: since, recovered: reply.frames != nil,
            ts: SystemClock().now(), into: &resultBytes)
        send(resultBytes)
        for frame in reply.frames ?? [] {
            readBudget.charge(frame.readableBytes)
            send(frame: frame)
        }
    }

    // MARK: - The durable event feed

    /// Answers `subscribe_feed` (service and admin only): registers the connection's feed, catching up from the
    /// journal first when `since_lsn` is before the durable end.
    func subscribeFeed(_ value: JSONValue, id: String?) {
        guard principal.role == .service || principal.role == .admin else {
            let who = principal.name.map { "a \(principal.role.rawValue) token (\($0))" } ?? "an anonymous connection"
            return sendResult(
                id: id, .rejected(.notAuthorized, "subscribe_feed is for service and admin tokens, not \(who)"))
        }
        guard feed == nil else {
            return sendResult(
                id: id,
                .rejected(.badRequest, "this connection already has a feed; open another connection for another one"))
        }
        let request: FeedRequest
        switch FeedRequest.parse(value, maxListings: configuration.maxFeedListings) {
        case .failure(let error): return sendResult(id: id, .rejected(.badRequest, error.message))
        case .success(let parsed): request = parsed
        }
        let since = request.since
        guard let context else { return }
        let subscription = FeedSubscription(
            session: self, hub: fanOut.feed, eventLoop: context.eventLoop, filter: request.filter, requestID: id,
            maxOutboundBytes: configuration.maxOutboundBytes)
        switch fanOut.feed.register(subscription, since: since, expect: request.expect) {
        case .diverged(let divergence, let durable):
            sendDivergence(divergence, durable: durable, id: id)
        case .notRetained(let oldest):
            MessageEncoder.feedRefused(
                id: id, .feedLSNNotRetained,
                message:
                    "since_lsn \(since ?? 0) is no longer retained: the oldest lsn the feed can start at is \(oldest); resume from there (and reconcile what was missed) or raise --retain-journal",
                "oldest_lsn", lsn: oldest, ts: SystemClock().now(), into: &resultBytes)
            send(resultBytes)
        case .busy(let max):
            sendResult(
                id: id,
                .rejected(
                    .overloaded,
                    max == 0
                        ? "this server serves the feed live only (--max-feed-catchups 0): subscribe without since_lsn"
                        : "\(max) feed catch-ups from the journal are running (--max-feed-catchups); retry in a few seconds"
                ))
        case .started(let lsn, let mark, let check):
            feed = subscription
            if let since, since <= lsn {
                fanOut.feed.startCatchUp(subscription, since: since, through: lsn, check: check)
            } else {
                subscription.goLive(at: lsn, mark: mark)
            }
        }
    }

    /// Refuses the feed whose catch-up found that the consumer handled another history (before it sent anything):
    /// `feed_history_diverged`, and the connection has no feed any more (it may subscribe again).
    func refuseFeed(_ subscription: FeedSubscription, _ divergence: FeedDivergence, durable: UInt64) {
        guard feed === subscription else { return }
        subscription.cancel()
        fanOut.feed.unregister(subscription)
        feed = nil
        sendDivergence(divergence, durable: durable, id: subscription.requestID)
        flushIfNeeded()
    }

    /// Writes the `feed_history_diverged` result of `divergence`, with the journal's last durable lsn.
    private func sendDivergence(_ divergence: FeedDivergence, durable: UInt64, id: String?) {
        MessageEncoder.feedRefused(
            id: id, .feedHistoryDiverged, message: divergence.message, "durable_lsn", lsn: durable,
            ts: SystemClock().now(), into: &resultBytes)
        send(resultBytes)
    }

    /// Writes `{"type":"feed_live","lsn":N}`.
    func sendFeedLive(_ lsn: UInt64) {
        MessageEncoder.feedLive(lsn: lsn, into: &resultBytes)
        send(resultBytes)
        flushIfNeeded()
    }

    /// Writes feed frames and flushes; `done` is called once the last one is written to the socket, or at once
    /// when the connection can no longer write.
    func sendFeed(_ frames: [ByteBuffer], done: (@Sendable () -> Void)?) {
        guard machine.isOpen, output.context != nil, let context else {
            done?()
            return
        }
        guard let done else {
            for frame in frames { send(frame: frame) }
            return flushIfNeeded()
        }
        guard !frames.isEmpty else { return done() }
        for frame in frames { send(frame: frame) }
        let promise = context.eventLoop.makePromise(of: Void.self)
        promise.futureResult.whenComplete { _ in done() }
        // The promise of the write that holds the last frame: it completes once every frame is on the socket.
        writeOutbound(promise: promise)
        needsFlush = true
        flushIfNeeded()
    }

    /// Ends a live feed that cannot take a batch and cannot read it from disk now: close 1013 with the reason.
    func closeSlowFeed(_ reason: String) {
        metrics.slowConsumerCloses.increment()
        close(.init(codeNumber: 1013), reason)
    }

    /// Ends a feed that cannot go on (the journal it was reading is gone or damaged): close 1011 with the reason.
    func endFeed(_ reason: String) {
        close(.unexpectedServerError, reason)
    }

    // MARK: - Settlement queries

    /// Every message type a client may send, for the answer to an unknown one.
    static let messageTypes =
        "subscribe, unsubscribe, subscribe_user, subscribe_feed, list, my_settlements, get_settlement, "
        + CommandKind.wireNames

    /// The most settlements one `my_settlements` answer holds, and how many when `limit` is not given.
    static let maxSettlementLimit = 200
    static let defaultSettlementLimit = 50

    /// What the settlements and offers of one `my_settlements` answer may take beyond the first of each: half of
    /// `--max-outbound-bytes`, so that no answer is what closes its connection as a slow consumer (even at the
    /// smallest setting, 4096, one settlement, one offer and the envelope fit).
    var settlementAnswerRoom: Int { configuration.maxOutboundBytes / 2 }

    /// Whether this connection may read any user's settlements: a service or an admin.
    var readsAnySettlement: Bool { principal.role == .service || principal.role == .admin }

    /// Answers `my_settlements` from the gateway's settlement views: one page of the user's settlements.
    func mySettlements(_ value: JSONValue, id: String?) {
        guard let own = principal.name else {
            return sendResult(
                id: id, .rejected(.notAuthorized, "an anonymous connection has no settlements; connect with a token"))
        }
        var user = own
        if let field = value["user"], field != .null {
            guard case .string(let s) = field, Identifier.isValid(s) else {
                return sendResult(id: id, .rejected(.badRequest, CommandDecoder.identifierRule("user")))
            }
            guard s == own || readsAnySettlement else {
                return sendResult(
                    id: id,
                    .rejected(.notAuthorized, "only a service or admin token may list another user's settlements"))
            }
            user = s
        }
        var wanted: SettlementState?
        if let field = value["state"], field != .null {
            guard case .string(let s) = field, let parsed = SettlementState(rawValue: s) else {
                return sendResult(
                    id: id,
                    .rejected(
                        .badRequest,
                        "state must be one of " + SettlementState.allCases.map(\.rawValue).joined(separator: ", ")))
            }
            wanted = parsed
        }
        guard let limit = pageLimit(value, id: id, default: Self.defaultSettlementLimit, max: Self.maxSettlementLimit)
        else { return }
        var after: String?
        if let field = value["after"], field != .null {
            guard case .string(let s) = field, SettlementID.parse(s) != nil else {
                return sendResult(
                    id: id, .rejected(.badRequest, "after must be a settlement id (<listing>:<n>), the next of a page"))
            }
            after = s
        }
        var offersAfter: String?
        if let field = value["offers_after"], field != .null {
            guard case .string(let s) = field, Identifier.isValid(s) else {
                return sendResult(
                    id: id,
                    .rejected(
                        .badRequest,
                        "offers_after must be a listing id (1-64 characters from [A-Za-z0-9_.:-]), the offers_next of a page"
                    ))
            }
            offersAfter = s
        }
        guard readAllowed(id: id, query: "my_settlements") else { return }
        guard
            let page = fanOut.settlementPage(
                user: user, state: wanted, after: after, offersAfter: offersAfter, limit: limit)
        else {
            return sendResult(
                id: id,
                .rejected(
                    .badRequest,
                    "after \(after ?? "") is not one of \(user)'s settlements (it may have ended and been dropped); start again without after"
                ))
        }
        let json = SettlementJSON.answer(
            id: id, user: user, page: page, room: settlementAnswerRoom, ts: SystemClock().now())
        readBudget.charge(json.count)
        send(json)
    }

    /// Answers `get_settlement`: one settlement, for its buyer and seller and for a service or admin.
    func getSettlement(_ value: JSONValue, id: String?) {
        guard value["settlement"] != nil else {
            return sendResult(
                id: id, .rejected(.badRequest, "missing field settlement (a settlement id such as L1:1)"))
        }
        guard case .string(let settlementID)? = value["settlement"], SettlementID.parse(settlementID) != nil else {
            return sendResult(
                id: id,
                .rejected(
                    .badRequest,
                    "settlement must be <listing>:<n>, a listing id and the sale's number from 1 without a leading zero, such as L1:1"
                ))
        }
        guard readAllowed(id: id, query: "get_settlement") else { return }
        // Not theirs is answered as none, so that a user learns nothing of another's settlement, not even that it
        // exists.
        guard let settlement = fanOut.settlement(settlementID),
            readsAnySettlement || principal.name == settlement.buyer || principal.name == settlement.seller
        else {
            return sendResult(
                id: id, Engine.unknownSettlement(settlementID, readsAny: readsAnySettlement))
        }
        let json = MessageEncoder.settlementDetail(
            id: id, settlement: SettlementJSON.settlement(settlement), ts: SystemClock().now())
        readBudget.charge(json.count)
        send(json)
    }

    /// The page size a read asks for in its `limit`: `defaultLimit` when absent or null; `nil`, after answering
    /// `bad_request`, when it is not an integer from 1 to `maxLimit`.
    private func pageLimit(_ value: JSONValue, id: String?, default defaultLimit: Int, max maxLimit: Int) -> Int? {
        guard let field = value["limit"], field != .null else { return defaultLimit }
        guard case .integer(let n) = field, n >= 1, n <= Int64(maxLimit) else {
            sendResult(id: id, .rejected(.badRequest, "limit must be an integer from 1 to \(maxLimit)"))
            return nil
        }
        return Int(n)
    }

    // MARK: - Listing listings

    /// The most listings one `list` answer holds, and how many it holds when `limit` is not given: a page of about
    /// 20 KB at most, so that a short request cannot make the server write much.
    static let maxListLimit = 100
    static let defaultListLimit = 20

    /// Answers `list` from the fan-out's durable public views (never the engine): one page of listing summaries in
    /// listing id order.
    func list(_ value: JSONValue, id: String?) {
        var openOnly = true
        if let field = value["status"], field != .null {
            switch field {
            case .string("open"): openOnly = true
            case .string("all"): openOnly = false
            default: return sendResult(id: id, .rejected(.badRequest, "status must be \"open\" or \"all\""))
            }
        }
        guard let limit = pageLimit(value, id: id, default: Self.defaultListLimit, max: Self.maxListLimit) else {
            return
        }
        var after: String?
        if let field = value["after"], field != .null {
            guard case .string(let s) = field, Identifier.isValid(s) else {
                return sendResult(
                    id: id,
                    .rejected(
                        .badRequest, "after must be a listing id (1-64 characters from [A-Za-z0-9_.:-]) or null"))
            }
            after = s
        }
        guard readAllowed(id: id, query: "list") else { return }
        let page = fanOut.listings(openOnly: openOnly, after: after, limit: limit)
        let json = MessageEncoder.listings(
            id: id, openOnly: openOnly, views: page.views, next: page.next, ts: SystemClock().now())
        readBudget.charge(json.count)
        send(json)
    }

    /// Whether the connection's read budget (`maxReadBytesPerSecond` of the answers to reads) allows one more
    /// answer; if not, answers `rate_limited` naming the refused `query` and saying when to retry.
    func readAllowed(id: String?, query: String) -> Bool {
        if readBudget.allows(now: monotonicNanos()) { return true }
        metrics.rateLimited.increment()
        sendResult(
            id: id,
            .rejected(
                .rateLimited,
                "\(query) refused: the answers to reads (list, subscribe, subscribe_user, my_settlements, get_settlement) are limited to \(configuration.maxReadBytesPerSecond) bytes per second per connection (--max-read-bytes-per-second); retry in \(readBudget.millisUntilPositive) ms"
            ))
        return false
    }
}
