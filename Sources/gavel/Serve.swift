import ArgumentParser
import Dispatch
import GavelCore
import GavelEngine
import GavelGateway
import GavelJournal
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the WebSocket gateway: the engine, the journal, fan-out, the page and admin HTTP.",
        discussion: """
            Recovers the data directory, then serves JSON text frames on ws://HOST:PORT/ws (see the WebSocket \
            gateway section of docs/PROTOCOL.md), a page at http://HOST:PORT/, and /healthz, /readyz and /metrics \
            on the admin port. Every option also reads the environment variable named in its help; an option on \
            the command line wins. With no secret configured, the HS256 key is <data-dir>/jwt-secret (created, \
            mode 0600); `gavel token --sub alice --role bidder` prints a token signed with it. In that local mode \
            only, clients on loopback that show the local code (new at every start, in <data-dir>/local-code and \
            in the page address printed at start, http://127.0.0.1:PORT/#code=...) may also POST \
            {"sub": "alice", "role": "bidder"} (or "seller") to http://HOST:PORT/token for a token, as the page \
            does; with a secret given, or with --jwks/--jwks-url (users are the identity provider's), /token is \
            404. A secret must be at least 32 bytes. Give it in GAVEL_JWT_SECRET or in a file (--jwt-secret-file, \
            the running user's own, chmod 600): other local users can read a command line (ps), and --jwt-secret \
            shows there until gavel serve has started and overwritten it.

            The data directory is private to its owner (0700, files 0600); one that other users can read or write \
            is refused, as is a key file they can. Only one process at a time writes a data directory: it holds an \
            exclusive lock on <data-dir>/LOCK, which names its pid, and a second one is refused.

            SIGTERM or SIGINT: stop accepting, close clients with 1001, drain the engine, snapshot, exit 0. \
            SIGUSR1 (or `gavel snapshot --data-dir D`): take a snapshot now. SIGHUP, with --tls-cert, \
            --admin-tls-cert, --jwks or --jwks-url: read the certificates and the key set again for new \
            connections (open ones stay; a file that fails to load keeps the one in use, and the log says why).

            With --tls-cert/--tls-key the main port serves wss:// and https:// only (TLS 1.2 and 1.3). With --jwks \
            or --jwks-url, RS256, ES256 and EdDSA tokens signed with the identity provider's keys (by kid) are \
            accepted too, their role read from --role-claim; HS256 tokens are checked with the secret only.
            """
    )

    @Option(name: .long, help: "Address of the WebSocket endpoint and the page. Env GAVEL_HOST; default 127.0.0.1.")
    var host: String?

    @Option(
        name: .long,
        help: "Port of the WebSocket endpoint and the page (0: any free port). Env GAVEL_PORT; default 8080.")
    var port: Int?

    @Option(name: .long, help: "Address of the admin HTTP server. Env GAVEL_ADMIN_HOST; default 127.0.0.1.")
    var adminHost: String?

    @Option(
        name: .long,
        help:
            "Port of the admin HTTP server (0: any free port; --admin-port=-1: none). Env GAVEL_ADMIN_PORT; default 9090."
    )
    var adminPort: Int?

    @Option(
        name: .long,
        help:
            "Connections the admin HTTP server holds at once (each closed after 60 s); one more is closed at once. Env GAVEL_MAX_ADMIN_CONNECTIONS; default 64."
    )
    var maxAdminConnections: Int?

    @Option(name: .long, help: "The data directory (created when missing). Env GAVEL_DATA_DIR; default ./gavel-data.")
    var dataDir: String?

    @OptionGroup var jwt: JWTSecretOptions

    @Option(
        name: .long,
        help:
            "Lifetime in seconds of the tokens POST /token gives loopback clients with the local code in local mode (no --jwt-secret). Env GAVEL_LOCAL_TOKEN_TTL_SECONDS; default 3600."
    )
    var localTokenTtlSeconds: Int?

    @Flag(
        name: .long,
        help: "Refuse connections without a token (401) instead of letting them watch. Env GAVEL_NO_ANONYMOUS=1.")
    var noAnonymous = false

    @Option(
        name: .long,
        help:
            "Event loop threads (0: one per core the process may run on, by its CPU affinity and cgroup, but two left to the writer and the journal from 4 cores on). Env GAVEL_THREADS; default 0."
    )
    var threads: Int?

    @Option(
        name: .long,
        help:
            "Largest client message in bytes, fragments reassembled; larger closes with 1009. Env GAVEL_MAX_MESSAGE_BYTES; default 65536."
    )
    var maxMessageBytes: Int?

    @Option(
        name: .long,
        help:
            "Unread bytes buffered for one client before it is closed with 1013. Env GAVEL_MAX_OUTBOUND_BYTES; default 4194304."
    )
    var maxOutboundBytes: Int?

    @Option(
        name: .long,
        help:
            "Unread bytes all clients that fall behind may hold together: one with more than a sixteenth of --max-outbound-bytes unread takes --max-outbound-bytes of it until it catches up, and is closed with 1013 when none is left. Env GAVEL_MAX_OUTBOUND_BYTES_TOTAL; default 1073741824."
    )
    var maxOutboundBytesTotal: Int?

    @Option(
        name: .long,
        help:
            "The kernel's send buffer for each client connection, in bytes (SO_SNDBUF: Linux keeps twice this, capped at net.core.wmem_max); 0: the kernel sizes it (up to 4 MiB a connection by default). Env GAVEL_SOCKET_SEND_BUFFER; default 0."
    )
    var socketSendBuffer: Int?

    @Flag(
        name: .long,
        help:
            "Make an event loop's sends of one fan-out (an event to many connections) one send(2) per connection instead of one io_uring submission for all of them; without this flag io_uring is used where the kernel allows it. Env GAVEL_NO_IO_URING=1."
    )
    var noIoUring = false

    @Option(
        name: .long,
        help: "Open connections; an upgrade beyond this gets 503. Env GAVEL_MAX_CONNECTIONS; default 10000.")
    var maxConnections: Int?

    @Option(name: .long, help: "Subscriptions per connection. Env GAVEL_MAX_SUBSCRIPTIONS; default 100.")
    var maxSubscriptions: Int?

    @Option(
        name: .long, help: "Subscriptions per service connection. Env GAVEL_MAX_SUBSCRIPTIONS_SERVICE; default 10000.")
    var maxSubscriptionsService: Int?

    @Option(
        name: .long,
        help:
            "A silent client is pinged after half of this and closed with 1001 after all of it, in ms (0: never). Env GAVEL_IDLE_TIMEOUT_MS; default 60000."
    )
    var idleTimeoutMs: Int?

    @Option(
        name: .long, help: "Messages per second for bidder, seller and watcher connections. Env GAVEL_RATE; default 50."
    )
    var rate: Int?

    @Option(
        name: .long,
        help: "Burst of messages for bidder, seller and watcher connections. Env GAVEL_RATE_BURST; default 100.")
    var rateBurst: Int?

    @Option(name: .long, help: "Messages per second for service connections. Env GAVEL_SERVICE_RATE; default 5000.")
    var serviceRate: Int?

    @Option(
        name: .long, help: "Burst of messages for service connections. Env GAVEL_SERVICE_RATE_BURST; default 10000.")
    var serviceRateBurst: Int?

    @Option(
        name: .long,
        help: "Close with 1008 a connection sending at this many times its rate ... Env GAVEL_ABUSE_FACTOR; default 5.")
    var abuseFactor: Int?

    @Option(name: .long, help: "... for this many seconds. Env GAVEL_ABUSE_WINDOW_SECONDS; default 10.")
    var abuseWindowSeconds: Int?

    @Option(
        name: .long,
        help: "Public events kept per listing for subscribe with since. Env GAVEL_HISTORY_EVENTS; default 256.")
    var historyEvents: Int?

    @Option(
        name: .long,
        help:
            "Bytes all listings' kept events take together: the oldest frames, of any listing, make room for the newest (a since further back gets a snapshot). Env GAVEL_HISTORY_BYTES; default 67108864 (64 MiB)."
    )
    var historyBytes: Int?

    @Option(
        name: .long,
        help:
            "Private notices kept per user for subscribe_user with since. Env GAVEL_USER_HISTORY_EVENTS; default 256.")
    var userHistoryEvents: Int?

    @Option(
        name: .long,
        help:
            "Bytes all users' kept notices take together, as --history-bytes. Env GAVEL_USER_HISTORY_BYTES; default 16777216 (16 MiB)."
    )
    var userHistoryBytes: Int?

    @Option(
        name: .long,
        help:
            "Feed catch-ups from the journal (subscribe_feed with since_lsn) at once; each holds a copy of the state, more are refused with overloaded. Env GAVEL_MAX_FEED_CATCHUPS; default 2."
    )
    var maxFeedCatchups: Int?

    @Option(
        name: .long,
        help:
            "A feed catch-up whose consumer reads nothing for this long is closed with 1013 (slow consumer) and frees its place. Env GAVEL_FEED_STALL_TIMEOUT_MS; default 10000."
    )
    var feedStallTimeoutMs: Int?

    @Option(
        name: .long,
        help: "The most listings one subscribe_feed may name in listings. Env GAVEL_MAX_FEED_LISTINGS; default 1000.")
    var maxFeedListings: Int?

    @Option(
        name: .long,
        help:
            "How long request ids are remembered for idempotency, in ms. Env GAVEL_IDEMPOTENCY_WINDOW_MS; default 86400000."
    )
    var idempotencyWindowMs: Int64?

    @Option(
        name: .long,
        help:
            "Request ids the idempotency table makes room for at start (it grows past this a little per insert, never stopping the writer, but room made up front spares that work); its index costs 16 bytes a slot, about 32 MB resident at 1000000 once ids arrive (0: none). Env GAVEL_EXPECTED_REQUEST_IDS; default 1000000."
    )
    var expectedRequestIds: Int?

    // Bounds of the engine's state (listing queues, closed listings, request ids per principal, resting orders, dutch
    // steps, listing durations).

    @Option(
        name: .long,
        help:
            "Listings in memory plus opens in flight; past it a new open gets overloaded, commands on existing listings never do. Env GAVEL_MAX_LISTING_QUEUES; default 1000000."
    )
    var maxListingQueues: Int?

    @Option(
        name: .long,
        help:
            "Commands one listing may have waiting for the engine; past it the listing's next command gets overloaded until the engine takes some. Env GAVEL_LISTING_QUEUE_CAPACITY; default 4096, 16 to 1000000."
    )
    var listingQueueCapacity: Int?

    @Option(
        name: .long,
        help:
            "How long a closed, sold-out or cancelled listing stays in memory, in ms; then it is evicted (its history stays in the journal). Part of the state: fixed by the data directory's first start. Env GAVEL_CLOSED_LISTING_RETENTION_MS; default 3600000."
    )
    var closedListingRetentionMs: Int64?

    @Option(
        name: .long,
        help:
            "Request ids remembered per principal (the user a command acts for); past it the oldest is forgotten first. Part of the state: fixed by the data directory's first start. Env GAVEL_MAX_REQUEST_IDS_PER_PRINCIPAL; default 100000."
    )
    var maxRequestIdsPerPrincipal: Int?

    @Option(
        name: .long,
        help:
            "Orders resting on one market listing; a gtc order arriving when it holds this many gets limit_exceeded (ioc orders are not limited). Part of the state: fixed by the data directory's first start. Env GAVEL_MAX_RESTING_ORDERS_PER_LISTING; default 100000."
    )
    var maxRestingOrdersPerListing: Int?

    @Option(
        name: .long,
        help:
            "Orders one trader has resting on one market listing; the trader's gtc order arriving when it has this many gets limit_exceeded. Part of the state: fixed by the data directory's first start. Env GAVEL_MAX_RESTING_ORDERS_PER_TRADER; default 1000."
    )
    var maxRestingOrdersPerTrader: Int?

    @Option(
        name: .long,
        help:
            "Orders one trader has resting over all market listings; the trader's gtc order arriving when it has this many gets limit_exceeded. Part of the state: fixed by the data directory's first start. Env GAVEL_MAX_RESTING_ORDERS_PER_TRADER_TOTAL; default 10000."
    )
    var maxRestingOrdersPerTraderTotal: Int?

    @Option(
        name: .long,
        help:
            "Listings one seller has open at once (until each closes, sells out or is cancelled); the seller's open arriving when it has this many gets limit_exceeded. Part of the state: fixed by the data directory's first start. Env GAVEL_MAX_OPEN_LISTINGS_PER_SELLER; default 10000."
    )
    var maxOpenListingsPerSeller: Int?

    @Option(
        name: .long,
        help:
            "Listings of one seller the engine holds: open, or ended and still in memory while a settlement is unfinished, a second-chance offer is open or the retention runs; the seller's open arriving when it has this many gets limit_exceeded. Part of the state: fixed by the data directory's first start (none for a directory started before it existed). Env GAVEL_MAX_LISTINGS_HELD_PER_SELLER; default 20000."
    )
    var maxListingsHeldPerSeller: Int?

    @Option(
        name: .long,
        help:
            "Settlements not yet final that one user is the buyer or seller of; the user's buy_now, dutch accept, accept_offer or order that would trade at once, arriving when it has this many, gets limit_exceeded. Part of the state: fixed by the data directory's first start (none for a directory started before it existed). Env GAVEL_MAX_UNFINISHED_SETTLEMENTS_PER_USER; default 10000."
    )
    var maxUnfinishedSettlementsPerUser: Int?

    @Option(
        name: .long,
        help:
            "The shortest step_every_ms a dutch open may give (each step is a journaled tick and a price event); shorter gets bad_request. Part of the state: fixed by the data directory's first start. Env GAVEL_MIN_DUTCH_STEP_MS; default 100, 1 to 86400000."
    )
    var minDutchStepMs: Int64?

    @Option(
        name: .long,
        help:
            "How far after the engine time an open's closes_at may be, in ms, every format; further gets bad_request. Part of the state: fixed by the data directory's first start. Env GAVEL_MAX_LISTING_DURATION_MS; default 0: none, else 1 to 315360000000 (10 years)."
    )
    var maxListingDurationMs: Int64?

    /// The engine's settings from options, environment and defaults, validated.
    func engineConfiguration() throws -> EngineConfiguration {
        let c = EngineConfiguration(
            idempotencyWindowMs: try Setting.value(
                idempotencyWindowMs, "GAVEL_IDEMPOTENCY_WINDOW_MS", default: 86_400_000),
            expectedRequestIDs: try expectedRequestIDs(),
            closedListingRetentionMs: try Setting.value(
                closedListingRetentionMs, "GAVEL_CLOSED_LISTING_RETENTION_MS", default: 3_600_000),
            maxRequestIDsPerPrincipal: try Setting.value(
                maxRequestIdsPerPrincipal, "GAVEL_MAX_REQUEST_IDS_PER_PRINCIPAL", default: 100_000),
            maxRestingOrdersPerListing: try Setting.value(
                maxRestingOrdersPerListing, "GAVEL_MAX_RESTING_ORDERS_PER_LISTING", default: 100_000),
            maxRestingOrdersPerTrader: try Setting.value(
                maxRestingOrdersPerTrader, "GAVEL_MAX_RESTING_ORDERS_PER_TRADER", default: 1_000),
            minDutchStepMs: try Setting.value(
                minDutchStepMs, "GAVEL_MIN_DUTCH_STEP_MS", default: EngineConfiguration.servedMinDutchStepMs),
            maxListingDurationMs: try Setting.value(maxListingDurationMs, "GAVEL_MAX_LISTING_DURATION_MS", default: 0)
                .noneIfZero,
            maxOpenListingsPerSeller: try Setting.value(
                maxOpenListingsPerSeller, "GAVEL_MAX_OPEN_LISTINGS_PER_SELLER",
                default: EngineConfiguration.servedMaxOpenListingsPerSeller),
            maxRestingOrdersPerTraderTotal: try Setting.value(
                maxRestingOrdersPerTraderTotal, "GAVEL_MAX_RESTING_ORDERS_PER_TRADER_TOTAL",
                default: EngineConfiguration.servedMaxRestingOrdersPerTraderTotal),
            maxListingsHeldPerSeller: try Setting.value(
                maxListingsHeldPerSeller, "GAVEL_MAX_LISTINGS_HELD_PER_SELLER",
                default: EngineConfiguration.servedMaxListingsHeldPerSeller),
            maxUnfinishedSettlementsPerUser: try Setting.value(
                maxUnfinishedSettlementsPerUser, "GAVEL_MAX_UNFINISHED_SETTLEMENTS_PER_USER",
                default: EngineConfiguration.servedMaxUnfinishedSettlementsPerUser))
        guard (1...Self.maxIdempotencyWindowMs).contains(c.idempotencyWindowMs) else {
            throw ValidationError("--idempotency-window-ms must be 1 to \(Self.maxIdempotencyWindowMs) (30 days)")
        }
        guard (0...1_000_000_000).contains(c.expectedRequestIDs) else {
            throw ValidationError("--expected-request-ids must be 0 to 1000000000")
        }
        guard (0...31_536_000_000).contains(c.closedListingRetentionMs) else {
            throw ValidationError("--closed-listing-retention-ms must be 0 to 31536000000 (a year)")
        }
        guard (1...1_000_000_000).contains(c.maxRequestIDsPerPrincipal) else {
            throw ValidationError("--max-request-ids-per-principal must be 1 to 1000000000")
        }
        guard (1...10_000_000).contains(c.maxRestingOrdersPerListing) else {
            throw ValidationError("--max-resting-orders-per-listing must be 1 to 10000000")
        }
        guard (1...10_000_000).contains(c.maxRestingOrdersPerTrader) else {
            throw ValidationError("--max-resting-orders-per-trader must be 1 to 10000000")
        }
        guard (1...100_000_000).contains(c.maxOpenListingsPerSeller) else {
            throw ValidationError("--max-open-listings-per-seller must be 1 to 100000000")
        }
        guard (1...100_000_000).contains(c.maxRestingOrdersPerTraderTotal) else {
            throw ValidationError("--max-resting-orders-per-trader-total must be 1 to 100000000")
        }
        guard (1...100_000_000).contains(c.maxListingsHeldPerSeller) else {
            throw ValidationError("--max-listings-held-per-seller must be 1 to 100000000")
        }
        guard (1...100_000_000).contains(c.maxUnfinishedSettlementsPerUser) else {
            throw ValidationError("--max-unfinished-settlements-per-user must be 1 to 100000000")
        }
        guard (1...86_400_000).contains(c.minDutchStepMs) else {
            throw ValidationError("--min-dutch-step-ms must be 1 to 86400000 (a day)")
        }
        guard c.maxListingDurationMs == .max || (1...315_360_000_000).contains(c.maxListingDurationMs) else {
            throw ValidationError("--max-listing-duration-ms must be 0 (none) or 1 to 315360000000 (10 years)")
        }
        return c
    }

    func listingQueueCapacitySetting() throws -> Int {
        let value = try Setting.value(listingQueueCapacity, "GAVEL_LISTING_QUEUE_CAPACITY", default: 4096)
        guard (16...1_000_000).contains(value) else {
            throw ValidationError("--listing-queue-capacity must be 16 to 1000000")
        }
        return value
    }

    func maxListingQueuesSetting() throws -> Int {
        let value = try Setting.value(maxListingQueues, "GAVEL_MAX_LISTING_QUEUES", default: 1_000_000)
        guard (1...100_000_000).contains(value) else {
            throw ValidationError("--max-listing-queues must be 1 to 100000000")
        }
        return value
    }

    /// Says so when the recovered state keeps settings other than the ones given: they are part of the state.
    func warnAboutKeptSettings(requested: EngineConfiguration, recovered: EngineConfiguration) {
        let kept = [
            ("--idempotency-window-ms", requested.idempotencyWindowMs, recovered.idempotencyWindowMs),
            ("--closed-listing-retention-ms", requested.closedListingRetentionMs, recovered.closedListingRetentionMs),
            (
                "--max-request-ids-per-principal", Int64(requested.maxRequestIDsPerPrincipal),
                Int64(recovered.maxRequestIDsPerPrincipal)
            ),
            (
                "--max-resting-orders-per-listing", Int64(requested.maxRestingOrdersPerListing),
                Int64(recovered.maxRestingOrdersPerListing)
            ),
            (
                "--max-resting-orders-per-trader", Int64(requested.maxRestingOrdersPerTrader),
                Int64(recovered.maxRestingOrdersPerTrader)
            ),
            ("--min-dutch-step-ms", requested.minDutchStepMs, recovered.minDutchStepMs),
            ("--max-listing-duration-ms", requested.maxListingDurationMs, recovered.maxListingDurationMs),
            (
                "--max-open-listings-per-seller", Int64(requested.maxOpenListingsPerSeller),
                Int64(recovered.maxOpenListingsPerSeller)
            ),
            (
                "--max-resting-orders-per-trader-total", Int64(requested.maxRestingOrdersPerTraderTotal),
                Int64(recovered.maxRestingOrdersPerTraderTotal)
            ),
            (
                "--max-listings-held-per-seller", Int64(requested.maxListingsHeldPerSeller),
                Int64(recovered.maxListingsHeldPerSeller)
            ),
            (
                "--max-unfinished-settlements-per-user", Int64(requested.maxUnfinishedSettlementsPerUser),
                Int64(recovered.maxUnfinishedSettlementsPerUser)
            ),
        ]
        for (name, wanted, value) in kept where wanted != value {
            // A cap the data directory predates is none (a listing duration of none is Int64.max too).
            let keeps = value == .max ? "no limit" : "\(value)"
            printError(
                "gavel serve: \(name) \(wanted) ignored: the data directory's state keeps \(keeps) (it is part of the state)"
            )
        }
    }

    @Option(
        name: .long,
        help:
            "Serve this file at / instead of the built-in page (a regular file of at most 16 MiB, read at start). Env GAVEL_PAGE."
    )
    var page: String?

    @OptionGroup(title: "Limits per user, address and connection") var edgeLimits: EdgeLimitOptions

    @OptionGroup var storage: StorageOptions

    @OptionGroup(title: "Logging") var logging: LogOptions
    @OptionGroup(title: "TLS and identity-provider tokens") var edgeAuth: EdgeAuthOptions

    /// The gateway settings from options, environment and defaults.
    func gatewayConfiguration() throws -> GatewayConfiguration {
        var c = GatewayConfiguration()
        c.host = try Setting.value(host, "GAVEL_HOST", default: c.host)
        c.port = try Setting.value(port, "GAVEL_PORT", default: c.port)
        c.adminHost = try Setting.value(adminHost, "GAVEL_ADMIN_HOST", default: c.adminHost)
        c.adminPort = try Setting.value(adminPort, "GAVEL_ADMIN_PORT", default: c.adminPort)
        c.threads = try Setting.value(threads, "GAVEL_THREADS", default: c.threads)
        c.maxMessageBytes = try Setting.value(maxMessageBytes, "GAVEL_MAX_MESSAGE_BYTES", default: c.maxMessageBytes)
        c.maxOutboundBytes = try Setting.value(
            maxOutboundBytes, "GAVEL_MAX_OUTBOUND_BYTES", default: c.maxOutboundBytes)
        c.maxConnections = try Setting.value(maxConnections, "GAVEL_MAX_CONNECTIONS", default: c.maxConnections)
        c.maxSubscriptions = try Setting.value(maxSubscriptions, "GAVEL_MAX_SUBSCRIPTIONS", default: c.maxSubscriptions)
        c.maxSubscriptionsService = try Setting.value(
            maxSubscriptionsService, "GAVEL_MAX_SUBSCRIPTIONS_SERVICE", default: c.maxSubscriptionsService)
        c.idleTimeoutMs = try Setting.value(idleTimeoutMs, "GAVEL_IDLE_TIMEOUT_MS", default: c.idleTimeoutMs)
        c.rate.perSecond = try Setting.value(rate, "GAVEL_RATE", default: c.rate.perSecond)
        c.rate.burst = try Setting.value(rateBurst, "GAVEL_RATE_BURST", default: c.rate.burst)
        c.serviceRate.perSecond = try Setting.value(serviceRate, "GAVEL_SERVICE_RATE", default: c.serviceRate.perSecond)
        c.serviceRate.burst = try Setting.value(
            serviceRateBurst, "GAVEL_SERVICE_RATE_BURST", default: c.serviceRate.burst)
        c.abuseFactor = try Setting.value(abuseFactor, "GAVEL_ABUSE_FACTOR", default: c.abuseFactor)
        c.abuseWindowSeconds = try Setting.value(
            abuseWindowSeconds, "GAVEL_ABUSE_WINDOW_SECONDS", default: c.abuseWindowSeconds)
        c.historyEvents = try Setting.value(historyEvents, "GAVEL_HISTORY_EVENTS", default: c.historyEvents)
        c.userHistoryEvents = try Setting.value(
            userHistoryEvents, "GAVEL_USER_HISTORY_EVENTS", default: c.userHistoryEvents)
        c.historyBytes = try Setting.value(historyBytes, "GAVEL_HISTORY_BYTES", default: c.historyBytes)
        c.userHistoryBytes = try Setting.value(
            userHistoryBytes, "GAVEL_USER_HISTORY_BYTES", default: c.userHistoryBytes)
        c.maxFeedCatchups = try Setting.value(maxFeedCatchups, "GAVEL_MAX_FEED_CATCHUPS", default: c.maxFeedCatchups)
        c.maxFeedListings = try Setting.value(maxFeedListings, "GAVEL_MAX_FEED_LISTINGS", default: c.maxFeedListings)
        c.feedStallTimeoutMs = try Setting.value(
            feedStallTimeoutMs, "GAVEL_FEED_STALL_TIMEOUT_MS", default: c.feedStallTimeoutMs)
        guard (100...3_600_000).contains(c.feedStallTimeoutMs) else {
            throw ValidationError("--feed-stall-timeout-ms must be 100 to 3600000")
        }
        guard (0...64).contains(c.maxFeedCatchups) else {
            throw ValidationError("--max-feed-catchups must be 0 to 64 (0: the feed is live only)")
        }
        guard (1...100_000).contains(c.maxFeedListings) else {
            throw ValidationError("--max-feed-listings must be 1 to 100000")
        }
        c.allowAnonymous = try !Setting.flag(noAnonymous, "GAVEL_NO_ANONYMOUS")
        c.localTokenTTLSeconds = try Setting.value(
            localTokenTtlSeconds, "GAVEL_LOCAL_TOKEN_TTL_SECONDS", default: c.localTokenTTLSeconds)
        guard (60...604_800).contains(c.localTokenTTLSeconds) else {
            throw ValidationError("--local-token-ttl-seconds must be 60 to 604800")
        }
        guard (0...65535).contains(c.port) else { throw ValidationError("--port must be 0-65535") }
        guard (-1...65535).contains(c.adminPort) else { throw ValidationError("--admin-port must be -1-65535") }
        c.maxAdminConnections = try Setting.value(
            maxAdminConnections, "GAVEL_MAX_ADMIN_CONNECTIONS", default: c.maxAdminConnections)
        guard (1...10_000).contains(c.maxAdminConnections) else {
            throw ValidationError("--max-admin-connections must be 1 to 10000")
        }
        guard (0...256).contains(c.threads) else { throw ValidationError("--threads must be 0 to 256") }
        guard c.maxMessageBytes >= 128, c.maxMessageBytes <= 1 << 24 else {
            throw ValidationError("--max-message-bytes must be 128 to 16777216")
        }
        guard (4096...1 << 30).contains(c.maxOutboundBytes) else {
            throw ValidationError("--max-outbound-bytes must be 4096 to 1073741824")
        }
        c.maxOutboundBytesTotal = try Setting.value(
            maxOutboundBytesTotal, "GAVEL_MAX_OUTBOUND_BYTES_TOTAL", default: c.maxOutboundBytesTotal)
        guard (c.maxOutboundBytes...1 << 40).contains(c.maxOutboundBytesTotal) else {
            throw ValidationError("--max-outbound-bytes-total must be --max-outbound-bytes to 1099511627776")
        }
        c.socketSendBufferBytes = try Setting.value(
            socketSendBuffer, "GAVEL_SOCKET_SEND_BUFFER", default: c.socketSendBufferBytes)
        guard c.socketSendBufferBytes == 0 || (1024...1 << 30).contains(c.socketSendBufferBytes) else {
            throw ValidationError("--socket-send-buffer must be 0 (the kernel sizes it) or 1024 to 1073741824")
        }
        c.ioUring = try !Setting.flag(noIoUring, "GAVEL_NO_IO_URING")
        guard (1...10_000_000).contains(c.maxConnections) else {
            throw ValidationError("--max-connections must be 1 to 10000000")
        }
        guard c.maxSubscriptions >= 1, c.maxSubscriptionsService >= 1 else {
            throw ValidationError("--max-subscriptions and --max-subscriptions-service must be positive")
        }
        guard (0...86_400_000).contains(c.idleTimeoutMs) else {
            throw ValidationError("--idle-timeout-ms must be 0 to 86400000 (a day)")
        }
        for value in [c.rate.perSecond, c.rate.burst, c.serviceRate.perSecond, c.serviceRate.burst] {
            guard (1...10_000_000).contains(value) else {
                throw ValidationError("rates and bursts must be 1 to 10000000")
            }
        }
        guard (2...1000).contains(c.abuseFactor), (1...3600).contains(c.abuseWindowSeconds) else {
            throw ValidationError("--abuse-factor must be 2 to 1000 and --abuse-window-seconds 1 to 3600")
        }
        guard (0...100_000).contains(c.historyEvents) else {
            throw ValidationError("--history-events must be 0 to 100000")
        }
        guard (1...100_000).contains(c.userHistoryEvents) else {
            throw ValidationError("--user-history-events must be 1 to 100000")
        }
        for (name, value) in [("--history-bytes", c.historyBytes), ("--user-history-bytes", c.userHistoryBytes)] {
            guard (65_536...(1 << 36)).contains(value) else {
                throw ValidationError("\(name) must be 65536 (64 KiB) to 68719476736 (64 GiB), not \(value)")
            }
        }
        try edgeLimits.apply(to: &c)
        return c
    }

    func validate() throws {
        _ = try gatewayConfiguration()
        _ = try jwt.secret()
        _ = try engineConfiguration()
        _ = try maxListingQueuesSetting()
        _ = try listingQueueCapacitySetting()
        _ = try edgeAuth.shape()
    }

    /// The longest idempotency window: 30 days.
    static let maxIdempotencyWindowMs: Int64 = 2_592_000_000

    /// The page at `/`: `--page`'s file, refused (exit 64) when it cannot be served, or the built-in page.
    func servedPage() throws -> [UInt8] {
        guard let path = try Setting.value(page, "GAVEL_PAGE", default: "").nonEmpty else { return Page.load() }
        do {
            return try Page.load(file: path)
        } catch {
            throw ValidationError("--page: \(error)")
        }
    }

    func expectedRequestIDs() throws -> Int {
        try Setting.value(expectedRequestIds, "GAVEL_EXPECTED_REQUEST_IDS", default: 1_000_000)
    }

    func run() async throws {
        try logging.bootstrap()
        jwt.warnIfOnCommandLine(tool: "gavel serve")
        let logger = Logger(label: "gavel.serve")
        var configuration = try gatewayConfiguration()
        let pageBytes = try servedPage()
        let dataDir = try Setting.value(self.dataDir, "GAVEL_DATA_DIR", default: "./gavel-data")
        let engineConfiguration = try engineConfiguration()
        // By the cores the process may use: its cgroup's quota and cpuset, and its affinity mask.
        let threads =
            configuration.threads > 0
            ? configuration.threads
            : GatewayConfiguration.defaultEventLoops(allowedCPUs: min(System.coreCount, allowedCPUCount() ?? Int.max))
        do {
            let fitted = try OpenFiles.fit(configuration, limit: OpenFiles.raiseLimit(), eventLoops: threads)
            configuration = fitted.0
            if let lowered = fitted.1 { printError("gavel serve: \(lowered)") }
        } catch {
            printError("gavel serve: \(error)")
            throw ExitCode(1)
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let metrics = GatewayMetrics()
        let readiness = Readiness()
        let auth = try edgeAuth.shape()
        let (tls, adminTLS) = try edgeAuth.certificates(auth)
        configuration.tls = tls
        configuration.jwks = try await edgeAuth.keySet(auth, group: group, logger: logger)

        // Admin first, so that /readyz answers "not ready" while recovery runs.
        var admin: AdminServer?
        if configuration.adminPort >= 0 {
            do {
                admin = try await AdminServer.start(
                    host: configuration.adminHost, port: configuration.adminPort,
                    maxConnections: configuration.maxAdminConnections, group: group, metrics: metrics,
                    readiness: readiness, tls: adminTLS)
            } catch {
                printError(
                    "gavel serve: cannot listen on \(configuration.adminHost):\(configuration.adminPort) for admin HTTP: \(error); choose another --admin-port (or -1 for none)"
                )
                throw ExitCode(1)
            }
            printError(
                "gavel serve: admin on \(adminTLS == nil ? "http" : "https")://\(configuration.adminHost):\(admin?.port ?? 0) (/healthz /readyz /metrics)"
            )
        }

        let directory = storage.directory(dataDir)
        configuration.jwtSecret = try servingSecret(jwt, dataDir: dataDir)
        var writerConfiguration = storage.writerConfiguration(engine: engineConfiguration)
        writerConfiguration.maxListingQueues = try maxListingQueuesSetting()
        writerConfiguration.queueCapacity = try listingQueueCapacitySetting()
        let recoveryStarted = monotonicMillis()
        let core = try ServingCore.assemble(
            directory: directory,
            recovery: try claimForRecovery(
                directory, truncateAfterCorruption: storage.truncateAfterCorruption, engine: engineConfiguration),
            journal: storage.journalConfiguration, writer: writerConfiguration, gateway: configuration, group: group,
            metrics: metrics)
        describe(core.recovery, since: recoveryStarted)
        // Before any command: the settings a restart must replay this journal with.
        try EngineSettingsFile.keep(core.recovery.engine.configuration, in: directory)
        let (journal, fanOut, writer) = (core.journal, core.fanOut, core.writer)
        warnAboutKeptSettings(requested: engineConfiguration, recovered: core.recovery.engine.configuration)
        // Local mode: the key is the data directory's own and no identity provider issues tokens, so loopback
        // clients that show the local code may ask for tokens at /token. With an identity provider, users are the
        // provider's: a local token would name any of them, in any role, unchecked for issuer and audience.
        configuration.localTokens = !jwt.isGiven && configuration.jwks == nil
        let localCodeFile = directory.path + "/local-code"
        let localCode = configuration.localTokens ? SecretFile.randomHex(count: 16) : nil
        if let localCode {
            configuration.localCode = localCode
            try Files.writeAtomically(localCode + [0x0A], to: localCodeFile, directory: directory.path)
        }
        defer { if localCode != nil { unlink(localCodeFile) } }
        writer.start()

        signal(SIGUSR1, SIG_IGN)
        let snapshotSignal = DispatchSource.makeSignalSource(signal: SIGUSR1, queue: .global())
        snapshotSignal.setEventHandler { writer.requestSnapshot() }
        snapshotSignal.resume()
        let reloadSignal = reloadOnSIGHUP(
            tls: [tls, adminTLS].compactMap { $0 }, jwks: configuration.jwks, logger: logger)

        let server = GatewayServer(
            configuration: configuration, writer: writer, fanOut: fanOut, metrics: metrics, group: group,
            page: pageBytes, logger: logger)
        let services = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    .init(service: EngineService(writer: writer, logger: Logger(label: "gavel.engine"))),
                    .init(service: GatewayService(server: server, readiness: readiness, logger: logger)),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        let announce = Task {
            // Say where to connect once the gateway listens.
            for _ in 0..<500 {
                if let port = server.port {
                    let (ws, http) = tls == nil ? ("ws", "http") : ("wss", "https")
                    printError(
                        "gavel serve: \(ws)://\(configuration.host):\(port)/ws, page \(http)://\(configuration.host):\(port)/, data \(dataDir), fsync \(storage.journalConfiguration.fsync)"
                    )
                    if let localCode {
                        let code = String(decoding: localCode, as: UTF8.self)
                        printError(
                            "gavel serve: local mode: open \(http)://\(loopbackName(configuration.host)):\(port)/#code=\(code) to get a token (the code is in \(localCodeFile) and changes at every start)"
                        )
                    }
                    return
                }
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
        try await services.run()
        announce.cancel()
        snapshotSignal.cancel()
        reloadSignal?.cancel()
        journal.close()
        await admin?.close()
        try? await group.shutdownGracefully()
        printError("gavel serve: stopped")
    }
}

/// The name of `host` in a loopback URL: itself when it is loopback (in brackets for IPv6), else 127.0.0.1.
func loopbackName(_ host: String) -> String {
    if host == "::1" { return "[::1]" }
    return host == "localhost" || host.hasPrefix("127.") ? host : "127.0.0.1"
}

extension String {
    var nonEmpty: String? { isEmpty ? nil : self }
}

extension Millis {
    /// `--max-listing-duration-ms`'s 0 (none) as the engine's `Int64.max`; a negative value stays, to be refused.
    fileprivate var noneIfZero: Millis { self == 0 ? .max : self }
}
