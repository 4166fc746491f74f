import ArgumentParser
import GavelGateway

/// `gavel serve`'s limits at the gateway's edge that span connections: connections per user, per address and
/// anonymous ones, handshakes, each connection's frames, each principal's command rate over all its connections, opens per seller, and the
/// bytes the answers to reads (`list`, `subscribe`, `my_settlements`, ...) may write.
struct EdgeLimitOptions: ParsableArguments {
    @Option(
        name: .long,
        help:
            "Connections one user (token sub) may hold; past it the upgrade gets 429. Service tokens are not counted. Env GAVEL_MAX_CONNECTIONS_PER_USER; default 50."
    )
    var maxConnectionsPerUser: Int?

    @Option(
        name: .long,
        help:
            "Connections one source address may hold; past it the upgrade gets 429. Env GAVEL_MAX_CONNECTIONS_PER_ADDRESS; default 1000."
    )
    var maxConnectionsPerAddress: Int?

    @Option(
        name: .long,
        help:
            "Connections without a token (within --max-connections); past it an anonymous upgrade gets 503. Env GAVEL_MAX_ANONYMOUS_CONNECTIONS; default 1000."
    )
    var maxAnonymousConnections: Int?

    @Option(
        name: .long,
        help:
            "TCP connections not upgraded yet; one more is closed at once. Env GAVEL_MAX_HANDSHAKES; default 1000.")
    var maxHandshakes: Int?

    @Option(
        name: .long,
        help:
            "TCP connections from one source address not upgraded yet; one more from it is closed at once, so one address cannot take all of --max-handshakes. Behind a reverse proxy (every client has its address) raise it. Env GAVEL_MAX_HANDSHAKES_PER_ADDRESS; default 64."
    )
    var maxHandshakesPerAddress: Int?

    @Option(
        name: .long,
        help:
            "An IPv6 client is counted by the first this many bits of its address for --max-connections-per-address and --max-handshakes-per-address: a provider gives one customer a whole /64, so per address it could open the limits again from each of its addresses. 128 counts each address apart; IPv4 clients (and IPv4-mapped ::ffff:a.b.c.d) are counted per address. Env GAVEL_IPV6_ADDRESS_PREFIX; default 64."
    )
    var ipv6AddressPrefix: Int?

    @Option(
        name: .long,
        help:
            "A TCP connection not upgraded (or answered) within this many ms is closed. Env GAVEL_HANDSHAKE_TIMEOUT_MS; default 12000 (more than the 10 s an upgrade may wait for a --jwks refresh)."
    )
    var handshakeTimeoutMs: Int?

    @Option(
        name: .long,
        help:
            "Commands per second of one bidder or seller over all its connections, on top of --rate per connection. Env GAVEL_PRINCIPAL_RATE; default 200."
    )
    var principalRate: Int?

    @Option(
        name: .long,
        help:
            "Burst of commands of one bidder or seller over all its connections. Env GAVEL_PRINCIPAL_RATE_BURST; default 400."
    )
    var principalRateBurst: Int?

    @Option(
        name: .long,
        help:
            "Commands per second of one service principal over all its connections. Env GAVEL_SERVICE_PRINCIPAL_RATE; default 20000."
    )
    var servicePrincipalRate: Int?

    @Option(
        name: .long,
        help:
            "Burst of commands of one service principal over all its connections. Env GAVEL_SERVICE_PRINCIPAL_RATE_BURST; default 40000."
    )
    var servicePrincipalRateBurst: Int?

    @Option(
        name: .long,
        help:
            "Listings one seller token may open per minute (service tokens: no limit). Env GAVEL_OPENS_PER_MINUTE; default 60."
    )
    var opensPerMinute: Int?

    @Option(
        name: .long,
        help:
            "Bytes per second of the answers to reads (list, subscribe, subscribe_user, my_settlements, get_settlement) to one connection; past it they get rate_limited. Env GAVEL_MAX_READ_BYTES_PER_SECOND; default 262144."
    )
    var maxReadBytesPerSecond: Int?

    @Option(
        name: .long,
        help:
            "Frames per second a bidder, seller or watcher connection may send, every frame counted (text, continuation, ping, pong); past the burst it is closed with 1008. Never below --rate. Env GAVEL_FRAME_RATE; default 1000."
    )
    var frameRate: Int?

    @Option(
        name: .long,
        help:
            "Burst of frames of a bidder, seller or watcher connection. Never below --rate-burst. Env GAVEL_FRAME_RATE_BURST; default 2000."
    )
    var frameRateBurst: Int?

    @Option(
        name: .long,
        help:
            "Frames per second a service connection may send; past the burst it is closed with 1008. Never below --service-rate. Env GAVEL_SERVICE_FRAME_RATE; default 20000."
    )
    var serviceFrameRate: Int?

    @Option(
        name: .long,
        help:
            "Burst of frames of a service connection. Never below --service-rate-burst. Env GAVEL_SERVICE_FRAME_RATE_BURST; default 40000."
    )
    var serviceFrameRateBurst: Int?

    @Option(
        name: .long,
        help:
            "The most frames one client message may come in (its first frame and continuations); past it the connection is closed with 1008. Env GAVEL_MAX_FRAGMENTS_PER_MESSAGE; default 256."
    )
    var maxFragmentsPerMessage: Int?

    /// Sets these limits in `c` from options, environment and defaults, and checks them.
    func apply(to c: inout GatewayConfiguration) throws {
        c.maxConnectionsPerUser = try Setting.value(
            maxConnectionsPerUser, "GAVEL_MAX_CONNECTIONS_PER_USER", default: c.maxConnectionsPerUser)
        c.maxConnectionsPerAddress = try Setting.value(
            maxConnectionsPerAddress, "GAVEL_MAX_CONNECTIONS_PER_ADDRESS", default: c.maxConnectionsPerAddress)
        c.maxAnonymousConnections = try Setting.value(
            maxAnonymousConnections, "GAVEL_MAX_ANONYMOUS_CONNECTIONS", default: c.maxAnonymousConnections)
        c.maxHandshakes = try Setting.value(maxHandshakes, "GAVEL_MAX_HANDSHAKES", default: c.maxHandshakes)
        c.maxHandshakesPerAddress = try Setting.value(
            maxHandshakesPerAddress, "GAVEL_MAX_HANDSHAKES_PER_ADDRESS", default: c.maxHandshakesPerAddress)
        c.ipv6AddressPrefix = try Setting.value(
            ipv6AddressPrefix, "GAVEL_IPV6_ADDRESS_PREFIX", default: c.ipv6AddressPrefix)
        guard (1...128).contains(c.ipv6AddressPrefix) else {
            throw ValidationError("--ipv6-address-prefix must be 1 to 128 (got \(c.ipv6AddressPrefix))")
        }
        c.handshakeTimeoutMs = try Setting.value(
            handshakeTimeoutMs, "GAVEL_HANDSHAKE_TIMEOUT_MS", default: c.handshakeTimeoutMs)
        c.principalRate.perSecond = try Setting.value(
            principalRate, "GAVEL_PRINCIPAL_RATE", default: c.principalRate.perSecond)
        c.principalRate.burst = try Setting.value(
            principalRateBurst, "GAVEL_PRINCIPAL_RATE_BURST", default: c.principalRate.burst)
        c.servicePrincipalRate.perSecond = try Setting.value(
            servicePrincipalRate, "GAVEL_SERVICE_PRINCIPAL_RATE", default: c.servicePrincipalRate.perSecond)
        c.servicePrincipalRate.burst = try Setting.value(
            servicePrincipalRateBurst, "GAVEL_SERVICE_PRINCIPAL_RATE_BURST", default: c.servicePrincipalRate.burst)
        c.opensPerMinute = try Setting.value(opensPerMinute, "GAVEL_OPENS_PER_MINUTE", default: c.opensPerMinute)
        c.maxReadBytesPerSecond = try Setting.value(
            maxReadBytesPerSecond, "GAVEL_MAX_READ_BYTES_PER_SECOND", default: c.maxReadBytesPerSecond)
        c.frameRate.perSecond = try Setting.value(frameRate, "GAVEL_FRAME_RATE", default: c.frameRate.perSecond)
        c.frameRate.burst = try Setting.value(frameRateBurst, "GAVEL_FRAME_RATE_BURST", default: c.frameRate.burst)
        c.serviceFrameRate.perSecond = try Setting.value(
            serviceFrameRate, "GAVEL_SERVICE_FRAME_RATE", default: c.serviceFrameRate.perSecond)
        c.serviceFrameRate.burst = try Setting.value(
            serviceFrameRateBurst, "GAVEL_SERVICE_FRAME_RATE_BURST", default: c.serviceFrameRate.burst)
        c.maxFragmentsPerMessage = try Setting.value(
            maxFragmentsPerMessage, "GAVEL_MAX_FRAGMENTS_PER_MESSAGE", default: c.maxFragmentsPerMessage)
        let counts = [
            ("--max-connections-per-user", c.maxConnectionsPerUser),
            ("--max-connections-per-address", c.maxConnectionsPerAddress),
            ("--max-anonymous-connections", c.maxAnonymousConnections), ("--max-handshakes", c.maxHandshakes),
            ("--max-handshakes-per-address", c.maxHandshakesPerAddress),
            ("--max-fragments-per-message", c.maxFragmentsPerMessage),
        ]
        for (name, value) in counts where !(1...10_000_000).contains(value) {
            throw ValidationError("\(name) must be 1 to 10000000 (got \(value))")
        }
        guard (100...600_000).contains(c.handshakeTimeoutMs) else {
            throw ValidationError("--handshake-timeout-ms must be 100 to 600000 (got \(c.handshakeTimeoutMs))")
        }
        let rates = [
            c.principalRate.perSecond, c.principalRate.burst, c.servicePrincipalRate.perSecond,
            c.servicePrincipalRate.burst, c.opensPerMinute,
        ]
        for value in rates where !(1...10_000_000).contains(value) {
            throw ValidationError(
                "--principal-rate, --service-principal-rate, their bursts and --opens-per-minute must be 1 to 10000000 (got \(value))"
            )
        }
        let frameRates = [
            ("--frame-rate", c.frameRate.perSecond), ("--frame-rate-burst", c.frameRate.burst),
            ("--service-frame-rate", c.serviceFrameRate.perSecond),
            ("--service-frame-rate-burst", c.serviceFrameRate.burst),
        ]
        for (name, value) in frameRates where !(1...100_000_000).contains(value) {
            throw ValidationError("\(name) must be 1 to 100000000 (got \(value))")
        }
        guard (1024...1 << 30).contains(c.maxReadBytesPerSecond) else {
            throw ValidationError(
                "--max-read-bytes-per-second must be 1024 to 1073741824 (got \(c.maxReadBytesPerSecond))")
        }
    }
}
