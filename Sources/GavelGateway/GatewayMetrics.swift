import CoreMetrics
import GavelCore
import GavelEngine
import GavelJournal
import Metrics
import Prometheus
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The gateway's metrics, kept with swift-metrics in a Prometheus registry of their own (no process-wide
/// bootstrap, so several servers can live in one process, as tests do). `/metrics` prints ``registry``.
public final class GatewayMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    /// Open WebSocket sessions.
    let connections: CoreMetrics.Meter
    /// Live subscriptions over all sessions.
    let subscriptions: CoreMetrics.Meter
    /// Commands submitted to the engine and not yet answered: queued, being applied, or waiting for the journal.
    let inFlight: CoreMetrics.Meter
    /// Makes the per-type-and-result command counters, on first use of each pair.
    private let factory: HelpfulMetricsFactory
    /// Entries per durable batch.
    let batchEntries: CoreMetrics.Recorder
    /// How long each journal fdatasync took.
    let fsyncLatency: CoreMetrics.Timer
    /// From a command's arrival to its result being written back (includes the durable wait): counted by each event
    /// loop and merged once per fan-out task (``LatencyHistogram``), printed at each scrape.
    let ackLatency: LatencyHistogram
    /// From a batch's release (durable) to its events being written to the subscribers of one event loop.
    let fanoutLatency: CoreMetrics.Timer
    /// Bytes written to WebSocket clients.
    let bytesOut: CoreMetrics.Counter
    /// Sessions closed with 1013 because they did not read fast enough.
    let slowConsumerCloses: CoreMetrics.Counter
    /// Messages refused with `rate_limited`.
    let rateLimited: CoreMetrics.Counter
    /// Sessions closed with 1008 for sustained excess.
    let abuseCloses: CoreMetrics.Counter
    /// Upgrades refused by a connection limit (per user, per address, anonymous, or all connections).
    let upgradesRefused: CoreMetrics.Counter
    /// TCP connections closed before their upgrade, by `reason`: not upgraded in time (`deadline`), too many not
    /// upgraded yet (`max_handshakes`), too many of them from the connection's address (`per_address`).
    let handshakeCloses:
        (deadline: CoreMetrics.Counter, maxHandshakes: CoreMetrics.Counter, perAddress: CoreMetrics.Counter)
    /// Sessions closed with 1008 because their token expired.
    let tokenExpiredCloses: CoreMetrics.Counter
    /// The journal's counters, printed at each scrape once ``attach(journal:)`` gave them.
    private let journalStats = Mutex<JournalStats?>(nil)
    /// The engine's gauges, printed at each scrape once ``attach(engine:)`` gave them.
    private let engineGauges = Mutex<EngineGauges?>(nil)

    /// The command types, by the number that stands for each in the keys of the command counters.
    static let commandKinds = CommandKind.allCases

    /// The latency histograms' buckets: fine under a millisecond, where a healthy disk's `fdatasync` and a quiet
    /// server's acknowledgement fall, so that a percentile there is read to within 50-100 µs, not only as "between
    /// 250 and 500 µs".
    static let latencyBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(150), .microseconds(200), .microseconds(250),
        .microseconds(300), .microseconds(400), .microseconds(500), .microseconds(750), .milliseconds(1),
        .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
    ]

    public init() {
        let registry = PrometheusCollectorRegistry()
        let latencyBuckets = Self.latencyBuckets
        let factory = HelpfulMetricsFactory(
            registry: registry, durationBuckets: latencyBuckets,
            valueBuckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096], help: Self.help)
        self.registry = registry
        connections = CoreMetrics.Meter(label: "gavel_connections", factory: factory)
        subscriptions = CoreMetrics.Meter(label: "gavel_subscriptions", factory: factory)
        inFlight = CoreMetrics.Meter(label: "gavel_commands_in_flight", factory: factory)
        self.factory = factory
        batchEntries = CoreMetrics.Recorder(label: "gavel_batch_entries", aggregate: true, factory: factory)
        fsyncLatency = CoreMetrics.Timer(label: "gavel_fsync_seconds", factory: factory)
        ackLatency = LatencyHistogram(
            name: "gavel_ack_seconds", help: Self.help["gavel_ack_seconds"] ?? "gavel_ack_seconds",
            buckets: latencyBuckets)
        fanoutLatency = CoreMetrics.Timer(label: "gavel_fanout_seconds", factory: factory)
        bytesOut = CoreMetrics.Counter(label: "gavel_bytes_out_total", factory: factory)
        slowConsumerCloses = CoreMetrics.Counter(label: "gavel_slow_consumer_closes_total", factory: factory)
        rateLimited = CoreMetrics.Counter(label: "gavel_rate_limited_total", factory: factory)
        abuseCloses = CoreMetrics.Counter(label: "gavel_abuse_closes_total", factory: factory)
        upgradesRefused = CoreMetrics.Counter(label: "gavel_upgrades_refused_total", factory: factory)
        func closes(_ reason: String) -> CoreMetrics.Counter {
            CoreMetrics.Counter(
                label: "gavel_handshake_closes_total", dimensions: [("reason", reason)], factory: factory)
        }
        handshakeCloses = (closes("deadline"), closes("max_handshakes"), closes("per_address"))
        tokenExpiredCloses = CoreMetrics.Counter(label: "gavel_token_expired_closes_total", factory: factory)
    }

    /// The HELP text of every metric kept in ``registry``, by name.
    static let help: [String: String] = [
        "gavel_connections": "Open WebSocket sessions.",
        "gavel_subscriptions": "Live subscriptions over all sessions.",
        "gavel_commands_in_flight":
            "Commands submitted to the engine and not yet answered: queued, being applied, or waiting for the journal.",
        "gavel_commands_total": "Commands answered, by type and result (ok or the error code).",
        "gavel_batch_entries": "Entries per durable batch.",
        "gavel_fsync_seconds": "How long each journal fdatasync took.",
        "gavel_ack_seconds": "From a command's arrival to its result being written back, the durable wait included.",
        "gavel_fanout_seconds":
            "From a batch's release (durable) to its events being written to the subscribers of one event loop.",
        "gavel_bytes_out_total": "Bytes written to WebSocket clients.",
        "gavel_slow_consumer_closes_total": "Sessions closed with 1013 because they did not read fast enough.",
        "gavel_rate_limited_total": "Messages refused with rate_limited.",
        "gavel_abuse_closes_total": "Sessions closed with 1008 for sustained excess.",
        "gavel_upgrades_refused_total":
            "Upgrades refused by a connection limit (per user, per address, anonymous, or all connections).",
        "gavel_handshake_closes_total":
            "TCP connections closed before their upgrade, by reason: deadline (not upgraded in time), max_handshakes (too many not upgraded yet), per_address (too many not upgraded yet from one address).",
        "gavel_token_expired_closes_total": "Sessions closed with 1008 because their token expired.",
    ]

    /// Puts the engine's gauges (listings, remembered request ids, timers) on `/metrics` from now on.
    public func attach(engine gauges: EngineGauges) {
        engineGauges.withLock { $0 = gauges }
    }

    /// Puts the journal's counters (batches, bytes, fsyncs, snapshots) on `/metrics` from now on.
    public func attach(journal stats: JournalStats) {
        journalStats.withLock { $0 = stats }
    }

    /// Counts one answered command of type `kind` in `cache` (one per event loop, so that counting takes no lock once
    /// each type-and-result pair has been seen).
    func countCommand(_ kind: CommandKind, _ result: CommandResult, cache: inout [Int: CoreMetrics.Counter]) {
        let type = Self.commandKinds.firstIndex(of: kind) ?? 0
        let code = result.error.flatMap { ErrorCode.allCases.firstIndex(of: $0) }.map { $0 + 1 } ?? 0
        let key = type << 8 | code
        if let counter = cache[key] {
            counter.increment()
            return
        }
        let counter = CoreMetrics.Counter(
            label: "gavel_commands_total",
            dimensions: [("type", kind.wireName), ("result", result.error?.rawValue ?? "ok")], factory: factory)
        cache[key] = counter
        counter.increment()
    }

    /// Records one journal fdatasync (a `Journal` sync observer).
    public func recordFsync(nanos: UInt64) {
        fsyncLatency.recordNanoseconds(Int64(clamping: nanos))
    }

    /// The Prometheus text exposition of every metric: the registry's, the journal's and the process's, the last
    /// two read at each scrape.
    public func exposition() -> [UInt8] {
        var text = registry.emitToBuffer()
        var more = ExpositionWriter()
        more.histogram(ackLatency)
        if let stats = journalStats.withLock({ $0 }) { more.journal(stats) }
        if let gauges = engineGauges.withLock({ $0 }) { more.engine(gauges) }
        more.process()
        text += more.bytes
        return text
    }
}
