import GavelCore
import GavelEngine
import GavelWire
import NIOCore
import NIOWebSocket

/// The session's commands: its limits, the submission to the writer, and the results that come back.
extension WebSocketSession {
    // MARK: - Commands

    /// Submits the command of an admitted message that came at `now` (``monotonicNanos()``), or answers its
    /// rejection.
    func command(_ admission: CommandVerdict, now: UInt64) {
        let command: Command
        switch admission {
        case .reject(let id, let result): return sendResult(id: id, result)
        case .submit(let admitted): command = admitted
        }
        guard withinPrincipalLimits(command, now: now) else { return }
        let started = now
        metrics.inFlight.increment()
        if let rejected = writer.submit(command, replyTo: self, started: started, wake: false) {
            deliverResult(
                id: command.id, kind: command.kind, rejected, started: started, now: monotonicNanos(),
                ts: SystemClock().now())
        } else if let loop {
            // Once for all the commands of this turn of the loop's selector, after its reads.
            loop.wakeWriterAfterThisTick(writer)
        } else {
            writer.wake()
        }
    }

    /// Takes the command from the principal's rate across all its connections (a lease of several at a time) and,
    /// for a seller's `open`, from its opens per minute; answers `rate_limited` when either is spent.
    func withinPrincipalLimits(_ command: Command, now: UInt64) -> Bool {
        guard let limits, let name = principal.name else { return true }
        if commandCredit == 0 {
            commandCredit = limits.takeCommands(name, want: limits.lease(for: principal.role), now: now)
        }
        guard commandCredit > 0 else {
            metrics.rateLimited.increment()
            let rate = limits.settings.principalRate(for: principal.role)
            sendResult(
                id: command.id,
                .rejected(
                    .rateLimited,
                    "\(name) sends more than \(rate.perSecond) commands per second (burst \(rate.burst)) over all its connections; retry in \(limits.millisUntilCommand(name, now: now)) ms"
                ))
            return false
        }
        commandCredit -= 1
        if case .open = command.body, principal.role == .seller, let wait = limits.takeOpen(name, now: now) {
            metrics.rateLimited.increment()
            sendResult(
                id: command.id,
                .rejected(
                    .rateLimited,
                    "\(name) may open \(limits.settings.opensPerMinute) listings per minute; retry in \(wait) ms"))
            return false
        }
        return true
    }

    /// Sends the result of the command `id` of type `kind` (on the event loop; the caller reads only these two from
    /// the command, no copy of it) and counts it, timed from `started` to `now`
    /// (``monotonicNanos()``) and stamped `ts` (wall-clock ms): a loop delivering a durable group reads the clocks
    /// once for all its results.
    func deliverResult(
        id: String, kind: CommandKind, _ result: CommandResult, started: UInt64, now: UInt64, ts: Millis
    ) {
        context?.eventLoop.assertInEventLoop()
        let nanos = Int64(clamping: now &- started)
        if let loop {
            metrics.countCommand(kind, result, cache: &loop.commandCounters)
            loop.countAnswered(nanos: nanos)
        } else {
            metrics.inFlight.decrement()
            metrics.ackLatency.record(nanos: nanos)
        }
        sendResult(id: id, result, ts: ts)
    }
}
