#if canImport(Glibc)
    import Glibc
#endif

/// The command rate a connection may send: a token bucket refilled at `perSecond`, holding at most `burst`.
public struct RateLimit: Sendable, Hashable {
    public var perSecond: Int
    public var burst: Int

    public init(perSecond: Int, burst: Int) {
        self.perSecond = perSecond
        self.burst = burst
    }
}

/// Everything `gavel serve` can be told about the gateway. Every limit has a default that suits one server.
public struct GatewayConfiguration: Sendable {
    /// The address of the WebSocket endpoint and the page.
    public var host = "127.0.0.1"
    /// The port of the WebSocket endpoint (`/ws`) and the page (`/`); 0 picks a free port.
    public var port = 8080
    /// The port of the admin HTTP server (`/healthz`, `/readyz`, `/metrics`); 0 picks a free port, -1 disables it.
    public var adminPort = 9090
    /// The address of the admin HTTP server.
    public var adminHost = "127.0.0.1"
    /// Connections the admin HTTP server holds at once; one more is closed at once. Each is also closed after
    /// ``adminConnectionLifetimeSeconds`` whatever it does, so a client trickling a request a byte at a time holds
    /// its slot for that long at most.
    public var maxAdminConnections = 64
    public static let adminConnectionLifetimeSeconds: Int64 = 60
    /// Event loop threads; 0 means ``defaultEventLoops(allowedCPUs:)``.
    public var threads = 0

    /// The event loops for a process that may run on `allowedCPUs` cores (its affinity mask, its cgroup's cpuset
    /// and quota): one per core up to three cores, then one per core but two, which are left to the `writer` and
    /// the `journal` thread. The writer is the one serial step of every command and the journal's group commit
    /// overlaps the writer's next batch; with as many busy loops as cores, the scheduler would time-slice them with
    /// the loops, and every command would wait for their slices. Up to three cores the loops keep them all: the
    /// writer and the journal thread sleep whenever the loops have nothing for them, and with fewer loops the cores
    /// would idle (docs/ARCHITECTURE.md, "Threads and cores").
    public static func defaultEventLoops(allowedCPUs: Int) -> Int {
        allowedCPUs >= 4 ? allowedCPUs - 2 : max(1, allowedCPUs)
    }

    /// The largest message a client may send, reassembled from its fragments; larger closes with 1009.
    public var maxMessageBytes = 64 * 1024
    /// Bytes written to a connection and not yet taken by its socket; past this the connection is closed with 1013.
    public var maxOutboundBytes = 4 * 1024 * 1024
    /// What all connections together may hold of ``maxOutboundBytes`` for readers that fall behind: a connection
    /// with more than ``outboundSoftBytes`` unread takes ``maxOutboundBytes`` of it until it has caught up, and one
    /// that finds it taken is closed with 1013. So slow or stalled readers (one address may open a thousand) hold
    /// about this much memory at most, not ``maxOutboundBytes`` each.
    public var maxOutboundBytesTotal = 1 << 30

    /// The unread bytes past which a connection counts as falling behind (its channel's high-water mark; it counts
    /// again as keeping up below half of it): a sixteenth of ``maxOutboundBytes``, 256 KiB at the default, 64 KiB at
    /// least unless the cap is smaller.
    public var outboundSoftBytes: Int { min(maxOutboundBytes / 2, max(maxOutboundBytes / 16, 64 * 1024)) }
    /// The kernel's send buffer for each client connection (`SO_SNDBUF`; Linux keeps twice this, and caps it at
    /// `net.core.wmem_max` unless raised); 0 leaves the kernel's own sizing, which grows a connection's buffer up to
    /// the third figure of `net.ipv4.tcp_wmem` (4 MiB by default). A set size bounds what the kernel holds for a
    /// client that falls behind (beside ``maxOutboundBytes``, which the server holds) and makes it be seen sooner.
    public var socketSendBufferBytes = 0
    /// Whether an event loop makes the sends of a fan-out task (one event to many connections) with one io_uring
    /// submission instead of one `send(2)` each, where the kernel allows io_uring (else it sends one by one, and
    /// says so once in the log). The bytes and their order are the same either way; only the number of system
    /// calls changes.
    public var ioUring = true
    /// Open connections on the main port; a WebSocket upgrade beyond this is refused with 503.
    public var maxConnections = 10_000
    /// Subscriptions one connection may hold at once.
    public var maxSubscriptions = 100
    /// Subscriptions one `service` connection may hold at once.
    public var maxSubscriptionsService = 10_000
    /// A connection that sends nothing for this long is pinged; one that still sends nothing (not even a pong) for
    /// as long again is closed with 1001. 0 disables.
    public var idleTimeoutMs = 60_000
    /// Message rate of bidder, seller and watcher connections.
    public var rate = RateLimit(perSecond: 50, burst: 100)
    /// Message rate of service connections.
    public var serviceRate = RateLimit(perSecond: 5_000, burst: 10_000)
    /// Frames per second of bidder, seller and watcher connections: every frame counts (text, continuation, ping,
    /// pong, close), whether or not it completes a message. Past the burst the connection is closed with 1008.
    public var frameRate = RateLimit(perSecond: 1_000, burst: 2_000)
    /// Frames per second of service connections.
    public var serviceFrameRate = RateLimit(perSecond: 20_000, burst: 40_000)
    /// The most frames one message may come in (its first frame and its continuations); past it the connection is
    /// closed with 1008.
    public var maxFragmentsPerMessage = 256
    /// A connection rate-limited on more than `(abuseFactor - 1) * perSecond * abuseWindowSeconds` messages within
    /// `abuseWindowSeconds` (sending at `abuseFactor` times its rate) is closed with 1008.
    public var abuseFactor = 5
    public var abuseWindowSeconds = 10
    /// Connections one user (a token's `sub`) may hold at once; service tokens are not counted. Past it the upgrade
    /// is refused with 429.
    public var maxConnectionsPerUser = 50
    /// Connections one source address may hold at once; past it the upgrade is refused with 429.
    public var maxConnectionsPerAddress = 1_000
    /// Connections without a token; past it an anonymous upgrade is refused with 503, leaving the rest of
    /// `maxConnections` to token holders.
    public var maxAnonymousConnections = 1_000
    /// Commands per second of one bidder or seller across all its connections (on top of each connection's `rate`).
    public var principalRate = RateLimit(perSecond: 200, burst: 400)
    /// Commands per second of one service principal across all its connections.
    public var servicePrincipalRate = RateLimit(perSecond: 20_000, burst: 40_000)
    /// Listings one seller token may open per minute (a bucket holding a minute's worth); service tokens are not
    /// limited.
    public var opensPerMinute = 60
    /// TCP connections on the main port that have not been upgraded yet (still sending their request, or being
    /// answered); one beyond this is closed at once.
    public var maxHandshakes = 1_000
    /// TCP connections from one source address that have not been upgraded yet; one beyond this is closed at once.
    /// It keeps one address from taking the whole of `maxHandshakes` (silent connections held until the deadline,
    /// and opened again), so clients from other addresses can still connect. Behind a reverse proxy every client
    /// has the proxy's address: raise it there.
    public var maxHandshakesPerAddress = 64
    /// The leading bits of an IPv6 client's address the per-address limits count it by (``AddressKey``): 64, the
    /// network a provider hands one customer; 128 counts every address apart.
    public var ipv6AddressPrefix = 64
    /// How long a TCP connection on the main port has to send its request and be upgraded (or answered) before it
    /// is closed, in ms.
    public var handshakeTimeoutMs = 12_000
    /// Bytes per second one connection may be sent in answers to reads (`list`, `subscribe` snapshots and replayed
    /// events, `subscribe_user` replays, `my_settlements`, `get_settlement`); past it they are refused with
    /// `rate_limited` until the budget refills.
    public var maxReadBytesPerSecond = 256 * 1024
    /// Public events kept per listing for `subscribe` with `since`.
    public var historyEvents = 256
    /// The bytes all listings' kept events take together (one ring: the oldest frames, of any listing, make room
    /// for the newest).
    public var historyBytes = 64 << 20
    /// The most listings one `subscribe_feed` may name in `listings`.
    public var maxFeedListings = 1_000
    /// The most feed catch-ups from the journal at once.
    public var maxFeedCatchups = 2
    /// A feed catch-up whose connection writes nothing of it for this long is closed with 1013 (slow consumer), so a
    /// consumer that stopped reading does not hold a catch-up (a thread and a copy of the state) for ever.
    public var feedStallTimeoutMs = 10_000
    /// Private notices kept per user for `subscribe_user` with `since`.
    public var userHistoryEvents = 256
    /// The bytes all users' kept notices take together (one ring, as ``historyBytes``).
    public var userHistoryBytes = 16 << 20

    /// TLS on the main port (`wss://`, `https://`); `nil`: plain.
    public var tls: TLSCertificates?

    /// The identity provider's key set (with its issuer, audience and role claim), for RS256, ES256 and EdDSA
    /// tokens; `nil`: HS256 tokens only.
    public var jwks: JWKSSource?

    /// The HS256 key tokens are signed with.
    public var jwtSecret: [UInt8] = []
    /// Whether a connection without a token is let in as an anonymous `watcher`.
    public var allowAnonymous = true
    /// Local mode: the key is the server's own (`<data-dir>/jwt-secret`, no `--jwt-secret` given), and loopback
    /// clients that show ``localCode`` may get bidder and seller tokens from `POST /token` (``LocalTokens``).
    public var localTokens = false
    /// The code `POST /token` requires in local mode: random, new at every start, in `<data-dir>/local-code`.
    public var localCode: [UInt8] = []
    /// How long a token from `/token` is valid, in seconds.
    public var localTokenTTLSeconds = 3600

    public init() {}

    /// The rate limit of a connection with `role`.
    public func rate(for role: Role) -> RateLimit { role == .service ? serviceRate : rate }

    /// The frame rate of a connection with `role`: its frame rate and burst, and at least its message rate and burst
    /// (a message takes at least a frame, so a connection within its message rate is never closed for its frames).
    public func frameRate(for role: Role) -> RateLimit {
        let frames = role == .service ? serviceFrameRate : frameRate
        let messages = rate(for: role)
        return RateLimit(
            perSecond: max(frames.perSecond, messages.perSecond), burst: max(frames.burst, messages.burst))
    }

    /// The command rate of a principal with `role` over all its connections.
    public func principalRate(for role: Role) -> RateLimit { role == .service ? servicePrincipalRate : principalRate }

    /// The subscription limit of a connection with `role`.
    public func maxSubscriptions(for role: Role) -> Int {
        role == .service ? maxSubscriptionsService : maxSubscriptions
    }
}

/// The process's open-file limit and what the gateway may use of it.
public enum OpenFiles {
    /// Descriptors kept for everything but client connections and the event loops: the journal's segments and
    /// directory, snapshots and their reads, key-set fetches, logs; the admin server's connections and
    /// ``perEventLoop`` for each event loop on top.
    public static let reserved = 256
    /// Descriptors an event loop holds of its own (its epoll, eventfd and timerfd), with one to spare.
    public static let perEventLoop = 4

    /// Raises the soft open-file limit to the hard one (a service started with the common default of 1,024 may use
    /// what its hard limit allows without being told), and returns the soft limit now in force.
    public static func raiseLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1_024 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return limit.rlim_cur >= rlim_t(Int.max) ? Int.max : Int(limit.rlim_cur)
    }

    /// `configuration` with its connection caps lowered, when needed, so that clients at every cap (connections,
    /// handshakes, admin connections) leave ``reserved`` descriptors of `limit`: a client holding as many
    /// connections as the caps allow then gets 503s and closed handshakes, never the journal an `EMFILE` that
    /// would stop the server. Returns the lowered configuration and a line saying what was lowered (`nil`: nothing).
    public static func fit(_ configuration: GatewayConfiguration, limit: Int, eventLoops: Int = 1) throws(TooLow) -> (
        GatewayConfiguration, String?
    ) {
        var c = configuration
        let admin = c.adminPort >= 0 ? c.maxAdminConnections : 0
        let kept = reserved + admin + perEventLoop * eventLoops
        let room = limit - kept
        guard room >= 2 else { throw TooLow(limit: limit, needed: kept + 2) }
        let wanted = c.maxConnections + c.maxHandshakes
        guard wanted > room else { return (c, nil) }
        // Handshakes keep their share of the room, at least one; the per-address and anonymous caps keep their share
        // of their totals, so one address still cannot take more of them than it could before.
        c.maxHandshakes = max(1, min(c.maxHandshakes, room * c.maxHandshakes / wanted))
        c.maxConnections = room - c.maxHandshakes
        func scaled(_ cap: Int, _ old: Int, _ new: Int) -> Int { max(1, min(cap, cap * new / max(old, 1))) }
        c.maxHandshakesPerAddress = scaled(c.maxHandshakesPerAddress, configuration.maxHandshakes, c.maxHandshakes)
        c.maxAnonymousConnections = scaled(
            c.maxAnonymousConnections, configuration.maxConnections, c.maxConnections)
        c.maxConnectionsPerAddress = scaled(
            c.maxConnectionsPerAddress, configuration.maxConnections, c.maxConnections)
        c.maxConnectionsPerUser = min(c.maxConnectionsPerUser, c.maxConnections)
        let line = """
            the open-file limit is \(limit) (ulimit -n; LimitNOFILE= for systemd): --max-connections lowered from \
            \(configuration.maxConnections) to \(c.maxConnections) and --max-handshakes from \
            \(configuration.maxHandshakes) to \(c.maxHandshakes) (the per-address and anonymous caps in proportion: \
            --max-connections-per-address \(c.maxConnectionsPerAddress), --max-anonymous-connections \
            \(c.maxAnonymousConnections), --max-handshakes-per-address \(c.maxHandshakesPerAddress)), keeping \(kept) descriptors for the journal, \
            snapshots, admin HTTP and the \(eventLoops) event loops; raise the limit to allow more
            """
        return (c, line)
    }

    /// The open-file limit leaves no room for clients.
    public struct TooLow: Error, CustomStringConvertible {
        public let limit: Int
        public let needed: Int
        public var description: String {
            "the open-file limit is \(limit) (ulimit -n); gavel serve needs at least \(needed): raise it"
        }
    }
}
