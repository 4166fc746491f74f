import Dispatch
import GavelCore
import GavelEngine
import GavelJournal
import GavelWire
import NIOCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// What a `subscribe_feed` asked for: which events (by type and listing), whether rejected commands come too, and
/// whether each journal batch is marked (`marks`).
struct FeedFilter: Sendable {
    /// Event type names wanted; `nil`: all.
    var types: Set<String>?
    /// Listings wanted; `nil`: all.
    var listings: Set<String>?
    var includeRejections = false
    /// A `feed_mark` before the messages of each journal batch (and for a batch that has none after the filters).
    var marks = false

    /// The event types a feed carries, in the order docs/PROTOCOL.md lists them.
    static let eventTypes = [
        "opened", "bid_placed", "outbid", "extended", "price", "filled", "closed", "order_placed", "order_cancelled",
        "trade", "book", "listing_cancelled", "settlement", "second_chance",
    ]

    func wants(_ event: Event) -> Bool {
        if event.kind.isInternal { return false }
        if let listings, !listings.contains(event.listing) { return false }
        if let types, !types.contains(event.kind.typeName) { return false }
        return true
    }

    func wants(rejected command: Command) -> Bool {
        includeRejections && (listings?.contains(command.listing) ?? true)
    }
}

/// Writes feed messages: every event as docs/PROTOCOL.md defines it (no `ts`) plus `lsn` and `last`, and
/// `rejected` messages. The same code writes the catch-up and the live feed, so both are byte for byte the same.
/// Frames are appended to one buffer: a released batch, or a piece of a catch-up, is one write to the socket.
struct FeedEncoder {
    private var bytes: [UInt8] = []
    private var wanted: [Int] = []

    /// Appends the frames of entry `lsn` that `filter` lets through to `out`; returns their bytes. With `piece`,
    /// `full` is handed `out` whenever it holds `piece` bytes or more between two frames (it takes them and leaves
    /// `out` empty): one entry can hold tens of thousands of events (a tick that closes every listing due at once),
    /// and never has to be written in one piece.
    mutating func encode(
        lsn: UInt64, at: Millis, events: ArraySlice<Event>, rejected: FeedBatch.Refusal?, filter: FeedFilter,
        into out: inout ByteBuffer, piece: Int = .max, full: (inout ByteBuffer) -> Void = { _ in }
    ) -> Int {
        wanted.removeAll(keepingCapacity: true)
        for index in events.indices where filter.wants(events[index]) { wanted.append(index) }
        // A refusal the filter leaves out must not keep the entry's last event from saying it is the last.
        let rejected = rejected.flatMap { filter.wants(rejected: $0.command) ? $0 : nil }
        var total = 0
        for (position, index) in wanted.enumerated() {
            MessageEncoder.event(events[index], ts: nil, into: &bytes)
            let last = position == wanted.count - 1 && rejected == nil
            let before = out.writerIndex
            Self.appendTagged(&bytes, lsn: lsn, last: last, to: &out)
            total += out.writerIndex - before
            if out.readableBytes >= piece { full(&out) }
        }
        if let rejected {
            let (command, result) = (rejected.command, rejected.result)
            var w = JSONObjectWriter(reusing: &bytes)
            w.field("type", "rejected")
            w.field("listing", command.listing)
            w.field("at", at)
            w.field("principal", command.principal)
            w.field("id", command.id)
            w.field("command", command.typeName)
            w.field("error", result.error?.rawValue)
            w.field("message", result.message)
            w.finish(into: &bytes)
            let before = out.writerIndex
            Self.appendTagged(&bytes, lsn: lsn, last: true, to: &out)
            total += out.writerIndex - before
            if out.readableBytes >= piece { full(&out) }
        }
        return total
    }

    /// Appends the `feed_mark` frame of `mark` to `out`; returns its bytes.
    mutating func mark(_ mark: ChainMark, into out: inout ByteBuffer) -> Int {
        MessageEncoder.feedMark(lsn: mark.lsn, chain: mark.chain, into: &bytes)
        let before = out.writerIndex
        ServerFrame.appendText(bytes, to: &out)
        return out.writerIndex - before
    }

    /// Appends the text frame of the JSON object in `bytes` with `"lsn":N,"last":B` added at its end.
    private static func appendTagged(_ bytes: inout [UInt8], lsn: UInt64, last: Bool, to out: inout ByteBuffer) {
        bytes.removeLast()
        bytes.append(contentsOf: #","lsn":"#.utf8)
        JSONObjectWriter.appendInteger(Int64(truncatingIfNeeded: lsn), to: &bytes)
        bytes.append(contentsOf: last ? #","last":true}"#.utf8 : #","last":false}"#.utf8)
        ServerFrame.appendText(bytes, to: &out)
    }
}

/// The entries of one released batch, as a feed needs them: copied out before the writer reuses the batch.
struct FeedBatch: Sendable {
    struct Entry {
        var lsn: UInt64
        var at: Millis
        var events: Range<Int>
        /// A rejected command (not a repeat of one) and its result.
        var rejected: Refusal?

        /// `command` and its `result` when the feed may tell of them (`include_rejections`): a refusal that is not
        /// the answer to a repeated request id.
        static func refusal(_ command: Command?, _ result: CommandResult?) -> Refusal? {
            guard let command, let result, !result.ok, !result.duplicate else { return nil }
            return Refusal(command: command, result: result)
        }
    }

    /// A refused command and its result, boxed: every entry of a batch or a catch-up carries the optional, and only
    /// refusals pay for the command's and the result's bytes.
    final class Refusal: Sendable {
        let command: Command
        let result: CommandResult

        init(command: Command, result: CommandResult) {
            self.command = command
            self.result = result
        }
    }
    var events: [Event]
    var entries: [Entry]
    /// The batch's last lsn.
    var through: UInt64
    /// The journal batch that holds the entries.
    var mark: ChainMark?

    init(_ batch: Batch) {
        events = batch.events
        entries = batch.entries.map { entry in
            var command: Command?
            if case .command(let input) = entry.input { command = input }
            return Entry(
                lsn: entry.lsn, at: entry.at, events: entry.events,
                rejected: Entry.refusal(command, entry.result))
        }
        through = batch.entries.last?.lsn ?? 0
        mark = batch.journalMark
    }
}

/// Where a `subscribe_feed` starts, or why it cannot.
enum FeedStart {
    /// Live from the entry after `lsn`, after catching up from `since` when `since <= lsn`. `mark`: the journal
    /// batch that holds `lsn`. `check`: the `expect` the catch-up is to check before it sends anything (`nil` when
    /// there is none, or it was checked at registration).
    case started(lsn: UInt64, mark: ChainMark?, check: ChainMark?)
    case notRetained(oldest: UInt64)
    /// The consumer handled a history the journal does not hold; `durable`: the last lsn released to the feed.
    case diverged(FeedDivergence, durable: UInt64)
    case busy(max: Int)
}

/// How a consumer's history (its `since_lsn` and `expect`) differs from the journal's, for the message of
/// `feed_history_diverged`.
enum FeedDivergence: Equatable {
    /// `since_lsn` is past the journal's end + 1: entries the consumer handled are not in it.
    case beyondEnd(since: UInt64, durable: UInt64)
    /// The consumer saw lsn `since - 1` in the journal batch `expected`, which ends past the journal's end.
    case beyondJournal(since: UInt64, expected: ChainMark, durable: UInt64)
    /// The journal batch that holds lsn `since - 1` is `found`, not the consumer's `expected`.
    case otherBatch(since: UInt64, expected: ChainMark, found: ChainMark?)

    /// What the consumer is told: what differs, why that happens, and what to do.
    var message: String {
        let what: String
        switch self {
        case .beyondEnd(let since, let durable):
            what =
                "since_lsn \(since) is past this server's journal, which ends at lsn \(durable): lsn \(since - 1), which you handled, is not in it"
        case .beyondJournal(let since, let expected, let durable):
            what =
                "you handled lsn \(since - 1) of the journal batch that ends at lsn \(expected.lsn), and this server's journal ends at lsn \(durable)"
        case .otherBatch(let since, let expected, let found):
            let theirs =
                found.map { "ends at lsn \($0.lsn) with a chain that starts \(Self.short($0))" } ?? "is unknown"
            what =
                "you handled lsn \(since - 1) of the journal batch that ends at lsn \(expected.lsn) with a chain that starts \(Self.short(expected)); this server's batch that holds lsn \(since - 1) \(theirs)"
        }
        return what
            + ". This server's journal is not the history you handled: it lost entries it had sent (a data directory restored from a backup, or a power loss under --fsync interval or none) and went on with others, or it is another server's. What you built from the feed holds entries this server no longer has: rebuild it from an empty state (since_lsn 1)"
    }

    /// The first 16 hex digits of a mark's chain.
    private static func short(_ mark: ChainMark) -> String {
        String(SHA256Digest.hexString(mark.chain).prefix(16))
    }
}

/// The durable event feed: the subscriptions of `subscribe_feed`, the hand-off of each released batch to them, and
/// the catch-ups from the journal.
///
/// Threads: ``batchReleased(_:)`` runs where the fan-out routes (its first event loop), once per batch, in release
/// order, and takes the lock once; with no feed subscribed it only records the batch's last lsn. Registration takes
/// the same lock, which is what makes the catch-up (up to the lsn registration saw) and the live entries (after it)
/// meet with no gap and no duplicate.
///
/// `@unchecked Sendable`: its settings (directory, engine settings, limits) are written once by ``configure``,
/// before the writer starts and any session exists, and only read after; everything else is under its mutex.
public final class FeedHub: @unchecked Sendable {
    struct State {
        var subscribers: [ObjectIdentifier: FeedSubscription] = [:]
        var lastLSN: UInt64 = 0
        /// The journal batch that holds `lastLSN`; `nil` when the batches come from a sink that keeps no chain.
        var mark: ChainMark?
        var catchUps = 0

        /// Takes a catch-up's place when fewer than `max` are running.
        mutating func takeCatchUp(max: Int) -> Bool {
            guard catchUps < max else { return false }
            catchUps += 1
            return true
        }
    }

    private let state = Mutex(State())
    private var directory: DataDirectory?
    /// How far the journal appending to `directory` has written: what a catch-up reads its live segment up to.
    private var writtenEnd: JournalWrittenEnd?
    private var engine = EngineConfiguration()
    /// The most catch-ups from the journal at once.
    private(set) var maxCatchUps = 2
    /// How long a catch-up waits for its connection to write a piece before closing it as a slow consumer.
    private(set) var stallTimeoutMs = 10_000

    public init() {}

    /// Sets where catch-ups read from and the durable lsn the server starts at. Call before the writer starts.
    /// - Parameters:
    ///   - directory: the data directory (with its archive); `nil`: the feed is live only.
    ///   - writtenEnd: how far the journal appending to `directory` has written (``Journal/writtenEnd``).
    ///   - engine: the rules of an engine that replays the journal from lsn 1.
    ///   - lastLSN: the recovered journal's last lsn.
    ///   - chain: the recovered journal's chain at `lastLSN` (the end of a batch); `nil`: the journal keeps none.
    ///   - maxCatchUps: catch-ups from the journal allowed at once (each holds a copy of the state).
    ///   - stallTimeoutMs: how long a catch-up waits for its connection to write a piece before closing it.
    public func configure(
        directory: DataDirectory?, writtenEnd: JournalWrittenEnd? = nil, engine: EngineConfiguration,
        lastLSN: UInt64, chain: [UInt8]? = nil, maxCatchUps: Int, stallTimeoutMs: Int = 10_000
    ) {
        self.directory = directory
        self.writtenEnd = writtenEnd
        self.engine = engine
        self.maxCatchUps = maxCatchUps
        self.stallTimeoutMs = stallTimeoutMs
        state.withLock {
            $0.lastLSN = lastLSN
            $0.mark = chain.map { ChainMark(lsn: lastLSN, chain: $0) }
        }
    }

    /// The last lsn released to the feed.
    public var lastLSN: UInt64 { state.withLock { $0.lastLSN } }

    /// The number of feed subscriptions.
    var count: Int { state.withLock { $0.subscribers.count } }

    /// Called by the fan-out's routing before it gives the batch back. Hands `batch`'s entries to every feed
    /// subscriber; returns whether any holds them (and with them the batch's array of events) once this returns.
    func batchReleased(_ batch: Batch) -> Bool {
        guard let last = batch.entries.last?.lsn else { return false }
        let subscribers = state.withLock { s -> [FeedSubscription] in
            s.lastLSN = last
            s.mark = batch.journalMark
            return s.subscribers.isEmpty ? [] : Array(s.subscribers.values)
        }
        guard !subscribers.isEmpty else { return false }
        let captured = FeedBatch(batch)
        for subscriber in subscribers {
            subscriber.eventLoop.execute { subscriber.deliver(captured) }
        }
        return true
    }

    /// Registers `subscription`, which wants entries from `since` (`nil`: from now on), and says where it starts.
    /// `expect`, with `since`: the journal batch the consumer saw lsn `since - 1` in. It is checked here when the
    /// batch that holds the last lsn decides it (`expect` is that batch, or past it, or nothing is to be caught up);
    /// otherwise by the catch-up, which reads the batch that holds lsn `since - 1` (or starts at the snapshot that
    /// ends it) before it sends anything.
    func register(_ subscription: FeedSubscription, since: UInt64?, expect: ChainMark? = nil) -> FeedStart {
        let oldest = since.flatMap { since in directory.map { JournalReplay.oldestStart(of: $0) } } ?? 1
        return state.withLock { s in
            let from = since ?? s.lastLSN + 1
            if from > s.lastLSN + 1 {
                return .diverged(.beyondEnd(since: from, durable: s.lastLSN), durable: s.lastLSN)
            }
            var check = expect
            if let expect, let mark = s.mark {
                if expect.lsn > mark.lsn {
                    return .diverged(
                        .beyondJournal(since: from, expected: expect, durable: s.lastLSN), durable: s.lastLSN)
                }
                // The batch that holds the last lsn holds lsn `from - 1` too when it ends at `expect.lsn`, and
                // is the only one that can when nothing is to be caught up.
                if expect.lsn == mark.lsn || from == s.lastLSN + 1 {
                    guard expect == mark else {
                        return .diverged(.otherBatch(since: from, expected: expect, found: mark), durable: s.lastLSN)
                    }
                    check = nil
                }
            }
            if from <= s.lastLSN {
                guard directory != nil, from >= oldest else { return .notRetained(oldest: min(oldest, s.lastLSN + 1)) }
                guard s.takeCatchUp(max: maxCatchUps) else { return .busy(max: maxCatchUps) }
            }
            s.subscribers[ObjectIdentifier(subscription)] = subscription
            return .started(lsn: s.lastLSN, mark: s.mark, check: check)
        }
    }

    func unregister(_ subscription: FeedSubscription) {
        state.withLock { _ = $0.subscribers.removeValue(forKey: ObjectIdentifier(subscription)) }
    }

    /// A live subscription that cannot take a batch in one piece reads it from the journal instead, paced like a
    /// catch-up, when a catch-up may start now; `false` when `maxCatchUps` are running.
    func readFromDisk(_ subscription: FeedSubscription, since: UInt64, through target: UInt64) -> Bool {
        guard directory != nil else { return false }
        let started = state.withLock { $0.takeCatchUp(max: maxCatchUps) }
        if started { startCatchUp(subscription, since: since, through: target) }
        return started
    }

    /// Replays the journal from `since` to the subscription on a thread of its own, then switches it to live.
    /// `check`: the journal batch that must hold lsn `since - 1` (the consumer's `expect`); when it does not, the
    /// subscription is refused with `feed_history_diverged` before anything is sent.
    func startCatchUp(
        _ subscription: FeedSubscription, since: UInt64, through target: UInt64, check: ChainMark? = nil
    ) {
        guard let directory else { return }
        let engine = self.engine
        let stall = stallTimeoutMs
        let writtenEnd = self.writtenEnd
        let tid = startDedicatedThread("feed catch-up") { [self] in
            subscription.catchUp(
                directory: directory, writtenEnd: writtenEnd, engine: engine, since: since, through: target,
                check: check, stallTimeoutMs: stall)
            state.withLock { $0.catchUps -= 1 }
        }
        pthread_detach(tid)
    }
}

/// One connection's feed. Its state is touched only on the session's event loop, except ``cancelled``.
///
/// `@unchecked Sendable`: the catch-up threads and the fan-out's routing hold it only to hand work to its event loop
/// (`eventLoop.execute`) and to read the atomic ``cancelled``; its loop-side state is touched only there.
final class FeedSubscription: @unchecked Sendable {
    let eventLoop: EventLoop
    private weak var session: WebSocketSession?
    private weak var hub: FeedHub?
    let filter: FeedFilter
    /// The `id` of the `subscribe_feed`, for a refusal the catch-up finds.
    let requestID: String?
    /// The most bytes of live messages kept while catching up; past it they are dropped and read from disk later.
    private let bufferLimit: Int
    /// The bytes of catch-up messages handed to the connection in one piece; two pieces at most are unwritten.
    private let chunkLimit: Int
    private var encoder = FeedEncoder()
    private var live = false
    /// `feed_live` was sent: it comes once, even when a batch too big for the connection is read from disk later.
    private var announcedLive = false
    private var buffered: [ByteBuffer] = []
    private var bufferedBytes = 0
    /// Live entries were dropped while catching up: the catch-up goes on to `droppedThrough` from disk.
    private var overflowed = false
    private var droppedThrough: UInt64 = 0
    /// The last lsn of the journal batch whose `feed_mark` the live feed wrote last (a journal batch can hold several
    /// of the writer's batches: it is marked once). A catch-up from disk marks the batches it reads itself.
    private var markedThrough: UInt64 = 0
    let cancelled = Atomic<Bool>(false)

    /// - Parameter maxOutboundBytes: the connection's cap on unwritten bytes: the live messages kept while
    ///   catching up take at most half of it, the catch-up's two pieces in flight at most a quarter.
    init(
        session: WebSocketSession, hub: FeedHub, eventLoop: EventLoop, filter: FeedFilter, requestID: String? = nil,
        maxOutboundBytes: Int
    ) {
        self.session = session
        self.hub = hub
        self.eventLoop = eventLoop
        self.filter = filter
        self.requestID = requestID
        self.bufferLimit = max(1, maxOutboundBytes / 2)
        self.chunkLimit = max(1024, min(64 * 1024, maxOutboundBytes / 8))
    }

    /// Starts live at once: nothing to catch up. `mark`: the journal batch that holds `lsn`, marked first when
    /// the subscription wants marks (an empty journal has none).
    func goLive(at lsn: UInt64, mark: ChainMark?) {
        live = true
        announcedLive = true
        if filter.marks, let mark, mark.lsn > 0, let session {
            var frame = ByteBuffer()
            _ = encoder.mark(mark, into: &frame)
            markedThrough = mark.lsn
            session.sendFeed([frame], done: nil)
        }
        session?.sendFeedLive(lsn)
    }

    /// A released batch (on the event loop).
    func deliver(_ batch: FeedBatch) {
        guard !cancelled.load(ordering: .relaxed), let session else { return }
        if !live && overflowed {
            droppedThrough = batch.through
            return
        }
        var frames = ByteBuffer()
        var bytes = 0
        if filter.marks, let mark = batch.mark, mark.lsn != markedThrough {
            bytes += encoder.mark(mark, into: &frames)
            markedThrough = mark.lsn
        }
        for entry in batch.entries {
            bytes += encoder.encode(
                lsn: entry.lsn, at: entry.at, events: batch.events[entry.events], rejected: entry.rejected,
                filter: filter, into: &frames)
        }
        guard bytes > 0 else { return }
        if live && bytes > bufferLimit {
            // More than the connection may hold unread in one batch (a tick that closed thousands of listings):
            // read it from the journal in paced pieces, keeping the batches after it meanwhile.
            guard let hub, let first = batch.entries.first?.lsn,
                hub.readFromDisk(self, since: first, through: batch.through)
            else {
                return session.closeSlowFeed(
                    "slow consumer: a \(bytes)-byte batch and no free catch-up; resume subscribe_feed with since_lsn \(batch.entries.first?.lsn ?? 0)"
                )
            }
            live = false
        } else if live {
            session.sendFeed([frames], done: nil)
        } else if bufferedBytes + bytes > bufferLimit {
            overflowed = true
            droppedThrough = batch.through
            buffered = []
            bufferedBytes = 0
        } else {
            buffered.append(frames)
            bufferedBytes += bytes
        }
    }

    /// The catch-up reached `target` (on the event loop): switches to live and returns `nil`, or, when live entries
    /// were dropped meanwhile, returns the lsn to read the disk up to before trying again.
    private func reached(_ target: UInt64) -> UInt64? {
        guard let session, !cancelled.load(ordering: .relaxed) else { return nil }
        if overflowed {
            overflowed = false
            return droppedThrough
        }
        live = true
        if !announcedLive {
            announcedLive = true
            session.sendFeedLive(target)
        }
        session.sendFeed(buffered, done: nil)
        buffered = []
        bufferedBytes = 0
        return nil
    }

    /// Ends the feed: the catch-up stops at its next step.
    func cancel() {
        cancelled.store(true, ordering: .relaxed)
    }

    /// Replays the journal from `since` to `target` (and further while live entries were dropped) and sends it,
    /// never more than two pieces ahead of what the connection has written to its socket; then switches to live.
    /// With `check`, the journal batch that holds lsn `since - 1` must be it (the consumer's `expect`), else the
    /// subscription is refused with `feed_history_diverged` and nothing is sent.
    /// Runs on a thread of its own, which replays; a second thread encodes what it replayed (``encodeCatchUp``),
    /// so the two halves of a catch-up run side by side on two cores, at most ``CatchUpQueue/capacity`` pieces
    /// apart.
    func catchUp(
        directory: DataDirectory, writtenEnd: JournalWrittenEnd?, engine: EngineConfiguration, since: UInt64,
        through start: UInt64, check: ChainMark? = nil, stallTimeoutMs: Int
    ) {
        let queue = CatchUpQueue()
        let encoded = DispatchSemaphore(value: 0)
        let encoding = startDedicatedThread("feed encode") { [self] in
            encodeCatchUp(from: queue, stallTimeoutMs: stallTimeoutMs)
            encoded.signal()
        }
        pthread_detach(encoding)
        // The piece being filled: the engine appends each entry's events to `events` itself (two variables, not
        // one struct, so that the entries can be added while the events are being appended to).
        var events: [Event] = []
        var entries: [FeedBatch.Entry] = []
        var marks: [ReplayedPiece.Mark] = []
        /// Empty lists, with room for a whole piece: no regrowth while one is filled.
        func startPiece() {
            events = []
            events.reserveCapacity(ReplayedPiece.handOverSize + 64)
            entries = []
            entries.reserveCapacity(ReplayedPiece.handOverSize)
            marks = []
        }
        startPiece()
        func handOver() {
            guard !entries.isEmpty else { return }
            queue.put(.piece(ReplayedPiece(events: events, entries: entries, marks: marks)))
            startPiece()
        }
        var target = start
        var failure: String?
        var divergence: FeedDivergence?
        var markedThrough: UInt64 = 0
        let marking = filter.marks
        do {
            let replay = try JournalReplay(
                directory: directory, from: since, engine: engine, requestsFromJournal: true,
                writtenEnd: writtenEnd)
            if let check, replay.batchMark != check {
                divergence = .otherBatch(since: since, expected: check, found: replay.batchMark)
            }
            while divergence == nil && !cancelled.load(ordering: .relaxed) {
                let more = try replay.next(upTo: target, appendingTo: &events) { lsn, at, command, result, range in
                    if marking, let mark = replay.batchMark, mark.lsn != markedThrough {
                        marks.append(ReplayedPiece.Mark(before: entries.count, mark: mark))
                        markedThrough = mark.lsn
                    }
                    entries.append(
                        FeedBatch.Entry(
                            lsn: lsn, at: at, events: range, rejected: FeedBatch.Entry.refusal(command, result)))
                }
                if more {
                    if ReplayedPiece.isFull(events: events.count, entries: entries.count) { handOver() }
                    continue
                }
                handOver()
                let flushed = DispatchSemaphore(value: 0)
                queue.put(.flush(flushed))
                flushed.wait()
                let reachedTarget = target
                let next = try eventLoop.submit { [self] in reached(reachedTarget) }.wait()
                guard let next else { break }
                target = next
            }
        } catch ReplayStartError.notRetained(let oldest) {
            failure = "the journal is no longer retained from lsn \(since): resume from lsn \(oldest) or later"
        } catch {
            failure = "the feed could not read the journal: \(error)"
        }
        queue.put(.end)
        encoded.wait()
        if let failure { eventLoop.execute { [self] in session?.endFeed(failure) } }
        if let divergence {
            eventLoop.execute { [self] in
                guard !cancelled.load(ordering: .relaxed) else { return }
                session?.refuseFeed(self, divergence, durable: start)
            }
        }
    }

    /// Encodes the pieces a catch-up replayed and hands them to the connection, never more than two pieces ahead of
    /// what it has written to its socket; a connection that writes nothing for `stallTimeoutMs` is closed as a slow
    /// consumer, which ends the catch-up. Runs on a thread of its own until it takes ``CatchUpStep/end``.
    private func encodeCatchUp(from queue: CatchUpQueue, stallTimeoutMs: Int) {
        let window = DispatchSemaphore(value: 2)
        let limit = chunkLimit
        var encoder = FeedEncoder()
        var chunk = ByteBuffer()
        /// Hands `piece` to the connection once fewer than two are unwritten, and leaves it empty.
        func send(_ piece: inout ByteBuffer) {
            guard !cancelled.load(ordering: .relaxed) else { return piece.clear() }
            if window.wait(timeout: .now() + .milliseconds(stallTimeoutMs)) == .timedOut {
                cancel()
                eventLoop.execute { [self] in
                    session?.closeSlowFeed(
                        "slow consumer: nothing read for \(stallTimeoutMs) ms; resume subscribe_feed after the last lsn you finished"
                    )
                }
                return piece.clear()
            }
            let frames = piece
            piece = ByteBuffer()
            piece.reserveCapacity(limit + 4096)
            eventLoop.execute { [self] in
                guard let session, !cancelled.load(ordering: .relaxed) else {
                    window.signal()
                    return
                }
                session.sendFeed([frames]) { window.signal() }
            }
        }
        while true {
            switch queue.take() {
            case .piece(let replayed):
                guard !cancelled.load(ordering: .relaxed) else { continue }
                var marks = replayed.marks[...]
                for (index, entry) in replayed.entries.enumerated() {
                    if let next = marks.first, next.before == index {
                        _ = encoder.mark(next.mark, into: &chunk)
                        marks.removeFirst()
                        if chunk.readableBytes >= limit { send(&chunk) }
                    }
                    _ = encoder.encode(
                        lsn: entry.lsn, at: entry.at, events: replayed.events[entry.events], rejected: entry.rejected,
                        filter: filter, into: &chunk, piece: limit, full: send)
                }
            case .flush(let done):
                if chunk.readableBytes > 0 { send(&chunk) }
                done.signal()
            case .end:
                return
            }
        }
    }
}

/// Entries a catch-up replayed, with their events, on their way from the replaying thread to the encoding one (which
/// applies the feed's filter, as for a live batch).
struct ReplayedPiece {
    /// A piece is handed over once it holds this many events or entries (or the replay reached its target): small
    /// enough to stay in the caches, big enough that the hand-off costs nothing per event.
    static let handOverSize = 1_024

    /// Whether a piece of `events` events and `entries` entries is to be handed over.
    static func isFull(events: Int, entries: Int) -> Bool { events >= handOverSize || entries >= handOverSize }

    /// A journal batch that begins (for the feed) at entry `before` of the piece: its `feed_mark` goes first.
    struct Mark {
        var before: Int
        var mark: ChainMark
    }

    var events: [Event]
    var entries: [FeedBatch.Entry]
    /// The journal batches the entries begin, in order (for a subscription that wants marks; else none).
    var marks: [Mark] = []
}

/// What a catch-up's replaying thread hands its encoding thread.
enum CatchUpStep: Sendable {
    case piece(ReplayedPiece)
    /// Send what is encoded, then signal: every entry replayed so far is on its way to the connection.
    case flush(DispatchSemaphore)
    /// No more: the encoding thread ends.
    case end
}

/// The bounded hand-off between a catch-up's two threads: `put` waits while ``capacity`` steps are waiting, `take`
/// while none is. Two semaphore operations per piece of a thousand events.
final class CatchUpQueue: Sendable {
    static let capacity = 2
    private let steps = Mutex<[CatchUpStep]>([])
    private let free = DispatchSemaphore(value: CatchUpQueue.capacity)
    private let waiting = DispatchSemaphore(value: 0)

    func put(_ step: CatchUpStep) {
        free.wait()
        steps.withLock { $0.append(step) }
        waiting.signal()
    }

    func take() -> CatchUpStep {
        waiting.wait()
        let step = steps.withLock { $0.removeFirst() }
        free.signal()
        return step
    }
}

/// A `subscribe_feed` message, read and checked.
struct FeedRequest {
    var since: UInt64?
    var filter = FeedFilter()
    /// The journal batch the consumer saw lsn `since - 1` in (`expect`), to be checked against the journal.
    var expect: ChainMark?

    /// The most `types` one request may name.
    static let maxTypes = 64

    /// The request, or the `bad_request` message that says what is wrong with it.
    static func parse(_ value: JSONValue, maxListings: Int) -> Result<FeedRequest, FeedRequestError> {
        var request = FeedRequest()
        if let field = value["since_lsn"], field != .null {
            guard case .integer(let n) = field, n >= 1 else {
                return .failure("since_lsn must be a positive integer: the first lsn wanted")
            }
            request.since = UInt64(n)
        }
        if let field = value["types"], field != .null {
            guard case .array(let items) = field, !items.isEmpty, items.count <= maxTypes else {
                return .failure("types must be a non-empty array of at most \(maxTypes) event type names")
            }
            var types = Set<String>()
            for item in items {
                guard case .string(let name) = item, FeedFilter.eventTypes.contains(name) else {
                    let given = if case .string(let name) = item { Echo.quoted(name) } else { "(not a string)" }
                    return .failure(
                        "types: unknown event type \(given); known: \(FeedFilter.eventTypes.joined(separator: ", "))")
                }
                types.insert(name)
            }
            request.filter.types = types
        }
        if let field = value["listings"], field != .null {
            guard case .array(let items) = field, !items.isEmpty, items.count <= maxListings else {
                return .failure(
                    "listings must be a non-empty array of at most \(maxListings) listing ids (--max-feed-listings)")
            }
            var listings = Set<String>()
            for item in items {
                guard case .string(let id) = item, Identifier.isValid(id) else {
                    return .failure("listings: \(CommandDecoder.identifierRule("each listing"))")
                }
                listings.insert(id)
            }
            request.filter.listings = listings
        }
        if let field = value["include_rejections"], field != .null {
            guard case .bool(let flag) = field else { return .failure("include_rejections must be true or false") }
            request.filter.includeRejections = flag
        }
        if let field = value["marks"], field != .null {
            guard case .bool(let flag) = field else { return .failure("marks must be true or false") }
            request.filter.marks = flag
        }
        if let field = value["expect"], field != .null {
            switch parseExpect(field, since: request.since) {
            case .success(let mark): request.expect = mark
            case .failure(let error): return .failure(error)
            }
        }
        return .success(request)
    }

    /// `expect`: `{"lsn":L,"chain":"<64 hex digits>"}`, the `feed_mark` the consumer had last when it handled lsn
    /// `since_lsn - 1`, so `L` is at least that lsn.
    static func parseExpect(_ field: JSONValue, since: UInt64?) -> Result<ChainMark, FeedRequestError> {
        let shape =
            #"expect must be the last feed_mark you had at lsn since_lsn - 1: {"lsn":L,"chain":"<64 hex digits>"}"#
        guard case .object = field, case .integer(let lsn)? = field["lsn"], lsn >= 1,
            case .string(let hex)? = field["chain"], let chain = SHA256Digest.bytes(hex: hex)
        else { return .failure("\(shape)") }
        guard let since, since >= 2 else {
            return .failure("expect needs a since_lsn of 2 or more: it names the journal batch of lsn since_lsn - 1")
        }
        guard UInt64(lsn) >= since - 1 else {
            return .failure(
                "expect.lsn \(lsn) is before since_lsn - 1 (\(since - 1)): a feed_mark comes before the messages of its batch, so the one you had at lsn \(since - 1) ends at or after it"
            )
        }
        return .success(ChainMark(lsn: UInt64(lsn), chain: chain))
    }
}

/// Why a `subscribe_feed` message is refused, for its `bad_request`.
struct FeedRequestError: Error, ExpressibleByStringLiteral, ExpressibleByStringInterpolation {
    var message: String
    init(stringLiteral value: String) { message = value }
    init(stringInterpolation: DefaultStringInterpolation) { message = String(stringInterpolation: stringInterpolation) }
}
