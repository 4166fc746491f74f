import CGavelShims

#if canImport(Glibc)
    import Glibc
#endif

/// Starts a thread of its own (not one of a pool) that runs `body` once and ends: the writer's, the journal's and
/// the checkpointer's loops. `what` names the thread (cut to the 15 bytes Linux keeps; `top -H`,
/// `ps -L` and `perf` show it) and the message of the precondition that fails when the system cannot create it.
public func startDedicatedThread(_ what: String, _ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }
    let named: @Sendable () -> Void = {
        _ = gavel_name_thread(what)
        body()
    }
    var tid = pthread_t()
    let rc = pthread_create(
        &tid, nil,
        { arg in
            Unmanaged<Body>.fromOpaque(arg!).takeRetainedValue().run()
            return nil
        }, Unmanaged.passRetained(Body(named)).toOpaque())
    precondition(rc == 0, "cannot start the \(what) thread: pthread_create returned \(rc)")
    return tid
}
