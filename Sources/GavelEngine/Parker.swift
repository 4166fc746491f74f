import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Lets the writer sleep without spinning a core while it has nothing to do, and lets producers wake it.
///
/// Contract: one thread (the writer) calls ``park(timeoutMs:hasWork:)``; any thread calls ``unpark()``. A producer
/// that publishes work and then calls `unpark` never leaves the writer asleep with that work waiting: the writer
/// announces that it sleeps with a sequentially consistent store and then checks for work, and a producer checks
/// the announcement with a sequentially consistent load after publishing (a Dekker handshake). Waking costs one
/// `write` to a pipe, paid only when the writer really sleeps, and only by the first producer to find it asleep:
/// the others see that it has been signalled already.
///
/// `@unchecked Sendable`: the pipe's descriptors are set in `init` and closed in `deinit`; what threads share is
/// the atomic state.
final class Parker: @unchecked Sendable {
    private enum State: UInt8 {
        case awake = 0
        case sleeping
        /// Sleeping, and a producer has written (or is about to write) to the pipe.
        case signalled
    }

    private let state = Atomic<UInt8>(State.awake.rawValue)
    private let readEnd: Int32
    private let writeEnd: Int32

    init() {
        var fds: [Int32] = [0, 0]
        let rc = pipe(&fds)
        precondition(rc == 0, "pipe failed: errno \(errno)")
        readEnd = fds[0]
        writeEnd = fds[1]
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
    }

    deinit {
        close(readEnd)
        close(writeEnd)
    }

    /// Sleeps until ``unpark()`` or `timeoutMs` (`-1`: no timeout), unless `hasWork` says there is work.
    func park(timeoutMs: Int32, hasWork: () -> Bool) {
        state.store(State.sleeping.rawValue, ordering: .sequentiallyConsistent)
        var readable = false
        if !hasWork() {
            var pfd = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
            readable = poll(&pfd, 1, timeoutMs) > 0
        }
        let was = state.exchange(State.awake.rawValue, ordering: .sequentiallyConsistent)
        // A byte is in the pipe only if a producer found this thread signalled-to-be (it may land after the
        // exchange; then the next park's poll returns at once and drains it).
        guard readable || was == State.signalled.rawValue else { return }
        var drain = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        let size = MemoryLayout.size(ofValue: drain)
        while withUnsafeMutableBytes(of: &drain, { read(readEnd, $0.baseAddress, $0.count) }) == size {}
    }

    /// Wakes the writer if it sleeps.
    func unpark() {
        guard state.load(ordering: .sequentiallyConsistent) == State.sleeping.rawValue,
            state.compareExchange(
                expected: State.sleeping.rawValue, desired: State.signalled.rawValue,
                ordering: .sequentiallyConsistent
            ).exchanged
        else { return }
        var one: UInt8 = 1
        _ = write(writeEnd, &one, 1)
    }
}
