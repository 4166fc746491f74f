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

/// An unbounded, intrusive multi-producer single-consumer FIFO (Dmitry Vyukov's MPSC node queue), stored inline in
/// its owner: a ``ListingQueue`` keeps its commands' queue in its own object, so that the writer reaching a listing
/// reads one object, not three (the queue's, its stub's and the listing's), each a cache miss ahead of the next.
///
/// Contract: any number of threads may call ``push(_:)`` concurrently; exactly one thread at a time calls
/// ``pop()`` (checked in debug builds). `push` is wait-free (one atomic exchange); `pop` is lock-free and never
/// blocks, and allocates nothing: the nodes themselves are the links. A `pop` may return `nil` for an instant while a
/// producer is between its exchange and its link; the consumer then retries later (``hasPendingPush``).
///
/// The stub is not an object: it is a marker address no node can have, whose link is ``stubNext``, in the owner.
///
/// Memory ordering: a producer publishes its node with a releasing store to its predecessor's `next`; the consumer
/// reads `next` with acquiring loads, so everything the producer wrote to the node before `push` is visible to the
/// consumer after `pop`. `tail` is the consumer's alone; it is atomic only so that the whole value needs no
/// exclusive access (relaxed loads and stores are plain moves).
public struct MPSCLinks<Node: MPSCNode>: ~Copyable, @unchecked Sendable {
    /// The most recently pushed node (producers exchange it).
    private let head: Atomic<UnsafeMutableRawPointer>
    /// The oldest node not yet consumed (consumer only).
    private let tail: Atomic<UnsafeMutableRawPointer>
    /// The stub's link.
    private let stubNext = Atomic<UnsafeMutableRawPointer?>(nil)
    #if DEBUG
        private let consumers = Atomic<Int>(0)
    #endif

    /// The stub's address: never dereferenced, and no object is allocated at it (the first page is never mapped).
    @usableFromInline static var stub: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: 0x10)! }

    public init() {
        head = Atomic(Self.stub)
        tail = Atomic(Self.stub)
    }

    deinit {
        while pop() != nil {}
    }

    /// Links `node` at the back of the queue. The queue keeps a strong reference until the node is popped.
    public func push(_ node: Node) {
        link(Unmanaged.passRetained(node).toOpaque())
    }

    /// Links the node at `pointer`. The nodes are read through their pointers without a strong reference (the
    /// queue's own reference keeps each alive while it is linked), so linking costs no reference counting.
    private func link(_ pointer: UnsafeMutableRawPointer) {
        withLink(of: pointer) { $0.store(nil, ordering: .relaxed) }
        let previous = head.exchange(pointer, ordering: .acquiringAndReleasing)
        withLink(of: previous) { $0.store(pointer, ordering: .releasing) }
    }

    /// Whether a producer has exchanged the head but not linked yet, or nodes are waiting: the queue is not
    /// observably empty. Consumer only.
    public var hasPendingPush: Bool {
        let tail = self.tail.load(ordering: .relaxed)
        return head.load(ordering: .acquiring) != tail || next(of: tail) != nil
    }

    /// Removes and returns the oldest node, or `nil` when none is available yet. Consumer only.
    public func pop() -> Node? {
        #if DEBUG
            precondition(
                consumers.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue == 1,
                "IntrusiveMPSCQueue.pop called from two threads at once; it has exactly one consumer")
            defer { consumers.wrappingSubtract(1, ordering: .acquiringAndReleasing) }
        #endif
        var tail = self.tail.load(ordering: .relaxed)
        var next = self.next(of: tail)
        if tail == Self.stub {
            guard let after = next else { return nil }
            self.tail.store(after, ordering: .relaxed)
            tail = after
            next = self.next(of: after)
        }
        if let after = next {
            self.tail.store(after, ordering: .relaxed)
            return Unmanaged<Node>.fromOpaque(tail).takeRetainedValue()
        }
        // `tail` is the last linked node. If a producer is mid-push, wait for it to link (come back later).
        guard head.load(ordering: .acquiring) == tail else { return nil }
        link(Self.stub)
        if let after = self.next(of: tail) {
            self.tail.store(after, ordering: .relaxed)
            return Unmanaged<Node>.fromOpaque(tail).takeRetainedValue()
        }
        return nil
    }

    /// The address of the oldest node, left in the queue; `nil` when no node is linked yet. Consumer only: the node
    /// stays the queue's, and is alive only while it is in the queue (read it with ``withNode(at:_:)``, or only
    /// prefetch it).
    @inline(__always)
    public func oldest() -> UnsafeMutableRawPointer? {
        let oldest = tail.load(ordering: .relaxed)
        return oldest == Self.stub ? stubNext.load(ordering: .acquiring) : oldest
    }

    /// Calls `body` with the oldest node, left in the queue, and returns its answer; `nil` when no node is linked
    /// yet. Consumer only: the node stays the queue's, and `body` must not keep it.
    @inline(__always)
    public func withOldest<Result>(_ body: (Node) -> Result) -> Result? {
        guard let oldest = oldest() else { return nil }
        return Self.withNode(at: oldest, body)
    }

    /// Calls `body` with the node at `pointer`, which must be linked in a queue (that keeps it alive) and not the stub.
    @inline(__always)
    public static func withNode<Result>(at pointer: UnsafeMutableRawPointer, _ body: (Node) -> Result) -> Result {
        Unmanaged<Node>.fromOpaque(pointer)._withUnsafeGuaranteedRef(body)
    }

    /// The address of the node linked after the node at `pointer` (linked in this queue, not the stub), `nil` when
    /// none is linked yet or when the stub is: the second-oldest node seen from the oldest. Consumer only, for
    /// prefetching.
    @inline(__always)
    public func node(after pointer: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer? {
        let after = Self.withNode(at: pointer) { $0.next.load(ordering: .acquiring) }
        return after == Self.stub ? nil : after
    }

    @inline(__always)
    private func next(of pointer: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer? {
        withLink(of: pointer) { $0.load(ordering: .acquiring) }
    }

    /// Calls `body` with the link of the node at `pointer`, a `Node` or the stub. Through a guaranteed reference,
    /// not a strong one: a linked node is kept alive by the queue's own reference (taken in ``push(_:)``, given up
    /// when ``pop()`` hands it out).
    @inline(__always)
    private func withLink<Result>(
        of pointer: UnsafeMutableRawPointer, _ body: (borrowing Atomic<UnsafeMutableRawPointer?>) -> Result
    ) -> Result {
        if pointer == Self.stub { return body(stubNext) }
        return Unmanaged<Node>.fromOpaque(pointer)._withUnsafeGuaranteedRef { body($0.next) }
    }
}

/// An ``MPSCLinks`` queue as an object of its own, for owners that share it or keep it apart from their other
/// fields. `@unchecked Sendable`: see ``MPSCLinks``.
public final class IntrusiveMPSCQueue<Node: MPSCNode>: @unchecked Sendable {
    public let links = MPSCLinks<Node>()

    public init() {}

    /// See ``MPSCLinks/push(_:)``.
    public func push(_ node: Node) { links.push(node) }

    /// See ``MPSCLinks/pop()``.
    public func pop() -> Node? { links.pop() }

    /// See ``MPSCLinks/hasPendingPush``.
    public var hasPendingPush: Bool { links.hasPendingPush }

    /// See ``MPSCLinks/withOldest(_:)``.
    @inline(__always)
    public func withOldest<Result>(_ body: (Node) -> Result) -> Result? { links.withOldest(body) }
}
