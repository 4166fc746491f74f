import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A debug check for state that one thread at a time owns, with no lock: the writer's engine and counters, the
/// journal's open segment, the fan-out's current group. Debug builds (the tests) stop with a message when a second
/// thread enters while one is inside; release builds compile the check away, so the hot paths pay nothing.
///
/// It checks use, not the thread's identity: a writer driven by hand (`runUntilIdle`) may be driven from one thread
/// and then another, as long as never from two at once.
public final class Confinement: Sendable {
    #if DEBUG
        private let holder = Atomic<UInt>(0)
    #endif
    private let what: StaticString

    /// `what` names the owner in the failure message ("the writer's state").
    public init(_ what: StaticString) {
        self.what = what
    }

    /// Runs `body` as the state's one user: in debug builds, fails if another thread is inside. Nested use on the
    /// same thread is allowed.
    @inline(__always)
    public func exclusively<T>(_ body: () throws -> T) rethrows -> T {
        #if DEBUG
            let me = UInt(pthread_self())
            let (entered, current) = holder.compareExchange(expected: 0, desired: me, ordering: .acquiring)
            precondition(entered || current == me, "\(what) used by two threads at once")
            defer { if entered { holder.store(0, ordering: .releasing) } }
        #endif
        return try body()
    }
}
