import Dispatch
import GavelCore
import Glibc
import Synchronization
import Testing

@testable import GavelEngine

/// An `open` the engine refuses: `closes_at` is not after the engine time 0.
private func refusedOpen(_ listing: String, id: String) -> Command {
    Command(id: id, listing: listing, body: .open(seller: "seller", terms: .english(.init(start: 100, closesAt: 0))))
}

/// A running writer on a manual clock at 0 with at most `maxListingQueues` listing queues.
private func startedWriter(maxListingQueues: Int) -> Writer {
    var configuration = WriterConfiguration()
    configuration.maxListingQueues = maxListingQueues
    let writer = Writer(configuration: configuration, clock: ManualClock(0))
    writer.start()
    return writer
}

/// Result callbacks from any thread: how many, and the lsn of each (producer, listing, index).
/// Waits (bounded) until `condition` holds on the writer thread.
private func eventually(_ writer: Writer, _ condition: @escaping @Sendable (Engine) -> Bool) async -> Bool {
    for _ in 0..<2000 {
        if await writer.read({ engine, _ in condition(engine) }) == true { return true }
        try? await Task.sleep(for: .milliseconds(1))
    }
    return false
}

/// Listing queues exist only for listings in the engine and opens in flight, are freed race-free, and their cap
/// refuses only new opens.
@Suite("Listing queues")
struct ListingQueueLifecycleTests {
    @Test func bidsOnTenThousandMadeUpIdsCreateNoQueueAndLeaveOpenWorking() async throws {
        let writer = startedWriter(maxListingQueues: 4)
        for i in 0..<10_000 {
            let rejected = writer.submit(bid("ghost-\(i)", "mallory", 500, id: "g\(i)"), replyTo: nil)
            #expect(rejected?.error == .unknownListing)
            if rejected?.error != .unknownListing { break }
        }
        #expect(writer.listingQueueCount == 0)
        #expect(await writer.submit(openEnglish("real")).result.ok)
        #expect(await writer.submit(bid("real", "ann", 200, id: "b1")).result.ok)
        let lsn = await writer.read { _, lsn in lsn }
        #expect(lsn == 2, "the refused bids were neither applied nor journaled")
        await writer.shutdown()
    }

    /// Every kind of command for a listing the engine does not hold, well-formed or not, gets from the server the
    /// answer the engine itself gives (an invalid amount before the unknown listing, `unknown_settlement` for a
    /// settlement command), without being applied or journaled.
    @Test func everyCommandForAListingNotHeldGetsTheEnginesOwnAnswer() async throws {
        let writer = Writer(clock: ManualClock(50))
        writer.start()
        let bodies: [CommandBody] = [
            .bid(bidder: "ann", amount: 200), .bid(bidder: "ann", amount: 0), .bid(bidder: "bad id", amount: 200),
            .buyNow(buyer: "ann"), .accept(bidder: "ann", quantity: 1), .accept(bidder: "ann", quantity: -1),
            .order(trader: "ann", side: .buy, price: 10, quantity: 1, tif: .gtc, expiresAt: nil),
            .order(trader: "ann", side: .buy, price: 0, quantity: 1, tif: .gtc, expiresAt: nil),
            .order(trader: "ann", side: .buy, price: 10, quantity: 0, tif: .gtc, expiresAt: nil),
            .order(trader: "ann", side: .sell, price: 10, quantity: 1, tif: .gtc, expiresAt: 20),
            .cancel(trader: "ann", order: "o1"), .cancelListing(seller: "sam"), .cancelListingAsAdmin(admin: "ada"),
            .settle(number: 1, action: .confirmPayment(paymentRef: "PAY"), by: "svc", role: .service),
            .settle(number: 3, action: .markShipped(tracking: "T"), by: "sam", role: .seller),
            .secondChance(.offer, by: "sam", role: .seller), .secondChance(.accept, by: "ann", role: .bidder),
        ]
        let engine = Engine()
        var events: [Event] = []
        engine.advance(to: 50, events: &events)
        for (n, body) in bodies.enumerated() {
            let command = Command(id: "c\(n)", listing: "gone", body: body)
            let answer = await writer.submit(command)
            #expect(answer.result == engine.apply(command, events: &events), "\(body)")
            #expect(answer.lsn == nil, "\(body) was not journaled")
        }
        #expect(events.isEmpty)
        await writer.shutdown()
    }

    @Test func aBidForAnUnknownListingIsRefusedLikeTheEngineDoesAndMayBeRetriedOnceItOpens() async throws {
        let writer = Writer(clock: ManualClock(0))
        writer.start()
        let early = await writer.submit(bid("L", "ann", 200, id: "b1"))
        var events: [Event] = []
        let engineAnswer = Engine().apply(bid("L", "ann", 200, id: "b1"), events: &events)
        #expect(early.result == engineAnswer)
        #expect(early.lsn == nil)
        #expect(await writer.submit(openEnglish("L")).result.ok)
        let retry = await writer.submit(bid("L", "ann", 200, id: "b1"))
        #expect(retry.result.ok && !retry.result.duplicate, "not remembered: applied normally after the open")
        await writer.shutdown()
    }

    /// Commands queued behind an `open` the engine refuses find no listing when their turn comes: each gets the
    /// engine's answer for a listing it does not hold, in its place among the results, without being applied,
    /// journaled or remembered, and its id is applied normally once the listing is open.
    @Test func commandsQueuedBehindARefusedOpenAreAnsweredWithoutBeingApplied() async throws {
        let recorder = Recorder()
        let writer = Writer(clock: ManualClock(0), observer: recorder)
        writer.start()
        let gate = WriterGate()
        await gate.hold(writer)
        #expect(writer.submit(refusedOpen("X", id: "x"), replyTo: recorder) == nil)
        #expect(writer.submit(bid("X", "ann", 200, id: "b1"), replyTo: recorder) == nil)
        async let awaited = writer.submit(bid("X", "bob", 300, id: "b2"))
        while writer.queue(for: "X")?.depth != 3 { try await Task.sleep(for: .milliseconds(1)) }
        gate.release()
        let b2 = await awaited
        #expect(b2.result == Engine.answerWithoutListing(bid("X", "bob", 300, id: "b2"), now: 0))
        #expect(b2.lsn == nil, "not journaled")
        await writer.barrier()
        let outcomes = recorder.outcomes.withLock { $0 }
        #expect(outcomes.map(\.command.id) == ["x", "b1"])
        #expect(outcomes.map(\.result.error) == [.badRequest, .unknownListing])
        #expect(outcomes.map(\.lsn) == [1, nil])
        let remembered = await writer.read { engine, lsn in
            [lsn, UInt64(engine.rememberedCount(of: "ann")), UInt64(engine.rememberedCount(of: "bob"))]
        }
        #expect(remembered == [1, 0, 0], "only the refused open has an lsn; the bids are not remembered")
        #expect(writer.queue(for: "X") == nil, "the queue was freed once drained")
        #expect(await writer.submit(openEnglish("X")).result.ok)
        let retry = await writer.submit(bid("X", "ann", 200, id: "b1"))
        #expect(retry.result.ok && !retry.result.duplicate)
        await writer.shutdown()
    }

    @Test func reachingTheCapRefusesOnlyNewOpensNamingTheSetting() async throws {
        let writer = startedWriter(maxListingQueues: 2)
        #expect(await writer.submit(openEnglish("A")).result.ok)
        #expect(await writer.submit(openEnglish("B")).result.ok)
        let third = await writer.submit(openEnglish("C"))
        #expect(third.result.error == .overloaded)
        #expect(third.result.message.contains("--max-listing-queues"))
        #expect(await writer.submit(bid("A", "ann", 200, id: "b1")).result.ok)
        #expect(await writer.submit(bid("B", "ann", 200, id: "b2")).result.ok)
        await writer.shutdown()
    }

    @Test func theQueueOfARefusedOpenIsFreedAndLeavesRoomUnderTheCap() async throws {
        let writer = startedWriter(maxListingQueues: 1)
        for i in 0..<20 {
            #expect(await writer.submit(refusedOpen("X\(i)", id: "x\(i)")).result.error == .badRequest)
        }
        await writer.barrier()
        #expect(writer.listingQueueCount == 0)
        #expect(writer.queue(for: "X0") == nil)
        #expect(await writer.submit(bid("X0", "ann", 200, id: "b")).result.error == .unknownListing)
        #expect(await writer.submit(openEnglish("real")).result.ok, "the refused opens left no queue behind")
        await writer.shutdown()
    }

    @Test func anEvictedListingsQueueIsFreedAndItsIdMayBeOpenedAgain() async throws {
        var configuration = WriterConfiguration()
        configuration.engine.closedListingRetentionMs = 1_000
        let clock = ManualClock(0)
        let recorder = Recorder()
        let writer = Writer(configuration: configuration, clock: clock, observer: recorder)
        writer.start()
        #expect(await writer.submit(openEnglish("L", closesAt: 100)).result.ok)
        let cached = try #require(writer.queue(for: "L"))
        clock.set(1_100)
        writer.wake()
        #expect(await eventually(writer) { !$0.hasListing("L") })
        await writer.barrier()
        #expect(writer.listingQueueCount == 0)
        #expect(cached.isRetired)
        // A caller holding the freed queue is not lost: its command goes where a fresh lookup sends it.
        let late = bid("L", "ann", 200, id: "late")
        #expect(writer.submit(late, to: cached, replyTo: nil)?.error == .unknownListing)
        // A retry of the first open is answered from the idempotency table and opens nothing: no queue is kept.
        #expect(await writer.submit(openEnglish("L", closesAt: 100)).result.duplicate)
        await writer.barrier()
        #expect(writer.listingQueueCount == 0)
        #expect(await writer.submit(openEnglish("L", closesAt: 5_000, id: "again")).result.ok)
        let again = bid("L", "ann", 200, id: "again-bid")
        #expect(writer.submit(again, to: cached, replyTo: recorder) == nil)
        await writer.barrier()
        #expect(recorder.outcomes.withLock { $0.map(\.result.ok) } == [true])
        await writer.shutdown()
    }

    @Test func recoveredListingsHaveQueues() async throws {
        let engine = Engine()
        var events: [Event] = []
        #expect(engine.apply(openEnglish("old"), events: &events).ok)
        var configuration = WriterConfiguration()
        configuration.maxListingQueues = 1
        let writer = Writer(configuration: configuration, engine: engine, clock: ManualClock(0))
        writer.start()
        #expect(await writer.submit(bid("old", "ann", 200, id: "b")).result.ok)
        #expect(await writer.submit(openEnglish("new")).result.error == .overloaded)
        await writer.shutdown()
    }

    /// Producers race the writer's freeing: opens the engine refuses (their queues are freed as soon as they are
    /// drained) interleaved with bids on the same ids, through fresh lookups and through cached queues. Every
    /// command is either refused at once or answered exactly once, in order: none is lost in a freed queue.
    @Test func freeingQueuesNeverLosesACommandSubmittedConcurrently() async throws {
        let answered = Recorder()
        let writer = Writer(clock: ManualClock(0), observer: answered)
        writer.start()
        let ids = (0..<8).map { "R\($0)" }
        let producers = 4
        let perProducer = 3_000
        let enqueued = Atomic<Int>(0)
        let refusedAtOnce = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: producers) { p in
            var rng = SplitMix64(seed: UInt64(p + 11))
            var cache: [String: ListingQueue] = [:]
            for i in 0..<perProducer {
                let listing = ids[Int(rng.next() % UInt64(ids.count))]
                let command =
                    i % 3 == 0
                    ? refusedOpen(listing, id: "p\(p)-\(i)") : bid(listing, "u\(p)", 200, id: "p\(p)-\(i)")
                let rejected: CommandResult?
                if let queue = cache[listing], i % 2 == 0 {
                    rejected = writer.submit(command, to: queue, replyTo: answered)
                } else {
                    rejected = writer.submit(command, replyTo: answered)
                    cache[listing] = writer.queue(for: listing) ?? cache[listing]
                }
                if let rejected {
                    #expect(rejected.error == .unknownListing || rejected.error == .overloaded)
                    refusedAtOnce.wrappingAdd(1, ordering: .relaxed)
                } else {
                    enqueued.wrappingAdd(1, ordering: .relaxed)
                }
            }
        }
        await writer.barrier()
        #expect(
            enqueued.load(ordering: .relaxed) + refusedAtOnce.load(ordering: .relaxed) == producers * perProducer)
        let outcomes = answered.outcomes.withLock { $0 }
        #expect(outcomes.count == enqueued.load(ordering: .relaxed))
        #expect(Set(outcomes.map(\.command.id)).count == outcomes.count, "no command answered twice")
        // One queue per listing at a time: each producer's commands on a listing were answered in the order sent
        // (released in that order, those applied with increasing lsns), whether applied or found with no listing
        // once their turn came (after a refused open).
        var byProducer: [String: [(index: Int, lsn: UInt64?)]] = [:]
        for outcome in outcomes {
            let parts = outcome.command.id.dropFirst().split(separator: "-")
            byProducer["\(parts[0])/\(outcome.command.listing)", default: []].append((Int(parts[1])!, outcome.lsn))
        }
        for (key, sent) in byProducer {
            let indexes = sent.map(\.index)
            #expect(indexes == indexes.sorted(), "\(key) answered out of order")
            let lsns = sent.compactMap(\.lsn)
            #expect(lsns == lsns.sorted(), "\(key) applied out of order")
        }
        #expect(refusedAtOnce.load(ordering: .relaxed) > 0, "some bids found no queue")
        #expect(writer.listingQueueCount == 0, "every queue was freed")
        await writer.shutdown()
    }
}
