import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One producer thread's listing → queue map, so that ``Writer/submit(_:handler:wake:)`` takes no lock for a listing
/// the thread has sent to before.
///
/// Contract: owned by one thread (it lives in that thread's thread-specific data), never shared. It holds strong
/// references to queues; a cached queue the writer has freed since refuses offers (``ListingQueue/Offer/retired``),
/// and the producer then drops it and looks the listing up again under the writer's mutex, so a cached queue is a
/// hint that is never wrong in effect. Freed queues that are never looked up again are pruned when the table fills,
/// so it holds about as many entries as the thread has live listings.
///
/// An open-addressing table keyed by the listing id's hash, which the submission's digest already holds
/// (``CommandDigest/listingHash``), with linear probing and backward-shift removal; a hit is confirmed by comparing
/// the queue's own listing id. The table holds each queue's reference itself and hands out its address: a lookup
/// neither hashes the id again (a `Dictionary` of `String` keys did, with SipHash) nor retains the queue (the
/// retain was the first write to a queue object not touched since the thread's last command for it: a cache miss
/// waited for in `swift_retain`).
final class ProducerCache {
    /// The writer whose queues these are: a thread that submits to another writer starts a fresh cache.
    private(set) var owner: UInt64
    /// The thread's spent submissions, filled again by its next submits (whichever writer they go to).
    let spares = SubmissionSpares()
    /// A slot: a listing id's hash and its queue (`nil`: free; the queue's +1 is the table's), side by side so that a
    /// probe reads one cache line.
    private struct Slot {
        var hash: UInt64
        var queue: Unmanaged<ListingQueue>?
    }

    private var slots: [Slot]
    private var mask: Int
    /// The number of occupied slots.
    private(set) var count = 0

    private static let initialCapacity = 1024

    init(owner: UInt64) {
        self.owner = owner
        slots = Array(repeating: Slot(hash: 0, queue: nil), count: Self.initialCapacity)
        mask = Self.initialCapacity - 1
    }

    deinit { removeAll() }

    /// The cached queue of `listing`, whose ``CommandDigest/listingHash`` is `hash`, without a reference: valid
    /// until the next change to the cache (the cache's own reference keeps it alive meanwhile).
    @inline(__always)
    func queue(for listing: String, hash: UInt64) -> Unmanaged<ListingQueue>? {
        var index = Int(truncatingIfNeeded: hash) & mask
        while let queue = slots[index].queue {
            if slots[index].hash == hash && queue._withUnsafeGuaranteedRef({ $0.listing == listing }) { return queue }
            index = (index + 1) & mask
        }
        return nil
    }

    /// Caches `queue` under `hash` (its listing is not cached), first pruning freed queues, or growing, when the
    /// table is half full.
    func remember(_ queue: ListingQueue, hash: UInt64) {
        if (count + 1) * 2 > slots.count {
            pruneRetired()
            if (count + 1) * 4 > slots.count { rebuild(capacity: slots.count * 2) }
        }
        insert(Unmanaged.passRetained(queue), hash: hash)
    }

    /// Drops the cached queue `queue` of hash `hash`, if cached (a queue that refused an offer as freed).
    func forget(_ queue: Unmanaged<ListingQueue>, hash: UInt64) {
        var index = Int(truncatingIfNeeded: hash) & mask
        while let cached = slots[index].queue {
            if cached.toOpaque() == queue.toOpaque() {
                remove(at: index)
                return
            }
            index = (index + 1) & mask
        }
    }

    /// Empties the slot at `index`, and moves back the entries after it that probing would no longer reach.
    private func remove(at index: Int) {
        slots[index].queue?.release()
        slots[index].queue = nil
        count -= 1
        var hole = index
        var next = (index + 1) & mask
        while slots[next].queue != nil {
            let home = Int(truncatingIfNeeded: slots[next].hash) & mask
            // The entry at `next` may move to the hole if its home is not cyclically in (hole, next].
            if (next - home) & mask >= (next - hole) & mask {
                slots[hole] = slots[next]
                slots[next].queue = nil
                hole = next
            }
            next = (next + 1) & mask
        }
    }

    /// Drops every freed queue.
    private func pruneRetired() {
        let live = entries.filter { entry in
            if entry.queue.takeUnretainedValue().isRetired {
                entry.queue.release()
                return false
            }
            return true
        }
        count = 0
        for index in slots.indices { slots[index].queue = nil }
        for entry in live { insert(entry.queue, hash: entry.hash) }
    }

    /// Rehashes every entry into a table of `capacity` slots.
    private func rebuild(capacity: Int) {
        let all = entries
        slots = Array(repeating: Slot(hash: 0, queue: nil), count: capacity)
        mask = capacity - 1
        count = 0
        for entry in all { insert(entry.queue, hash: entry.hash) }
    }

    /// Inserts an entry whose reference the table already holds.
    private func insert(_ queue: Unmanaged<ListingQueue>, hash: UInt64) {
        var index = Int(truncatingIfNeeded: hash) & mask
        while slots[index].queue != nil { index = (index + 1) & mask }
        slots[index] = Slot(hash: hash, queue: queue)
        count += 1
    }

    /// The occupied slots' entries.
    private var entries: [(hash: UInt64, queue: Unmanaged<ListingQueue>)] {
        slots.compactMap { slot in slot.queue.map { (slot.hash, $0) } }
    }

    /// Releases every cached queue and empties the table.
    private func removeAll() {
        for index in slots.indices {
            slots[index].queue?.release()
            slots[index].queue = nil
        }
        count = 0
    }

    /// A number no other writer of this process has.
    static func nextIdentity() -> UInt64 {
        identities.wrappingAdd(1, ordering: .relaxed).newValue
    }

    private static let identities = Atomic<UInt64>(0)

    /// The thread-specific data key of the caches; each thread's cache is released when the thread exits.
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        let rc = pthread_key_create(&key) { pointer in
            guard let pointer else { return }
            Unmanaged<ProducerCache>.fromOpaque(pointer).release()
        }
        precondition(rc == 0, "cannot create the producer cache key: pthread_key_create returned \(rc)")
        return key
    }()

    /// The calling thread's cache, if it has one (it submitted before), whatever writer it was for.
    @inline(__always)
    static func existing() -> ProducerCache? {
        pthread_getspecific(key).map { Unmanaged<ProducerCache>.fromOpaque($0).takeUnretainedValue() }
    }

    /// The calling thread's cache for the writer `owner`: emptied first if it held another writer's queues.
    @inline(__always)
    static func current(for owner: UInt64) -> ProducerCache {
        if let pointer = pthread_getspecific(key) {
            let cache = Unmanaged<ProducerCache>.fromOpaque(pointer).takeUnretainedValue()
            if cache.owner != owner {
                cache.owner = owner
                cache.removeAll()
            }
            return cache
        }
        let cache = ProducerCache(owner: owner)
        pthread_setspecific(key, Unmanaged.passRetained(cache).toOpaque())
        return cache
    }
}
