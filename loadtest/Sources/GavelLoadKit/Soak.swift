import Foundation

/// One reporting interval of a run with `--report-seconds` (every minute for the soak): the server's memory at its
/// end, the results and errors in it, and its ack latency percentiles.
public struct SoakInterval: Sendable, Equatable {
    /// Seconds since the start of the schedule, at the interval's end.
    public var seconds: Double
    public var residentBytes: UInt64?
    public var results: Int
    public var errors: Int
    /// Ack latency in microseconds.
    public var p50: UInt64
    public var p99: UInt64

    public init(seconds: Double, residentBytes: UInt64?, results: Int, errors: Int, p50: UInt64, p99: UInt64) {
        self.seconds = seconds
        self.residentBytes = residentBytes
        self.results = results
        self.errors = errors
        self.p50 = p50
        self.p99 = p99
    }

    /// `t=  60 s  RSS  41.2 MB  29991 results  errors 0  p50 0.412 ms  p99 1.950 ms`
    public var line: String {
        let rss = residentBytes.map { String(format: "%7.1f MB", Double($0) / 1_048_576) } ?? "      n/a"
        return String(
            format: "t=%5.0f s  RSS %@  %7d results  errors %d  p50 %8.3f ms  p99 %8.3f ms", seconds, rss, results,
            errors, Double(p50) / 1_000, Double(p99) / 1_000)
    }
}

/// What a soak concludes from its intervals: the server's memory growth after the first interval (the first minute
/// fills caches and tables; growth after it is what would run out) and the latency drift from the first interval to
/// the last.
public struct SoakSummary: Sendable, Equatable {
    public var intervals: [SoakInterval]

    public init(intervals: [SoakInterval]) { self.intervals = intervals }

    /// (last − first) / first of the resident memory at the end of the first and of the last interval; nil with
    /// fewer than two intervals that read it.
    public var residentGrowthAfterFirst: Double? {
        let read = intervals.compactMap(\.residentBytes)
        guard read.count >= 2, let first = read.first, let last = read.last, first > 0 else { return nil }
        return (Double(last) - Double(first)) / Double(first)
    }

    /// Last interval's p50 and p99 over the first's (1.0: no drift); nil with fewer than two intervals with results.
    public var latencyDrift: (p50: Double, p99: Double)? {
        let measured = intervals.filter { $0.results > 0 }
        guard measured.count >= 2, let first = measured.first, let last = measured.last else { return nil }
        return (Double(last.p50) / Double(max(first.p50, 1)), Double(last.p99) / Double(max(first.p99, 1)))
    }

    public var errors: Int { intervals.reduce(0) { $0 + $1.errors } }

    /// The intervals, one line each, then the conclusion.
    public var lines: [String] {
        guard !intervals.isEmpty else { return [] }
        var lines = ["intervals:"] + intervals.map { "  " + $0.line }
        let growth = residentGrowthAfterFirst.map { String(format: "%+.1f %%", $0 * 100) } ?? "n/a"
        let drift =
            latencyDrift.map { String(format: "p50 ×%.2f, p99 ×%.2f (last interval over the first)", $0.p50, $0.p99) }
            ?? "n/a"
        lines.append("soak: RSS growth after the first interval \(growth); errors \(errors); latency drift \(drift)")
        return lines
    }

    /// For the JSON report.
    public var object: [String: Any] {
        var object: [String: Any] = [
            "intervals": intervals.map { interval -> [String: Any] in
                var entry: [String: Any] = [
                    "t_s": interval.seconds, "results": interval.results, "errors": interval.errors,
                    "p50_us": interval.p50, "p99_us": interval.p99,
                ]
                if let bytes = interval.residentBytes { entry["rss_bytes"] = bytes }
                return entry
            },
            "errors": errors,
        ]
        if let growth = residentGrowthAfterFirst { object["rss_growth_after_first_interval"] = growth }
        if let drift = latencyDrift {
            object["p50_drift"] = drift.p50
            object["p99_drift"] = drift.p99
        }
        return object
    }
}
