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
/// hint that is never wrong in effect. Freed queues that are never looked up again are pruned when the cache
/// doubles, so it holds about as many entries as the thread has live listings.
final class ProducerCache {
    /// The writer whose queues these are: a thread that submits to another writer starts a fresh cache.
    private(set) var owner: UInt64
    var queues: [String: ListingQueue] = [:]
    /// The size at which freed queues are pruned next.
    private var pruneAt = ProducerCache.minimumPrune

    private static let minimumPrune = 1024

    private init(owner: UInt64) { self.owner = owner }

    /// Caches `queue`, first pruning freed queues if the cache has doubled since the last pruning.
    func remember(_ queue: ListingQueue) {
        if queues.count >= pruneAt {
            queues = queues.filter { !$0.value.isRetired }
            pruneAt = max(Self.minimumPrune, queues.count * 2)
        }
        queues[queue.listing] = queue
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

    /// The calling thread's cache for the writer `owner`: emptied first if it held another writer's queues.
    @inline(__always)
    static func current(for owner: UInt64) -> ProducerCache {
        if let pointer = pthread_getspecific(key) {
            let cache = Unmanaged<ProducerCache>.fromOpaque(pointer).takeUnretainedValue()
            if cache.owner != owner {
                cache.owner = owner
                cache.queues = [:]
                cache.pruneAt = minimumPrune
            }
            return cache
        }
        let cache = ProducerCache(owner: owner)
        pthread_setspecific(key, Unmanaged.passRetained(cache).toOpaque())
        return cache
    }
}
