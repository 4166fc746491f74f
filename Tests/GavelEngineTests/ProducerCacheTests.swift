import GavelCore
import Synchronization
import Testing

@testable import GavelEngine

/// The per-thread queue cache of `submit(_:replyTo:started:wake:)` sends every command to its own writer's queue.
@Suite("Producer cache")
struct ProducerCacheTests {
    @Test func aThreadSubmittingToTwoWritersInTurnReachesEachWritersOwnQueue() async throws {
        let first = Writer(clock: ManualClock(0))
        let second = Writer(clock: ManualClock(0))
        first.start()
        second.start()
        #expect(await first.submit(openEnglish("L")).result.ok)
        #expect(await second.submit(openEnglish("L")).result.ok)
        // The same thread alternates between the writers on the same listing id: a cache that ignored which writer
        // its queues belong to would send the second writer's bids into the first writer's queue.
        for i in 0..<50 {
            #expect(first.submit(bid("L", "b\(i % 2)", Money(1_000 + i * 1_000), id: "f\(i)"), replyTo: nil) == nil)
            #expect(second.submit(bid("L", "b\(i % 2)", Money(1_000 + i * 1_000), id: "s\(i)"), replyTo: nil) == nil)
        }
        await first.barrier()
        await second.barrier()
        #expect(await first.read { _, lsn in lsn } == 51)
        #expect(await second.read { _, lsn in lsn } == 51)
        await first.shutdown()
        await second.shutdown()
    }

    @Test func aCachedQueueFreedByTheWriterIsLookedUpAgainAndTheCommandIsAnswered() async throws {
        var configuration = WriterConfiguration()
        configuration.engine.closedListingRetentionMs = 1_000
        let clock = ManualClock(0)
        let answered = Recorder()
        let writer = Writer(configuration: configuration, clock: clock, observer: answered)
        writer.start()
        // The bid caches the queue of L on this thread; the eviction frees it.
        #expect(await writer.submit(openEnglish("L", closesAt: 100)).result.ok)
        #expect(writer.submit(bid("L", "ann", 200, id: "b1"), replyTo: nil) == nil)
        await writer.barrier()
        // Past the close, the sale's payment deadline (3 days) and the retention after it.
        clock.set(300_000_000)
        writer.wake()
        for _ in 0..<2_000 where writer.listingQueueCount > 0 {
            try await Task.sleep(for: .milliseconds(1))
        }
        #expect(writer.listingQueueCount == 0)
        // Through the cache: the freed queue refuses, the lookup finds none, and the bid is refused as unknown.
        #expect(writer.submit(bid("L", "ann", 300, id: "b2"), replyTo: nil)?.error == .unknownListing)
        #expect(await writer.submit(openEnglish("L", closesAt: 400_000_000, id: "again")).result.ok)
        #expect(writer.submit(bid("L", "ann", 300, id: "b3"), replyTo: answered) == nil)
        await writer.barrier()
        #expect(answered.outcomes.withLock { $0.map(\.result.ok) } == [true])
        await writer.shutdown()
    }

    @Test func theTableFindsExactlyTheQueuesRememberedAndNotForgottenThroughCollisionsGrowthAndPruning() {
        let cache = ProducerCache(owner: 0)
        var model: [String: ListingQueue] = [:]
        var hashOf: [String: UInt64] = [:]
        var rng = SplitMix64(seed: 7)
        // Few distinct hashes for many listings, so that probing runs through long runs of equal hashes and the
        // removals shift entries back across them; and enough listings to grow the table twice.
        for round in 0..<6_000 {
            let name = "L\(rng.next() % 3_000)"
            let hash = hashOf[name] ?? (rng.next() % 4 == 0 ? rng.next() % 16 : rng.next())
            hashOf[name] = hash
            switch rng.next() % 4 {
            case 0, 1:
                if model[name] == nil {
                    // As a submit does: a cached queue found freed is forgotten before the new one is remembered.
                    if let stale = cache.queue(for: name, hash: hash) {
                        #expect(stale.takeUnretainedValue().isRetired)
                        cache.forget(stale, hash: hash)
                    }
                    let queue = ListingQueue(listing: name, capacity: 4)
                    cache.remember(queue, hash: hash)
                    model[name] = queue
                }
            case 2:
                if let queue = model[name], let cached = cache.queue(for: name, hash: hash) {
                    #expect(cached.toOpaque() == Unmanaged.passUnretained(queue).toOpaque())
                    cache.forget(cached, hash: hash)
                    model[name] = nil
                }
            default:
                // Freed by the writer: pruned the next time the table fills, or forgotten when it refuses.
                if let queue = model[name], queue.retireIfEmpty() { model[name] = nil }
            }
            if round % 500 == 499 {
                for (name, hash) in hashOf {
                    let found = cache.queue(for: name, hash: hash)
                    if let queue = model[name] {
                        #expect(found?.toOpaque() == Unmanaged.passUnretained(queue).toOpaque(), "\(name)")
                    } else if let found {
                        #expect(found.takeUnretainedValue().isRetired, "\(name) found but neither cached nor freed")
                    }
                }
            }
        }
        #expect(cache.count >= model.count)
    }
}
