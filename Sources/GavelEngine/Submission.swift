import CGavelShims
import GavelCore
import Synchronization

/// A command on its way to the writer: the envelope that links into a listing's queue, and the note of who waits
/// for its result. The result is not a closure.
///
/// Submissions are reused: the thread that submits keeps, in its producer cache, the submissions whose results it
/// delivered and that nothing else holds any more (``recycle(_:)``), and its next submits fill those in place of
/// new ones, so that a warm gateway allocates nothing per command (a new object for each command was its one
/// allocation, and its `free` on another thread).
///
/// `@unchecked Sendable`: its link is atomic (of a pointer, which is not `Sendable`); the other fields are written
/// only by the thread that makes or refills it, before it is offered to a queue (which publishes them), and a
/// refill happens only when that thread holds the only reference (``recycle(_:)`` checks it).
public final class Submission: MPSCNode, @unchecked Sendable {
    public let next = Atomic<UnsafeMutableRawPointer?>(nil)
    /// Computed by the producer that makes the submission, so the writer does not. Declared right after the link
    /// so that both lie in the object's first 64 bytes, the two cache lines at most that the writer's prefetch of a
    /// coming command loads (``prefetchHead(_:)``): its next stage reads the digest.
    private(set) var digest: CommandDigest
    public private(set) var command: Command
    /// Who the result goes back to, found by the ``ReleaseObserver`` in the released batch; `nil`: nobody waits.
    public fileprivate(set) var recipient: (any ResultRecipient)?
    /// When the producer took the command (monotonic ns, 0 when not measured), for the recipient's latency figures.
    public private(set) var started: UInt64
    /// Whether ``recipient`` is the writer's own ``AwaitedResult``, resumed by the writer at release.
    private(set) var awaited: Bool

    /// Starts loading the link and the digest of the submission at `node`: its first 64 bytes, one cache line or the
    /// two it straddles (an object starts on 16 bytes, not on 64). A hint only.
    @inline(__always)
    static func prefetchHead(_ node: UnsafeMutableRawPointer) {
        gavel_prefetch_for_read(node)
        gavel_prefetch_for_read(node + 63)
    }

    public init(_ command: Command, recipient: (any ResultRecipient)?, started: UInt64 = 0) {
        self.command = command
        self.digest = CommandDigest(command)
        self.recipient = recipient
        self.started = started
        self.awaited = false
    }

    init(_ command: Command, awaiting: AwaitedResult) {
        self.command = command
        self.digest = CommandDigest(command)
        self.recipient = awaiting
        self.started = 0
        self.awaited = true
    }

    /// Calls `body` with the command, borrowed in place, and its digest. Read through the property instead
    /// (`submission.command` as an argument, or `submission.command.kind`), the command was copied for the call (each
    /// of its strings retained, its body's payload too) and destroyed after it: a class's stored property may change
    /// while a call runs, so its value is copied out first. Held in an `inout` access for the call, it cannot.
    @inline(__always)
    public func withCommand<R>(_ body: (Command, CommandDigest) -> R) -> R { Self.lend(&command, digest, body) }

    @inline(__always)
    private static func lend<R>(
        _ command: inout Command, _ digest: CommandDigest, _ body: (Command, CommandDigest) -> R
    ) -> R { body(command, digest) }

    /// Makes this spare (held by the calling thread alone) the submission of `command`.
    @inline(__always)
    fileprivate func refill(_ command: consuming Command, recipient: (any ResultRecipient)?, started: UInt64) {
        self.command = command
        self.digest = CommandDigest(self.command)
        self.recipient = recipient
        self.started = started
    }

    /// Keeps each of `spent` that nothing else references any more (its result delivered, its batch reset) for the
    /// calling thread's next submits, up to ``SubmissionSpares/limit``; the others are only let go. Empties `spent`.
    /// Call it on the thread that submitted them (a gateway's event loop, after delivering their results), and once
    /// the batches that held them were given back: a submission still referenced elsewhere is never reused.
    public static func recycle(_ spent: inout [Submission]) {
        guard let spares = ProducerCache.existing()?.spares else {
            spent.removeAll(keepingCapacity: true)
            return
        }
        spares.keep(&spent)
    }
}

/// The submissions one producer thread may fill again (in its ``ProducerCache``).
final class SubmissionSpares {
    /// The most spares a thread keeps: enough for the commands one event loop has in flight under a heavy pipelined
    /// load (16 connections × 16, or 1,000 × 1); beyond it, a spent submission is freed.
    static let limit = 1_024
    private var spares: [Submission] = []

    /// A submission of `command`: a spare filled again, or a new one.
    @inline(__always)
    func submission(_ command: consuming Command, recipient: (any ResultRecipient)?, started: UInt64) -> Submission {
        guard let spare = spares.popLast() else { return Submission(command, recipient: recipient, started: started) }
        spare.refill(command, recipient: recipient, started: started)
        return spare
    }

    /// Moves each of `spent` that is referenced by nothing else into the spares; see ``Submission/recycle(_:)``.
    func keep(_ spent: inout [Submission]) {
        while var submission = spent.popLast() {
            guard spares.count < Self.limit else { continue }
            // Popped, the array no longer holds it: unique means no batch, queue or result holds it either.
            guard isKnownUniquelyReferenced(&submission), !submission.awaited else { continue }
            // Its recipient (a session) is not kept alive by a spare.
            submission.recipient = nil
            spares.append(submission)
        }
    }
}
