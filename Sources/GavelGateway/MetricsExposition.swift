import CoreMetrics
import GavelEngine
import GavelJournal
import Prometheus
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A swift-metrics factory over a Prometheus registry that gives every metric its HELP text (swift-prometheus's own
/// factory registers them with none, which `promtool check metrics` refuses). A label missing from `help` gets its
/// own name as HELP (a test checks that none does), so that a metric added without one never stops the server.
struct HelpfulMetricsFactory: CoreMetrics.MetricsFactory {
    let registry: PrometheusCollectorRegistry
    let durationBuckets: [Duration]
    let valueBuckets: [Double]
    let help: [String: String]

    private func descriptor(_ label: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: label, unitName: "", helpText: help[label] ?? label)
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CoreMetrics.CounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)])
        -> any CoreMetrics.FloatingPointCounterHandler
    {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool)
        -> any CoreMetrics.RecorderHandler
    {
        guard aggregate else { return registry.makeGauge(descriptor: descriptor(label), labels: dimensions) }
        return registry.makeValueHistogram(descriptor: descriptor(label), labels: dimensions, buckets: valueBuckets)
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any CoreMetrics.MeterHandler {
        registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any CoreMetrics.TimerHandler {
        registry.makeDurationHistogram(descriptor: descriptor(label), labels: dimensions, buckets: durationBuckets)
    }

    func destroyCounter(_ handler: any CoreMetrics.CounterHandler) {
        if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
    }

    func destroyFloatingPointCounter(_ handler: any CoreMetrics.FloatingPointCounterHandler) {
        if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
    }

    func destroyRecorder(_ handler: any CoreMetrics.RecorderHandler) {
        if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
        if let histogram = handler as? ValueHistogram { registry.unregisterValueHistogram(histogram) }
    }

    func destroyMeter(_ handler: any CoreMetrics.MeterHandler) {
        if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
    }

    func destroyTimer(_ handler: any CoreMetrics.TimerHandler) {
        if let histogram = handler as? DurationHistogram { registry.unregisterDurationHistogram(histogram) }
    }
}

/// Prometheus text for figures read at scrape time rather than kept in the registry: the journal's counters and the
/// standard `process_*` metrics from `/proc`.
struct ExpositionWriter {
    private(set) var bytes: [UInt8] = []

    mutating func histogram(_ histogram: LatencyHistogram) {
        histogram.write(into: &bytes)
    }

    mutating func metric(_ name: String, _ type: String, _ help: String, _ value: Double) {
        bytes += Array("# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(Self.format(value))\n".utf8)
    }

    /// A whole number without a fraction, anything else as Swift prints it (which Prometheus parses).
    static func format(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return value.description
    }

    mutating func journal(_ stats: JournalStats) {
        func load(_ counter: borrowing Atomic<UInt64>) -> Double { Double(counter.load(ordering: .relaxed)) }
        metric("gavel_journal_entries_total", "counter", "Entries written to the journal.", load(stats.entries))
        metric(
            "gavel_journal_frames_total", "counter", "LZ4 frames (one per batch) written to the journal.",
            load(stats.frames))
        metric(
            "gavel_journal_raw_bytes_total", "counter", "Bytes of journal records before compression.",
            load(stats.rawBytes))
        metric(
            "gavel_journal_frame_bytes_total", "counter", "Bytes of compressed frames written to the journal.",
            load(stats.frameBytes))
        metric("gavel_journal_fsyncs_total", "counter", "Journal fdatasync calls.", load(stats.syncs))
        metric(
            "gavel_journal_write_seconds_total", "counter", "Time spent encoding, compressing and writing frames.",
            load(stats.writeNanos) / 1e9)
        metric("gavel_snapshots_total", "counter", "Snapshots written.", load(stats.snapshots))
        metric(
            "gavel_snapshot_failures_total", "counter",
            "Snapshots that failed (the reason is logged; the newest good snapshot stays).",
            load(stats.snapshotFailures))
        metric(
            "gavel_retention_failures_total", "counter",
            "Retention passes that failed (the reason is logged; the files stay in the data directory).",
            load(stats.retentionFailures))
        metric(
            "gavel_snapshots_merged_total", "counter",
            "Snapshot points skipped because a newer one came while the checkpointer was busy.",
            load(stats.snapshotsMerged))
        metric(
            "gavel_last_snapshot_pause_seconds", "gauge", "How long the writer stopped for the last snapshot point.",
            load(stats.lastSnapshotPauseNanos) / 1e9)
        metric(
            "gavel_last_snapshot_seconds", "gauge",
            "How long the checkpointer took for the last snapshot: shadow, encoding and writing.",
            load(stats.lastSnapshotNanos) / 1e9)
    }

    mutating func engine(_ gauges: EngineGauges) {
        func load(_ gauge: borrowing Atomic<Int64>) -> Double { Double(gauge.load(ordering: .relaxed)) }
        metric(
            "gavel_listings", "gauge", "Listings in memory, open or within their retention after they ended.",
            load(gauges.listings))
        metric(
            "gavel_settlements", "gauge",
            "Settlements in memory, unfinished or within their retention after they ended.",
            load(gauges.settlements))
        metric(
            "gavel_remembered_request_ids", "gauge", "Request ids remembered for idempotency.",
            load(gauges.rememberedRequestIDs))
        metric(
            "gavel_timers", "gauge", "Timers scheduled (closes, Dutch steps, order expiries, evictions, deadlines).",
            load(gauges.timers))
    }

    /// The standard process metrics, as the Prometheus client libraries name them, from `/proc/self/stat`, `/proc/stat`,
    /// `/proc/self/fd` and the open-files limit. A figure that cannot be read is left out.
    mutating func process() {
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let page = Double(sysconf(Int32(_SC_PAGESIZE)))
        if let fields = ProcessFacts.statFields(), fields.count > 21, ticks > 0 {
            // Fields after the command's closing parenthesis, from field 3 (state): utime 14, stime 15,
            // starttime 22, vsize 23, rss 24.
            let number = { (field: Int) in Double(fields[field - 3]) ?? 0 }
            metric(
                "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
                (number(14) + number(15)) / ticks)
            if let boot = ProcessFacts.bootTime() {
                metric(
                    "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
                    boot + number(22) / ticks)
            }
            metric("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", number(23))
            metric("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", number(24) * page)
        }
        if let open = ProcessFacts.openDescriptors() {
            metric("process_open_fds", "gauge", "Number of open file descriptors.", Double(open))
        }
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            metric("process_max_fds", "gauge", "Maximum number of open file descriptors.", Double(limit.rlim_cur))
        }
    }
}

/// Reading `/proc`.
enum ProcessFacts {
    /// The whole of a small `/proc` file, or `nil`.
    static func read(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            result += buffer[..<count]
        }
        return result.isEmpty ? nil : result
    }

    /// The fields of `/proc/self/stat` after the command name (which may hold spaces and parentheses).
    static func statFields() -> [Substring]? {
        guard let bytes = read("/proc/self/stat"), let close = bytes.lastIndex(of: UInt8(ascii: ")")) else {
            return nil
        }
        return String(decoding: bytes[(close + 1)...], as: UTF8.self).split(whereSeparator: \.isWhitespace)
    }

    /// The system's boot time in seconds since the epoch (`btime` in `/proc/stat`).
    static func bootTime() -> Double? {
        guard let bytes = read("/proc/stat") else { return nil }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst(6).trimmingPrefix(" "))
        }
        return nil
    }

    /// Entries of `/proc/self/fd` (the directory's own descriptor, open while counting, not included).
    static func openDescriptors() -> Int? {
        guard let dir = opendir("/proc/self/fd") else { return nil }
        defer { closedir(dir) }
        var count = 0
        while let entry = readdir(dir) {
            let isDot = withUnsafeBytes(of: entry.pointee.d_name) { $0.first == UInt8(ascii: ".") }
            if !isDot { count += 1 }
        }
        return count - 1
    }
}
