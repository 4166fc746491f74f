import GavelCore
import Synchronization

/// What one journal entry applied: a client command, or the clock moving far enough to fire timers.
public enum AppliedInput: Sendable {
    case command(Command)
    /// The engine clock moved to the entry's time and fired the timers due (their events are the entry's events).
    case tick
}

/// One applied entry of a batch: its global `lsn`, engine time, input, result, and the range of its events in
/// ``Batch/events``.
///
/// An entry holds its command through the ``Submission`` it came in (one reference), not a copy of the command: a
/// copy would retain and release every string of the command once more per entry.
public struct BatchEntry: Sendable {
    public var lsn: UInt64
    public var at: Millis
    /// The result as the engine keeps it (24 bytes, see ``PackedResult``); `nil` for ticks.
    public var packedResult: PackedResult?
    public var events: Range<Int>
    /// The command and who its result goes back to (``Submission/recipient``); `nil` for ticks.
    public internal(set) var submission: Submission?

    /// A tick: the clock moved to `at` and fired the timers whose events are `events`.
    init(tick lsn: UInt64, at: Millis, events: Range<Int>) {
        self.lsn = lsn
        self.at = at
        self.packedResult = nil
        self.events = events
        self.submission = nil
    }

    /// The command of `submission`, applied at `at` with `result`.
    init(lsn: UInt64, at: Millis, submission: Submission, result: CommandResult, events: Range<Int>) {
        self.lsn = lsn
        self.at = at
        self.packedResult = PackedResult(result)
        self.events = events
        self.submission = submission
    }

    /// The command's result; `nil` for ticks.
    public var result: CommandResult? { packedResult?.result }

    /// What the entry applied.
    public var input: AppliedInput {
        if let submission { .command(submission.command) } else { .tick }
    }
}

/// A command the writer took from its listing's queue but did not apply: the listing was not in the engine when its
/// turn came (the turn's timers had just evicted it, or the `open` before it was refused). It gets the engine's own
/// answer for a listing it does not hold (``Engine/answerWithoutListing(_:now:)``), as one submitted when its listing
/// has no queue does, and like that one it is not an entry: it has no `lsn`, is not journaled and is not remembered,
/// so its request id may be sent again and is applied normally once the listing is open. Only its result goes back.
public struct UnappliedCommand: Sendable {
    /// The command and who its result goes back to.
    public let submission: Submission
    public let result: CommandResult
    /// The number of the batch's entries taken before it: its result goes back after theirs and before the others'.
    public let position: Int
}

/// Where the journal's history stands at the end of one of its batches (the records of one frame, see
/// docs/STORAGE.md): the batch's last lsn and the SHA-256 chain there, which covers every record up to it. Two
/// journals with the same mark hold the same entries, in the same batches, up to its lsn.
public struct ChainMark: Sendable, Equatable {
    /// The last lsn of the journal batch.
    public var lsn: UInt64
    /// The journal's chain after that batch (32 bytes).
    public var chain: [UInt8]

    public init(lsn: UInt64, chain: [UInt8]) {
        self.lsn = lsn
        self.chain = chain
    }
}

/// A group of applied commands that becomes durable together (group commit). Entries are in `lsn` order; every
/// event of the batch is in ``events`` in the order the engine emitted it. The commands taken but not applied
/// (``unapplied``) are no entries: only their results go back, in the order the writer took the commands.
///
/// Batches are recycled: a sink must not keep a reference after it has released the batch, nor an observer after
/// it gave it back (``recycle()``, or the writer's own recycling for an observer that does not keep batches).
///
/// `@unchecked Sendable`: a batch has one owner at a time, handed over whole: the writer fills it, the sink holds it
/// until it is durable, the observer reads it during its release (or after, on the thread it handed the batch to,
/// when it ``ReleaseObserver/keepsBatches``), and the batch goes back into its writer's pool (under the pool's
/// mutex). No two threads use it at once.
public final class Batch: @unchecked Sendable {
    public internal(set) var entries: [BatchEntry] = []
    public internal(set) var events: [Event] = []
    /// The commands taken but not applied, in the order taken; empty but when a listing left the engine with
    /// commands for it still queued. Nothing of them is journaled.
    public internal(set) var unapplied: [UnappliedCommand] = []
    /// A number that orders batches: they are released strictly in this order.
    public internal(set) var number: UInt64 = 0
    /// The journal batch that holds this batch's entries, set by a sink that journals them before it releases the
    /// batch (several of the writer's batches may go in one journal batch); `nil` from a sink that keeps no chain.
    public var journalMark: ChainMark?
    /// Commands (entries or unapplied) submitted with ``Writer/submit(_:)``, whose results the writer hands back
    /// itself.
    var awaited = 0
    /// The pool the batch goes back to (`nil` once its writer is gone).
    private weak var home: BatchPool?

    init(capacity: Int, home: BatchPool? = nil) {
        self.home = home
        entries.reserveCapacity(capacity)
        events.reserveCapacity(capacity * 4)
    }

    /// Gives the batch back to its writer for reuse: for an observer that ``ReleaseObserver/keepsBatches``, once it
    /// is done with it (on any thread). The batch must not be used afterwards.
    public func recycle() {
        reset()
        home?.put(self)
    }

    /// The `lsn` of the first and last entries.
    public var lsnRange: ClosedRange<UInt64>? {
        guard let first = entries.first, let last = entries.last else { return nil }
        return first.lsn...last.lsn
    }

    /// Calls `body` with the command, the result and the `lsn` (`nil` for an unapplied command) of each command
    /// whose result goes back to `recipient` (``Submission/recipient``), in the order the writer took them: what an
    /// observer that is also the recipient of its commands needs.
    public func forEachResult(
        of recipient: any ResultRecipient, _ body: (_ command: Command, CommandResult, _ lsn: UInt64?) -> Void
    ) {
        forEachTaken(
            entry: { position in
                // Field by field: copying a whole entry would retain and release its submission and result once more.
                guard let submission = entries[position].submission, submission.recipient === recipient,
                    let result = entries[position].result
                else { return }
                let lsn = entries[position].lsn
                submission.withCommand { command, _ in body(command, result, lsn) }
            },
            unapplied: { submission, result in
                if submission.recipient === recipient {
                    submission.withCommand { command, _ in body(command, result, nil) }
                }
            })
    }

    /// Walks the commands the writer took, in the order it took them: `entry` with the position of each entry in
    /// ``entries``, and `unapplied` with the submission and result of each command it took but did not apply
    /// (``unapplied``), each in its place among them. With no unapplied command it costs one compare an entry.
    @inline(__always)
    public func forEachTaken(entry: (Int) -> Void, unapplied notApplied: (Submission, CommandResult) -> Void) {
        var next = 0
        for position in entries.indices {
            while next < unapplied.count && unapplied[next].position <= position {
                notApplied(unapplied[next].submission, unapplied[next].result)
                next += 1
            }
            entry(position)
        }
        while next < unapplied.count {
            notApplied(unapplied[next].submission, unapplied[next].result)
            next += 1
        }
    }

    /// Hands `body` a function that moves the batch's event at an index out of the batch (each at most once), for
    /// the last reader of a batch during its release: the events are moved, not copied (a copy retains and releases
    /// every string an event holds). The batch keeps the array's storage for its next use and holds no event
    /// afterwards. Each event taken leaves a placeholder that holds nothing to release; reversing the array so that
    /// `removeLast()` could take them in order copied every event (the standard library's `reverse()` of an array of
    /// non-trivial values swapped them through copies).
    public func consumeEvents(_ body: (_ take: (Int) -> Event) -> Void) {
        var taken: [Event] = []
        swap(&taken, &events)
        taken.withUnsafeMutableBufferPointer { buffer in
            body { index in
                var event = Self.placeholder
                swap(&buffer[index], &event)
                return event
            }
        }
        taken.removeAll(keepingCapacity: true)
        swap(&taken, &events)
    }

    /// What ``consumeEvents(_:)`` leaves where it took an event: no string with storage, nothing boxed.
    private static let placeholder = Event(listing: "", seq: 0, at: 0, kind: .extended(closesAt: 0))

    /// Appends the entry of `submission`'s command, applied at `at` with `result` and the events from `eventsFrom`
    /// to the end of ``events``. The submission is moved into the entry, not copied: a copy retained it once more,
    /// and released it again. The entry is appended without it and it is moved into it in place: appending the
    /// whole entry, the compiler copied it into the array and destroyed the original.
    @inline(__always)
    func appendEntry(
        lsn: UInt64, at: Millis, submission: consuming Submission, result: PackedResult, eventsFrom: Int
    ) {
        entries.append(BatchEntry(tick: lsn, at: at, events: eventsFrom..<events.count))
        let last = entries.count - 1
        entries[last].submission = consume submission
        entries[last].packedResult = result
    }

    func reset() {
        entries.removeAll(keepingCapacity: true)
        events.removeAll(keepingCapacity: true)
        unapplied.removeAll(keepingCapacity: true)
        awaited = 0
        journalMark = nil
    }
}

/// The writer's spare batches: one is taken per turn and put back once released, so a running writer allocates
/// none (the pool holds as many as were ever in flight at once).
final class BatchPool: Sendable {
    private let spare = Mutex<[Batch]>([])
    private let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    func take() -> Batch {
        spare.withLock { $0.popLast() } ?? Batch(capacity: capacity, home: self)
    }

    /// Takes back `batch`, already reset.
    func put(_ batch: Batch) {
        spare.withLock { $0.append(batch) }
    }
}

/// Called by a ``BatchSink`` once a batch is durable. `endsGroup` is `false` when the sink goes on at once to release
/// the next batch, made durable together with this one (one `fdatasync` covered both), and `true` for the last
/// batch of such a group: a receiver that hands results to other threads can hand over once per group.
public typealias BatchRelease = @Sendable (_ batch: Batch, _ endsGroup: Bool) -> Void

/// Where the writer hands each batch to be made durable: the journal, or ``InMemorySink`` in tests.
///
/// Contract: ``write(_:release:)`` is called on the writer thread, one batch at a time in order. The sink must
/// call `release` exactly once per batch, in the same order, once the batch is durable under its policy; it may
/// do so on any thread, and before returning from `write` (a sink with nothing to wait for). A batch released with
/// `endsGroup` false is followed by the next release on the same thread without waiting for anything.
public protocol BatchSink: AnyObject, Sendable {
    func write(_ batch: Batch, release: @escaping BatchRelease)
    /// Blocks until every batch written so far has been released.
    func flush()
}

/// A sink that keeps nothing and releases every batch at once: for tests and benchmarks, and for engines that
/// need no durability.
public final class InMemorySink: BatchSink {
    public init() {}

    public func write(_ batch: Batch, release: @escaping BatchRelease) {
        release(batch, true)
    }

    public func flush() {}
}

/// Receives snapshot points: the writer copies nothing, the receiver rebuilds the state at the point itself (the
/// journal's checkpointer replays the durable journal into a shadow engine).
///
/// Contract: ``snapshot(lsn:now:pauseNanos:)`` is called on the writer thread right after the batch whose last entry
/// is `lsn` was handed to the batch sink; the receiver must persist the snapshot only once that batch is durable.
/// The writer's clock at that point is `now`, and is the time of entry `lsn` (the writer journals a `tick` first when
/// its clock moved with nothing journaled), so replaying the journal to `lsn` reaches the writer's state exactly.
public protocol SnapshotSink: AnyObject, Sendable {
    /// `now` is the engine clock at `lsn`; `pauseNanos` is how long the writer stopped for the snapshot point.
    func snapshot(lsn: UInt64, now: Millis, pauseNanos: UInt64)
}
