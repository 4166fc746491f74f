import Synchronization

/// A node that can be linked into an ``IntrusiveMPSCQueue``: a class with the link as a stored property,
/// `let next = Atomic<UnsafeMutableRawPointer?>(nil)`, touched by the queue alone. A node is in at most one queue at
/// a time.
///
/// A protocol, not a superclass: a subclass's deinit retains and releases the object being destroyed around its
/// superclass's part, and a ``Submission`` is destroyed once per command.
public protocol MPSCNode: AnyObject, Sendable {
    /// The next node in the queue, written by the producer that links after this node.
    var next: Atomic<UnsafeMutableRawPointer?> { get }
}

/// The node a queue keeps as its stub. `@unchecked Sendable`: its only field is the atomic link.
final class MPSCStub: MPSCNode, @unchecked Sendable {
    let next = Atomic<UnsafeMutableRawPointer?>(nil)
}

/// An unbounded, intrusive multi-producer single-consumer FIFO (Dmitry Vyukov's MPSC node queue).
///
/// Contract: any number of threads may call ``push(_:)`` concurrently; exactly one thread at a time calls
/// ``pop()`` (checked in debug builds). `push` is wait-free (one atomic exchange); `pop` is lock-free and never
/// blocks, and allocates nothing: the nodes themselves are the links. A `pop` may return `nil` for an instant while a
/// producer is between its exchange and its link; the consumer then retries later (``hasPendingPush``).
///
/// Memory ordering: a producer publishes its node with a releasing store to its predecessor's `next`; the consumer
/// reads `next` with acquiring loads, so everything the producer wrote to the node before `push` is visible to the
/// consumer after `pop`.
///
/// `@unchecked Sendable`: `tail` and the stub are the consumer's alone (the contract above, checked in debug
/// builds); producers touch only the atomic `head` and the nodes' atomic links.
public final class IntrusiveMPSCQueue<Node: MPSCNode>: @unchecked Sendable {
    /// The most recently pushed node (producers exchange it).
    private let head: Atomic<UnsafeMutableRawPointer>
    /// The oldest node not yet consumed (consumer only).
    private var tail: UnsafeMutableRawPointer
    private let stub = MPSCStub()
    private let stubPointer: UnsafeMutableRawPointer
    #if DEBUG
        private let consumers = Atomic<Int>(0)
    #endif

    public init() {
        stubPointer = Unmanaged.passUnretained(stub).toOpaque()
        head = Atomic(stubPointer)
        tail = stubPointer
    }

    deinit {
        while pop() != nil {}
    }

    /// Links `node` at the back of the queue. The queue keeps a strong reference until the node is popped.
    public func push(_ node: Node) {
        link(Unmanaged.passRetained(node).toOpaque())
    }

    /// Links the node at `pointer`. The nodes are read through their pointers without a strong reference (the
    /// queue's own reference keeps each alive while it is linked, the queue keeps the stub), so linking costs no
    /// reference counting.
    private func link(_ pointer: UnsafeMutableRawPointer) {
        withLink(of: pointer) { $0.store(nil, ordering: .relaxed) }
        let previous = head.exchange(pointer, ordering: .acquiringAndReleasing)
        withLink(of: previous) { $0.store(pointer, ordering: .releasing) }
    }

    /// Whether a producer has exchanged the head but not linked yet, or nodes are waiting: the queue is not
    /// observably empty. Consumer only.
    public var hasPendingPush: Bool {
        head.load(ordering: .acquiring) != tail || next(of: tail) != nil
    }

    /// Removes and returns the oldest node, or `nil` when none is available yet. Consumer only.
    public func pop() -> Node? {
        #if DEBUG
            precondition(
                consumers.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue == 1,
                "IntrusiveMPSCQueue.pop called from two threads at once; it has exactly one consumer")
            defer { consumers.wrappingSubtract(1, ordering: .acquiringAndReleasing) }
        #endif
        var tail = self.tail
        var next = self.next(of: tail)
        if tail == stubPointer {
            guard let after = next else { return nil }
            self.tail = after
            tail = after
            next = self.next(of: after)
        }
        if let after = next {
            self.tail = after
            return Unmanaged<Node>.fromOpaque(tail).takeRetainedValue()
        }
        // `tail` is the last linked node. If a producer is mid-push, wait for it to link (come back later).
        guard head.load(ordering: .acquiring) == tail else { return nil }
        link(stubPointer)
        if let after = self.next(of: tail) {
            self.tail = after
            return Unmanaged<Node>.fromOpaque(tail).takeRetainedValue()
        }
        return nil
    }

    /// Calls `body` with the oldest node, left in the queue, and returns its answer; `nil` when no node is linked
    /// yet. Consumer only: the node stays the queue's, and `body` must not keep it.
    @inline(__always)
    public func withOldest<Result>(_ body: (Node) -> Result) -> Result? {
        var oldest = tail
        if oldest == stubPointer {
            guard let after = next(of: oldest) else { return nil }
            oldest = after
        }
        return Unmanaged<Node>.fromOpaque(oldest)._withUnsafeGuaranteedRef(body)
    }

    @inline(__always)
    private func next(of pointer: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer? {
        withLink(of: pointer) { $0.load(ordering: .acquiring) }
    }

    /// Calls `body` with the link of the node at `pointer`, a `Node` or the stub. Through a guaranteed reference,
    /// not a strong one: a linked node is kept alive by the queue's own reference (taken in ``push(_:)``, given up
    /// when ``pop()`` hands it out), the stub by `stub`.
    @inline(__always)
    private func withLink<Result>(
        of pointer: UnsafeMutableRawPointer, _ body: (borrowing Atomic<UnsafeMutableRawPointer?>) -> Result
    ) -> Result {
        if pointer == stubPointer { return body(stub.next) }
        return Unmanaged<Node>.fromOpaque(pointer)._withUnsafeGuaranteedRef { body($0.next) }
    }
}
