/// What a timer does when it fires.
public enum TimerAction: Sendable, Hashable {
    /// Close the listing, if it still closes at this time.
    case close
    /// Step the Dutch clock, if this is still the listing's next step.
    case dutchStep
    /// Expire a resting market order. Boxed (`indirect`): its two strings would make every timer in the queue,
    /// a listing's close among them, 24 bytes larger (a ``ScheduledTimer`` of 72 bytes instead of 48).
    indirect case expire(trader: String, order: String)
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
    /// Its slot in the queue's table of positions (what a ``TimerHandle`` names); not part of the state.
    var slot: Int32 = -1

    public init(time: Millis, sequence: UInt64, listing: String, action: TimerAction) {
        self.time = time
        self.sequence = sequence
        self.listing = listing
        self.action = action
    }

    @inlinable
    func fires(before other: ScheduledTimer) -> Bool {
        time != other.time ? time < other.time : sequence < other.sequence
    }

    /// Equal when they are the same timer; where the queue keeps it (`slot`) is not part of it.
    public static func == (a: ScheduledTimer, b: ScheduledTimer) -> Bool {
        a.time == b.time && a.sequence == b.sequence && a.listing == b.listing && a.action == b.action
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(time)
        hasher.combine(sequence)
        hasher.combine(listing)
        hasher.combine(action)
    }
}

/// Names a scheduled timer, to cancel it: its slot, and the low 32 bits of its sequence number, which tell whether
/// the slot still holds it (a timer that fired or was cancelled frees its slot for a later one). 8 bytes, kept in
/// every resting order.
///
/// Whoever keeps a handle lets go of it when its timer fires (an order leaves the book when its expiry fires; a
/// listing forgets its close timer when it fires), so a handle is never held while its slot is reused for 2^32
/// later timers, which is what it would take for it to name another timer.
public struct TimerHandle: Sendable, Hashable {
    var slot: Int32
    var check: UInt32

    /// No timer: cancelling it does nothing.
    public static let none = TimerHandle(slot: -1, sequence: 0)

    init(slot: Int32, sequence: UInt64) {
        self.slot = slot
        check = UInt32(truncatingIfNeeded: sequence)
    }

    /// The handle of `timer`, as its queue gave it out.
    init(_ timer: ScheduledTimer) { self.init(slot: timer.slot, sequence: timer.sequence) }
}

/// A binary min-heap of timers: O(log n) insert, pop and cancel, memory proportional to the number of timers.
///
/// A timer that stops applying when something else happens is cancelled then (a resting order's expiry when the
/// order leaves the book, a dutch clock's step when the listing sells out or closes, a settlement's deadline when
/// it moves on, an offer's when it is answered, and every timer of a listing when the listing is evicted), so
/// timers do not pile up for as long as their times are away (an order cancelled at once but expiring in a year
/// kept its timer for the year), and none fires for a listing opened later under the same id. A close moved by
/// soft close is recognised as stale when it fires (soon) and skipped.
public struct TimerQueue: Sendable {
    @usableFromInline var heap: [ScheduledTimer] = []
    /// Where each slot's timer is in `heap`, -1 for a free slot.
    private var positions: [Int32] = []
    /// Free slots, reused before new ones.
    private var freeSlots: [Int32] = []
    /// The sequence number the next scheduled timer gets.
    public private(set) var nextSequence: UInt64 = 0

    public init() {}

    /// The number of scheduled timers, stale ones included.
    public var count: Int { heap.count }

    /// The time of the earliest timer, if any.
    public var nextTime: Millis? { heap.first?.time }

    /// Every scheduled timer in firing order (for state encoding).
    public var ordered: [ScheduledTimer] { heap.sorted { $0.fires(before: $1) } }

    /// Schedules `action` on `listing` at `time`; returns the handle that cancels it.
    @discardableResult
    public mutating func schedule(_ action: TimerAction, listing: String, at time: Millis) -> TimerHandle {
        let handle = add(ScheduledTimer(time: time, sequence: nextSequence, listing: listing, action: action))
        nextSequence &+= 1
        return handle
    }

    /// Restores a timer exactly as it was scheduled (used when loading a saved state).
    @discardableResult
    public mutating func restore(_ timer: ScheduledTimer, nextSequence: UInt64) -> TimerHandle {
        self.nextSequence = nextSequence
        return add(timer)
    }

    /// Sets the sequence number the next scheduled timer gets (used when loading a saved state).
    public mutating func restore(nextSequence: UInt64) {
        self.nextSequence = nextSequence
    }

    /// Makes room for `count` timers (a restore knows how many it restores).
    public mutating func reserveCapacity(_ count: Int) {
        heap.reserveCapacity(count)
        positions.reserveCapacity(count)
    }

    /// Whether the timer of `handle` is still scheduled.
    public func isScheduled(_ handle: TimerHandle) -> Bool { position(of: handle) != nil }

    /// Cancels the timer of `handle`; nothing when it already fired or was cancelled, or for ``TimerHandle/none``.
    public mutating func cancel(_ handle: TimerHandle) {
        guard let position = position(of: handle) else { return }
        free(heap[position].slot)
        let last = heap.removeLast()
        guard position < heap.count else { return }
        place(last, at: position)
        siftUp(position)
        if positions[Int(last.slot)] == Int32(position) { siftDown(position) }
    }

    /// Removes and returns the earliest timer if it is due at or before `time`.
    public mutating func popDue(atOrBefore time: Millis) -> ScheduledTimer? {
        guard let first = heap.first, first.time <= time else { return nil }
        free(first.slot)
        let last = heap.removeLast()
        if !heap.isEmpty {
            place(last, at: 0)
            siftDown(0)
        }
        return first
    }

    private func position(of handle: TimerHandle) -> Int? {
        guard handle.slot >= 0, Int(handle.slot) < positions.count else { return nil }
        let position = Int(positions[Int(handle.slot)])
        guard position >= 0, TimerHandle(heap[position]) == handle else { return nil }
        return position
    }

    private mutating func add(_ timer: ScheduledTimer) -> TimerHandle {
        var timer = timer
        if let slot = freeSlots.popLast() {
            timer.slot = slot
        } else {
            precondition(positions.count < Int32.max, "more timers than a 32-bit slot names")
            timer.slot = Int32(positions.count)
            positions.append(-1)
        }
        heap.append(timer)
        positions[Int(timer.slot)] = Int32(heap.count - 1)
        siftUp(heap.count - 1)
        return TimerHandle(timer)
    }

    private mutating func free(_ slot: Int32) {
        positions[Int(slot)] = -1
        freeSlots.append(slot)
    }

    @inline(__always)
    private mutating func place(_ timer: ScheduledTimer, at position: Int) {
        heap[position] = timer
        positions[Int(timer.slot)] = Int32(position)
    }

    @inline(__always)
    private mutating func swapAt(_ a: Int, _ b: Int) {
        heap.swapAt(a, b)
        positions[Int(heap[a].slot)] = Int32(a)
        positions[Int(heap[b].slot)] = Int32(b)
    }

    private mutating func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].fires(before: heap[parent]) else { return }
            swapAt(child, parent)
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
            swapAt(parent, best)
            parent = best
        }
    }
}
