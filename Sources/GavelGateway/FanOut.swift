import CoreMetrics
import GavelCore
import GavelEngine
import GavelWire
import Logging
import NIOCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One session's subscription to one listing. Touched only on the session's event loop.
final class Subscription {
    let listing: String
    let session: WebSocketSession
    /// The `seq` of the last event of this listing the session was sent (in a snapshot, a replay or live): a live
    /// event at or below it is not sent again.
    var lastSeq: UInt64
    /// Where it sits in its loop's table, for O(1) removal.
    var index = -1

    init(listing: String, session: WebSocketSession, lastSeq: UInt64) {
        self.listing = listing
        self.session = session
        self.lastSeq = lastSeq
    }
}

/// Work for one event loop from one released batch, in batch order.
enum LoopItem: Sendable {
    /// A public event of `listing`, already a complete frame, for every subscriber of the listing on the loop.
    case publish(listing: String, seq: UInt64, frame: ByteBuffer)
    /// A private notice for one session, numbered `userSeq` in its user's feed.
    case notice(WebSocketSession, ByteBuffer, userSeq: UInt64)
    /// A command's durable result for the session that sent it (the submission holds the command and when it came).
    case result(WebSocketSession, Submission, CommandResult)
    /// The engine evicted `listing`: its subscribers' `seq` starts again from 0, for a listing opened again under
    /// the same id.
    case evicted(listing: String)
}

/// The subscriptions of the sessions on one event loop, by listing. Touched only on that loop, so publishing needs
/// no lock: the routing loop hands each loop one task per durable group of batches.
///
/// `@unchecked Sendable`: the routing loop holds it only to hand it a task on its loop; every method checks
/// (`assertInEventLoop`, debug builds) that it runs there.
final class LoopFanOut: @unchecked Sendable {
    let eventLoop: EventLoop
    let index: Int
    private let metrics: GatewayMetrics
    private var table: [String: [Subscription]] = [:]
    /// Sessions written to during the current task, flushed once at its end.
    private var dirty: [WebSocketSession] = []
    /// Whether ``run(_:releasedAt:)`` is delivering: only then are sessions written to kept in ``dirty``. A session
    /// writing at any other time (its hello, an answer to a read, a ping) flushes itself; were it kept here, it
    /// would stay (and stay allocated after its client left) until the loop's next fan-out task, which a server
    /// with no commands never runs.
    private(set) var delivering = false
    /// Command counters used on this loop.
    var commandCounters: [Int: CoreMetrics.Counter] = [:]
    /// The listing and user names this loop's sessions decode, shared from one command to the next
    /// (``FastCommandDecoder/decode(_:identifiers:)``).
    let identifiers = IdentifierCache()
    /// The acknowledgement latencies of the results delivered in the current task, merged into
    /// `gavel_ack_seconds` at its end (one lock for the task, none per result); their count is taken off
    /// `gavel_commands_in_flight` then, at once.
    private var ackTally: LatencyTally
    /// How the sessions written to in a task are flushed: their sends made together through io_uring (made when
    /// first needed, on this loop), or one `send` each (`--no-io-uring`, or io_uring not to be had).
    private var sends: Sends
    /// The sessions whose flush ``sends`` holds, by the index of their send.
    private var batched: [WebSocketSession] = []

    enum Sends {
        case oneByOne
        case batchedWhenNeeded
        case batched(SocketSendBatch)
    }
    /// Whether a wake-up of the writer is queued on this loop (``wakeWriterAfterThisTick(_:)``).
    private var writerWakeQueued = false
    /// The submissions whose results a task delivered: in a task of their own queued after it, once that task's
    /// items are gone, each one nothing else holds goes back to this thread's spares (``Submission/recycle(_:)``),
    /// for the sessions' next commands.
    private var spent: [Submission] = []
    /// The task that recycles ``spent``, made once (a closure made per task would be an allocation per group).
    private lazy var recycleTask: @Sendable () -> Void = { [weak self] in self?.recycleSpent() }

    init(eventLoop: EventLoop, index: Int, metrics: GatewayMetrics, batchesSends: Bool = false) {
        self.eventLoop = eventLoop
        self.index = index
        self.metrics = metrics
        self.sends = batchesSends ? .batchedWhenNeeded : .oneByOne
        ackTally = metrics.ackLatency.makeTally()
    }

    /// Counts a result delivered on this loop, `nanos` after its command came: in the task's tally while the loop
    /// delivers a group (``run(_:releasedAt:)`` merges it at the end), straight into the metrics otherwise.
    func countAnswered(nanos: Int64) {
        eventLoop.assertInEventLoop()
        ackTally.record(nanos: nanos)
        if !delivering { mergeAnswered() }
    }

    private func mergeAnswered() {
        let answered = ackTally.count
        guard answered > 0 else { return }
        metrics.ackLatency.merge(&ackTally)
        metrics.inFlight.decrement(by: Double(answered))
    }

    func add(_ subscription: Subscription) {
        eventLoop.assertInEventLoop()
        var list = table[subscription.listing, default: []]
        subscription.index = list.count
        list.append(subscription)
        table[subscription.listing] = list
    }

    func remove(_ subscription: Subscription) {
        eventLoop.assertInEventLoop()
        guard var list = table[subscription.listing], subscription.index >= 0, subscription.index < list.count,
            list[subscription.index] === subscription
        else { return }
        let last = list.removeLast()
        if last !== subscription {
            list[subscription.index] = last
            last.index = subscription.index
        }
        subscription.index = -1
        table[subscription.listing] = list.isEmpty ? nil : list
    }

    /// Wakes `writer` once the loop has handled every connection that was ready in this turn of its selector: the
    /// commands of all the reads of one turn go to the writer with one wake-up (a `write` to its pipe when it
    /// sleeps, and a `poll` and a `read` on its side), not one per connection read. The loop runs queued tasks right
    /// after the turn's reads, so the commands wait for nothing else.
    func wakeWriterAfterThisTick(_ writer: Writer) {
        eventLoop.assertInEventLoop()
        guard !writerWakeQueued else { return }
        writerWakeQueued = true
        eventLoop.execute { [self] in
            writerWakeQueued = false
            writer.wake()
        }
    }

    /// Marks `session` to be flushed at the end of the current task (call only while ``delivering``).
    func markDirty(_ session: WebSocketSession) {
        eventLoop.assertInEventLoop()
        dirty.append(session)
    }

    /// Sessions waiting to be flushed at the end of the current task: 0 between tasks. For tests.
    var dirtyCount: Int { dirty.count }

    /// Delivers one durable group's items for this loop: each frame is written (not flushed) to every subscriber,
    /// then each session written to is flushed once.
    func run(_ items: [LoopItem], releasedAt: UInt64) {
        eventLoop.assertInEventLoop()
        delivering = true
        let spentBefore = spent.count
        // The clocks once for the task: every result in it is timed and stamped alike.
        let now = monotonicNanos()
        let ts = SystemClock().now()
        for item in items {
            switch item {
            case .publish(let listing, let seq, let frame):
                guard let subscribers = table[listing] else { continue }
                for subscription in subscribers where seq > subscription.lastSeq {
                    subscription.lastSeq = seq
                    subscription.session.enqueue(frame)
                }
            case .notice(let session, let frame, let userSeq):
                // A notice already replayed by the session's `subscribe_user` is not sent again.
                guard userSeq > session.lastUserSeq else { continue }
                session.lastUserSeq = userSeq
                session.enqueue(frame)
            case .result(let session, let submission, let result):
                submission.withCommand { command, _ in
                    session.deliverResult(
                        id: command.id, kind: command.kind, result, started: submission.started, now: now, ts: ts)
                }
                spent.append(submission)
            case .evicted(let listing):
                for subscription in table[listing] ?? [] { subscription.lastSeq = 0 }
            }
        }
        delivering = false
        // Counted before the results leave, as each was before its own send.
        mergeAnswered()
        flushDirty()
        metrics.fanoutLatency.recordNanoseconds(Int64(monotonicNanos() &- releasedAt))
        // After this task: the items (and the batch the router reset) hold the submissions until it ends. One task
        // for all the groups delivered before it runs.
        if spentBefore == 0 && !spent.isEmpty { eventLoop.execute(recycleTask) }
    }

    private func recycleSpent() {
        eventLoop.assertInEventLoop()
        Submission.recycle(&spent)
    }

    /// Flushes the sessions written to in the task: those whose bytes go to their socket itself with one io_uring
    /// submission per ``SocketSendBatch/capacity`` of them when the loop batches its sends, the others (and all of
    /// them otherwise) one at a time.
    func flushDirty() {
        eventLoop.assertInEventLoop()
        let batch = dirty.count > 1 ? sendBatch() : nil
        for session in dirty {
            session.markedDirty = false
            if let batch, session.queueFlush(in: batch) {
                batched.append(session)
                if !batch.hasRoom { sendBatched(batch) }
            } else {
                session.flushIfNeeded()
            }
        }
        if let batch { sendBatched(batch) }
        dirty.removeAll(keepingCapacity: true)
    }

    /// Makes the sends `batch` holds and finishes each session's flush with what its send returned. A kernel whose
    /// io_uring cannot send (`EINVAL`: older than Linux 5.6) answers every send so; the bytes then go through the
    /// channels, and the loop sends one by one from then on.
    private func sendBatched(_ batch: SocketSendBatch) {
        var unsupported = false
        batch.send { index, sent in
            if sent == -EINVAL { unsupported = true }
            batched[index].finishFlush(sent: sent)
        }
        batched.removeAll(keepingCapacity: true)
        if unsupported { sendOneByOne(because: "io_uring cannot send on this kernel (EINVAL)") }
    }

    /// Makes the loop send one by one from now on, saying why once.
    private func sendOneByOne(because reason: String) {
        sends = .oneByOne
        Logger(label: "gavel.gateway").warning("\(reason): event loop \(index) makes one send per connection")
    }

    /// The loop's send batch, made the first time it is wanted; `nil` when the loop sends one by one.
    private func sendBatch() -> SocketSendBatch? {
        switch sends {
        case .oneByOne: return nil
        case .batched(let batch): return batch
        case .batchedWhenNeeded:
            switch SocketSendBatch.make() {
            case .success(let batch):
                sends = .batched(batch)
                return batch
            case .failure(let failure):
                sendOneByOne(because: "io_uring is not available (\(failure))")
                return nil
            }
        }
    }
}

/// What a subscriber gets first.
enum SubscribeReply {
    /// The listing's public state (`nil`: no such listing yet) as of `seq`.
    case snapshot(seq: UInt64, view: PublicListingView?)
    /// Every event after `since` up to `seq`, as the frames first sent.
    case resumed(since: UInt64, seq: UInt64, frames: [ByteBuffer])
}

/// What `subscribe_user` gets first.
struct UserFeedReply {
    /// The feed's epoch: new whenever its numbering starts again (a restart, a feed dropped and made again).
    var epoch: String
    /// The `user_seq` of the user's newest notice.
    var seq: UInt64
    /// The notices after `since` (as first sent), or `nil` when they cannot all be given.
    var frames: [ByteBuffer]?
}

/// The gateway's public state and fan-out: every listing's durable public view and recent history, which loops
/// have subscribers of it, which sessions belong to which user, and the hand-off of released results and events
/// to the event loops.
///
/// It is the writer's ``ReleaseObserver``: everything here is built from the batches the writer releases, which are
/// only ever durable, so a snapshot never shows state the journal could lose.
///
/// Threads: batches arrive on the releasing thread (the journal's), one at a time (``released(_:endsGroup:)``), and
/// each group of batches one `fdatasync` made durable goes whole, in one task, to the first event loop (several
/// groups in one task when it is busy): the journal's thread does journal work only. There each batch's results and
/// events are routed to the event loops they concern under the lock, taken once per batch, and handed over at the
/// end of the group: one task per other event loop that has work, the routing loop's own delivered in the same task.
/// Groups are routed in release order (one loop's tasks run in order). Sessions subscribe from their event loops
/// under the same lock, which is what makes a snapshot and the live events after it meet without a gap or a
/// duplicate.
///
/// `@unchecked Sendable`: the shared state is under its mutex, and so is the hand-off of released batches; the
/// routing lists are the routing loop's, checked by ``Confinement`` in debug builds; the loops and their
/// subscriptions are touched on their loops; ``routeTask`` is written once, in `init`.
public final class FanOut: ReleaseObserver, @unchecked Sendable {
    /// What a change of a listing's view means for the listings index: whether the view appeared, and whether the
    /// listing was and is open.
    struct ViewChange {
        var appeared: Bool
        var wasOpen: Bool
        var isOpen: Bool
    }

    struct Entry {
        var view: PublicListingView?
        /// Whether ``view`` is open: kept beside it, so that telling a change of status costs no look into the
        /// optional view (which copied it).
        var isOpen = false
        var seq: UInt64 = 0
        var history = FrameHistory()
        /// Subscribers per event loop.
        var subscribers: [Int]
        /// The sum of ``subscribers``: an event of a listing nobody watches does not look into the array.
        var subscribed = 0

        var isIdle: Bool { view == nil && history.count == 0 && subscribed == 0 }

        /// Folds a public event in and keeps its frame (the text frame of `payload`); returns what the event changed
        /// for the listings index, and the subscribers per event loop when there are any, so the caller needs no
        /// second lookup. The view is changed in place, never copied (it holds strings: a copy before and after
        /// each event was a retain and a release of each).
        mutating func record(_ event: Event, payload: [UInt8], historyLimit: Int, ring: HistoryRing) -> (
            change: ViewChange, subscribers: [Int]?
        ) {
            let wasOpen = isOpen
            var appeared = false
            if let open = view?.applyIsOpen(event) {
                isOpen = open
            } else if let opened = PublicListingView(opened: event) {
                isOpen = opened.status == .open
                view = opened
                appeared = true
            }
            seq = event.seq
            history.appendText(payload, seq: event.seq, limit: historyLimit, in: ring)
            return (
                ViewChange(appeared: appeared, wasOpen: wasOpen, isOpen: isOpen),
                subscribed > 0 ? subscribers : nil
            )
        }
    }

    /// A user's private feed: the notices sent to the user, numbered by `user_seq` from 1, the last ones kept for
    /// `subscribe_user` with `since`.
    struct UserFeed {
        var epoch: String
        var history = FrameHistory()
        /// The user's sessions, in the order they registered: with the feed, so that a notice costs one lookup.
        var sessions: [WebSocketSession] = []
        /// Set while the user has no session: the feed's place in ``State/idleFeeds``.
        var idleSince: UInt64?

        /// Numbers the notice of the event encoded in `event`, writes it into `scratch` and keeps its frame;
        /// returns its `user_seq` and the sessions to send it to. In place: reading the feed (or its sessions)
        /// through the dictionary copied the whole feed.
        mutating func append(event: [UInt8], ts: Millis, scratch: inout [UInt8], limit: Int, ring: HistoryRing) -> (
            userSeq: UInt64, sessions: [WebSocketSession]
        ) {
            let userSeq = history.lastSeq + 1
            MessageEncoder.notice(event: event, userSeq: userSeq, ts: ts, into: &scratch)
            history.appendText(scratch, seq: userSeq, limit: limit, in: ring)
            return (userSeq, sessions)
        }
    }

    struct State {
        var listings: [String: Entry] = [:]
        /// The feed of every user with a session, and of the last `maxIdleFeeds` users whose sessions all
        /// ended.
        var feeds: [String: UserFeed] = [:]
        /// Users whose feeds are idle, oldest first, with the mark their feed holds (entries whose mark no longer
        /// matches are stale and skipped).
        var idleFeeds: [(user: String, mark: UInt64)] = []
        var idleHead = 0
        var idleCount = 0
        var marks: UInt64 = 0
        /// Every settlement and second-chance offer, for the settlement queries.
        var settlements = SettlementViews()
        /// Users with at least one session (their feeds hold the sessions).
        var connectedUsers = 0
        var subscriptionCount = 0
        /// The ids of the listings that have a view (every listing ever opened), and of those still open, in order,
        /// for `list`.
        var all = SortedIDs()
        var open = SortedIDs()
        /// Where events and notices are encoded before each is copied into its frame, reused from one to the next.
        var eventBytes: [UInt8] = []
        var noticeBytes: [UInt8] = []

        /// Forgets the view and history of a listing the engine evicted; it is then what it was before it was
        /// opened (subscribe gets a snapshot with no view, `list` leaves it out). Live subscriptions keep their count
        /// until they end; returns it per event loop.
        mutating func evict(_ id: String) -> [Int]? {
            guard var entry = listings[id] else { return nil }
            index(id, ViewChange(before: entry.view, after: nil))
            if entry.view != nil { all.remove(id) }
            entry.view = nil
            entry.isOpen = false
            entry.seq = 0
            entry.history = FrameHistory()
            listings[id] = entry.isIdle ? nil : entry
            return entry.subscribers
        }

        /// Keeps ``all`` and ``open`` in step with the view of `id` after `change`.
        mutating func index(_ id: String, _ change: ViewChange) {
            if change.appeared { all.insert(id) }
            if change.isOpen && !change.wasOpen { open.insert(id) }
            if change.wasOpen && !change.isOpen { open.remove(id) }
        }
    }

    let loops: [LoopFanOut]
    private let loopIndex: [ObjectIdentifier: Int]
    private let state = Mutex(State())
    private let historyLimit: Int
    private let userHistoryLimit: Int
    /// The listings' recent frames and the users' recent notices, each in one ring (``HistoryRing``): under
    /// ``state``'s lock, like the histories that point into them.
    private let eventHistory: HistoryRing
    private let noticeHistory: HistoryRing
    /// The most feeds kept for users without a session: the oldest idle one is dropped past it.
    let maxIdleFeeds: Int
    let metrics: GatewayMetrics
    /// The durable event feed (`subscribe_feed`), handed every released batch.
    public let feed = FeedHub()
    /// Released batches on their way to ``router``: the releasing thread appends, the router takes them all.
    private let handOff = Mutex(HandOff())
    /// The router's side of ``handOff``'s list: the two swap, so neither allocates once warm. Only on ``router``'s
    /// loop.
    private var taken: [Batch] = []
    /// The task that routes what ``handOff`` holds: made once, so handing it to the loop allocates no closure.
    private var routeTask: @Sendable () -> Void = {}
    /// The loop that routes every durable group (the first one).
    private let router: LoopFanOut
    /// The group being routed's work per event loop, handed over at its end. Only on ``router``'s loop.
    private var gathered: [[LoopItem]]
    /// The frames handed to the event loops, reused in turn (``liveFrame(_:)``). Only on ``router``'s loop.
    private var liveFrames = Array(repeating: ByteBuffer(), count: FanOut.liveFrameCount)
    private var nextLiveFrame = 0
    /// How many frames ``liveFrames`` reuses in turn: by the time a frame's turn comes again the loops have long
    /// written it, so it is rewritten in place (about 300 KiB, hot in the cache, where a buffer per listing was not).
    static let liveFrameCount = 1024
    /// The routing state's one user at a time (debug builds).
    private let routing = Confinement("the fan-out's routing of a group")

    /// - Parameters:
    ///   - group: the event loops sessions run on.
    ///   - historyLimit: public events kept per listing for resuming with `since`.
    ///   - userHistoryLimit: private notices kept per user for `subscribe_user` with `since`.
    ///   - histories: the rings all listings' kept events and all users' kept notices share (`--history-bytes`,
    ///     `--user-history-bytes`).
    ///   - maxIdleFeeds: the feeds kept for users whose sessions all ended.
    ///   - batchesSends: each loop flushes the sessions a task wrote to with one io_uring submission where it can
    ///     (``SocketSendBatch``), not one `send` each (off with `--no-io-uring`).
    public init(
        group: EventLoopGroup, historyLimit: Int, userHistoryLimit: Int = 256, histories: HistoryRings = HistoryRings(),
        maxIdleFeeds: Int = 1000, batchesSends: Bool = false, metrics: GatewayMetrics
    ) {
        self.userHistoryLimit = userHistoryLimit
        self.eventHistory = histories.events
        self.noticeHistory = histories.notices
        self.maxIdleFeeds = maxIdleFeeds
        var loops: [LoopFanOut] = []
        var index: [ObjectIdentifier: Int] = [:]
        for loop in group.makeIterator() {
            index[ObjectIdentifier(loop)] = loops.count
            loops.append(
                LoopFanOut(eventLoop: loop, index: loops.count, metrics: metrics, batchesSends: batchesSends))
        }
        precondition(!loops.isEmpty, "a fan-out needs an event loop")
        self.loops = loops
        self.router = loops[0]
        self.loopIndex = index
        self.historyLimit = historyLimit
        self.metrics = metrics
        self.gathered = Array(repeating: [], count: loops.count)
        self.routeTask = { [weak self] in self?.routeReleased() }
    }

    /// The fan-out of `eventLoop`.
    func loop(for eventLoop: EventLoop) -> LoopFanOut? {
        loopIndex[ObjectIdentifier(eventLoop)].map { loops[$0] }
    }

    /// Starts from these views (the recovered engine's, read before the writer starts).
    public func load(_ views: [PublicListingView]) {
        state.withLock { s in
            for view in views {
                let before = s.listings[view.listing]?.view
                s.listings[view.listing] = Entry(
                    view: view, isOpen: view.status == .open, seq: view.seq, subscribers: loops.map { _ in 0 })
                s.index(view.listing, ViewChange(before: before, after: view))
            }
        }
    }

    /// Starts the settlement views from the recovered engine's settlements and offers (read before the writer
    /// starts).
    public func loadSettlements(_ settlements: [Settlement], offers: [SecondChanceOffer]) {
        state.withLock { $0.settlements.load(settlements, offers: offers) }
    }

    /// One page of `user`'s settlements for `my_settlements` and one of the user's offers (those whose listing sorts
    /// after `offersAfter`), each of up to `limit`; `nil` when `after` is not one of the user's settlements.
    /// O(log n + limit) under the lock.
    func settlementPage(
        user: String, state wanted: SettlementState?, after: String?, offersAfter: String?, limit: Int
    ) -> SettlementPage? {
        state.withLock { s in
            guard let page = s.settlements.page(user: user, state: wanted, after: after, limit: limit) else {
                return nil
            }
            let offers = s.settlements.offers(of: user, after: offersAfter, limit: limit)
            return SettlementPage(
                settlements: page.items, next: page.next, offers: offers.items, offersNext: offers.next)
        }
    }

    /// The settlement `id` as the gateway holds it, for `get_settlement`.
    public func settlement(_ id: String) -> Settlement? {
        state.withLock { $0.settlements.settlement(id) }
    }

    /// The public state of `listing` now (for tests and inspection).
    public func view(of listing: String) -> PublicListingView? {
        state.withLock { $0.listings[listing]?.view }
    }

    /// One page of the durable public views, in listing id order: up to `limit` listings whose id sorts after
    /// `after` (from the first when `nil`), only open ones when `openOnly`. `next` is the id to pass as `after` for
    /// the following page, `nil` when this page is the last.
    ///
    /// Costs O(log n + limit) under the lock: a binary search in the sorted index of ids, then one dictionary
    /// lookup per listing returned.
    public func listings(openOnly: Bool, after: String?, limit: Int) -> (views: [PublicListingView], next: String?) {
        state.withLock { s in
            let ids = (openOnly ? s.open : s.all).ids(after: after, limit: limit + 1)
            let more = ids.count > limit
            var views: [PublicListingView] = []
            views.reserveCapacity(min(ids.count, limit))
            for id in ids.prefix(limit) {
                if let view = s.listings[id]?.view { views.append(view) }
            }
            return (views, more ? ids[limit - 1] : nil)
        }
    }

    /// The number of live subscriptions.
    public var subscriptionCount: Int { state.withLock { $0.subscriptionCount } }

    /// What the fan-out holds per listing and per user: the listings it tracks (with a view, a history or a
    /// subscriber) and the users with a session. For tests that check that memory is returned.
    var tracked: (listings: Int, users: Int) { state.withLock { ($0.listings.count, $0.connectedUsers) } }

    /// The private feeds held (of users with a session, and idle ones). For tests of their bound.
    var feedCount: Int { state.withLock { $0.feeds.count } }

    /// The entries of the idle feeds' FIFO, stale ones included. For tests of its bound.
    var idleFeedEntries: Int { state.withLock { $0.idleFeeds.count - $0.idleHead } }

    // MARK: - Sessions (on their event loops)

    /// Registers a subscription of a session on loop `loop` and says what to send it first.
    ///
    /// - Parameter renew: the session already holds a subscription to `listing` (it is only re-synchronised).
    func subscribe(listing: String, since: UInt64?, loop: Int, renew: Bool) -> SubscribeReply {
        state.withLock { s in
            var entry = s.listings[listing] ?? Entry(subscribers: loops.map { _ in 0 })
            if !renew {
                entry.subscribers[loop] += 1
                entry.subscribed += 1
                s.subscriptionCount += 1
            }
            let reply: SubscribeReply
            if let since, since <= entry.seq,
                let frames = since == entry.seq ? [] : entry.history.after(since, in: eventHistory)
            {
                reply = .resumed(since: since, seq: entry.seq, frames: frames)
            } else {
                reply = .snapshot(seq: entry.seq, view: entry.view)
            }
            s.listings[listing] = entry
            return reply
        }
    }

    func unsubscribe(listing: String, loop: Int) {
        state.withLock { s in
            guard var entry = s.listings[listing], entry.subscribers[loop] > 0 else { return }
            entry.subscribers[loop] -= 1
            entry.subscribed -= 1
            s.subscriptionCount -= 1
            s.listings[listing] = entry.isIdle ? nil : entry
        }
    }

    /// A feed's epoch: 64 random bits in hex, so that a feed's numbering from before a restart (or from before
    /// its feed was dropped) is never taken for the new one's, and so that an epoch tells a user nothing about
    /// anyone else (a count of the feeds made, or the time of the start, would tell how many others connected).
    static func newEpoch() -> String {
        var generator = SystemRandomNumberGenerator()
        let bits = String(generator.next() as UInt64, radix: 16)
        return String(repeating: "0", count: 16 - bits.count) + bits
    }

    func register(_ session: WebSocketSession, user: String) {
        state.withLock { s in
            if s.feeds[user] == nil { s.feeds[user] = UserFeed(epoch: Self.newEpoch()) }
            let feed = s.feeds.index(forKey: user)!
            if s.feeds.values[feed].idleSince != nil {
                s.feeds.values[feed].idleSince = nil
                s.idleCount -= 1
            }
            guard !s.feeds.values[feed].sessions.contains(where: { $0 === session }) else { return }
            if s.feeds.values[feed].sessions.isEmpty { s.connectedUsers += 1 }
            s.feeds.values[feed].sessions.append(session)
        }
    }

    func unregister(_ session: WebSocketSession, user: String) {
        state.withLock { s in
            guard let feed = s.feeds.index(forKey: user),
                let index = s.feeds.values[feed].sessions.firstIndex(where: { $0 === session })
            else { return }
            s.feeds.values[feed].sessions.remove(at: index)
            guard s.feeds.values[feed].sessions.isEmpty else { return }
            s.connectedUsers -= 1
            // The feed stays for a reconnect, among the last `maxIdleFeeds` idle ones.
            s.marks += 1
            s.feeds.values[feed].idleSince = s.marks
            s.idleFeeds.append((user, s.marks))
            s.idleCount += 1
            while s.idleCount > maxIdleFeeds, s.idleHead < s.idleFeeds.count {
                let (oldest, mark) = s.idleFeeds[s.idleHead]
                s.idleHead += 1
                if s.feeds[oldest]?.idleSince == mark {
                    s.feeds[oldest] = nil
                    s.idleCount -= 1
                }
            }
            // Entries of users who came back are stale: rebuilt once they outnumber the live ones, so a user who
            // keeps coming and going cannot grow the list.
            if s.idleFeeds.count - s.idleHead > 2 * s.idleCount + 64 {
                let feeds = s.feeds
                s.idleFeeds = s.idleFeeds[s.idleHead...].filter { feeds[$0.user]?.idleSince == $0.mark }
                s.idleHead = 0
            } else if s.idleHead > 64 && s.idleHead * 2 > s.idleFeeds.count {
                s.idleFeeds.removeFirst(s.idleHead)
                s.idleHead = 0
            }
        }
    }

    /// The feed of `user` for `subscribe_user`: its epoch and newest `user_seq`, and the notices after `since` when
    /// `since` and `epoch` are given, the epoch is the feed's and its history reaches back that far.
    func subscribeUser(_ user: String, since: UInt64?, epoch: String?) -> UserFeedReply {
        state.withLock { s in
            guard let feed = s.feeds[user] else { return UserFeedReply(epoch: "", seq: 0, frames: nil) }
            var frames: [ByteBuffer]?
            if let since, epoch == feed.epoch, since <= feed.history.lastSeq {
                frames = since == feed.history.lastSeq ? [] : feed.history.after(since, in: noticeHistory)
            }
            return UserFeedReply(epoch: feed.epoch, seq: feed.history.lastSeq, frames: frames)
        }
    }

    // MARK: - Release (the releasing thread) and routing (the first event loop)

    /// Kept: each durable group goes to the first event loop, which routes it and gives its batches back.
    public var keepsBatches: Bool { true }

    /// What the releasing thread has handed the router and the router has not taken yet.
    struct HandOff {
        var batches: [Batch] = []
        /// When the oldest group among ``batches`` was released (for `gavel_fanout_seconds`).
        var releasedAt: UInt64?
        /// Whether a routing task is queued on the router's loop (it takes everything there is when it runs).
        var scheduled = false
    }

    /// Takes a durable batch and, at the end of its group, makes sure a routing task is queued on the first event
    /// loop (``routeReleased()``): the releasing thread (the journal's) only appends the batch to a list under a
    /// lock and, once per group at most, hands the loop a task made once; it goes back to writing and syncing the
    /// next group at once, and encoding, views, histories and notices are paid on an event loop. A group released
    /// while the router has not yet run waits for the same task, so a busy router takes several groups at once.
    public func released(_ batch: Batch, endsGroup: Bool) {
        let now = endsGroup ? monotonicNanos() : 0
        let schedule = handOff.withLock { h -> Bool in
            h.batches.append(batch)
            guard endsGroup else { return false }
            if h.releasedAt == nil { h.releasedAt = now }
            guard !h.scheduled else { return false }
            h.scheduled = true
            return true
        }
        if schedule { router.eventLoop.execute(routeTask) }
    }

    /// Takes every batch handed over so far and routes them, on the first event loop.
    private func routeReleased() {
        router.eventLoop.assertInEventLoop()
        routing.exclusively {
            let releasedAt = handOff.withLock { h -> UInt64 in
                swap(&h.batches, &taken)
                h.scheduled = false
                defer { h.releasedAt = nil }
                return h.releasedAt ?? monotonicNanos()
            }
            route(taken, releasedAt: releasedAt)
            taken.removeAll(keepingCapacity: true)
        }
    }

    /// Routes durable batches, on the first event loop: hands each batch to the durable feed, routes each entry's
    /// result to the session that sent the command and its events to the loops with subscribers (under the lock,
    /// once per batch), gives the batches back to the writer, and hands each other loop its work in one task (this
    /// loop's is delivered in this task).
    private func route(_ batches: [Batch], releasedAt: UInt64) {
        let ts = SystemClock().now()
        for batch in batches {
            routeBatch(batch, ts: ts)
            batch.recycle()
        }
        // The other loops get their work first: they deliver while this one delivers its own.
        var own: [LoopItem] = []
        for index in gathered.indices where !gathered[index].isEmpty {
            let loop = loops[index]
            let items = gathered[index]
            // The next group's list starts at this one's size: one allocation per loop and group, not one per
            // doubling.
            gathered[index] = []
            gathered[index].reserveCapacity(items.count)
            if loop === router {
                own = items
            } else {
                loop.eventLoop.execute { loop.run(items, releasedAt: releasedAt) }
            }
        }
        if !own.isEmpty { router.run(own, releasedAt: releasedAt) }
    }

    private func routeBatch(_ batch: Batch, ts: Millis) {
        let shared = feed.batchReleased(batch)
        metrics.batchEntries.record(batch.entries.count)
        guard !batch.entries.isEmpty || !batch.unapplied.isEmpty else { return }
        state.withLock { s in
            if shared {
                // A feed subscriber holds the batch's events too: read in place, each one copied.
                routeEntries(of: batch, ts: ts, state: &s) { batch.events[$0] }
            } else {
                // The fan-out is their last reader: moved out of the batch, not copied (a copy retained and
                // released every string an event holds).
                batch.consumeEvents { take in
                    routeEntries(of: batch, ts: ts, state: &s, event: take)
                }
            }
        }
    }

    /// Routes each entry's result to its session and its events (`event(index)` gives the batch's event at `index`,
    /// asked for in order) to the loops with subscribers; and the result of each command the writer took but did
    /// not apply (``Batch/unapplied``) to its session, in the order the writer took it.
    private func routeEntries(of batch: Batch, ts: Millis, state s: inout State, event: (Int) -> Event) {
        batch.forEachTaken(
            entry: { position in
                // Field by field: copying a whole entry would retain and release its submission and result.
                if let submission = batch.entries[position].submission, let result = batch.entries[position].result {
                    gatherResult(submission, result)
                }
                for index in batch.entries[position].events {
                    route(event(index), ts: ts, state: &s)
                }
            }, unapplied: gatherResult)
    }

    /// Hands `result` to the loop of the session that submitted it, if a session did.
    @inline(__always)
    private func gatherResult(_ submission: Submission, _ result: CommandResult) {
        guard let session = submission.recipient as? WebSocketSession else { return }
        gathered[session.loopIndex].append(.result(session, submission, result))
    }

    private func route(_ event: Event, ts: Millis, state s: inout State) {
        if SettlementViews.concerns(event.kind) { s.settlements.apply(event) }
        if case .settlementsPruned = event.kind { return }
        if case .evicted = event.kind {
            for (index, count) in (s.evict(event.listing) ?? []).enumerated() where count > 0 {
                gathered[index].append(.evicted(listing: event.listing))
            }
            return
        }
        // The engine's other bookkeeping (settlementsPruned) is not for clients.
        if event.kind.isInternal { return }
        if let (first, second) = Self.noticeRecipients(event) {
            MessageEncoder.event(event, ts: nil, into: &s.eventBytes)
            notify(first, ts: ts, state: &s)
            if let second { notify(second, ts: ts, state: &s) }
        }
        guard !event.kind.isPrivate else { return }
        MessageEncoder.event(event, ts: ts, into: &s.eventBytes)
        let loopCount = loops.count
        // Mutated in place: a copy of the entry would retain its view's strings and its subscriber counts, and make
        // the counts' array shared, so that the next change to them copied it.
        let recorded = s.listings[event.listing, default: Entry(subscribers: Array(repeating: 0, count: loopCount))]
            .record(event, payload: s.eventBytes, historyLimit: historyLimit, ring: eventHistory)
        if let subscribers = recorded.subscribers {
            let frame = liveFrame(s.eventBytes)
            for (index, count) in subscribers.enumerated() where count > 0 {
                gathered[index].append(.publish(listing: event.listing, seq: event.seq, frame: frame))
            }
        }
        s.index(event.listing, recorded.change)
    }

    /// The text frame of `payload` for the event loops, written into the next of ``liveFrames``: no allocation, unless
    /// that buffer is still on its way to a slow client (then a new one is made, as `clear` finds it shared).
    private func liveFrame(_ payload: [UInt8]) -> ByteBuffer {
        let slot = nextLiveFrame
        nextLiveFrame = slot + 1 == liveFrames.count ? 0 : slot + 1
        liveFrames[slot].clear()
        ServerFrame.appendText(payload, to: &liveFrames[slot])
        return liveFrames[slot]
    }

    /// Appends the notice of the event encoded in `s.eventBytes` to `user`'s feed (in place: the feed is not
    /// copied) and hands it to each of the user's sessions.
    private func notify(_ user: String, ts: Millis, state s: inout State) {
        // A user without a feed has no session either.
        guard let index = s.feeds.index(forKey: user) else { return }
        let (userSeq, sessions) = s.feeds.values[index].append(
            event: s.eventBytes, ts: ts, scratch: &s.noticeBytes, limit: max(1, userHistoryLimit), ring: noticeHistory)
        guard !sessions.isEmpty else { return }
        let frame = liveFrame(s.noticeBytes)
        for session in sessions {
            gathered[session.loopIndex].append(.notice(session, frame, userSeq: userSeq))
        }
    }

    /// The users a private notice goes to (one or two, no array: this runs for every outbid): the outbid bidder,
    /// both traders of a trade, the bidder of a Dutch fill, the trader whose order left the book, a settlement's
    /// buyer and seller, a second-chance offer's runner-up and seller; `nil` for a public event.
    static func noticeRecipients(_ event: Event) -> (String, String?)? {
        switch event.kind {
        case .outbid(let bidder, _): (bidder, nil)
        case .trade(let buyer, let seller, _, _, _, _): (buyer, buyer == seller ? nil : seller)
        case .filled(let bidder, _, _, _): (bidder, nil)
        case .orderCancelled(_, let trader, _, _): (trader, nil)
        case .settlement(let change): (change.buyer, change.buyer == change.seller ? nil : change.seller)
        case .secondChance(let offer): (offer.bidder, offer.bidder == offer.seller ? nil : offer.seller)
        default: nil
        }
    }
}

/// The change from view `before` to view `after` (start-up and eviction; an event's change comes from `Entry.record`).
extension FanOut.ViewChange {
    init(before: PublicListingView?, after: PublicListingView?) {
        self.init(
            appeared: before == nil && after != nil, wasOpen: before?.status == .open,
            isOpen: after?.status == .open)
    }
}
