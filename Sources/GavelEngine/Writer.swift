import CGavelShims
import GavelCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Limits of the writer loop. Every one has a default that suits a single server.
public struct WriterConfiguration: Sendable, Hashable {
    /// The most commands one listing's queue holds; a command beyond it is rejected with `overloaded`.
    public var queueCapacity: Int = 4096
    /// The most commands the writer takes from one listing per turn, so a hot listing cannot starve others.
    public var perListingTurn: Int = 64
    /// The most commands in one batch handed to the sink.
    public var maxBatch: Int = 4096
    /// The most admin requests waiting at once.
    public var adminCapacity: Int = 4096
    /// The most listing queues: one per listing in the engine's memory and per `open` in flight. At the cap a new
    /// `open` is refused with `overloaded`; commands on existing listings are never refused for it.
    public var maxListingQueues: Int = 1_000_000
    /// Take a snapshot every this many journal entries (0: never by count). Needs a ``SnapshotSink``.
    public var snapshotEveryEntries: UInt64 = 0
    /// Take a snapshot every this many seconds (0: never by time). Needs a ``SnapshotSink``.
    public var snapshotEverySeconds: Int = 0
    /// Take a snapshot when the writer stops. Needs a ``SnapshotSink``.
    public var snapshotOnShutdown = true
    /// Rules settings.
    public var engine = EngineConfiguration()

    public init() {}
}

/// Work for the writer that is not a command for one listing.
///
/// `@unchecked Sendable`: its link is atomic and its one field is immutable (its `inspect` closure is `Sendable`).
final class AdminRequest: MPSCNode, @unchecked Sendable {
    let next = Atomic<UnsafeMutableRawPointer?>(nil)
    enum Kind {
        /// Run a closure on the writer thread with the engine (inspection, snapshots).
        case inspect(@Sendable (Engine, _ lastLSN: UInt64) -> Void)
        /// Call back once everything submitted before it is durable and released.
        case barrier(@Sendable () -> Void)
        /// Take a snapshot after this turn.
        case snapshot
    }
    let kind: Kind
    init(_ kind: Kind) { self.kind = kind }
}

/// What the engine holds, published by the writer at the end of each turn for `/metrics` (four relaxed stores a
/// turn, nothing a command): operators watch these grow, not only the process's resident size.
public final class EngineGauges: Sendable {
    /// Listings in memory, open or within their retention after they ended.
    public let listings = Atomic<Int64>(0)
    /// Request ids remembered for idempotency.
    public let rememberedRequestIDs = Atomic<Int64>(0)
    /// Timers scheduled (closes, Dutch steps, order expiries, evictions, deadlines).
    public let timers = Atomic<Int64>(0)
    /// Settlements in memory, unfinished or within their retention after they ended.
    public let settlements = Atomic<Int64>(0)

    public init() {}

    func publish(_ engine: Engine) {
        listings.store(Int64(engine.listingCount), ordering: .relaxed)
        rememberedRequestIDs.store(Int64(engine.rememberedCount), ordering: .relaxed)
        timers.store(Int64(engine.timerCount), ordering: .relaxed)
        settlements.store(Int64(engine.settlementCount), ordering: .relaxed)
    }
}

/// The single-writer engine loop: one dedicated thread owns the ``Engine`` and applies every command.
///
/// Producers (gateway event loops) call ``submit(_:replyTo:started:wake:)`` from any thread: the command goes into
/// its listing's bounded lock-free queue, and the listing onto the ready list if it is not there already. The writer
/// takes at most ``WriterConfiguration/perListingTurn`` commands from each ready listing per turn, stamps them with
/// the engine time of the turn, fires due timers first (as a `tick` entry), assigns each entry the next `lsn`, and
/// hands the batch to the ``BatchSink``. When the sink says the batch is durable, the writer hands it to its one
/// ``ReleaseObserver``, which routes the results and events; nothing is released before.
///
/// `@unchecked Sendable`: producers on any thread use only the lock-free queues, the atomics and the mutexes; the
/// engine, the `lsn`, the barriers and the snapshot marks are the writer thread's (or the one thread driving a
/// manual writer), checked by ``Confinement`` in debug builds.
public final class Writer: @unchecked Sendable {
    public let configuration: WriterConfiguration
    /// What the engine holds, as of the writer's last turn.
    public let gauges = EngineGauges()
    /// Gets every durable batch; `nil`: results and events go nowhere (benchmarks, tools that only journal).
    let observer: ReleaseObserver?
    let sink: BatchSink
    let snapshotSink: SnapshotSink?
    let clock: EngineClock
    private var lastSnapshotLSN: UInt64
    private var lastSnapshotNanos: UInt64 = 0
    private var snapshotRequested = false

    /// Owned by the writer thread once started.
    let engine: Engine
    private var lsn: UInt64 = 0
    /// The engine time of the last entry handed to the sink: a snapshot taken after the clock moved past it is
    /// preceded by a tick entry, so replaying the journal to the snapshot's lsn reaches the snapshot's very state.
    private var journaledNow: Millis
    private var batchNumber: UInt64 = 0
    /// Barriers that go out with the next batch.
    private var barriers: [@Sendable () -> Void] = []
    /// Barriers waiting for the commands submitted before them to be taken.
    private var waitingBarriers: [@Sendable () -> Void] = []

    /// Every listing queue, by listing id. Producers read it through their thread's ``ProducerCache``; the mutex is
    /// taken only on a cache miss (a listing new to the thread, an `open`) and by the writer to free a queue.
    private let queues = Mutex<[String: ListingQueue]>([:])
    /// Tells this writer's entries in a thread's ``ProducerCache`` from another writer's.
    private let identity = ProducerCache.nextIdentity()
    private let ready = MPSCLinks<ListingQueue>()
    private let readyCount = Atomic<Int>(0)
    private let admin = IntrusiveMPSCQueue<AdminRequest>()
    private let adminCount = Atomic<Int>(0)
    private let parker = Parker()
    private let pool: BatchPool
    /// Whether the observer gives released batches back itself (``ReleaseObserver/keepsBatches``).
    private let observerKeepsBatches: Bool
    /// The writer-only state's one user at a time (debug builds).
    private let confinement = Confinement("the writer's state (engine, lsn, barriers)")

    enum Phase: UInt8 {
        case idle = 0
        case running, draining, stopped
    }
    private let phase = Atomic<UInt8>(Phase.idle.rawValue)
    private let stoppedSignal = Mutex<[CheckedContinuation<Void, Never>]>([])
    private var thread: pthread_t?

    /// Creates a writer around `engine` (a fresh one, or one recovered from a journal, whose last `lsn` is
    /// `lastLSN`).
    public init(
        configuration: WriterConfiguration = WriterConfiguration(), engine: Engine? = nil, lastLSN: UInt64 = 0,
        sink: BatchSink = InMemorySink(), snapshots: SnapshotSink? = nil, clock: EngineClock = SystemClock(),
        observer: ReleaseObserver? = nil
    ) {
        self.configuration = configuration
        self.engine = engine ?? Engine(configuration: configuration.engine)
        self.lsn = lastLSN
        self.journaledNow = self.engine.now
        self.lastSnapshotLSN = lastLSN
        self.sink = sink
        self.snapshotSink = snapshots
        self.clock = clock
        self.observer = observer
        self.observerKeepsBatches = observer?.keepsBatches ?? false
        self.pool = BatchPool(capacity: configuration.maxBatch)
        let capacity = configuration.queueCapacity
        queues.withLock { queues in
            for id in self.engine.listingIDs { queues[id] = ListingQueue(listing: id, capacity: capacity) }
        }
    }

    // MARK: - Producers

    /// Why a command was not enqueued.
    public static func overloaded(_ listing: String, capacity: Int) -> CommandResult {
        .rejected(.overloaded, "listing \(listing) has \(capacity) commands waiting; retry shortly")
    }

    /// Submits `command`; once it is durable, the ``ReleaseObserver`` finds its result in the released batch with
    /// `recipient` and `started` (see ``Submission``). Never blocks.
    ///
    /// - Parameter wake: `false` leaves the writer asleep: the caller, about to submit more, promises to call
    ///   ``wake()`` once it is done (after the last of them), so that they wake the writer once and go into one
    ///   batch.
    /// - Returns: `nil` when the command was enqueued, or the rejection (`overloaded`, or the writer is not
    ///   running) when it was not; then the command is not applied and no result is released for it.
    @discardableResult
    public func submit(
        _ command: consuming Command, replyTo recipient: (any ResultRecipient)?, started: UInt64 = 0, wake: Bool = true
    ) -> CommandResult? {
        guard phase.load(ordering: .acquiring) == Phase.running.rawValue else { return Self.notRunning }
        let cache = ProducerCache.current(for: identity)
        return submit(
            cache.spares.submission(command, recipient: recipient, started: started), cache: cache, wake: wake)
    }

    /// Offers `submission` to its listing's queue: the thread's cached queue when it has one, else the map's.
    private func submit(_ submission: Submission, wake: Bool) -> CommandResult? {
        submit(submission, cache: ProducerCache.current(for: identity), wake: wake)
    }

    /// Offers `submission` to its listing's queue: `cache`'s (the calling thread's) queue when it has one, else the
    /// map's.
    private func submit(_ submission: Submission, cache: ProducerCache, wake: Bool) -> CommandResult? {
        let hash = submission.digest.listingHash
        // Fast path: the calling thread's cache, no lock and no reference counting. A queue freed since it was cached
        // refuses the offer.
        if let cached = submission.withCommand({ command, _ in cache.queue(for: command.listing, hash: hash) }) {
            let offered = cached._withUnsafeGuaranteedRef { offer(submission, toCached: $0, wake: wake) }
            if case .done(let outcome) = offered { return outcome }
            cache.forget(cached, hash: hash)
        }
        let outcome = offerLocked(submission)
        guard let queue = outcome.0 else { return outcome.1 }
        cache.remember(queue, hash: hash)
        schedule(queue, wake: wake)
        return nil
    }

    /// Looks the listing of `submission` up under the map's mutex, creates its queue for an `open`, and offers.
    private func offerLocked(_ submission: Submission) -> (ListingQueue?, CommandResult?) {
        let command = submission.command
        return queues.withLock { queues -> (ListingQueue?, CommandResult?) in
            let queue: ListingQueue
            if let existing = queues[command.listing] {
                queue = existing
            } else {
                // The engine's own answer for a listing it does not hold (``Engine/answerWithoutListing(_:now:)``),
                // without handing the command to it: not applied, so not journaled and not remembered.
                if let answer = Engine.answerWithoutListing(command, now: clock.now()) { return (nil, answer) }
                guard queues.count < configuration.maxListingQueues else { return (nil, tooManyListings) }
                queue = ListingQueue(listing: command.listing, capacity: configuration.queueCapacity)
                queues[command.listing] = queue
            }
            // A queue in the map is never retired: the writer retires a queue and removes it under this mutex.
            switch queue.offer(submission) {
            case .accepted: return (queue, nil)
            case .full, .retired: return (nil, Self.overloaded(queue.listing, capacity: queue.capacity))
            }
        }
    }

    /// Submits to a queue the caller looked up before (see ``queue(for:)``), without the lookup and its mutex. A queue
    /// the writer has freed since refuses the offer, and the command goes where ``submit(_:replyTo:started:wake:)``
    /// sends it.
    @discardableResult
    public func submit(
        _ command: Command, to queue: ListingQueue, replyTo recipient: (any ResultRecipient)?, started: UInt64 = 0,
        wake: Bool = true
    ) -> CommandResult? {
        precondition(
            queue.listing == command.listing, "command for \(command.listing) sent to \(queue.listing)'s queue")
        guard phase.load(ordering: .acquiring) == Phase.running.rawValue else { return Self.notRunning }
        let cache = ProducerCache.current(for: identity)
        let submission = cache.spares.submission(command, recipient: recipient, started: started)
        if case .done(let outcome) = offer(submission, toCached: queue, wake: wake) { return outcome }
        return submit(submission, cache: cache, wake: wake)
    }

    /// What an offer to a queue looked up earlier did.
    private enum CachedOffer {
        /// Enqueued (`nil`) or refused with this result.
        case done(CommandResult?)
        /// The writer has freed the queue: look the listing up again.
        case retired
    }

    /// Offers `submission` to `queue`, looked up earlier, and schedules the queue if it took it.
    @inline(__always)
    private func offer(_ submission: Submission, toCached queue: ListingQueue, wake: Bool) -> CachedOffer {
        switch queue.offer(submission) {
        case .accepted:
            schedule(queue, wake: wake)
            return .done(nil)
        case .full:
            return .done(Self.overloaded(queue.listing, capacity: queue.capacity))
        case .retired:
            return .retired
        }
    }

    /// Puts `queue`, just offered a command, on the ready list unless it is there already.
    ///
    /// A producer that batches its wake-ups (`wake: false`) still wakes the writer at once when the queue is a
    /// quarter full: a flood on one listing read in one go must not fill its queue (and be refused `overloaded`)
    /// while the writer sleeps waiting for the end of the read. Waking a writer that is awake costs one atomic load.
    private func schedule(_ queue: ListingQueue, wake: Bool) {
        if queue.claimSchedule() {
            ready.push(queue)
            readyCount.wrappingAdd(1, ordering: .sequentiallyConsistent)
            if wake {
                parker.unpark()
                return
            }
        }
        if !wake && queue.pending.load(ordering: .relaxed) >= queue.capacity / 4 { parker.unpark() }
    }

    static let notRunning = CommandResult.rejected(
        .overloaded, "the engine is not accepting commands (starting or shutting down)")

    private var tooManyListings: CommandResult {
        .rejected(
            .overloaded,
            "the engine holds \(configuration.maxListingQueues) listings and opens in flight (--max-listing-queues): open listings, and ended listings held while a settlement is unfinished, a second-chance offer is open or the retention (--closed-listing-retention-ms) runs; no room to open another until some of them leave memory"
        )
    }

    /// Submits `command` and waits for its durable result (for tools and tests: the writer hands it back itself,
    /// whatever the observer does), with its `lsn`: `nil` when it was not journaled (refused at submit, or taken
    /// when its listing had left the engine, ``Batch/unapplied``).
    public func submit(_ command: Command) async -> (result: CommandResult, lsn: UInt64?) {
        await withCheckedContinuation { continuation in
            guard phase.load(ordering: .acquiring) == Phase.running.rawValue else {
                return continuation.resume(returning: (Self.notRunning, nil))
            }
            if let rejected = submit(Submission(command, awaiting: AwaitedResult(continuation)), wake: true) {
                continuation.resume(returning: (rejected, nil))
            }
        }
    }

    /// The queue of `listing`, if the listing exists or an `open` for it is in flight. Callers on a hot path may
    /// cache it for ``submit(_:to:handler:wake:)``; the writer frees a queue whose listing no longer exists (a
    /// refused `open`, an evicted listing) once it is empty.
    public func queue(for listing: String) -> ListingQueue? {
        queues.withLock { $0[listing] }
    }

    /// The number of listing queues.
    public var listingQueueCount: Int { queues.withLock { $0.count } }

    /// Writer only: frees `queue`, whose listing does not exist, if nothing waits in it, is being offered to it or is
    /// about to be taken from it. Under the map's mutex, so a producer looking the listing up finds either the live
    /// queue or none; a producer holding the queue from before finds it retired (see ``ListingQueue/offer(_:)``).
    private func retireIfIdle(_ queue: ListingQueue) {
        queues.withLock { queues in
            guard queues[queue.listing] === queue, !queue.scheduled.load(ordering: .sequentiallyConsistent),
                queue.retireIfEmpty()
            else { return }
            queues[queue.listing] = nil
        }
    }

    /// Runs `body` on the writer thread between turns, with the engine and the last assigned `lsn`.
    public func inspect(_ body: @escaping @Sendable (Engine, UInt64) -> Void) -> Bool {
        enqueueAdmin(AdminRequest(.inspect(body)))
    }

    /// Reads a value from the engine on the writer thread.
    public func read<T: Sendable>(_ body: @escaping @Sendable (Engine, UInt64) -> T) async -> T? {
        await withCheckedContinuation { continuation in
            if !inspect({ engine, lsn in continuation.resume(returning: body(engine, lsn)) }) {
                continuation.resume(returning: nil)
            }
        }
    }

    /// Waits until everything submitted before this call is durable and its results and events are released.
    ///
    /// - Note: It completes at the first turn that leaves no listing ready, so a continuous flood of new commands
    ///   delays it.
    public func barrier() async {
        await withCheckedContinuation { continuation in
            if !enqueueAdmin(AdminRequest(.barrier({ continuation.resume() }))) { continuation.resume() }
        }
    }

    /// Asks for a snapshot after the current turn.
    ///
    /// - Returns: `false` when the writer is not running or has no snapshot sink.
    @discardableResult
    public func requestSnapshot() -> Bool {
        snapshotSink != nil && enqueueAdmin(AdminRequest(.snapshot))
    }

    private func enqueueAdmin(_ request: AdminRequest) -> Bool {
        let p = phase.load(ordering: .acquiring)
        guard p == Phase.running.rawValue || p == Phase.draining.rawValue else { return false }
        if adminCount.wrappingAdd(1, ordering: .sequentiallyConsistent).newValue > configuration.adminCapacity {
            adminCount.wrappingSubtract(1, ordering: .sequentiallyConsistent)
            return false
        }
        admin.push(request)
        parker.unpark()
        return true
    }

    /// Wakes the writer if it sleeps: to look at the clock again (a test that moved a ``ManualClock`` calls this),
    /// or for commands submitted with `wake: false`.
    public func wake() {
        parker.unpark()
    }

    // MARK: - Lifecycle

    /// Starts the writer thread.
    public func start() {
        guard
            phase.compareExchange(
                expected: Phase.idle.rawValue, desired: Phase.running.rawValue,
                ordering: .acquiringAndReleasing
            ).exchanged
        else { return }
        thread = startDedicatedThread("writer") { [self] in confinement.exclusively { run() } }
    }

    /// Stops accepting commands, applies everything already queued, flushes the sink, and stops the thread.
    public func shutdown() async {
        let wasRunning = phase.compareExchange(
            expected: Phase.running.rawValue, desired: Phase.draining.rawValue, ordering: .acquiringAndReleasing
        ).exchanged
        if !wasRunning && phase.load(ordering: .acquiring) == Phase.idle.rawValue {
            phase.store(Phase.stopped.rawValue, ordering: .releasing)
            return
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = stoppedSignal.withLock { waiting -> Bool in
                if phase.load(ordering: .acquiring) == Phase.stopped.rawValue { return true }
                waiting.append(continuation)
                return false
            }
            if done { continuation.resume() } else { parker.unpark() }
        }
        if let thread { pthread_join(thread, nil) }
        thread = nil
    }

    /// Marks the writer running without starting its thread: the caller drives it with ``runUntilIdle()`` on one
    /// thread of its own. For benchmarks and deterministic tests.
    @_spi(Manual)
    public func startManual() {
        _ = phase.compareExchange(
            expected: Phase.idle.rawValue, desired: Phase.running.rawValue, ordering: .acquiringAndReleasing)
    }

    /// Runs writer turns on the calling thread until no command, admin request or due timer is left. Only for a
    /// writer started with ``startManual()``.
    ///
    /// - Returns: the number of entries applied.
    @_spi(Manual)
    @discardableResult
    public func runUntilIdle() -> Int {
        precondition(thread == nil, "runUntilIdle drives a writer whose thread is not running")
        return confinement.exclusively { runTurnsUntilIdle() }
    }

    private func runTurnsUntilIdle() -> Int {
        var applied = 0
        while true {
            let batch = takeBatch()
            turn(into: batch)
            applied += batch.entries.count
            if batch.entries.isEmpty && batch.unapplied.isEmpty && barriers.isEmpty && waitingBarriers.isEmpty
                && !hasWork
            {
                recycle(batch)
                snapshotIfDue()
                return applied
            }
            dispatch(batch)
            snapshotIfDue()
        }
    }

    /// Ends a writer driven with ``runUntilIdle()``: takes the shutdown snapshot if configured, flushes the sink,
    /// and refuses further commands.
    @_spi(Manual)
    public func finishManual() {
        runUntilIdle()
        phase.store(Phase.stopped.rawValue, ordering: .releasing)
        confinement.exclusively {
            if shutdownSnapshotIsDue(clockMoved: true) { takeSnapshot() }
        }
        sink.flush()
    }

    /// Whether the writer has stopped.
    public var isStopped: Bool { phase.load(ordering: .acquiring) == Phase.stopped.rawValue }

    // MARK: - The writer thread

    private func takeBatch() -> Batch {
        pool.take()
    }

    private func recycle(_ batch: Batch) {
        batch.recycle()
    }

    private var hasWork: Bool {
        readyCount.load(ordering: .sequentiallyConsistent) > 0 || adminCount.load(ordering: .sequentiallyConsistent) > 0
    }

    private func run() {
        while true {
            let batch = takeBatch()
            turn(into: batch)
            if !batch.entries.isEmpty || !batch.unapplied.isEmpty || !barriers.isEmpty {
                dispatch(batch)
                snapshotIfDue()
                continue
            }
            snapshotIfDue()
            recycle(batch)
            if phase.load(ordering: .acquiring) == Phase.draining.rawValue {
                if !hasWork && !anyPending() { break }
                continue
            }
            var timeout: Int32 = -1
            if let next = engine.nextTimerTime {
                let wait = next - clock.now()
                timeout = wait <= 0 ? 0 : Int32(clamping: min(wait, 1000))
            }
            parker.park(timeoutMs: timeout) { hasWork || phase.load(ordering: .acquiring) != Phase.running.rawValue }
        }
        if shutdownSnapshotIsDue(clockMoved: false) { takeSnapshot() }
        sink.flush()
        let waiting = stoppedSignal.withLock { waiting -> [CheckedContinuation<Void, Never>] in
            phase.store(Phase.stopped.rawValue, ordering: .releasing)
            defer { waiting.removeAll() }
            return waiting
        }
        for continuation in waiting { continuation.resume() }
    }

    /// Numbers `batch` and hands it to the sink, with the barriers that wait for it.
    private func dispatch(_ batch: Batch) {
        batchNumber += 1
        batch.number = batchNumber
        if let last = batch.entries.last { journaledNow = last.at }
        if barriers.isEmpty {
            sink.write(batch) { [self] released, endsGroup in release(released, endsGroup: endsGroup) }
        } else {
            let waiting = barriers
            barriers.removeAll(keepingCapacity: true)
            sink.write(batch) { [self] released, endsGroup in
                release(released, endsGroup: endsGroup)
                for barrier in waiting { barrier() }
            }
        }
    }

    private func snapshotIfDue() {
        guard snapshotSink != nil else { return }
        var due = snapshotRequested
        if configuration.snapshotEveryEntries > 0 && lsn - lastSnapshotLSN >= configuration.snapshotEveryEntries {
            due = true
        }
        if configuration.snapshotEverySeconds > 0 && lsn > lastSnapshotLSN {
            let now = monotonicNanos()
            if lastSnapshotNanos == 0 { lastSnapshotNanos = now }
            if now - lastSnapshotNanos >= UInt64(configuration.snapshotEverySeconds) * 1_000_000_000 { due = true }
        }
        if due { takeSnapshot() }
    }

    /// Whether stopping takes a snapshot: when configured and anything was journaled since the last one; with
    /// `clockMoved`, also when only the clock moved since (a manual clock's time, which a restart cannot read again
    /// from the wall, and the requests it expired are state; a server's clock is the wall's, and an idle server's
    /// every stop would otherwise write a snapshot, and retention remove the journal before the last two).
    private func shutdownSnapshotIsDue(clockMoved: Bool) -> Bool {
        configuration.snapshotOnShutdown && snapshotSink != nil
            && (lsn > lastSnapshotLSN || (clockMoved && engine.now > journaledNow))
    }

    /// Marks a snapshot point at the current lsn and hands it to the snapshot sink, which rebuilds the state there
    /// itself: the writer copies nothing.
    private func takeSnapshot() {
        guard let snapshotSink else { return }
        let started = monotonicNanos()
        snapshotRequested = false
        if engine.now > journaledNow {
            // The clock moved with nothing to journal; the clock and the requests it expired are state.
            let batch = takeBatch()
            lsn += 1
            let none = batch.events.count..<batch.events.count
            batch.entries.append(BatchEntry(tick: lsn, at: engine.now, events: none))
            dispatch(batch)
        }
        snapshotSink.snapshot(lsn: lsn, now: engine.now, pauseNanos: monotonicNanos() - started)
        lastSnapshotLSN = lsn
        lastSnapshotNanos = monotonicNanos()
    }

    private func anyPending() -> Bool {
        queues.withLock { $0.values.contains { $0.depth > 0 } }
    }

    /// One turn: fire timers, serve admin requests, then up to `maxBatch` commands from the ready listings.
    private func turn(into batch: Batch) {
        let now = max(engine.now, clock.now())
        let firstEvent = batch.events.count
        engine.advance(to: now, events: &batch.events)
        if batch.events.count > firstEvent {
            lsn += 1
            batch.entries.append(
                BatchEntry(tick: lsn, at: now, events: firstEvent..<batch.events.count))
            for index in firstEvent..<batch.events.count {
                guard case .evicted = batch.events[index].kind else { continue }
                if let queue = queue(for: batch.events[index].listing) { retireIfIdle(queue) }
            }
        }
        while adminCount.load(ordering: .acquiring) > 0, let request = admin.pop() {
            adminCount.wrappingSubtract(1, ordering: .sequentiallyConsistent)
            switch request.kind {
            case .inspect(let body): body(engine, lsn)
            case .barrier(let done): waitingBarriers.append(done)
            case .snapshot: snapshotRequested = true
            }
        }
        var budget = configuration.maxBatch
        let perTurn = configuration.perListingTurn
        while budget > 0, let queue = ready.pop() {
            readyCount.wrappingSubtract(1, ordering: .sequentiallyConsistent)
            let limit = min(perTurn, budget)
            var taken = 0
            // Whether the listing may not exist after this turn: only a rejected command, a duplicate of an
            // earlier one, or one not applied can leave it missing (an accepted command needs it or creates it).
            var mayBeGone = true
            // The queue's handle, read once per listing and turn: read from the queue for each command, it was
            // retained and released around each `apply`.
            var handle = queue.handle
            while taken < limit, let submission = queue.commands.pop() {
                queue.pending.wrappingSubtract(1, ordering: .sequentiallyConsistent)
                taken += 1
                prefetchNext(after: queue, more: taken < limit)
                if handle?.isCurrent != true {
                    handle = engine.handle(for: queue.listing)
                    queue.handle = handle
                    // The listing left the engine with commands still queued for it (this turn's timers evicted
                    // it, or the `open` before them was refused): a command other than `open` gets the answer it
                    // would have got at submit had the queue been freed already, and is not applied.
                    if handle == nil,
                        let answer = Engine.answerWithoutListing(submission.command, now: now)
                    {
                        if submission.awaited { batch.awaited += 1 }
                        batch.unapplied.append(
                            UnappliedCommand(submission: submission, result: answer, position: batch.entries.count))
                        mayBeGone = true
                        continue
                    }
                }
                let start = batch.events.count
                // Through a guaranteed reference (no retain of the submission), and the command borrowed in place
                // (`withCommand`): passed as `submission.command`, it was copied for the call, each of its strings
                // retained, and destroyed after it.
                let result = Unmanaged.passUnretained(submission)._withUnsafeGuaranteedRef { taken in
                    taken.withCommand { command, digest in
                        engine.applyPacked(command, digest: digest, listing: handle, events: &batch.events)
                    }
                }
                mayBeGone = !result.ok || result.duplicate
                if submission.awaited { batch.awaited += 1 }
                lsn += 1
                batch.appendEntry(lsn: lsn, at: now, submission: submission, result: result, eventsFrom: start)
            }
            budget -= taken
            if taken == limit {
                // Maybe more: keep the listing scheduled and go to the back of the ready list.
                ready.push(queue)
                readyCount.wrappingAdd(1, ordering: .sequentiallyConsistent)
            } else {
                queue.unschedule()
                if queue.pending.load(ordering: .sequentiallyConsistent) > 0 && queue.claimSchedule() {
                    ready.push(queue)
                    readyCount.wrappingAdd(1, ordering: .sequentiallyConsistent)
                } else if mayBeGone && !engine.hasListing(queue.listing) {
                    // A refused open, or commands that found the listing evicted.
                    retireIfIdle(queue)
                }
            }
        }
        gauges.publish(engine)
        // Every command submitted before a barrier was in its queue when the barrier arrived; once no listing is
        // ready, all of them are in this batch or an earlier one.
        if !waitingBarriers.isEmpty && readyCount.load(ordering: .sequentiallyConsistent) == 0 {
            barriers.append(contentsOf: waitingBarriers)
            waitingBarriers.removeAll(keepingCapacity: true)
        }
    }

    /// Starts loading what the commands about to be applied read, so that their cache misses overlap the command
    /// applied now. Within a listing's run, the next command's idempotency slot (and the command after it). Across
    /// listings, a pipeline over the ready list, one stage per listing served: the next listing's first command's
    /// slot (that command and the listing's queue were loaded a stage earlier), the listing after it's first command,
    /// listing object and book (its queue was loaded a stage earlier), and the queue of the listing after that. Each
    /// step of the chain (queue → its oldest command → that command's slot) waits for the step before it, so asking
    /// for all three of one listing at once waited for two misses in a row. A hint only: the order of application is
    /// the turn's, whatever this finds.
    @inline(__always)
    private func prefetchNext(after queue: ListingQueue, more: Bool) {
        if more, let next = queue.commands.oldest() {
            MPSCLinks<Submission>.withNode(at: next) { submission in
                engine.prefetch(submission.digest)
                if let after = submission.next.load(ordering: .relaxed) { Submission.prefetchHead(after) }
            }
            return
        }
        guard let first = ready.oldest() else { return }
        let second = ready.node(after: first)
        MPSCLinks<ListingQueue>.withNode(at: first) { listing in
            if let command = listing.commands.oldest() {
                MPSCLinks<Submission>.withNode(at: command) { engine.prefetch($0.digest) }
            }
        }
        guard let second else { return }
        let third = ready.node(after: second)
        MPSCLinks<ListingQueue>.withNode(at: second) { listing in
            listing.addresses?.prefetch()
            if let command = listing.commands.oldest() { Submission.prefetchHead(command) }
        }
        if let third {
            gavel_prefetch_for_read(third)
            gavel_prefetch_for_read(third + 64)
        }
    }

    /// Hands a durable batch to the observer, resumes the callers of ``submit(_:)`` waiting on it, and takes the batch
    /// back for reuse. An observer that keeps the batch gives it back itself, so the callers are resumed before it
    /// has it: the writer does not touch the batch once it is handed over.
    private func release(_ batch: Batch, endsGroup: Bool) {
        if observerKeepsBatches {
            resumeAwaited(batch)
            observer?.released(batch, endsGroup: endsGroup)
        } else {
            observer?.released(batch, endsGroup: endsGroup)
            resumeAwaited(batch)
            recycle(batch)
        }
    }

    private func resumeAwaited(_ batch: Batch) {
        guard batch.awaited > 0 else { return }
        for entry in batch.entries {
            guard let submission = entry.submission, submission.awaited, let result = entry.result else { continue }
            (submission.recipient as! AwaitedResult).continuation.resume(returning: (result, entry.lsn))
        }
        for unapplied in batch.unapplied where unapplied.submission.awaited {
            (unapplied.submission.recipient as! AwaitedResult).continuation.resume(returning: (unapplied.result, nil))
        }
    }
}
