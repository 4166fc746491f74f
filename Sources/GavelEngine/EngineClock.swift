import GavelCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The source of engine time. The writer reads it once per turn; engine time never goes backwards even if this
/// clock does.
public protocol EngineClock: Sendable {
    /// The current time in milliseconds.
    func now() -> Millis
}

/// Nanoseconds on the monotonic clock, for measuring durations (never engine time).
public func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Wall-clock time (milliseconds since the Unix epoch).
public struct SystemClock: EngineClock {
    public init() {}

    public func now() -> Millis {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Millis(ts.tv_sec) * 1000 + Millis(ts.tv_nsec) / 1_000_000
    }
}

/// A clock that only moves when told to: for tests that need timers to fire at exact times.
public final class ManualClock: EngineClock {
    private let time: Atomic<Int64>

    public init(_ start: Millis = 0) { time = Atomic(start) }

    public func now() -> Millis { time.load(ordering: .acquiring) }

    /// Sets the time to `value`.
    public func set(_ value: Millis) { time.store(value, ordering: .releasing) }
}
