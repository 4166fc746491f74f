import Foundation
import Synchronization

/// The projector's counters and gauges, shown on the admin port's `/metrics` in Prometheus' text format.
public final class ProjectorMetrics: Sendable {
    struct State {
        var appliedLSN: Int64 = 0
        var feedLSN: Int64 = 0
        var lastAppliedAt: Int64?
        /// When this process first saw an lsn it had not applied, while it has applied nothing yet (wall-clock ms):
        /// the lag's age until the first batch commits (a read model stuck since the start is not "in step").
        var behindSince: Int64?
        var events: Int64 = 0
        var skipped: Int64 = 0
        var batches: Int64 = 0
        var rows: [String: Int64] = [:]
        var reconnects: [String: Int64] = ["gavel": 0, "postgres": 0]
        var live = false
        var connected = false
        var lastError: String?
    }

    private let state = Mutex(State())

    public init() {}

    /// The server has sent `lsn` (an event's, or `feed_live`'s).
    public func sawFeed(lsn: Int64, nowMilliseconds: Int64 = Int64(Date().timeIntervalSince1970 * 1000)) {
        state.withLock {
            $0.feedLSN = max($0.feedLSN, lsn)
            if $0.feedLSN > $0.appliedLSN && $0.lastAppliedAt == nil && $0.behindSince == nil {
                $0.behindSince = nowMilliseconds
            }
        }
    }

    public func started(at position: Int64) {
        state.withLock {
            $0.appliedLSN = position
            $0.feedLSN = max($0.feedLSN, position)
            $0.connected = true
            $0.live = false
            $0.lastError = nil
        }
    }

    public func wentLive(lsn: Int64) {
        state.withLock {
            $0.live = true
            $0.feedLSN = max($0.feedLSN, lsn)
        }
    }

    public func applied(_ batch: Batch, lastAt: Int64?) {
        state.withLock {
            $0.appliedLSN = batch.position
            $0.feedLSN = max($0.feedLSN, batch.position)
            if let lastAt { $0.lastAppliedAt = lastAt }
            $0.events += Int64(batch.events)
            $0.skipped += Int64(batch.skipped)
            $0.batches += 1
            for (table, rows) in batch.rowCounts { $0.rows[table, default: 0] += Int64(rows) }
        }
    }

    public func reconnecting(peer: String, because error: String) {
        state.withLock {
            $0.reconnects[peer, default: 0] += 1
            $0.connected = false
            $0.live = false
            $0.lastError = error
        }
    }

    /// The lag in lsn, and whether the projector is connected and live.
    public var health: (lagLSN: Int64, connected: Bool, live: Bool, lastError: String?) {
        state.withLock { ($0.feedLSN - $0.appliedLSN, $0.connected, $0.live, $0.lastError) }
    }

    /// The Prometheus text exposition (version 0.0.4) of every metric.
    public func prometheusText(nowMilliseconds: Int64 = Int64(Date().timeIntervalSince1970 * 1000)) -> String {
        let s = state.withLock { $0 }
        let lag = s.feedLSN - s.appliedLSN
        let since = s.lastAppliedAt ?? s.behindSince ?? nowMilliseconds
        let lagSeconds: Double = lag > 0 ? max(0, Double(nowMilliseconds - since) / 1000) : 0
        var out = ""
        func metric(_ name: String, _ type: String, _ help: String, _ samples: [(labels: String, value: String)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for sample in samples { out += "\(name)\(sample.labels) \(sample.value)\n" }
        }
        metric(
            "gavel_projector_applied_lsn", "gauge", "The last lsn whose rows are all in the read model.",
            [("", "\(s.appliedLSN)")])
        metric(
            "gavel_projector_feed_lsn", "gauge", "The highest lsn the server has sent on the feed.",
            [("", "\(s.feedLSN)")])
        metric(
            "gavel_projector_lag_lsn", "gauge", "How many lsn the read model is behind what the feed has sent.",
            [("", "\(lag)")])
        metric(
            "gavel_projector_lag_seconds", "gauge",
            "How far behind the read model is, in seconds: 0 when in step, else the age of the last applied event (before this process applied any: how long it has seen events it has not applied).",
            [("", String(format: "%.3f", lagSeconds))])
        metric(
            "gavel_projector_events_applied_total", "counter", "Feed events applied to the read model.",
            [("", "\(s.events)")])
        metric(
            "gavel_projector_events_skipped_total", "counter",
            "Feed events skipped because their lsn was applied already.", [("", "\(s.skipped)")])
        metric(
            "gavel_projector_batches_total", "counter", "Transactions committed, each with its rows and position.",
            [("", "\(s.batches)")])
        metric(
            "gavel_projector_rows_written_total", "counter", "Rows inserted or updated, by table.",
            s.rows.keys.sorted().map { ("{table=\"\($0)\"}", "\(s.rows[$0] ?? 0)") })
        metric(
            "gavel_projector_reconnects_total", "counter",
            "Reconnections after a failure, by the end that failed (gavel or postgres).",
            s.reconnects.keys.sorted().map { ("{peer=\"\($0)\"}", "\(s.reconnects[$0] ?? 0)") })
        metric(
            "gavel_projector_live", "gauge", "1 when the feed has caught up and is live, else 0.",
            [("", s.live ? "1" : "0")])
        return out
    }
}
