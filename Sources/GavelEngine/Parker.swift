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
/// `write` to a pipe, paid only when the writer really sleeps.
final class Parker: @unchecked Sendable {
    private let sleeping = Atomic<Bool>(false)
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
        sleeping.store(true, ordering: .sequentiallyConsistent)
        if !hasWork() {
            var pfd = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
            _ = poll(&pfd, 1, timeoutMs)
        }
        sleeping.store(false, ordering: .sequentiallyConsistent)
        var drain = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        while withUnsafeMutableBytes(of: &drain, { read(readEnd, $0.baseAddress, $0.count) }) > 0 {}
    }

    /// Wakes the writer if it sleeps.
    func unpark() {
        if sleeping.load(ordering: .sequentiallyConsistent) {
            var one: UInt8 = 1
            _ = write(writeEnd, &one, 1)
        }
    }
}
