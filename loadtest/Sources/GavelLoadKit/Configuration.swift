import Foundation
import GavelCore

/// A named scenario: the defaults it sets for the options the user did not give.
public enum Preset: String, CaseIterable, Sendable {
    /// Many listings, steady bids, a few watchers per listing.
    case steady
    /// One listing with many watchers and a bidding war; soft close on.
    case hot
    /// Many idle subscribed watcher connections and a trickle of bids: connections held, connect rate and the
    /// server's memory per connection.
    case connections
    /// Orders on a few market listings: buys and sells around a mid price, some crossing (trades), some resting.
    case market
    /// A long run at a fixed modest rate that samples the server's memory and reports its growth.
    case soak
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
    /// The server's admin metrics (`http://host:port/metrics`), read for `process_resident_memory_bytes`.
    public var adminURL: AdminURL?
    /// A local server's process id: its resident memory is read from `/proc/<pid>/status` (VmRSS).
    public var serverPID: Int32?
    /// Seconds between two samples of the server's memory during the run.
    public var sampleSeconds = 10.0
    /// Seconds between two interval reports (memory, results, errors, ack p50/p99 of the interval), and the
    /// soak's growth and drift over them; nil: none (every minute for the soak preset).
    public var reportSeconds: Double?
    /// Broadcast mode: no Gavel commands; one publisher connection sends `bid_placed`-shaped frames at `rate` to
    /// a relay (loadtest/compare/broadcast.js) that forwards them to every watcher connection.
    public var broadcast = false
    /// The formats the seller opens listings in (steady preset), by weight.
    public var formats = FormatMix.englishOnly
    /// Use listings already open on the server instead of opening new ones: up to `listings` of its open english
    /// listings (market listings for the market preset) that stay open through the run.
    public var existing = false
    /// With `existing`: only listings whose id starts with this.
    public var existingPrefix: String?
    /// Closed loop (`--in-flight N`): each bidder connection keeps N bids outstanding and sends the next one as
    /// each result arrives; `rate` is not used. With `rateGiven` too, paced: the lean driver sends `rate` bids a
    /// second on schedule (open loop), at most N outstanding a connection. nil: the open-loop schedule of the
    /// general driver.
    public var inFlight: Int?
    /// Whether `--rate` was given (with `inFlight`: the paced mode).
    public var rateGiven = false
    /// Whether the run is the lean driver's paced open loop (`--in-flight` and `--rate`).
    public var paced: Bool { inFlight != nil && rateGiven }
    /// The CPUs the driver process is pinned to (`--cpu`), nil: not pinned.
    public var cpus: CPUList?

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
        case .connections:
            configuration.listings = 100
            configuration.connections = 1
            configuration.watchers = 10_000
            configuration.rate = 10
        case .market:
            configuration.listings = 4
            configuration.connections = 8
            configuration.watchers = 16
            configuration.zipf = 0
            configuration.rate = 1_000
        case .soak:
            configuration.rate = 500
            configuration.durationSeconds = 600
            configuration.warmupSeconds = 10
            configuration.reportSeconds = 60
        }
        return configuration
    }

    /// Ephemeral ports one loopback source address offers the driver (Linux's default range is 32768-60999).
    public static let portsPerSourceAddress = 28_000

    /// The soak's default fraction of `--max-rate`.
    public static let soakFraction = 0.8

    /// The soak rate: `fraction` of a maximum rate measured before (a steady run or loadtest/compare), rounded down,
    /// at least 1.
    public static func soakRate(maximum: Int, fraction: Double) throws(LoadError) -> Int {
        guard maximum >= 1 else { throw .invalid("--max-rate must be at least 1 command per second") }
        guard fraction > 0 && fraction <= 1 else { throw .invalid("--fraction must be in (0, 1]") }
        return max(1, Int(Double(maximum) * fraction))
    }

    /// The run's rate from `--rate`, or `--max-rate` and `--fraction` (soak only; the fraction defaults to
    /// ``soakFraction``), or nil to keep the preset's.
    public static func rate(preset: Preset, rate: Int?, maxRate: Int?, fraction: Double?) throws(LoadError) -> Int? {
        if fraction != nil && maxRate == nil { throw .invalid("--fraction needs --max-rate") }
        if maxRate != nil && preset != .soak { throw .invalid("--max-rate goes with --preset soak") }
        if let rate { return rate }
        guard let maxRate else { return nil }
        return try soakRate(maximum: maxRate, fraction: fraction ?? soakFraction)
    }

    /// Every connection the run opens: watchers, bidders and the seller (or the broadcast publisher).
    public var totalConnections: Int { watchers + (broadcast ? 1 : connections + 1) }

    /// `--source-addresses`, raised to as many as the connections need.
    public var effectiveSourceAddresses: Int {
        max(sourceAddresses, (totalConnections + Self.portsPerSourceAddress - 1) / Self.portsPerSourceAddress)
    }

    /// Whether the run reads the server's memory.
    public var samplesMemory: Bool { adminURL != nil || serverPID != nil }

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
        if effectiveSourceAddresses > 254 {
            throw .invalid("--watchers and --connections need more than 254 loopback source addresses")
        }
        if let serverPID, serverPID < 1 { throw .invalid("--server-pid must be a process id (1 or more)") }
        if !(sampleSeconds >= 1 && sampleSeconds <= 3_600) { throw .invalid("--sample-seconds must be 1...3600") }
        if let reportSeconds, !(reportSeconds >= 1 && reportSeconds <= 3_600) {
            throw .invalid("--report-seconds must be 1...3600")
        }
        if preset == .soak && !samplesMemory {
            throw .invalid(
                "--preset soak samples the server's memory: give --server-pid (a local server's pid, e.g. $(pgrep -n -f \"gavel serve\")) or --admin-url"
            )
        }
        if broadcast && (preset == .market || preset == .connections) {
            throw .invalid("--broadcast sends bid_placed frames; it goes with --preset steady, hot or soak")
        }
        if formats != .englishOnly && (preset != .steady || broadcast) {
            throw .invalid("--formats goes with --preset steady (without --broadcast)")
        }
        if existing && broadcast {
            throw .invalid("--existing uses a Gavel server's listings; it cannot go with --broadcast")
        }
        if existing && formats != .englishOnly {
            throw .invalid(
                "--formats says which listings the driver opens; with --existing it bids on the server's open english listings"
            )
        }
        if let cpus { try cpus.checkAllowed() }
        if let inFlight {
            if inFlight < 1 || inFlight > 4_096 { throw .invalid("--in-flight must be 1...4096 bids per connection") }
            if preset != .steady || broadcast {
                throw .invalid("--in-flight goes with --preset steady (english bids), without --broadcast")
            }
            if formats != .englishOnly {
                throw .invalid("--in-flight sends english bids only; it does not go with --formats")
            }
            if watchers > 0 {
                throw .invalid(
                    "--in-flight measures results, not fan-out: give --watchers 0 (the open-loop mode measures fan-out)"
                )
            }
            if reportSeconds != nil { throw .invalid("--report-seconds goes with the open-loop mode, not --in-flight") }
        }
        if let existingPrefix {
            guard existing else { throw .invalid("--existing-prefix goes with --existing") }
            // A prefix of an identifier is itself one: the same rule.
            guard Identifier.isValid(existingPrefix) else {
                throw .invalid(
                    "--existing-prefix must be 1 to 64 characters from A-Z a-z 0-9 _ . : - (the start of listing ids), got \(existingPrefix)"
                )
            }
        }
    }
}

/// A listing format the steady preset can open.
public enum ListingFormat: String, CaseIterable, Sendable {
    case english
    case sealed
    case dutch
}

/// The listing format mix of `--formats`: a weight per format, e.g. `english=80,sealed=10,dutch=10`.
public struct FormatMix: Sendable, Equatable, CustomStringConvertible {
    /// Each format given, at most once, in the order of `ListingFormat.allCases`.
    public private(set) var weights: [(format: ListingFormat, weight: Int)]

    public static let englishOnly = FormatMix(weights: [(.english, 100)])

    private init(weights: [(format: ListingFormat, weight: Int)]) { self.weights = weights }

    /// Parses `name=weight,...`; the message of a refusal names `--formats` and the accepted names.
    public init(parsing text: String) throws(LoadError) {
        let names = ListingFormat.allCases.map(\.rawValue).joined(separator: ", ")
        var given: [ListingFormat: Int] = [:]
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = item.split(separator: "=", omittingEmptySubsequences: false)
            guard parts.count == 2, let weight = Int(parts[1].trimmingCharacters(in: .whitespaces)) else {
                throw .invalid("--formats takes name=weight pairs separated by commas (names: \(names)), got \(text)")
            }
            let name = parts[0].trimmingCharacters(in: .whitespaces)
            guard let format = ListingFormat(rawValue: name) else {
                throw .invalid("--formats: unknown format \(name); the formats are \(names)")
            }
            guard given[format] == nil else { throw .invalid("--formats names \(name) twice; give each format once") }
            guard weight >= 0 && weight <= 1_000_000 else {
                throw .invalid("--formats: the weight of \(name) must be 0...1000000, got \(weight)")
            }
            given[format] = weight
        }
        guard given.values.reduce(0, +) > 0 else {
            throw .invalid("--formats: the weights add up to 0; give at least one format (\(names)) a positive weight")
        }
        weights = ListingFormat.allCases.compactMap { format in given[format].map { (format, $0) } }
    }

    public static func == (a: FormatMix, b: FormatMix) -> Bool {
        a.weights.map(\.format) == b.weights.map(\.format) && a.weights.map(\.weight) == b.weights.map(\.weight)
    }

    /// `english=80,sealed=10,dutch=10`.
    public var description: String { weights.map { "\($0.format.rawValue)=\($0.weight)" }.joined(separator: ",") }

    /// The format of each of `count` listings, drawn by weight from a stream seeded by `seed` (its own stream, so
    /// the listing choice of the bids is the same whatever the mix).
    public func draw(count: Int, seed: UInt64) -> [ListingFormat] {
        let total = UInt64(weights.reduce(0) { $0 + $1.weight })
        var rng = SplitMix64(seed: seed ^ 0x666F_726D_6174_73)
        return (0..<count).map { _ in
            var u = rng.next() % total
            for (format, weight) in weights {
                if u < UInt64(weight) { return format }
                u -= UInt64(weight)
            }
            return weights[weights.count - 1].format
        }
    }
}

/// Where the server's admin HTTP listens: `http://host:port[/path]` (path default `/metrics`).
public struct AdminURL: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var path: String

    public init(_ url: String) throws(LoadError) {
        guard url.hasPrefix("http://") else {
            throw .invalid("--admin-url must start with http:// (got \(url)), e.g. http://127.0.0.1:9090")
        }
        let rest = url.dropFirst(7)
        let authority = rest.prefix { $0 != "/" }
        let path = String(rest.dropFirst(authority.count))
        self.path = path.isEmpty || path == "/" ? "/metrics" : path
        guard let colon = authority.lastIndex(of: ":"),
            let port = Int(authority[authority.index(after: colon)...]), (1...65_535).contains(port)
        else { throw .invalid("--admin-url needs a port from 1 to 65535: \(url)") }
        host = String(authority[..<colon])
        self.port = port
        guard !host.isEmpty else { throw .invalid("--admin-url has no host: \(url)") }
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
