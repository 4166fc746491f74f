import Prometheus
import Synchronization

/// A Prometheus histogram of latencies that event loops fill without a lock per observation: each loop counts its
/// observations in a ``LatencyTally`` of its own and merges it here once per task (one lock for a durable group's
/// results, not one per result). `/metrics` prints it as swift-prometheus prints a `DurationHistogram` (cumulative
/// `_bucket` lines with the same `le` values, then `_sum` in seconds and `_count`), so a scrape reads the same series.
///
/// Why: `gavel_ack_seconds` was such a `DurationHistogram`, whose `record` takes a mutex and compares the value with
/// each bucket's `Duration`; once per result that was about 2 % of the server's CPU under durable bids at 16 × 16.
final class LatencyHistogram: Sendable {
    let name: String
    let help: String
    /// Each bucket's upper bound, in nanoseconds, ascending.
    let bounds: [Int64]
    /// Each bucket's `le` label, as swift-prometheus writes it.
    private let labels: [String]
    private let state: Mutex<LatencyTally>

    init(name: String, help: String, buckets: [Duration]) {
        self.name = name
        self.help = help
        let sorted = buckets.sorted()
        bounds = sorted.map { Self.nanoseconds($0) }
        labels = sorted.map(\.bucketRepresentation)
        state = Mutex(LatencyTally(bounds: bounds))
    }

    /// A tally for one event loop, with this histogram's buckets.
    func makeTally() -> LatencyTally { LatencyTally(bounds: bounds) }

    /// Adds `tally`'s observations and empties it.
    func merge(_ tally: inout LatencyTally) {
        guard tally.count > 0 else { return }
        state.withLock { $0.add(tally) }
        tally.reset()
    }

    /// Records one observation (for a result delivered outside an event loop's fan-out task).
    func record(nanos: Int64) {
        state.withLock { $0.record(nanos: nanos) }
    }

    /// The observations so far.
    var snapshot: LatencyTally { state.withLock { $0 } }

    /// Appends the histogram in the Prometheus text format.
    func write(into text: inout [UInt8]) {
        let tally = snapshot
        var lines = "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
        var cumulative: UInt64 = 0
        for (index, label) in labels.enumerated() {
            cumulative += tally.counts[index]
            lines += "\(name)_bucket{le=\"\(label)\"} \(cumulative)\n"
        }
        lines += "\(name)_bucket{le=\"+Inf\"} \(tally.count)\n"
        lines += "\(name)_sum \(Duration.nanoseconds(tally.sumNanos).bucketRepresentation)\n"
        lines += "\(name)_count \(tally.count)\n"
        text += Array(lines.utf8)
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

/// Observations counted by one thread (an event loop's ``LoopFanOut``) until they are merged into a
/// ``LatencyHistogram``: no lock and no `Duration` arithmetic per observation.
struct LatencyTally: Sendable {
    /// Each bucket's upper bound in nanoseconds, ascending (the histogram's).
    let bounds: [Int64]
    /// Observations per bucket (not cumulative); those above the last bound are only in ``count``.
    private(set) var counts: [UInt64]
    private(set) var sumNanos: Int64 = 0
    private(set) var count: UInt64 = 0

    init(bounds: [Int64]) {
        self.bounds = bounds
        counts = Array(repeating: 0, count: bounds.count)
    }

    /// Counts one observation of `nanos` (negative ones as 0) in the first bucket whose bound is at least it.
    mutating func record(nanos: Int64) {
        let value = max(0, nanos)
        sumNanos &+= value
        count += 1
        // Binary search for the first bound >= value.
        var low = 0
        var high = bounds.count
        while low < high {
            let middle = (low &+ high) >> 1
            if bounds[middle] < value { low = middle &+ 1 } else { high = middle }
        }
        if low < counts.count { counts[low] += 1 }
    }

    mutating func add(_ other: LatencyTally) {
        for index in counts.indices { counts[index] += other.counts[index] }
        sumNanos &+= other.sumNanos
        count += other.count
    }

    mutating func reset() {
        for index in counts.indices { counts[index] = 0 }
        sumNanos = 0
        count = 0
    }
}
