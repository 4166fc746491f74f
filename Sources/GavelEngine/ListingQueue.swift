import GavelCore
import Synchronization

/// One listing's bounded command queue and its place on the writer's ready list.
///
/// Contract: any number of producers call ``offer(_:)``; only the writer dequeues, and only the writer frees the
/// queue (``retireIfEmpty()``). A listing is on the ready list at most once however many commands it has
/// (`scheduled` is the token of that membership).
///
/// `@unchecked Sendable`: producers touch only the queue and the atomics; `handle` is the writer's alone.
public final class ListingQueue: MPSCNode, @unchecked Sendable {
    public let next = Atomic<UnsafeMutableRawPointer?>(nil)
    public let listing: String
    let commands = MPSCLinks<Submission>()
    /// Commands offered and not yet taken by the writer; bounds the queue. Far below zero once the queue is freed.
    let pending = Atomic<Int>(0)
    /// Whether the listing is on the ready list (or being served by the writer, which will reschedule it).
    let scheduled = Atomic<Bool>(false)
    let capacity: Int
    /// Writer only: the engine's handle on the listing, so that applying a command skips the lookup by id.
    var handle: ListingHandle? {
        didSet { addresses = handle?.addresses }
    }
    /// Writer only: where ``handle``'s listing is, for prefetching it a command ahead without retaining it.
    private(set) var addresses: ListingAddresses?

    init(listing: String, capacity: Int) {
        self.listing = listing
        self.capacity = capacity
    }

    /// What ``offer(_:)`` did.
    enum Offer {
        case accepted
        /// The queue holds `capacity` commands already.
        case full
        /// The writer has freed the queue: nothing may be offered to it any more.
        case retired
    }

    /// The value of `pending` that marks a freed queue: so far below zero that producers' increments cannot lift it.
    private static let retiredMark = Int.min / 2

    /// The number of commands waiting.
    public var depth: Int { max(0, pending.load(ordering: .relaxed)) }

    /// Whether the writer has freed the queue.
    var isRetired: Bool { pending.load(ordering: .acquiring) < 0 }

    /// Enqueues `submission` unless the queue is full or freed. Never blocks.
    func offer(_ submission: Submission) -> Offer {
        let count = pending.wrappingAdd(1, ordering: .sequentiallyConsistent).newValue
        if count <= 0 {
            pending.wrappingSubtract(1, ordering: .relaxed)
            return .retired
        }
        if count > capacity {
            pending.wrappingSubtract(1, ordering: .relaxed)
            return .full
        }
        commands.push(submission)
        return .accepted
    }

    /// Writer only: marks the queue freed if nothing is waiting in it or being offered to it. One atomic
    /// compare-exchange against the producers' increments, so a producer either got in first (and the queue stays)
    /// or sees ``Offer/retired`` and looks the listing up again.
    func retireIfEmpty() -> Bool {
        pending.compareExchange(expected: 0, desired: Self.retiredMark, ordering: .sequentiallyConsistent).exchanged
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
