import ArgumentParser
import Foundation
import GavelLoadKit

/// Drives load against a running `gavel serve` and reports rates and latency percentiles.
@main
struct GavelLoad: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gavel-load",
        abstract: "Drive WebSocket load against a Gavel server and report rates and latency percentiles.",
        discussion: """
            Opens the listings it needs (one seller connection), connects watcher connections (anonymous, each \
            subscribed to one listing) and bidder connections (one user each), then sends bids on a fixed \
            schedule (open loop) for --warmup + --duration seconds. Ack latency runs from a bid's intended send \
            time to its result; fan-out latency from the bid's intended send time to its bid_placed event on a \
            watcher. Both come from the same monotonic clock, so they are exact on one machine.

            Format mix (--formats, steady preset): the seller opens each listing in a format drawn by weight \
            (seeded by --seed). Bids on english listings are as above; on sealed listings bidders send bid \
            (a new bid replaces the bidder's old one); on dutch listings (1,000,000 units, a slow clock) they \
            send accept with quantity 1. Ack latency and errors by code count every command; fan-out latency \
            counts bid_placed events on english listings only.

            Existing listings (--existing): instead of opening listings, the driver pages through the server's open \
            listings (the list message) and bids on up to --listings of its english listings (market listings \
            for the market preset), optionally only those whose id starts with --existing-prefix, leaving out \
            those that close or open within the run's time. Each listing's bids start 20,000 above its current \
            price and step by 20,000 (twice the default ladder's largest step), alternating between two bidders. \
            Fan-out latency matches the bids count of each bid_placed event to the driver's own bids, so it is \
            exact only when nobody else bids on those listings during the run.

            The server's per-connection rate limit applies: start it with limits that admit --rate / \
            --connections commands per second per connection, or pass a service token with --token-file.

            Presets: steady (1,000 listings, 16 bidders, 16 watchers, 2,000 bids/s); hot (one listing with soft \
            close, 1,000 watchers, a war between 2 bidders at 1,000 bids/s); connections (10,000 idle subscribed \
            watchers over 100 listings and 10 bids/s: connections held, connect rate, server memory per connection); \
            market (8 traders posting buys and sells around a mid price on 4 market listings, 1,000 orders/s: \
            some trade, some rest); soak (steady for 600 s at --fraction of --max-rate (0.8), or 500 bids/s, sampling the server's memory every \
            --sample-seconds, printing every --report-seconds (60) the server's RSS, errors and ack p50/p99 of the \
            minute (from the end of the warm-up), and ending with the RSS growth after the first minute and the latency drift). Options given on the command line win.

            Closed loop (--in-flight N): each bidder connection keeps N english bids outstanding and sends its next \
            bid as soon as a result arrives, so the rate is what the server answers, and there are no watchers \
            (--watchers 0). With --rate R too, the same lean driver is paced (open loop): R bids a second are sent on \
            schedule (the bids due in each 0.1 ms on one connection, the connections in turn) whatever the results, and one that finds its \
            connection with N outstanding waits there for a free slot; its ack latency counts from when it was due, \
            so a server that falls behind shows it. This reaches rates the general open loop cannot. Amounts rise on each listing across all \
            connections, so nearly every bid is accepted; one that arrives after a higher one may be refused as too \
            low and is reported under its error code. Ack latency runs from the bid's send to its result. The \
            measured phase runs on one thread over plain sockets and epoll, so the driver costs little CPU; the \
            table and the JSON give its CPU per result, and the server's with --server-pid. Steady preset only.

            CPU pinning (--cpu LIST, e.g. 1 or 0-1): the driver pins all its threads to those CPUs before it starts \
            (sched_setaffinity), e.g. the server on core 0 (taskset -c 0 gavel serve ...) and the driver on core 1.

            The driver says at once on standard error when the server refuses its commands with rate_limited or \
            closes a connection (with the close code and reason), and what to change.

            Server memory: --server-pid (a local server: VmRSS from /proc/<pid>/status; for example \
            `pgrep -n -f "gavel serve"`), or --admin-url (process_resident_memory_bytes from gavel serve's admin \
            /metrics, http://127.0.0.1:9090 by default).

            Broadcast mode (--broadcast): no Gavel commands. One anonymous publisher connection sends \
            bid_placed-shaped frames at --rate to a relay (loadtest/compare/broadcast.js, Node's ws) that forwards \
            each to every other connection; fan-out latency is measured exactly as for Gavel's events.

            The server's secret: GAVEL_JWT_SECRET, the variable gavel serve reads too, or --jwt-secret, which other \
            local users can read in the command line while the driver runs.

            Example: GAVEL_JWT_SECRET="$(cat gavel-data/jwt-secret)" gavel-load --url ws://127.0.0.1:8080/ws \
            --preset steady --rate 5000 --duration 30 --json report.json --plot latency.svg
            """
    )

    @Option(help: "The server's WebSocket URL.") var url = "ws://127.0.0.1:8080/ws"
    @Option(
        help:
            "The server's JWT secret: the driver signs a token for each user it simulates. Env GAVEL_JWT_SECRET (safer: other local users can read a command line)."
    )
    var jwtSecret: String?
    @Option(help: "A file holding one token (a service token) used by every connection.") var tokenFile: String?
    @Option(help: "Scenario: steady, hot, connections, market or soak (see above).")
    var preset: String = "steady"
    @Option(help: "Bidder connections (one user each).") var connections: Int?
    @Option(help: "Watcher connections (anonymous, one subscription each).") var watchers: Int?
    @Option(help: "Listings to open and bid on (with --existing: the most to use).") var listings: Int?
    @Option(help: "Zipf exponent of listing popularity (0 = uniform).") var zipf: Double?
    @Option(
        help:
            "Target commands per second, all connections together (open loop; with --in-flight, the lean driver paced)."
    )
    var rate: Int?
    @Option(
        help:
            "Closed loop: bids each bidder connection keeps outstanding, sending the next as each result arrives; with --rate, paced: the most outstanding a connection (see above)."
    )
    var inFlight: Int?
    @Option(help: "Pin the driver's threads to these CPUs, e.g. 1 or 0-1 (sched_setaffinity).") var cpu: String?
    @Option(
        help:
            "Soak: the maximum rate measured before (e.g. the highest rate a steady run sustained); the soak runs at --fraction of it unless --rate is given."
    )
    var maxRate: Int?
    @Option(help: "Soak: the fraction of --max-rate to run at (default 0.8).") var fraction: Double?
    @Option(help: "Measured seconds (after the warm-up).") var duration: Double?
    @Option(help: "Warm-up seconds, not measured.") var warmup: Double?
    @Option(help: "Seed of the listing choice, so a run can be repeated.") var seed: UInt64?
    @Option(
        help:
            "Loopback source addresses to spread connections over (127.0.0.1 ... 127.0.0.N); raised to one per 28,000 connections."
    )
    var sourceAddresses: Int?
    @Option(help: "The server's admin URL, for process_resident_memory_bytes in its /metrics (http://host:port).")
    var adminURL: String?
    @Option(help: "A local server's process id: its memory is read from /proc/<pid>/status (VmRSS).")
    var serverPID: Int32?
    @Option(help: "Seconds between samples of the server's memory (with --server-pid or --admin-url).")
    var sampleSeconds: Double?
    @Option(
        help:
            "Print a line every this many seconds after the warm-up: the server's RSS, results, errors and ack p50/p99 of the interval; the report ends with the RSS growth after the first interval and the latency drift (soak: 60)."
    )
    var reportSeconds: Double?
    @Option(
        help:
            "Listing format mix of the steady preset, weights by format: e.g. english=80,sealed=10,dutch=10 (formats: english, sealed, dutch; default english=100). Fan-out latency counts english listings only."
    )
    var formats: String?
    @Flag(
        help:
            "Bid on listings already open on the server (up to --listings of them) instead of opening new ones (see above)."
    )
    var existing = false
    @Option(help: "With --existing: only listings whose id starts with this.") var existingPrefix: String?
    @Flag(help: "Publish bid_placed-shaped frames to a broadcast relay instead of sending Gavel commands.")
    var broadcast = false
    @Option(help: "Write the report as JSON to this file.") var json: String?
    @Option(help: "Write an SVG plot of the latency percentile curves to this file.") var plot: String?
    @Option(help: "Write HdrHistogram percentile distributions to FILE.ack.hgrm and FILE.fanout.hgrm.")
    var histogram: String?
    @Flag(help: "No live progress line.") var quiet = false

    func makeConfiguration() throws -> (LoadConfiguration, Credentials) {
        guard let chosen = Preset(rawValue: preset) else {
            throw ValidationError(
                "--preset must be one of \(Preset.allCases.map(\.rawValue).joined(separator: ", ")), got \(preset)")
        }
        var c = LoadConfiguration.defaults(for: chosen)
        do { try c.setURL(url) } catch { throw ValidationError(error.description) }
        if let connections { c.connections = connections }
        if let watchers { c.watchers = watchers } else if inFlight != nil { c.watchers = 0 }
        c.inFlight = inFlight
        c.rateGiven = rate != nil
        if let cpu {
            do { c.cpus = try CPUList(parsing: cpu) } catch { throw ValidationError(error.description) }
        }
        if let listings { c.listings = listings }
        if let zipf { c.zipf = zipf }
        do {
            if let chosenRate = try LoadConfiguration.rate(
                preset: chosen, rate: rate, maxRate: maxRate, fraction: fraction)
            {
                c.rate = chosenRate
            }
        } catch { throw ValidationError(error.description) }
        if let duration { c.durationSeconds = duration }
        if let warmup { c.warmupSeconds = warmup }
        if let seed { c.seed = seed }
        if let sourceAddresses { c.sourceAddresses = sourceAddresses }
        if let adminURL {
            do { c.adminURL = try AdminURL(adminURL) } catch { throw ValidationError(error.description) }
        }
        if let serverPID { c.serverPID = serverPID }
        if let sampleSeconds { c.sampleSeconds = sampleSeconds }
        if let reportSeconds { c.reportSeconds = reportSeconds }
        c.broadcast = broadcast
        c.existing = existing
        c.existingPrefix = existingPrefix
        if let formats {
            do { c.formats = try FormatMix(parsing: formats) } catch { throw ValidationError(error.description) }
        }
        do { try c.validate() } catch { throw ValidationError(error.description) }
        let credentials: Credentials
        // GAVEL_JWT_SECRET, as gavel serve reads it, when no credentials are given (broadcast mode needs none).
        let environmentSecret = ProcessInfo.processInfo.environment["GAVEL_JWT_SECRET"].flatMap {
            $0.isEmpty ? nil : $0
        }
        switch (jwtSecret ?? (tokenFile == nil && !broadcast ? environmentSecret : nil), tokenFile) {
        case (nil, nil) where broadcast: credentials = .anonymous
        case (let secret?, nil): credentials = .secret(secret)
        case (nil, let file?):
            guard let token = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ValidationError("cannot read --token-file \(file)")
            }
            credentials = .token(token.trimmingCharacters(in: .whitespacesAndNewlines))
        case (nil, nil):
            throw ValidationError(
                "give GAVEL_JWT_SECRET or --jwt-secret (the server's secret; with gavel serve's defaults: the file gavel-data/jwt-secret) or --token-file"
            )
        case (_?, _?):
            throw ValidationError("give either --jwt-secret or --token-file, not both")
        }
        return (c, credentials)
    }

    func validate() throws { _ = try makeConfiguration() }

    func run() async throws {
        let (configuration, credentials) = try makeConfiguration()
        if let cpus = configuration.cpus {
            do { try cpus.pinProcess() } catch {
                FileHandle.standardError.write(Data("gavel-load: \(error.description)\n".utf8))
                throw ExitCode(1)
            }
        }
        let isTerminal = isatty(STDERR_FILENO) != 0
        let driver = Driver(
            configuration: configuration, credentials: credentials,
            progress: quiet
                ? nil
                : { line in
                    FileHandle.standardError.write(
                        Data(((isTerminal ? "\r" : "") + line + (isTerminal ? "" : "\n")).utf8))
                },
            intervalReport: { interval in
                FileHandle.standardOutput.write(Data((interval.line + "\n").utf8))
            })
        let report: Report
        do { report = try await driver.run() } catch let error as LoadError {
            FileHandle.standardError.write(Data("gavel-load: \(error.description)\n".utf8))
            throw ExitCode(1)
        }
        if !quiet && isTerminal { FileHandle.standardError.write(Data("\n".utf8)) }
        print(report.table)
        if let json { try report.json.write(toFile: json, atomically: true, encoding: .utf8) }
        if let plot { try report.svg.write(toFile: plot, atomically: true, encoding: .utf8) }
        if let histogram {
            try report.percentileDistribution().write(
                toFile: histogram + ".ack.hgrm", atomically: true, encoding: .utf8)
            try report.percentileDistribution(fanOut: true).write(
                toFile: histogram + ".fanout.hgrm", atomically: true, encoding: .utf8)
        }
    }
}
