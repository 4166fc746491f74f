/// What a timer does when it fires.
public enum TimerAction: Sendable, Hashable {
    /// Close the listing, if it still closes at this time.
    case close
    /// Step the Dutch clock, if this is still the listing's next step.
    case dutchStep
    /// Expire a resting market order.
    case expire(trader: String, order: String)
    /// Remove the listing from memory, if it is still closed (its retention is over).
    case evict
    /// A settlement's deadline, if the settlement is still in the state it was set for and due at this time.
    case settlementDue(number: Int64)
    /// The listing's second-chance offer's deadline, if it is still offered.
    case offerDue
    /// Drop the listing's terminal settlements whose retention is over from memory.
    case prune
}

/// A scheduled timer. Timers fire in `(time, sequence)` order; the sequence number is the order of scheduling, so
/// the firing order is fully deterministic.
public struct ScheduledTimer: Sendable, Hashable {
    public var time: Millis
    public var sequence: UInt64
    public var listing: String
    public var action: TimerAction

    @inlinable
    func fires(before other: ScheduledTimer) -> Bool {
        time != other.time ? time < other.time : sequence < other.sequence
    }
}

/// A binary min-heap of timers: O(log n) insert and pop, memory proportional to the number of timers.
///
/// Timers are never removed early: a timer that no longer applies (a close that was extended, an order that
/// filled) is recognised as stale when it fires and skipped.
public struct TimerQueue: Sendable {
    @usableFromInline var heap: [ScheduledTimer] = []
    /// The sequence number the next scheduled timer gets.
    public private(set) var nextSequence: UInt64 = 0

    public init() {}

    /// The number of scheduled timers, stale ones included.
    public var count: Int { heap.count }

    /// The time of the earliest timer, if any.
    public var nextTime: Millis? { heap.first?.time }

    /// Every scheduled timer in firing order (for state encoding).
    public var ordered: [ScheduledTimer] { heap.sorted { $0.fires(before: $1) } }

    /// Schedules `action` on `listing` at `time`.
    public mutating func schedule(_ action: TimerAction, listing: String, at time: Millis) {
        heap.append(ScheduledTimer(time: time, sequence: nextSequence, listing: listing, action: action))
        nextSequence &+= 1
        siftUp(heap.count - 1)
    }

    /// Restores a timer exactly as it was scheduled (used when loading a saved state).
    public mutating func restore(_ timer: ScheduledTimer, nextSequence: UInt64) {
        heap.append(timer)
        siftUp(heap.count - 1)
        self.nextSequence = nextSequence
    }

    /// Sets the sequence number the next scheduled timer gets (used when loading a saved state).
    public mutating func restore(nextSequence: UInt64) {
        self.nextSequence = nextSequence
    }

    /// Removes and returns the earliest timer if it is due at or before `time`.
    public mutating func popDue(atOrBefore time: Millis) -> ScheduledTimer? {
        guard let first = heap.first, first.time <= time else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            siftDown(0)
        }
        return first
    }

    private mutating func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].fires(before: heap[parent]) else { return }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        let count = heap.count
        while true {
            let left = 2 * parent + 1
            if left >= count { return }
            var best = left
            let right = left + 1
            if right < count && heap[right].fires(before: heap[left]) { best = right }
            guard heap[best].fires(before: heap[parent]) else { return }
            heap.swapAt(parent, best)
            parent = best
        }
    }
}
