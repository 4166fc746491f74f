import Foundation
import Histogram

/// The end-of-run report: a table for a person, JSON for a machine, HdrHistogram percentile files and an SVG plot.
public struct Report: Sendable {
    public var configuration: LoadConfiguration
    public var measurements: Measurements
    /// Seconds measured (the run minus the warm-up).
    public var measuredSeconds: Double
    public var connectionsHeld: Int
    public var connectSeconds: Double
    /// The server's resident memory before the driver connected and once every connection was up (bytes).
    public var memoryBefore: UInt64?
    public var memoryConnected: UInt64?
    /// The server's memory sampled through the run.
    public var memory = MemoryTrend()
    /// With `--existing`: the listings that matched but were left out because they close or open within the run.
    public var existingSkipped = 0
    /// With `--report-seconds` (the soak): the interval reports, the memory growth and the latency drift.
    public var soak: SoakSummary?
    /// Closed loop: the CPU seconds (user + system) the driver process used in the measured window, and the
    /// server's (with `--server-pid`).
    public var driverCPUSeconds: Double?
    public var serverCPUSeconds: Double?

    public init(
        configuration: LoadConfiguration, measurements: Measurements, measuredSeconds: Double, connectionsHeld: Int,
        connectSeconds: Double
    ) {
        self.configuration = configuration
        self.measurements = measurements
        self.measuredSeconds = measuredSeconds
        self.connectionsHeld = connectionsHeld
        self.connectSeconds = connectSeconds
    }

    public static let percentiles: [(String, Double)] = [
        ("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9),
    ]

    static func figures(_ histogram: Histogram<UInt64>) -> [(String, UInt64)] {
        guard histogram.totalCount > 0 else { return percentiles.map { ($0.0, 0) } + [("max", 0)] }
        return percentiles.map { ($0.0, histogram.valueAtPercentile($0.1)) } + [("max", histogram.max)]
    }

    public var achievedRate: Double { Double(measurements.results) / max(measuredSeconds, 1e-9) }
    public var deliveriesPerSecond: Double { Double(measurements.deliveries) / max(measuredSeconds, 1e-9) }

    /// CPU microseconds per result measured.
    func cpuPerResult(_ seconds: Double?) -> Double? {
        guard let seconds, measurements.results > 0 else { return nil }
        return seconds * 1e6 / Double(measurements.results)
    }

    /// The first line's load: the open-loop target, or the closed loop's bids in flight.
    var loadDescription: String {
        if let inFlight = configuration.inFlight, configuration.paced {
            return "paced at \(configuration.rate)/s (open loop), at most \(inFlight) in flight per connection"
        }
        if let inFlight = configuration.inFlight {
            return "closed loop, \(inFlight) in flight per connection"
        }
        return "target \(configuration.rate)/s"
    }

    /// Server memory added per connection held (bytes), from the readings before and after connecting.
    public var memoryPerConnection: Double? {
        guard let before = memoryBefore, let after = memoryConnected, connectionsHeld > 0 else { return nil }
        return (Double(after) - Double(before)) / Double(connectionsHeld)
    }

    static func megabytes(_ bytes: Double) -> String { String(format: "%.1f MB", bytes / 1_048_576) }

    /// Whether the run's listings come from `--formats` (not market listings, not a broadcast relay).
    var hasFormats: Bool { configuration.preset != .market && !configuration.broadcast && !configuration.existing }

    /// A fixed-width table.
    public var table: String {
        let m = measurements
        var lines: [String] = []
        lines.append(
            "gavel-load \(configuration.preset.rawValue)\(configuration.broadcast ? " --broadcast" : ""): \(configuration.broadcast ? "1 publisher" : "\(configuration.connections) bidder") + \(configuration.watchers) watcher connections, \(configuration.listings)\(configuration.existing ? " existing" : "") listings\(existingSkipped > 0 ? " (\(existingSkipped) more left out: they close or open within the run)" : ""), zipf \(configuration.zipf), \(hasFormats ? "formats \(configuration.formats), " : "")\(loadDescription), \(format(measuredSeconds)) s measured after \(format(configuration.warmupSeconds)) s warm-up, seed \(configuration.seed)"
        )
        lines.append(
            "commands: \(m.sent) sent, \(m.results) results, \(format(achievedRate)) results/s; errors: \(m.errors.isEmpty ? "none" : m.errors.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))"
        )
        lines.append(
            "connections: \(connectionsHeld) held, opened in \(format(connectSeconds)) s (\(format(Double(connectionsHeld) / max(connectSeconds, 1e-9)))/s); closed by the server: \(m.closedByServer.isEmpty ? "none" : m.closedByServer.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" }.joined(separator: ", "))"
        )
        if configuration.inFlight == nil {
            lines.append("deliveries: \(m.deliveries) events on watchers, \(format(deliveriesPerSecond))/s")
        }
        if let driver = cpuPerResult(driverCPUSeconds), let seconds = driverCPUSeconds {
            let server = cpuPerResult(serverCPUSeconds).map { String(format: "; server %.2f µs a result", $0) } ?? ""
            lines.append(
                String(
                    format: "cpu: driver %.3f µs a result (%.1f %% of one core)", driver,
                    seconds * 100 / max(measuredSeconds, 1e-9)) + server)
        }
        if let before = memoryBefore, let after = memoryConnected, let perConnection = memoryPerConnection {
            lines.append(
                "server memory: \(Self.megabytes(Double(before))) before connecting, \(Self.megabytes(Double(after))) with \(connectionsHeld) connections: \(String(format: "%.1f", perConnection / 1_024)) KB a connection"
            )
        }
        if let growth = memory.growth, let first = memory.samples.first, let last = memory.samples.last {
            let slope = memory.slopePerMinute.map { String(format: "%+.1f KB/min", $0 / 1_024) } ?? "n/a"
            lines.append(
                "server memory over the run: \(memory.samples.count) samples, \(Self.megabytes(Double(first.bytes))) at \(format(first.seconds)) s, \(Self.megabytes(Double(last.bytes))) at \(format(last.seconds)) s; growth \(String(format: "%+.1f", Double(growth) / 1_048_576)) MB, slope \(slope)"
            )
        }
        if let soak { lines += soak.lines }
        lines.append("latency (ms)        p50       p90       p99     p99.9       max     count")
        for (name, histogram) in [("ack", m.ack)] + (configuration.inFlight == nil ? [("fan-out", m.fanOut)] : []) {
            let values = Self.figures(histogram).map { String(format: "%9.3f", Double($0.1) / 1_000) }
            lines.append(
                name.padding(toLength: 14, withPad: " ", startingAt: 0) + " " + values.joined(separator: " ")
                    + String(format: " %9llu", histogram.totalCount))
        }
        return lines.joined(separator: "\n")
    }

    /// The report as a JSON object (keys sorted, latencies in microseconds).
    public var json: String {
        let m = measurements
        func latency(_ histogram: Histogram<UInt64>) -> [String: Any] {
            var object: [String: Any] = ["count": histogram.totalCount]
            for (name, value) in Self.figures(histogram) { object[name + "_us"] = value }
            return object
        }
        var object: [String: Any] = [
            "preset": configuration.preset.rawValue,
            "broadcast": configuration.broadcast,
            "connections": configuration.connections,
            "watchers": configuration.watchers,
            "listings": configuration.listings,
            "existing": configuration.existing,
            "existing_skipped": existingSkipped,
            "zipf": configuration.zipf,
            "target_rate": configuration.inFlight == nil || configuration.paced
                ? configuration.rate as Any : NSNull() as Any,
            "in_flight": configuration.inFlight.map { $0 as Any } ?? NSNull() as Any,
            "duration_s": configuration.durationSeconds,
            "warmup_s": configuration.warmupSeconds,
            "seed": configuration.seed,
            "measured_s": measuredSeconds,
            "sent": m.sent,
            "results": m.results,
            "achieved_rate": achievedRate,
            "errors": m.errors,
            "deliveries": m.deliveries,
            "deliveries_per_s": deliveriesPerSecond,
            "connections_held": connectionsHeld,
            "connect_s": connectSeconds,
            "closed_by_server": Dictionary(uniqueKeysWithValues: m.closedByServer.map { (String($0.key), $0.value) }),
            "ack_latency": latency(m.ack),
            "fanout_latency": latency(m.fanOut),
        ]
        if hasFormats {
            object["formats"] = Dictionary(
                uniqueKeysWithValues: configuration.formats.weights.map { ($0.format.rawValue, $0.weight) })
        }
        if let soak { object["soak"] = soak.object }
        if let driverCPUSeconds {
            object["driver_cpu_s"] = driverCPUSeconds
            object["driver_cpu_us_per_result"] = cpuPerResult(driverCPUSeconds) ?? NSNull()
        }
        if let serverCPUSeconds {
            object["server_cpu_s"] = serverCPUSeconds
            object["server_cpu_us_per_result"] = cpuPerResult(serverCPUSeconds) ?? NSNull()
        }
        if let memoryBefore { object["memory_before_bytes"] = memoryBefore }
        if let memoryConnected { object["memory_connected_bytes"] = memoryConnected }
        if let memoryPerConnection { object["memory_per_connection_bytes"] = memoryPerConnection }
        if !memory.samples.isEmpty {
            var trend: [String: Any] = [
                "samples": memory.samples.map { ["t_s": $0.seconds, "bytes": $0.bytes] as [String: Any] }
            ]
            if let growth = memory.growth { trend["growth_bytes"] = growth }
            if let slope = memory.slopePerMinute { trend["slope_bytes_per_min"] = slope }
            object["memory"] = trend
        }
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
        return String(decoding: data, as: UTF8.self)
    }

    /// HdrHistogram's percentile-distribution text of the ack latencies (values in milliseconds).
    public func percentileDistribution(fanOut: Bool = false) -> String {
        var out = ""
        (fanOut ? measurements.fanOut : measurements.ack).outputPercentileDistribution(
            to: &out, outputValueUnitScalingRatio: 1_000)
        return out
    }

    /// An SVG of the latency percentile curves (x: percentile on a log scale of 1/(1-p), y: milliseconds).
    public var svg: String { LatencyPlot(series: [("ack", measurements.ack), ("fan-out", measurements.fanOut)]).svg }

    private func format(_ value: Double) -> String { String(format: value >= 100 ? "%.0f" : "%.2f", value) }
}

/// Percentile curves in the style of HdrHistogram's plotter.
struct LatencyPlot {
    var series: [(String, Histogram<UInt64>)]
    let width = 800.0
    let height = 480.0
    let margin = 60.0
    /// The x axis runs to 99.999 %.
    let nines = 5.0

    func x(_ percentile: Double) -> Double {
        let p = min(percentile, 99.999) / 100
        let position = log10(1 / max(1 - p, 1e-5)) / nines
        return margin + position * (width - 2 * margin)
    }

    var svg: String {
        let maxValue = max(1, series.map { $0.1.totalCount > 0 ? $0.1.valueAtPercentile(99.999) : 0 }.max() ?? 1)
        let top = Double(maxValue) / 1_000 * 1.1
        func y(_ millis: Double) -> Double { height - margin - millis / top * (height - 2 * margin) }
        var out =
            #"<svg xmlns="http://www.w3.org/2000/svg" width="\#(Int(width))" height="\#(Int(height))" font-family="sans-serif" font-size="12">"#
        out += #"<rect width="100%" height="100%" fill="white"/>"#
        out += #"<text x="\#(Int(width / 2))" y="24" text-anchor="middle" font-size="16">Latency by percentile</text>"#
        // Axes and grid.
        for (label, p) in [
            ("0%", 0.0), ("90%", 90), ("99%", 99), ("99.9%", 99.9), ("99.99%", 99.99), ("99.999%", 99.999),
        ] {
            let gx = x(p)
            out += #"<line x1="\#(gx)" y1="\#(margin)" x2="\#(gx)" y2="\#(height - margin)" stroke="lightgray"/>"#
            out += #"<text x="\#(gx)" y="\#(height - margin + 18)" text-anchor="middle">\#(label)</text>"#
        }
        for step in 0...5 {
            let value = top * Double(step) / 5
            let gy = y(value)
            out += #"<line x1="\#(margin)" y1="\#(gy)" x2="\#(width - margin)" y2="\#(gy)" stroke="gainsboro"/>"#
            out +=
                #"<text x="\#(margin - 6)" y="\#(gy + 4)" text-anchor="end">\#(String(format: "%.2f", value))</text>"#
        }
        out +=
            #"<text x="16" y="\#(Int(height / 2))" transform="rotate(-90 16 \#(Int(height / 2)))" text-anchor="middle">latency (ms)</text>"#
        let colors = ["steelblue", "crimson", "seagreen"]
        for (index, (name, histogram)) in series.enumerated() where histogram.totalCount > 0 {
            var points: [String] = []
            for step in 0...200 {
                // Spread the samples evenly on the log axis.
                let position = Double(step) / 200 * nines
                let percentile = (1 - pow(10, -position)) * 100
                let value = Double(histogram.valueAtPercentile(percentile)) / 1_000
                points.append(String(format: "%.1f,%.1f", x(percentile), y(value)))
            }
            let color = colors[index % colors.count]
            out +=
                #"<polyline fill="none" stroke="\#(color)" stroke-width="2" points="\#(points.joined(separator: " "))"/>"#
            out +=
                #"<text x="\#(width - margin - 100)" y="\#(margin + 16 + Double(index) * 18)" fill="\#(color)">\#(name) (\#(histogram.totalCount))</text>"#
        }
        out += "</svg>\n"
        return out
    }
}
