import GavelCore
import GavelEngine
import GavelWire
import NIOCore
import NIOWebSocket

/// One WebSocket client: reassembles its messages, enforces its limits, runs its commands and subscriptions, and
/// writes what it is sent.
///
/// Runs on its channel's event loop; the fan-out calls ``enqueue(_:)`` and ``deliverResult(_:_:started:)`` only
/// there. It reads the frames of the connection's bytes itself (``FrameReader``); frames leave as complete,
/// already-encoded buffers (there is no frame encoder in the pipeline), so one encoded event can be written to every
/// subscriber.
///
/// `@unchecked Sendable`: other threads hold it only as a recipient and a subscriber, to hand it frames and results
/// in a task on its loop (the fan-out, the feed); the methods they reach check (`assertInEventLoop`, debug builds)
/// that they run there.
final class WebSocketSession: ChannelInboundHandler, ResultRecipient, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let principal: Principal
    let configuration: GatewayConfiguration
    let writer: Writer
    let fanOut: FanOut
    let metrics: GatewayMetrics
    let registry: SessionRegistry
    /// The limits shared with the principal's other connections; `nil`: none (tests of one session).
    let limits: ConnectionLimits?
    /// The token's `exp` (seconds since the Unix epoch); the session is closed then.
    let expires: Int64?
    var expiry: Scheduled<Void>?
    /// Commands this connection has taken from its principal's shared bucket and not used yet.
    var commandCredit = 0
    /// What the answers to reads (`list`, `subscribe`, `subscribe_user`, `my_settlements`, `get_settlement`) may still write.
    var readBudget: ByteBudget
    /// Writes go through its context, next to the socket.
    let output: RawFrameWriter
    /// The rules for the commands this connection sends.
    let admission: CommandAdmission

    private(set) var loopIndex = 0
    var loop: LoopFanOut?
    var context: ChannelHandlerContext?
    /// The WebSocket side: the phase, the message being reassembled, the unanswered ping.
    var machine: SessionStateMachine
    /// The frames in the connection's bytes.
    var frameReader: FrameReader
    /// The bytes were not frames: what follows them is not read.
    var unreadable = false
    var subscriptions: [String: Subscription] = [:]
    /// The connection's durable event feed (`subscribe_feed`), at most one.
    var feed: FeedSubscription?
    var bucket: TokenBucket
    var abuseWindowStart: UInt64
    var limitedInWindow = 0
    var needsFlush = false
    /// Whether the loop's fan-out will flush this session at the end of its current task.
    var markedDirty = false
    /// The `user_seq` of the last private notice this session was sent (live or replayed by `subscribe_user`).
    var lastUserSeq: UInt64 = 0
    var unflushedBytes = 0
    /// What the connection has taken of the server's outbound budget while it falls behind (0: it keeps up).
    var outboundTaken = 0
    /// The frames written since the last flush, back to back: one write and one buffer for the channel per flush,
    /// however many results, events and notices went in (``send(frame:)``). Handed to the channel at the flush and
    /// rewritten in place afterwards once the socket has let go of it (``outboundHandedOver``).
    var outbound = ByteBuffer()
    /// ``outbound`` was handed to the channel or sent to the socket: the next frame clears it first (its storage
    /// again if the socket took it all, a new one otherwise).
    var outboundHandedOver = false
    /// Where results and the session's short messages are encoded before each is copied into its frame, reused from
    /// one to the next.
    var resultBytes: [UInt8] = []

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
        let now = monotonicNanos()
        frameReader = FrameReader(maxFrameSize: configuration.maxMessageBytes)
        machine = SessionStateMachine(
            maxMessageBytes: configuration.maxMessageBytes, maxFragments: configuration.maxFragmentsPerMessage,
            frameRate: configuration.frameRate(for: principal.role), now: now)
        self.configuration = configuration
        self.writer = writer
        self.fanOut = fanOut
        self.metrics = metrics
        self.registry = registry
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
    func scheduleExpiry(_ context: ChannelHandlerContext) {
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

    func tearDown() {
        giveBackOutbound()
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

    func sendHello() {
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
        guard !unreadable else { return }
        var bytes = frameReader.received(unwrapInboundIn(data))
        // One clock read for the read: its frames' budget, and the rate limits and start of the messages they end.
        let now = monotonicNanos()
        while true {
            switch frameReader.next(&bytes) {
            case .frame(let frame):
                frameReceived(frame, now: now)
            case .needMore:
                return frameReader.keep(bytes)
            case .failed(let error):
                unreadable = true
                return errorCaught(context: context, error: error)
            }
        }
    }

    private func frameReceived(_ frame: InboundFrame, now: UInt64) {
        switch machine.frameReceived(frame, now: now) {
        case .ignore: break
        case .message(let payload): handleMessage(payload, now: now)
        case .pong(let payload): send(frame: ServerFrame.control(.pong, payload: payload))
        case .close(let code, let reason):
            // The machine closes with 1008 only for a frame flood (its frame rate, or too many fragments).
            if code == .policyViolation { metrics.abuseCloses.increment() }
            close(code, reason)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushIfNeeded()
        context.fireChannelReadComplete()
    }

    /// Past ``GatewayConfiguration/outboundSoftBytes`` unread the connection falls behind: it takes
    /// ``GatewayConfiguration/maxOutboundBytes`` of the server's outbound budget (closed with 1013 when none is left)
    /// and is watched against its own cap at each write (``checkOutboundCap()``) until it catches up (below half the
    /// soft mark), when it gives the budget back. A connection that keeps up costs nothing of this.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            giveBackOutbound()
        } else if machine.isOpen && outboundTaken == 0 {
            if limits?.takeOutbound(configuration.maxOutboundBytes) == false {
                // Short: a close frame's reason holds 123 bytes.
                slowConsumer(
                    "--max-outbound-bytes-total (\(configuration.maxOutboundBytesTotal)) taken by clients behind")
            } else {
                outboundTaken = configuration.maxOutboundBytes
                checkOutboundCap()
            }
        }
        context.fireChannelWritabilityChanged()
    }

    /// Closes a connection that falls behind once it has more than ``GatewayConfiguration/maxOutboundBytes``
    /// unread: what its channel holds and what is queued here. Only while it falls behind (the channel's count is
    /// read then, never for one that keeps up).
    func checkOutboundCap() {
        guard outboundTaken > 0, machine.isOpen, let channel = context?.channel,
            let buffered = try? channel.syncOptions?.getOption(ChannelOptions.bufferedWritableBytes),
            buffered + unflushedBytes > configuration.maxOutboundBytes
        else { return }
        slowConsumer("more than \(configuration.maxOutboundBytes) bytes unread")
    }

    /// Closes with 1013, saying why and how to resume.
    private func slowConsumer(_ why: String) {
        metrics.slowConsumerCloses.increment()
        close(
            .init(codeNumber: 1013),
            "slow consumer: \(why); "
                + (feed == nil ? "resubscribe with since" : "resume subscribe_feed with since_lsn"))
    }

    /// Gives back what the connection took of the outbound budget while it fell behind.
    func giveBackOutbound() {
        guard outboundTaken > 0 else { return }
        limits?.giveBackOutbound(outboundTaken)
        outboundTaken = 0
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

    /// `now`: ``monotonicNanos()`` when the message's last frame arrived, for its rate limits and its command's start.
    func handleMessage(_ payload: ByteBuffer, now: UInt64) {
        // Fast path: a well-formed bid or order read straight from the bytes, no JSON tree; anything it does not
        // fully understand goes the generic way below, which writes every error.
        let identifiers = loop?.identifiers
        let user = principal.name
        if let frame = payload.withUnsafeReadableBytes({
            FastCommandDecoder.decode($0, identifiers: identifiers, user: user)
        }),
            admission.takesFastPath(frame)
        {
            guard takeToken(id: frame.id, now: now) else { return }
            return command(admission.admit(frame), now: now)
        }
        guard let text = String(validating: payload.readableBytesView, as: UTF8.self) else {
            return close(.dataInconsistentWithMessage, "text message is not valid UTF-8")
        }
        let value: JSONValue
        do {
            value = try JSONParser.parse(text)
        } catch {
            guard takeToken(id: nil, now: now) else { return }
            return sendResult(id: nil, .rejected(.badRequest, error.description))
        }
        var id: String?
        var unechoed = 0
        if case .string(let s)? = value["id"] {
            if s.utf8.count <= Limits.maxEchoedIDBytes { id = s } else { unechoed = s.utf8.count }
        }
        guard takeToken(id: id, now: now) else { return }
        guard case .object = value else {
            return sendResult(id: nil, .rejected(.badRequest, "a message must be a JSON object, not \(value.typeName)"))
        }
        guard unechoed == 0 else {
            return sendResult(
                id: nil,
                .rejected(
                    .badRequest,
                    "id is \(unechoed) bytes long; an id is an identifier of at most \(Limits.maxIdentifierLength) "
                        + "characters, and one over \(Limits.maxEchoedIDBytes) bytes is not echoed"))
        }
        guard case .string(let type)? = value["type"] else {
            return sendResult(id: id, .rejected(.badRequest, "missing field type (a string)"))
        }
        // A read's id is optional, but when given it is a string, as a command's is.
        if let given = value["id"], id == nil, given != .null, CommandKind(rawValue: type) == nil {
            return sendResult(id: nil, .rejected(.badRequest, "id must be a string, not \(given.typeName)"))
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
                return command(admission.admit(value, kind: kind, id: id), now: now)
            }
            sendResult(
                id: id, .rejected(.badRequest, "unknown type \(Echo.quoted(type)); expected \(Self.messageTypes)"))
        }
    }

    /// Takes a rate token at `now` (``monotonicNanos()``); when there is none, answers `rate_limited` (or closes with
    /// 1008 on sustained excess).
    func takeToken(id: String?, now: UInt64) -> Bool {
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
}
