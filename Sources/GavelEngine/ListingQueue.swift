import GavelCore
import Synchronization

/// One listing's bounded command queue and its place on the writer's ready list.
///
/// Contract: any number of producers call ``offer(_:)``; only the writer dequeues. A listing is on the ready list
/// at most once however many commands it has (`scheduled` is the token of that membership).
public final class ListingQueue: MPSCNode, @unchecked Sendable {
    public let listing: String
    let commands = IntrusiveMPSCQueue<Submission>()
    /// Commands offered and not yet taken by the writer; bounds the queue.
    let pending = Atomic<Int>(0)
    /// Whether the listing is on the ready list (or being served by the writer, which will reschedule it).
    let scheduled = Atomic<Bool>(false)
    let capacity: Int
    /// Set once the writer has freed the queue (its listing does not exist and nothing waits in it); then nothing may
    /// be offered to it any more. Read and written only under the writer's queue-map mutex.
    var retired = false

    init(listing: String, capacity: Int) {
        self.listing = listing
        self.capacity = capacity
    }

    /// The number of commands waiting.
    public var depth: Int { pending.load(ordering: .relaxed) }

    /// Enqueues `submission` unless the queue is full. Never blocks.
    ///
    /// - Returns: `false` when the queue already holds `capacity` commands: nothing was enqueued.
    func offer(_ submission: Submission) -> Bool {
        let count = pending.wrappingAdd(1, ordering: .sequentiallyConsistent).newValue
        if count > capacity {
            pending.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        commands.push(submission)
        return true
    }

    /// Claims the right to put this listing on the ready list. Exactly one caller wins until the writer
    /// releases it with ``unschedule()``.
    func claimSchedule() -> Bool {
        scheduled.compareExchange(expected: false, desired: true, ordering: .sequentiallyConsistent).exchanged
    }

    /// Writer only: takes the listing off the ready list.
    func unschedule() {
        scheduled.store(false, ordering: .sequentiallyConsistent)
    }
}
