import GavelCore
import GavelEngine
import GavelWire
import NIOCore
import NIOWebSocket

/// One WebSocket client: reassembles its messages, enforces its limits, runs its commands and subscriptions, and
/// writes what it is sent.
///
/// Runs on its channel's event loop; the fan-out calls ``enqueue(_:)`` and ``deliverResult(_:_:started:)`` only
/// there. Frames arrive from `WebSocketFrameDecoder`; frames leave as complete, already-encoded buffers (there is
/// no frame encoder in the pipeline), so one encoded event can be written to every subscriber.
///
/// `@unchecked Sendable`: other threads hold it only as a recipient and a subscriber, to hand it frames and results
/// in a task on its loop (the fan-out, the feed); the methods they reach check (`assertInEventLoop`, debug builds)
/// that they run there.
final class WebSocketSession: ChannelInboundHandler, ResultRecipient, @unchecked Sendable {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = ByteBuffer

    let principal: Principal
    private let configuration: GatewayConfiguration
    private let writer: Writer
    private let fanOut: FanOut
    private let metrics: GatewayMetrics
    private let registry: SessionRegistry
    /// The limits shared with the principal's other connections; `nil`: none (tests of one session).
    private let limits: ConnectionLimits?
    /// The token's `exp` (seconds since the Unix epoch); the session is closed then.
    private let expires: Int64?
    private var expiry: Scheduled<Void>?
    /// Commands this connection has taken from its principal's shared bucket and not used yet.
    private var commandCredit = 0
    /// What `list` and `subscribe` answers may still write.
    private var readBudget: ByteBudget
    /// Writes go through its context, next to the socket.
    private let output: RawFrameWriter
    /// The rules for the commands this connection sends.
    private let admission: CommandAdmission

    private(set) var loopIndex = 0
    private var loop: LoopFanOut?
    private var context: ChannelHandlerContext?
    /// The WebSocket side: the phase, the message being reassembled, the unanswered ping.
    private var machine: SessionStateMachine
    private var subscriptions: [String: Subscription] = [:]
    /// The connection's durable event feed (`subscribe_feed`), at most one.
    private var feed: FeedSubscription?
    private var bucket: TokenBucket
    private var abuseWindowStart: UInt64
    private var limitedInWindow = 0
    private var needsFlush = false
    /// A command was submitted during the current read without waking the writer; it is woken once at the read's
    /// end, so that the read's commands go into one batch.
    private var writerNeedsWake = false
    /// Whether the loop's fan-out will flush this session at the end of its current task.
    var markedDirty = false
    /// The `user_seq` of the last private notice this session was sent (live or replayed by `subscribe_user`).
    var lastUserSeq: UInt64 = 0
    private var unflushedBytes = 0
    /// Where results and the session's short messages are encoded before each is copied into its frame, reused from
    /// one to the next.
    private var resultBytes: [UInt8] = []

    init(
        principal: Principal, configuration: GatewayConfiguration, writer: Writer, fanOut: FanOut,
        metrics: GatewayMetrics, registry: SessionRegistry, output: RawFrameWriter, limits: ConnectionLimits? = nil,
        expires: Int64? = nil
    ) {
        self.limits = limits
        self.expires = expires
        self.output = output
        self.principal = principal
        admission = CommandAdmission(principal: principal)
        machine = SessionStateMachine(maxMessageBytes: configuration.maxMessageBytes)
        self.configuration = configuration
        self.writer = writer
        self.fanOut = fanOut
        self.metrics = metrics
        self.registry = registry
        let now = monotonicNanos()
        bucket = TokenBucket(configuration.rate(for: principal.role), now: now)
        readBudget = ByteBudget(perSecond: configuration.maxReadBytesPerSecond, now: now)
        abuseWindowStart = now
        registry.sessionMade()
    }

    deinit { registry.sessionFreed() }

    // MARK: - Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        loop = fanOut.loop(for: context.eventLoop)
        loopIndex = loop?.index ?? 0
        registry.add(self, on: context.eventLoop)
        metrics.connections.increment()
        if let name = principal.name { fanOut.register(self, user: name) }
        sendHello()
        flushIfNeeded()
        scheduleExpiry(context)
    }

    /// Closes the session with 1008 when its token expires: a token's `exp` holds for the whole connection.
    private func scheduleExpiry(_ context: ChannelHandlerContext) {
        guard let expires else { return }
        let (expiresMs, overflow) = expires.multipliedReportingOverflow(by: 1000)
        guard !overflow else { return }
        // At most about 95 years, so that the delay in nanoseconds fits.
        let delay = min(max(0, expiresMs - SystemClock().now()), 3_000_000_000_000)
        expiry = context.eventLoop.scheduleTask(in: .milliseconds(delay)) { [self] in
            guard machine.isOpen else { return }
            metrics.tokenExpiredCloses.increment()
            close(.policyViolation, "token expired; reconnect with a fresh token")
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        tearDown()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        tearDown()
        context.fireChannelInactive()
    }

    private func tearDown() {
        wakeWriterIfNeeded()
        guard machine.channelClosed() else { return }
        expiry?.cancel()
        expiry = nil
        for subscription in subscriptions.values {
            loop?.remove(subscription)
            fanOut.unsubscribe(listing: subscription.listing, loop: loopIndex)
            metrics.subscriptions.decrement()
        }
        subscriptions.removeAll()
        if let feed {
            feed.cancel()
            fanOut.feed.unregister(feed)
        }
        if let name = principal.name { fanOut.unregister(self, user: name) }
        registry.remove(self)
        metrics.connections.decrement()
    }

    private func sendHello() {
        let rate = configuration.rate(for: principal.role)
        let limits = MessageEncoder.SessionLimits(
            maxMessageBytes: Int64(configuration.maxMessageBytes),
            maxOutboundBytes: Int64(configuration.maxOutboundBytes),
            maxSubscriptions: Int64(configuration.maxSubscriptions(for: principal.role)),
            ratePerSecond: Int64(rate.perSecond), rateBurst: Int64(rate.burst),
            idleTimeoutMs: Int64(configuration.idleTimeoutMs), historyEvents: Int64(configuration.historyEvents),
            userHistoryEvents: Int64(configuration.userHistoryEvents),
            maxReadBytesPerSecond: Int64(configuration.maxReadBytesPerSecond))
        MessageEncoder.hello(
            principal: principal.name, role: principal.role.rawValue, limits: limits, now: SystemClock().now(),
            into: &resultBytes)
        send(resultBytes)
    }

    // MARK: - Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch machine.frameReceived(unwrapInboundIn(data)) {
        case .ignore: break
        case .message(let payload): handleMessage(payload)
        case .pong(let payload): send(frame: ServerFrame.control(.pong, payload: payload))
        case .close(let code, let reason): close(code, reason)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        wakeWriterIfNeeded()
        flushIfNeeded()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if !context.channel.isWritable && machine.isOpen {
            metrics.slowConsumerCloses.increment()
            close(
                .init(codeNumber: 1013),
                "slow consumer: more than \(configuration.maxOutboundBytes) bytes unread; "
                    + (feed == nil ? "resubscribe with since" : "resume subscribe_feed with since_lsn"))
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            switch machine.idle() {
            case .ignore: break
            case .ping:
                send(frame: ServerFrame.control(.ping, payload: ByteBuffer()))
                flushIfNeeded()
            case .close(let code, let reason): close(code, reason)
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        switch machine.errorCaught(error) {
        case .close(let code, let reason): close(code, reason)
        case .closeChannel: context.close(promise: nil)
        }
    }

    private func handleMessage(_ payload: ByteBuffer) {
        // Fast path: a well-formed bid or order read straight from the bytes, no JSON tree; anything it does not
        // fully understand goes the generic way below, which writes every error.
        if let frame = payload.withUnsafeReadableBytes(FastCommandDecoder.decode), admission.takesFastPath(frame) {
            guard takeToken(id: frame.id) else { return }
            return command(admission.admit(frame))
        }
        guard let text = String(validating: payload.readableBytesView, as: UTF8.self) else {
            return close(.dataInconsistentWithMessage, "text message is not valid UTF-8")
        }
        let value: JSONValue
        do {
            value = try JSONParser.parse(text)
        } catch {
            guard takeToken(id: nil) else { return }
            return sendResult(id: nil, .rejected(.badRequest, error.description))
        }
        var id: String?
        if case .string(let s)? = value["id"] { id = s }
        guard takeToken(id: id) else { return }
        guard case .object = value else {
            return sendResult(id: nil, .rejected(.badRequest, "a message must be a JSON object, not \(value.typeName)"))
        }
        guard case .string(let type)? = value["type"] else {
            return sendResult(id: id, .rejected(.badRequest, "missing field type (a string)"))
        }
        switch type {
        case "subscribe": subscribe(value, id: id)
        case "unsubscribe": unsubscribe(value, id: id)
        case "list": list(value, id: id)
        case "subscribe_user": subscribeUser(value, id: id)
        case "my_settlements": mySettlements(value, id: id)
        case "get_settlement": getSettlement(value, id: id)
        case "subscribe_feed": subscribeFeed(value, id: id)
        default:
            if let kind = CommandKind(rawValue: type) {
                return command(admission.admit(value, kind: kind, id: id))
            }
            sendResult(id: id, .rejected(.badRequest, "unknown type \"\(type)\"; expected \(Self.messageTypes)"))
        }
    }

    /// Takes a rate token; when there is none, answers `rate_limited` (or closes with 1008 on sustained excess).
    private func takeToken(id: String?) -> Bool {
        let now = monotonicNanos()
        if bucket.take(now: now) { return true }
        metrics.rateLimited.increment()
        let window = UInt64(max(1, configuration.abuseWindowSeconds)) * 1_000_000_000
        if now &- abuseWindowStart > window {
            abuseWindowStart = now
            limitedInWindow = 0
        }
        limitedInWindow += 1
        let rate = configuration.rate(for: principal.role)
        let (perSecondOver, overflow) = max(1, configuration.abuseFactor - 1).multipliedReportingOverflow(
            by: rate.perSecond)
        let (tolerated, overflow2) = perSecondOver.multipliedReportingOverflow(
            by: max(1, configuration.abuseWindowSeconds))
        if !overflow && !overflow2 && limitedInWindow > tolerated {
            metrics.abuseCloses.increment()
            close(.policyViolation, "sustained excess over the rate limit")
            return false
        }
        sendResult(
            id: id,
            .rejected(
                .rateLimited,
                "more than \(rate.perSecond) messages per second (burst \(rate.burst)); slow down and retry"))
        return false
    }

    // MARK: - Subscriptions

    private func subscribe(_ value: JSONValue, id: String?) {
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
        guard readAllowed(id: id) else { return }
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

    private func unsubscribe(_ value: JSONValue, id: String?) {
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
    private func subscribeUser(_ value: JSONValue, id: String?) {
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
        guard readAllowed(id: id) else { return }
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
    private func subscribeFeed(_ value: JSONValue, id: String?) {
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
        let filter: FeedFilter
        let since: UInt64?
        switch FeedRequest.parse(value, maxListings: configuration.maxFeedListings) {
        case .failure(let error): return sendResult(id: id, .rejected(.badRequest, error.message))
        case .success(let request): (filter, since) = (request.filter, request.since)
        }
        guard let context else { return }
        let subscription = FeedSubscription(
            session: self, hub: fanOut.feed, eventLoop: context.eventLoop, filter: filter,
            maxOutboundBytes: configuration.maxOutboundBytes)
        switch fanOut.feed.register(subscription, since: since) {
        case .beyondEnd(let durable):
            sendResult(
                id: id,
                .rejected(
                    .badRequest,
                    "since_lsn \(since ?? 0) is beyond the journal's end: the newest durable lsn is \(durable); ask for at most \(durable + 1)"
                ))
        case .notRetained(let oldest):
            MessageEncoder.feedNotRetained(
                id: id,
                message:
                    "since_lsn \(since ?? 0) is no longer retained: the oldest lsn the feed can start at is \(oldest); resume from there (and reconcile what was missed) or raise --retain-journal",
                oldestLSN: oldest, ts: SystemClock().now(), into: &resultBytes)
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
        case .started(let lsn):
            feed = subscription
            if let since, since <= lsn {
                fanOut.feed.startCatchUp(subscription, since: since, through: lsn)
            } else {
                subscription.goLive(at: lsn)
            }
        }
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
        guard machine.isOpen, let out = output.context, let context else {
            done?()
            return
        }
        guard let done else {
            for frame in frames { send(frame: frame) }
            return flushIfNeeded()
        }
        guard let last = frames.last else { return done() }
        for frame in frames.dropLast() { send(frame: frame) }
        let promise = context.eventLoop.makePromise(of: Void.self)
        promise.futureResult.whenComplete { _ in done() }
        unflushedBytes += last.readableBytes
        out.write(NIOAny(last), promise: promise)
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

    /// Whether this connection may read any user's settlements: a service or an admin.
    private var readsAnySettlement: Bool { principal.role == .service || principal.role == .admin }

    /// Answers `my_settlements` from the gateway's settlement views: one page of the user's settlements.
    private func mySettlements(_ value: JSONValue, id: String?) {
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
        var limit = Self.defaultSettlementLimit
        if let field = value["limit"], field != .null {
            guard case .integer(let n) = field, n >= 1, n <= Int64(Self.maxSettlementLimit) else {
                return sendResult(
                    id: id, .rejected(.badRequest, "limit must be an integer from 1 to \(Self.maxSettlementLimit)"))
            }
            limit = Int(n)
        }
        var after: String?
        if let field = value["after"], field != .null {
            guard case .string(let s) = field, SettlementID.parse(s) != nil else {
                return sendResult(
                    id: id, .rejected(.badRequest, "after must be a settlement id (<listing>:<n>), the next of a page"))
            }
            after = s
        }
        guard readAllowed(id: id) else { return }
        guard let page = fanOut.settlementPage(user: user, state: wanted, after: after, limit: limit) else {
            return sendResult(
                id: id,
                .rejected(
                    .badRequest,
                    "after \(after ?? "") is not one of \(user)'s settlements (it may have ended and been dropped); start again without after"
                ))
        }
        let json = MessageEncoder.settlements(
            id: id, user: user, settlements: SettlementJSON.array(page.items, SettlementJSON.settlement),
            offers: SettlementJSON.array(page.offers, SettlementJSON.offer), next: page.next, ts: SystemClock().now())
        readBudget.charge(json.count)
        send(json)
    }

    /// Answers `get_settlement`: one settlement, for its buyer and seller and for a service or admin.
    private func getSettlement(_ value: JSONValue, id: String?) {
        guard case .string(let settlementID)? = value["settlement"], SettlementID.parse(settlementID) != nil else {
            return sendResult(
                id: id,
                .rejected(
                    .badRequest,
                    "settlement must be <listing>:<n>, a listing id and the sale's number from 1 without a leading zero, such as L1:1"
                ))
        }
        guard readAllowed(id: id) else { return }
        guard let settlement = fanOut.settlement(settlementID) else {
            return sendResult(
                id: id, .rejected(.unknownSettlement, "no settlement \(settlementID); check the settlement id"))
        }
        guard readsAnySettlement || principal.name == settlement.buyer || principal.name == settlement.seller else {
            return sendResult(
                id: id,
                .rejected(.notAuthorized, "you are not the buyer or seller of settlement \(settlementID)"))
        }
        let json = MessageEncoder.settlementDetail(
            id: id, settlement: SettlementJSON.settlement(settlement), ts: SystemClock().now())
        readBudget.charge(json.count)
        send(json)
    }

    // MARK: - Listing listings

    /// The most listings one `list` answer holds, and how many it holds when `limit` is not given: a page of about
    /// 20 KB at most, so that a short request cannot make the server write much.
    static let maxListLimit = 100
    static let defaultListLimit = 20

    /// Answers `list` from the fan-out's durable public views (never the engine): one page of listing summaries in
    /// listing id order.
    private func list(_ value: JSONValue, id: String?) {
        var openOnly = true
        if let field = value["status"], field != .null {
            switch field {
            case .string("open"): openOnly = true
            case .string("all"): openOnly = false
            default: return sendResult(id: id, .rejected(.badRequest, "status must be \"open\" or \"all\""))
            }
        }
        var limit = Self.defaultListLimit
        if let field = value["limit"], field != .null {
            guard case .integer(let n) = field, n >= 1, n <= Int64(Self.maxListLimit) else {
                return sendResult(
                    id: id, .rejected(.badRequest, "limit must be an integer from 1 to \(Self.maxListLimit)"))
            }
            limit = Int(n)
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
        guard readAllowed(id: id) else { return }
        let page = fanOut.listings(openOnly: openOnly, after: after, limit: limit)
        let json = MessageEncoder.listings(
            id: id, openOnly: openOnly, views: page.views, next: page.next, ts: SystemClock().now())
        readBudget.charge(json.count)
        send(json)
    }

    /// Whether the connection's read budget (`maxReadBytesPerSecond` of `list` and `subscribe` answers) allows one
    /// more answer; if not, answers `rate_limited` saying when to retry.
    private func readAllowed(id: String?) -> Bool {
        if readBudget.allows(now: monotonicNanos()) { return true }
        metrics.rateLimited.increment()
        sendResult(
            id: id,
            .rejected(
                .rateLimited,
                "list and subscribe answers are limited to \(configuration.maxReadBytesPerSecond) bytes per second per connection; retry in \(readBudget.millisUntilPositive) ms"
            ))
        return false
    }

    // MARK: - Commands

    /// Submits the command of an admitted message, or answers its rejection.
    private func command(_ admission: CommandVerdict) {
        let command: Command
        switch admission {
        case .reject(let id, let result): return sendResult(id: id, result)
        case .submit(let admitted): command = admitted
        }
        guard withinPrincipalLimits(command) else { return }
        let started = monotonicNanos()
        metrics.inFlight.increment()
        if let rejected = writer.submit(command, replyTo: self, started: started, wake: false) {
            deliverResult(command, rejected, started: started)
        } else {
            writerNeedsWake = true
        }
    }

    /// Takes the command from the principal's rate across all its connections (a lease of several at a time) and,
    /// for a seller's `open`, from its opens per minute; answers `rate_limited` when either is spent.
    private func withinPrincipalLimits(_ command: Command) -> Bool {
        guard let limits, let name = principal.name else { return true }
        let now = monotonicNanos()
        if commandCredit == 0 {
            commandCredit = limits.takeCommands(name, want: limits.lease(for: principal.role), now: now)
        }
        guard commandCredit > 0 else {
            metrics.rateLimited.increment()
            let rate = limits.settings.principalRate(for: principal.role)
            sendResult(
                id: command.id,
                .rejected(
                    .rateLimited,
                    "\(name) sends more than \(rate.perSecond) commands per second (burst \(rate.burst)) over all its connections; retry in \(limits.millisUntilCommand(name, now: now)) ms"
                ))
            return false
        }
        commandCredit -= 1
        if case .open = command.body, principal.role == .seller, let wait = limits.takeOpen(name, now: now) {
            metrics.rateLimited.increment()
            sendResult(
                id: command.id,
                .rejected(
                    .rateLimited,
                    "\(name) may open \(limits.settings.opensPerMinute) listings per minute; retry in \(wait) ms"))
            return false
        }
        return true
    }

    private func wakeWriterIfNeeded() {
        guard writerNeedsWake else { return }
        writerNeedsWake = false
        if let loop { loop.wakeWriterAfterThisTick(writer) } else { writer.wake() }
    }

    /// Writes a command's result (on the event loop) and counts it.
    func deliverResult(_ command: Command, _ result: CommandResult, started: UInt64) {
        context?.eventLoop.assertInEventLoop()
        metrics.inFlight.decrement()
        if let loop { metrics.countCommand(command, result, cache: &loop.commandCounters) }
        metrics.ackLatency.recordNanoseconds(Int64(monotonicNanos() &- started))
        sendResult(id: command.id, result)
    }

    // MARK: - Outbound

    private func sendResult(id: String?, _ result: CommandResult) {
        MessageEncoder.result(id: id, result, ts: SystemClock().now(), into: &resultBytes)
        send(resultBytes)
    }

    private func send(_ json: [UInt8]) {
        send(frame: ServerFrame.text(json))
    }

    private func send(frame: ByteBuffer) {
        guard machine.isOpen, let out = output.context else { return }
        unflushedBytes += frame.readableBytes
        out.write(NIOAny(frame), promise: nil)
        needsFlush = true
        // Unflushed writes count towards the outbound limit: flush once a quarter of it is queued, so that a big
        // task (a durable group of many events) cannot make a client that reads look slow.
        if unflushedBytes >= configuration.maxOutboundBytes / 4 {
            flushIfNeeded()
        }
        if !markedDirty, let loop, loop.delivering {
            markedDirty = true
            loop.markDirty(self)
        }
    }

    /// Writes an already-encoded frame from the fan-out; flushed once at the end of the loop's task (or of the
    /// current read).
    func enqueue(_ frame: ByteBuffer) {
        context?.eventLoop.assertInEventLoop()
        send(frame: frame)
    }

    func flushIfNeeded() {
        guard needsFlush, let out = output.context else { return }
        needsFlush = false
        metrics.bytesOut.increment(by: unflushedBytes)
        unflushedBytes = 0
        out.flush()
    }

    /// Sends a close frame and closes the connection once it is written (or after two seconds, for a client that
    /// does not read). Nothing more is written or read.
    func close(_ code: WebSocketErrorCode, _ reason: String) {
        guard let context, let out = output.context, machine.startClosing() else { return }
        let frame = ServerFrame.close(code, reason: reason)
        needsFlush = false
        let channel = context.channel
        let promise = context.eventLoop.makePromise(of: Void.self)
        out.writeAndFlush(NIOAny(frame), promise: promise)
        let timeout = context.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
        promise.futureResult.whenComplete { _ in
            timeout.cancel()
            channel.close(promise: nil)
        }
    }
}
