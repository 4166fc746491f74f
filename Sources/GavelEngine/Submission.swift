import GavelCore
import Synchronization

/// A command on its way to the writer: the envelope that links into a listing's queue, and the note of who waits
/// for its result. It is the only allocation per submitted command: the result is not a closure.
///
/// `@unchecked Sendable`: its link is atomic (of a pointer, which is not `Sendable`) and every other field is
/// immutable.
public final class Submission: MPSCNode, @unchecked Sendable {
    public let next = Atomic<UnsafeMutableRawPointer?>(nil)
    public let command: Command
    /// Computed by the producer that makes the submission, so the writer does not.
    let digest: CommandDigest
    /// Who the result goes back to, found by the ``ReleaseObserver`` in the released batch; `nil`: nobody waits.
    public let recipient: (any ResultRecipient)?
    /// When the producer took the command (monotonic ns, 0 when not measured), for the recipient's latency figures.
    public let started: UInt64
    /// Whether ``recipient`` is the writer's own ``AwaitedResult``, resumed by the writer at release.
    let awaited: Bool

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
}
