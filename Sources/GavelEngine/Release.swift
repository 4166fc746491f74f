import GavelCore
import Synchronization

/// Receives every durable batch: the one wire from the writer back to the rest of the process.
///
/// A batch holds, in `lsn` order, each entry's command (through its ``Submission``, with the recipient its result
/// goes back to), its result and the range of its events; and every event the batch emitted. The observer routes
/// results and events wherever they go (the gateway's fan-out hands them to its event loops), in one pass.
///
/// Contract: ``released(_:endsGroup:)`` is called on the thread that releases batches (the journal's, or the
/// writer's with a sink that does not wait), one batch at a time, in order, once the batch is durable. It must not
/// block. `endsGroup` is `true` for the last batch of a group that one `fdatasync` made durable: an observer that
/// hands work to other threads hands it over once per group.
///
/// An observer that does not ``keepsBatches`` must not keep the batch: the writer reuses it once the call returns.
/// One that does may hand the batch to another thread and must give it back with ``Batch/recycle()`` when done; the
/// writer no longer touches a batch once it has handed it to such an observer.
public protocol ReleaseObserver: AnyObject, Sendable {
    func released(_ batch: Batch, endsGroup: Bool)

    /// Whether the observer gives each released batch back itself (``Batch/recycle()``); read once, when the writer
    /// is made. `false` unless the observer says otherwise.
    var keepsBatches: Bool { get }
}

extension ReleaseObserver {
    public var keepsBatches: Bool { false }
}

/// Who a submitted command's result goes back to. The writer never looks inside: it keeps the recipient with the
/// command (``Submission/recipient``) and the ``ReleaseObserver`` finds it in the released batch. A gateway
/// session is one; so is a test's recorder.
public protocol ResultRecipient: AnyObject, Sendable {}

/// The recipient of ``Writer/submit(_:)``: the writer resumes it itself once the batch is released.
final class AwaitedResult: ResultRecipient, Sendable {
    let continuation: CheckedContinuation<(result: CommandResult, lsn: UInt64?), Never>

    init(_ continuation: CheckedContinuation<(result: CommandResult, lsn: UInt64?), Never>) {
        self.continuation = continuation
    }
}

/// An observer that counts the released results of the commands sent to it (`replyTo:` it), for benchmarks and
/// tools that need to know only how many came back.
public final class ResultCount: ReleaseObserver, ResultRecipient {
    private let released = Atomic<Int>(0)

    public init() {}

    /// The results released so far.
    public var value: Int { released.load(ordering: .acquiring) }

    public func released(_ batch: Batch, endsGroup: Bool) {
        var found = 0
        batch.forEachResult(of: self) { _, _, _ in found += 1 }
        released.wrappingAdd(found, ordering: .releasing)
    }
}
