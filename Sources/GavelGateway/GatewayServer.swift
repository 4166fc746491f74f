import GavelCore
import GavelEngine
import GavelJournal
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The open WebSocket sessions, for the connection limit and for closing them all at shutdown.
final class SessionRegistry: Sendable {
    private let sessions = Mutex<[ObjectIdentifier: (WebSocketSession, EventLoop)]>([:])
    private let open = Atomic<Int>(0)
    private let alive = Atomic<Int>(0)

    var count: Int { open.load(ordering: .relaxed) }

    /// Sessions made and not yet freed, open or not: once every client has gone it is 0 unless something still
    /// holds a session (a leak of everything it references). For tests.
    var aliveCount: Int { alive.load(ordering: .relaxed) }

    /// Counts a session made (its initialiser) and freed (its `deinit`): once per connection, not per message.
    func sessionMade() { alive.wrappingAdd(1, ordering: .relaxed) }
    func sessionFreed() { alive.wrappingSubtract(1, ordering: .relaxed) }

    func add(_ session: WebSocketSession, on loop: EventLoop) {
        sessions.withLock { $0[ObjectIdentifier(session)] = (session, loop) }
        open.wrappingAdd(1, ordering: .relaxed)
    }

    func remove(_ session: WebSocketSession) {
        let removed = sessions.withLock { $0.removeValue(forKey: ObjectIdentifier(session)) != nil }
        if removed { open.wrappingSubtract(1, ordering: .relaxed) }
    }

    /// Closes every session with `code` on its own event loop.
    func closeAll(_ code: WebSocketErrorCode, reason: String) {
        for (session, loop) in sessions.withLock({ Array($0.values) }) {
            loop.execute { session.close(code, reason) }
        }
    }
}

extension ServerBootstrap {
    /// Out of descriptors (EMFILE, ENFILE), accepting stops for a moment instead of failing in a loop.
    func backingOffWhenOutOfDescriptors() -> ServerBootstrap {
        serverChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(AcceptBackoffHandler())
            }
        }
    }
}

/// Remembers, for one connection (on its event loop), who its upgrade request was admitted as, or why it was
/// refused, and whether it still counts as a handshake.
final class AdmissionBox {
    var principal: Principal?
    /// The token's `exp`, seconds since the Unix epoch.
    var expires: Int64?
    var refusal: Refusal?
    /// The token was refused only for a `kid` the cached key set does not hold.
    var unknownKey = false
    var handshaking = false
    /// The source address its handshake is counted against (``ConnectionLimits/beginHandshake(address:)``).
    var handshakeAddress: String?
}

/// The page served at `/`: `Page/index.html` from the gateway's resources, next to the executable, or the file an
/// operator names with `--page`.
public enum Page {
    /// The largest file `--page` may name: a page, not a download.
    public static let maxBytes = 16 << 20

    /// Why the file named for the page cannot be served.
    public struct Unreadable: Error, CustomStringConvertible {
        public let description: String
    }

    /// The built-in page: the resource bundle's copy, else a short notice.
    public static func load() -> [UInt8] {
        var candidates: [String] = []
        if let directory = executableDirectory() {
            candidates.append(directory + "/gavel_GavelGateway.resources/Page/index.html")
            candidates.append(directory + "/gavel_GavelGateway.resources/index.html")
        }
        for candidate in candidates {
            if let bytes = try? Files.readAll(candidate) { return bytes }
        }
        return Array(
            "<!doctype html><title>Gavel</title><p>Gavel is running. The WebSocket endpoint is <code>/ws</code>.</p>\n"
                .utf8)
    }

    /// The file at `path`, read once at start: a regular file of at most ``maxBytes``. Anything else (missing,
    /// unreadable, a directory, a FIFO that would block the start, a device) is refused with the reason, so that a
    /// mistyped path does not silently serve another page.
    public static func load(file path: String) throws(Unreadable) -> [UInt8] {
        let bytes: [UInt8]
        do {
            // One byte past the largest page tells a file too large; anything but a regular file is refused at once.
            bytes = try Files.read(path, from: 0, limit: maxBytes + 1)
        } catch {
            throw Unreadable(
                description: error.reason != nil
                    ? "\(path) is not a regular file" : "cannot read \(path): \(String(cString: strerror(error.code)))")
        }
        guard bytes.count <= maxBytes else {
            throw Unreadable(
                description: "\(path) is \(Files.size(path) ?? bytes.count) bytes; a page may be at most \(maxBytes)")
        }
        return bytes
    }

    static func executableDirectory() -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        let path = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let slash = path.lastIndex(of: "/") else { return nil }
        return String(path[..<slash])
    }
}

/// The admin HTTP server: `/healthz`, `/readyz`, `/metrics`. Started before recovery, so that `/readyz` can say
/// the server is not ready yet.
public final class AdminServer: Sendable {
    private let channel: Channel

    /// The port it listens on.
    public var port: Int { channel.localAddress?.port ?? 0 }

    private init(channel: Channel) { self.channel = channel }

    /// Binds `host:port` and serves.
    ///
    /// - Parameter refresh: called before `/metrics` is printed, to update gauges read on demand.
    /// - Parameter maxConnections: connections held at once; one more is closed at once. Each is closed
    ///   ``GatewayConfiguration/adminConnectionLifetimeSeconds`` after it was accepted.
    public static func start(
        host: String, port: Int, maxConnections: Int = 64, group: EventLoopGroup, metrics: GatewayMetrics,
        readiness: Readiness, tls: TLSCertificates? = nil, refresh: @escaping @Sendable () -> Void = {}
    ) async throws -> AdminServer {
        let open = OpenConnections()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .backingOffWhenOutOfDescriptors()
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard open.count.wrappingAdd(1, ordering: .relaxed).oldValue < maxConnections else {
                        open.count.wrappingSubtract(1, ordering: .relaxed)
                        throw TooManyAdminConnections()
                    }
                    channel.closeFuture.whenComplete { _ in open.count.wrappingSubtract(1, ordering: .relaxed) }
                    let lifetime = channel.eventLoop.scheduleTask(
                        in: .seconds(GatewayConfiguration.adminConnectionLifetimeSeconds)
                    ) { channel.close(promise: nil) }
                    channel.closeFuture.whenComplete { _ in lifetime.cancel() }
                    try channel.pipeline.syncOperations.addTLS(tls)
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: .seconds(10)))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(
                        AdminHandler(metrics: metrics, readiness: readiness, refresh: refresh))
                }
            }
            .bind(host: host, port: port).get()
        return AdminServer(channel: channel)
    }

    public func close() async {
        try? await channel.close()
    }

    /// Thrown by the child channel initializer for a connection beyond the cap, which closes it.
    struct TooManyAdminConnections: Error {}
}

/// The connections a server holds, counted from its accepting and closing closures.
final class OpenConnections: Sendable {
    let count = Atomic<Int>(0)
}

/// The WebSocket gateway: accepts connections on `host:port`, serves the page at `/`, upgrades `/ws` after the
/// admission checks, and runs a ``WebSocketSession`` for each client.
public final class GatewayServer: Sendable {
    public let configuration: GatewayConfiguration
    let writer: Writer
    let fanOut: FanOut
    let metrics: GatewayMetrics
    let group: EventLoopGroup
    let registry = SessionRegistry()
    let authenticator: Authenticator
    let page: [UInt8]
    let logger: Logger
    let limits: ConnectionLimits
    /// TCP connections not upgraded yet.
    let handshakes = Atomic<Int>(0)
    /// When a refused upgrade was last logged, and how many were refused since.
    private let lastRefusalLogged = Atomic<UInt64>(0)
    private let refusalsUnlogged = Atomic<Int>(0)
    private let channel = Mutex<Channel?>(nil)

    /// - Parameters:
    ///   - writer: the engine; results and events reach sessions only if `fanOut` is its observer (as
    ///     ``ServingCore`` makes them).
    ///   - group: the event loops (one per core), the same the fan-out was made with.
    public init(
        configuration: GatewayConfiguration, writer: Writer, fanOut: FanOut, metrics: GatewayMetrics,
        group: EventLoopGroup, page: [UInt8], logger: Logger
    ) {
        self.configuration = configuration
        self.writer = writer
        self.fanOut = fanOut
        self.metrics = metrics
        self.group = group
        self.page = page
        self.logger = logger
        self.limits = ConnectionLimits(configuration)
        self.authenticator = Authenticator(
            secret: configuration.jwtSecret, identity: configuration.jwks?.provider,
            allowAnonymous: configuration.allowAnonymous,
            now: { SystemClock().now() / 1000 })
    }

    /// Open sessions.
    public var sessionCount: Int { registry.count }

    /// The port the gateway listens on, once started.
    public var port: Int? { channel.withLock { $0?.localAddress?.port } }

    /// Why an upgrade request is refused by the connection limit or the token, or `nil` when it may proceed.
    func refusal(_ head: HTTPRequestHead) -> Refusal? {
        refusal(authenticator.admit(head))
    }

    private func refusal(_ admission: Admission) -> Refusal? {
        if registry.count >= configuration.maxConnections {
            return Refusal(
                status: .serviceUnavailable,
                reason:
                    "the server holds \(configuration.maxConnections) connections (--max-connections); retry later")
        }
        if case .refuse(let status) = admission {
            return Refusal(status: status, reason: "\(status.code) \(status.reasonPhrase)")
        }
        return nil
    }

    /// Admits an upgrade request on `channel`: the connection limit, the token, then the limits per user, address
    /// and anonymous connections, which count the connection until it closes. Records the refusal, if any, in
    /// `box` for the page handler to answer.
    ///
    /// - Parameter retry: a refusal for an unknown `kid` is not logged, as the caller looks again after fetching the
    ///   key set (and logs then).
    func admit(_ head: HTTPRequestHead, channel: Channel, box: AdmissionBox, retry: Bool = false) -> Bool {
        let decision = authenticator.decide(head)
        let (admission, expires) = (decision.admission, decision.expires)
        box.unknownKey = decision.failure == .unknownKey
        if let refusal = refusal(admission) {
            if refusal.status == .serviceUnavailable { metrics.upgradesRefused.increment() }
            if refusal.status == .unauthorized, let why = decision.why, !(retry && box.unknownKey) {
                logUnauthorized(why, channel: channel)
            }
            box.refusal = refusal
            return false
        }
        guard case .accept(let principal) = admission else { return false }
        let address = addressKey(channel)
        let now = monotonicNanos()
        if let refusal = limits.admit(principal, address: address, now: now) {
            metrics.upgradesRefused.increment()
            logRefusal(
                "upgrade refused with \(refusal.status.code): \(refusal.reason)", now: now,
                metadata: Self.refusalMetadata(status: refusal.status.code, principal: principal.name, address: address)
            )
            box.refusal = refusal
            return false
        }
        let limits = limits
        channel.closeFuture.whenComplete { _ in limits.release(principal, address: address) }
        box.principal = principal
        box.expires = expires
        return true
    }

    private func logUnauthorized(_ why: String, channel: Channel) {
        let address = channel.remoteAddress?.ipAddress
        logRefusal(
            "upgrade from \(address ?? "?") refused with 401: \(why)", now: monotonicNanos(),
            metadata: Self.refusalMetadata(status: 401, principal: nil, address: address))
    }

    /// Logs a refused upgrade, at most one line a second (with the count of those not logged), so that a client
    /// retrying in a loop cannot flood the log.
    private func logRefusal(_ line: String, now: UInt64, metadata: Logger.Metadata) {
        let unlogged = refusalsUnlogged.wrappingAdd(1, ordering: .relaxed).newValue
        let last = lastRefusalLogged.load(ordering: .relaxed)
        guard now > last, now - last >= 1_000_000_000,
            lastRefusalLogged.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged
        else { return }
        refusalsUnlogged.wrappingSubtract(unlogged, ordering: .relaxed)
        let others = unlogged > 1 ? " (and \(unlogged - 1) more refusals since the last line)" : ""
        logger.notice("\(line)\(others)", metadata: metadata)
    }

    /// The metadata of a refused upgrade's log line: its status, and who and where from when known.
    private static func refusalMetadata(status: UInt, principal: String?, address: String?) -> Logger.Metadata {
        var metadata: Logger.Metadata = ["status": "\(status)"]
        if let principal { metadata["principal"] = "\(principal)" }
        if let address { metadata["address"] = "\(address)" }
        return metadata
    }

    /// What the per-address limits count `channel` under: its IPv4 address, or its IPv6 address's network of
    /// `ipv6AddressPrefix` bits.
    private func addressKey(_ channel: Channel) -> String? {
        AddressKey.of(channel.remoteAddress, ipv6PrefixBits: configuration.ipv6AddressPrefix)
    }

    /// The headers the upgrade's answer adds: the selected subprotocol when the client offered `gavel`.
    private static func upgradeHeaders(_ head: HTTPRequestHead) -> HTTPHeaders {
        guard let selected = Authenticator.selectedSubprotocol(head) else { return HTTPHeaders() }
        return HTTPHeaders([("Sec-WebSocket-Protocol", selected)])
    }

    /// Counts a TCP connection as a handshake until it is upgraded or closed, and closes it if it has not been
    /// upgraded within the handshake timeout. `false` when there are already `maxHandshakes`, or
    /// `maxHandshakesPerAddress` from the connection's address.
    func beginHandshake(_ channel: Channel, box: AdmissionBox) -> Bool {
        guard handshakes.wrappingAdd(1, ordering: .relaxed).newValue <= configuration.maxHandshakes else {
            handshakes.wrappingSubtract(1, ordering: .relaxed)
            metrics.handshakeCloses.maxHandshakes.increment()
            return false
        }
        let address = addressKey(channel)
        if let address, !limits.beginHandshake(address: address) {
            handshakes.wrappingSubtract(1, ordering: .relaxed)
            metrics.handshakeCloses.perAddress.increment()
            return false
        }
        box.handshaking = true
        box.handshakeAddress = address
        let metrics = metrics
        let bound = NIOLoopBound(box, eventLoop: channel.eventLoop)
        let deadline = channel.eventLoop.scheduleTask(in: .milliseconds(Int64(configuration.handshakeTimeoutMs))) {
            guard bound.value.handshaking else { return }
            metrics.handshakeCloses.deadline.increment()
            channel.close(promise: nil)
        }
        channel.closeFuture.whenComplete { [self] _ in
            deadline.cancel()
            endHandshake(bound.value)
        }
        return true
    }

    /// Stops counting `box`'s connection as a handshake (it was upgraded, or it closed).
    func endHandshake(_ box: AdmissionBox) {
        guard box.handshaking else { return }
        box.handshaking = false
        handshakes.wrappingSubtract(1, ordering: .relaxed)
        if let address = box.handshakeAddress { limits.endHandshake(address: address) }
    }

    /// Why the gateway could not start.
    public struct ListenError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Binds and starts accepting connections.
    ///
    /// - Throws: ``ListenError`` when the address cannot be bound.
    public func start() async throws {
        let bound: Channel
        do {
            bound = try await bootstrap().bind(host: configuration.host, port: configuration.port).get()
        } catch {
            throw ListenError(
                description:
                    "cannot listen on \(configuration.host):\(configuration.port): \(error); check --host, or choose another --port"
            )
        }
        channel.withLock { $0 = bound }
        logger.info(
            "gateway listening on \(configuration.tls == nil ? "ws" : "wss")://\(configuration.host):\(bound.localAddress?.port ?? 0)\(Authenticator.path)"
        )
    }

    private func bootstrap() -> ServerBootstrap {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .backingOffWhenOutOfDescriptors()
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(
                .writeBufferWaterMark,
                value: .init(low: configuration.outboundSoftBytes / 2, high: configuration.outboundSoftBytes)
            )
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { try self.initialize(channel) }
            }
        guard configuration.socketSendBufferBytes > 0 else { return bootstrap }
        return bootstrap.childChannelOption(.socketOption(.so_sndbuf), value: configuration.socketSendBufferBytes)
    }

    /// Thrown by the child channel initializer for a connection beyond `maxHandshakes` or
    /// `maxHandshakesPerAddress`, which closes it.
    struct TooManyHandshakes: Error {}

    func initialize(_ channel: Channel) throws {
        // The connection's admission, read and written only on its event loop (checked at each access).
        let admission = NIOLoopBound(AdmissionBox(), eventLoop: channel.eventLoop)
        let box = admission.value
        guard beginHandshake(channel, box: box) else { throw TooManyHandshakes() }
        let localTokens =
            configuration.localTokens
            ? LocalTokens(
                secret: configuration.jwtSecret, code: configuration.localCode,
                ttlSeconds: Int64(configuration.localTokenTTLSeconds),
                now: { SystemClock().now() / 1000 }) : nil
        let page = NIOLoopBound(
            PageHandler(
                page: page, localTokens: localTokens,
                refusal: { [self] head in admission.value.refusal ?? refusal(head) }),
            eventLoop: channel.eventLoop)
        let upgrader = NIOWebSocketServerUpgrader(
            maxFrameSize: configuration.maxMessageBytes, automaticErrorHandling: false,
            shouldUpgrade: { [self] channel, head in
                guard Authenticator.isEndpoint(head.uri) else { return channel.eventLoop.makeSucceededFuture(nil) }
                let box = admission.value
                let jwks = configuration.jwks
                if admit(head, channel: channel, box: box, retry: jwks?.fetchesOnUnknownKey == true) {
                    return channel.eventLoop.makeSucceededFuture(Self.upgradeHeaders(head))
                }
                // A kid the cached key set does not hold: the provider may have rotated its keys; fetch them again
                // (rate-limited) and look once more.
                guard box.unknownKey, let jwks, jwks.fetchesOnUnknownKey else {
                    return channel.eventLoop.makeSucceededFuture(nil)
                }
                guard let refreshed = jwks.refreshForUnknownKey(on: channel.eventLoop) else {
                    logUnauthorized(
                        "token refused: \(JWT.Failure.unknownKey) (the key set was fetched less than --jwks-refresh-seconds ago)",
                        channel: channel)
                    return channel.eventLoop.makeSucceededFuture(nil)
                }
                return refreshed.map { [self] in
                    admission.value.refusal = nil
                    return admit(head, channel: channel, box: admission.value) ? Self.upgradeHeaders(head) : nil
                }
            },
            upgradePipelineHandler: { [self] channel, _ in
                channel.eventLoop.makeCompletedFuture {
                    let box = admission.value
                    endHandshake(box)
                    let operations = channel.pipeline.syncOperations
                    // The session reads the frames itself (`FrameReader`): the upgrade's decoder goes.
                    try operations.removeHandler(
                        context: operations.context(handlerType: ByteToMessageHandler<WebSocketFrameDecoder>.self),
                        promise: nil)
                    let raw = RawFrameWriter(sendsToSocket: configuration.tls == nil)
                    // Next to the socket, or to TLS, so that raw frames are still encrypted.
                    if configuration.tls != nil {
                        let tls = try operations.handler(type: NIOSSLServerHandler.self)
                        try operations.addHandler(raw, position: .after(tls))
                    } else {
                        try operations.addHandler(raw, position: .first)
                    }
                    try operations.addHandler(
                        WebSocketSession(
                            principal: box.principal ?? .anonymous, configuration: configuration, writer: writer,
                            fanOut: fanOut, metrics: metrics, registry: registry, output: raw, limits: limits,
                            expires: box.expires))
                }
            })
        try channel.pipeline.syncOperations.addTLS(configuration.tls)
        if configuration.idleTimeoutMs > 0 {
            try channel.pipeline.syncOperations.addHandler(
                IdleStateHandler(readTimeout: .milliseconds(Int64(max(1, configuration.idleTimeoutMs / 2)))))
        }
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
            withServerUpgrade: (
                upgraders: [upgrader],
                completionHandler: { context in
                    context.pipeline.syncOperations.removeHandler(page.value, promise: nil)
                }
            ))
        try channel.pipeline.syncOperations.addHandler(page.value)
    }

    /// Stops accepting, closes every session with 1001, and waits (up to `timeout`) for them to go.
    public func shutdown(timeout: Duration = .seconds(5)) async {
        let listening = channel.withLock { $0 }
        try? await listening?.close()
        registry.closeAll(.goingAway, reason: "server shutting down")
        let deadline = ContinuousClock.now + timeout
        while registry.count > 0 && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
    }
}

/// Runs the gateway as a swift-service-lifecycle `Service`: listens, says it is ready, and on graceful shutdown
/// says it is not, stops accepting and closes every client with 1001 (before the engine drains).
public struct GatewayService: Service {
    public let server: GatewayServer
    let readiness: Readiness
    let logger: Logger

    public init(server: GatewayServer, readiness: Readiness, logger: Logger) {
        self.server = server
        self.readiness = readiness
        self.logger = logger
    }

    public func run() async throws {
        try await server.start()
        readiness.set(true)
        try? await gracefulShutdown()
        readiness.set(false)
        logger.info("gateway closing \(server.sessionCount) sessions")
        await server.shutdown()
        logger.info("gateway stopped")
    }
}
