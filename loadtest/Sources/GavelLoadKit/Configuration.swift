import GavelCore

/// A named scenario: the defaults it sets for the options the user did not give.
public enum Preset: String, CaseIterable, Sendable {
    /// Many listings, steady bids, a few watchers per listing.
    case steady
    /// One listing with many watchers and a bidding war; soft close on.
    case hot
}

/// Everything a run needs, validated.
public struct LoadConfiguration: Sendable, Equatable {
    public var host = "127.0.0.1"
    public var port = 8080
    public var path = "/ws"
    public var preset = Preset.steady
    /// Bidder (or trader) connections; each has its own user.
    public var connections = 16
    /// Watcher connections (anonymous), spread over the listings.
    public var watchers = 16
    public var listings = 1_000
    /// Zipf exponent of listing popularity; 0 is uniform.
    public var zipf = 1.0
    /// Commands per second, all connections together (open loop).
    public var rate = 2_000
    public var durationSeconds = 10.0
    public var warmupSeconds = 2.0
    public var seed: UInt64 = 1
    /// Loopback source addresses to spread connections over (127.0.0.1 ... 127.0.0.N).
    public var sourceAddresses = 1
    /// How long to wait for outstanding results after the last send.
    public var drainSeconds = 5.0

    public init() {}

    /// The defaults of `preset`, for options the user left unset.
    public static func defaults(for preset: Preset) -> LoadConfiguration {
        var configuration = LoadConfiguration()
        configuration.preset = preset
        switch preset {
        case .steady:
            break
        case .hot:
            configuration.listings = 1
            // Two bidders take turns on a listing (see Driver): a war between two maxima, raised 1,000 times a second.
            configuration.connections = 2
            configuration.watchers = 1_000
            configuration.rate = 1_000
        }
        return configuration
    }

    /// Parses `ws://host:port/path`.
    public mutating func setURL(_ url: String) throws(LoadError) {
        guard url.hasPrefix("ws://") else {
            throw .invalid("--url must start with ws:// (got \(url)); the driver speaks plain WebSocket on loopback")
        }
        let rest = url.dropFirst(5)
        let authority = rest.prefix { $0 != "/" }
        path = rest.count > authority.count ? String(rest.dropFirst(authority.count)) : "/ws"
        if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            guard let value = Int(authority[authority.index(after: colon)...]), (1...65_535).contains(value) else {
                throw .invalid("--url has an invalid port: \(url)")
            }
            port = value
        } else {
            host = String(authority)
            port = 80
        }
        guard !host.isEmpty else { throw .invalid("--url has no host: \(url)") }
    }

    /// Checks every bound; the message names the option and what it accepts.
    public func validate() throws(LoadError) {
        if connections < 1 || connections > 1_000_000 { throw .invalid("--connections must be 1...1000000") }
        if watchers < 0 || watchers > 1_000_000 { throw .invalid("--watchers must be 0...1000000") }
        if listings < 1 || listings > 1_000_000 { throw .invalid("--listings must be 1...1000000") }
        if !(zipf >= 0 && zipf <= 5) { throw .invalid("--zipf must be between 0 (uniform) and 5") }
        if rate < 1 || rate > 10_000_000 { throw .invalid("--rate must be 1...10000000 commands per second") }
        if !(durationSeconds > 0 && durationSeconds <= 86_400) { throw .invalid("--duration must be 0 < s <= 86400") }
        if !(warmupSeconds >= 0 && warmupSeconds < durationSeconds) {
            throw .invalid("--warmup must be at least 0 and shorter than --duration")
        }
        if sourceAddresses < 1 || sourceAddresses > 254 { throw .invalid("--source-addresses must be 1...254") }
    }
}

/// A reason the driver cannot run, for a person to act on.
public enum LoadError: Error, Equatable, CustomStringConvertible {
    case invalid(String)
    case server(String)

    public var description: String {
        switch self {
        case .invalid(let message), .server(let message): message
        }
    }
}
