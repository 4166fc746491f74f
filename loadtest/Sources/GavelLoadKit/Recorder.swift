import Histogram
import Synchronization

/// What a run measured. Latencies are in microseconds.
public struct Measurements: Sendable {
    /// send (intended time) → result received.
    public var ack = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    /// bid sent (intended time) → its event received on a watcher connection.
    public var fanOut = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    public var sent = 0
    public var results = 0
    public var errors: [String: Int] = [:]
    public var deliveries = 0
    public var closedByServer: [Int: Int] = [:]

    public init() {}
}

/// Thread-safe collection point for every connection's observations; one lock per observation, which the driver
/// can afford at the rates one machine produces (the lock is uncontended most of the time).
public final class Recorder: Sendable {
    private let state = Mutex(Measurements())
    /// The current second's acknowledgements, for the live progress line, and the current reporting interval's
    /// (`--report-seconds`) with its errors.
    private let window = Mutex(Windows())

    struct Windows {
        var second = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .two)
        var interval = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .two)
        var intervalErrors = 0
    }
    /// Observations whose command was due before this monotonic time (ns) are warm-up and not kept.
    private let start: Atomic<UInt64>

    public init(measureFrom: UInt64 = .max) { start = Atomic(measureFrom) }

    /// Keeps what is due from `time` (monotonic ns) on.
    public func measure(from time: UInt64) { start.store(time, ordering: .releasing) }

    var measureFrom: UInt64 { start.load(ordering: .acquiring) }

    public func sent(intended: UInt64) {
        guard intended >= measureFrom else { return }
        state.withLock { $0.sent += 1 }
    }

    public func result(intended: UInt64, received: UInt64, error: String?) {
        let micros = received > intended ? (received - intended) / 1_000 : 0
        window.withLock {
            _ = $0.second.record(micros)
            _ = $0.interval.record(micros)
            if error != nil { $0.intervalErrors += 1 }
        }
        guard intended >= measureFrom else { return }
        state.withLock {
            $0.results += 1
            _ = $0.ack.record(micros)
            if let error { $0.errors[error, default: 0] += 1 }
        }
    }

    public func delivered(intended: UInt64?, received: UInt64) {
        guard let intended, intended >= measureFrom else { return }
        let micros = received > intended ? (received - intended) / 1_000 : 0
        state.withLock {
            $0.deliveries += 1
            _ = $0.fanOut.record(micros)
        }
    }

    public func closed(code: Int) {
        state.withLock { $0.closedByServer[code, default: 0] += 1 }
    }

    /// The last window's count, p99 and maximum (µs); starts a new window.
    public func takeWindow() -> (count: UInt64, p99: UInt64, max: UInt64) {
        window.withLock { windows in
            let histogram = windows.second
            let figures = (
                histogram.totalCount, histogram.totalCount > 0 ? histogram.valueAtPercentile(99) : 0,
                histogram.totalCount > 0 ? histogram.max : 0
            )
            windows.second.reset()
            return figures
        }
    }

    /// The reporting interval's results, errors, p50 and p99 (µs); starts a new interval.
    public func takeInterval() -> (results: Int, errors: Int, p50: UInt64, p99: UInt64) {
        window.withLock { windows in
            let h = windows.interval
            let figures = (
                Int(h.totalCount), windows.intervalErrors, h.totalCount > 0 ? h.valueAtPercentile(50) : 0,
                h.totalCount > 0 ? h.valueAtPercentile(99) : 0
            )
            windows.interval.reset()
            windows.intervalErrors = 0
            return figures
        }
    }

    public var snapshot: Measurements { state.withLock { $0 } }
}
