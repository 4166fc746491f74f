import Dispatch
import GavelCore
import Glibc
import Synchronization
import Testing

@testable import GavelEngine

/// Collects what a writer releases, from any thread: the results of the commands sent to it and every event.
final class Recorder: ReleaseObserver, ResultRecipient, Sendable {
    struct Outcome: Sendable {
        var command: Command
        var result: CommandResult
        /// `nil` for a command the writer took but did not apply (not journaled).
        var lsn: UInt64?
    }
    let outcomes = Mutex<[Outcome]>([])
    let events = Mutex<[Event]>([])
    /// Called after each result recorded.
    let onResult: (@Sendable () -> Void)?

    init(onResult: (@Sendable () -> Void)? = nil) { self.onResult = onResult }

    func released(_ batch: Batch, endsGroup: Bool) {
        batch.forEachResult(of: self) { command, result, lsn in
            outcomes.withLock { $0.append(Outcome(command: command, result: result, lsn: lsn)) }
            onResult?()
        }
        events.withLock { $0.append(contentsOf: batch.events) }
    }
}

func openEnglish(_ listing: String, closesAt: Millis = 1_000_000_000, id: String? = nil) -> Command {
    Command(
        id: id ?? "open-\(listing)", listing: listing,
        body: .open(seller: "seller", terms: .english(.init(start: 100, closesAt: closesAt))))
}

func bid(_ listing: String, _ bidder: String, _ amount: Money, id: String) -> Command {
    Command(id: id, listing: listing, body: .bid(bidder: bidder, amount: amount))
}

/// Blocks the writer thread until `release()` is called, so that tests can fill queues.
final class WriterGate: Sendable {
    private let open = Atomic<Bool>(false)
    private let entered = Atomic<Bool>(false)

    func hold(_ writer: Writer) async {
        _ = writer.inspect { _, _ in
            self.entered.store(true, ordering: .releasing)
            while !self.open.load(ordering: .acquiring) { usleep(100) }
        }
        while !entered.load(ordering: .acquiring) { try? await Task.sleep(for: .milliseconds(1)) }
    }

    func release() { open.store(true, ordering: .releasing) }
}

/// Releases every batch at once and keeps how many entries each held.
final class BatchSizeSink: BatchSink, Sendable {
    let sizes = Mutex<[Int]>([])

    func write(_ batch: Batch, release: @escaping BatchRelease) {
        sizes.withLock { $0.append(batch.entries.count) }
        release(batch, true)
    }

    func flush() {}
}

@Suite("Writer loop")
struct WriterTests {
    @Test func commandsSubmittedWhileTheWriterIsBusyGoOutInOneBatch() async throws {
        let sink = BatchSizeSink()
        let recorder = Recorder()
        let writer = Writer(sink: sink, clock: ManualClock(0), observer: recorder)
        writer.start()
        let gate = WriterGate()
        await gate.hold(writer)
        let commands = (0..<10).map { openEnglish("L\($0)") }
        for command in commands {
            #expect(writer.submit(command, replyTo: recorder) == nil)
        }
        gate.release()
        await writer.barrier()
        #expect(sink.sizes.withLock { $0.filter { $0 > 0 } } == [10], "one batch for the ten commands that waited")
        #expect(recorder.outcomes.withLock { $0.map(\.command.id) } == commands.map(\.id))
        // After running dry (and parking), the writer still takes new work.
        try await Task.sleep(for: .milliseconds(20))
        #expect(await writer.submit(bid("L0", "ann", 100, id: "late")).result.ok)
        await writer.shutdown()
    }

    @Test func concurrentProducersLoseDuplicateAndReorderNothingAndMatchASequentialRun() async throws {
        let clock = ManualClock(0)
        let recorder = Recorder()
        let writer = Writer(clock: clock, observer: recorder)
        writer.start()
        let listings = (0..<20).map { "L\($0)" }
        for listing in listings {
            let (result, _) = await writer.submit(openEnglish(listing))
            #expect(result.ok)
        }
        let producers = 4
        let perProducer = 3000
        DispatchQueue.concurrentPerform(iterations: producers) { p in
            var rng = SplitMix64(seed: UInt64(p + 1))
            for i in 0..<perProducer {
                let listing = listings[Int(rng.next() % UInt64(listings.count))]
                let command = bid(listing, "u\(p)", Money(200 + i * 10), id: "p\(p)-\(i)")
                var rejected = writer.submit(command, replyTo: recorder)
                while let r = rejected, r.error == .overloaded {
                    usleep(50)
                    rejected = writer.submit(command, replyTo: recorder)
                }
                #expect(rejected == nil)
            }
        }
        await writer.barrier()
        let outcomes = recorder.outcomes.withLock { $0 }
        // Nothing lost or duplicated.
        #expect(outcomes.count == producers * perProducer)
        #expect(Set(outcomes.map(\.command.id)).count == outcomes.count)
        #expect(Set(outcomes.map(\.lsn)).count == outcomes.count)
        // Within a listing, each producer's commands were applied in the order it sent them.
        var lastIndex: [String: Int] = [:]
        for outcome in outcomes.sorted(by: { $0.lsn! < $1.lsn! }) {
            let parts = outcome.command.id.dropFirst().split(separator: "-")
            let key = "\(parts[0])/\(outcome.command.listing)"
            let index = Int(parts[1])!
            #expect(index > lastIndex[key, default: -1], "command \(outcome.command.id) applied out of order")
            lastIndex[key] = index
        }
        // Per-listing public sequence numbers have no gaps.
        let events = recorder.events.withLock { $0 }
        var seqs: [String: UInt64] = [:]
        for event in events where event.seq > 0 {
            #expect(event.seq == seqs[event.listing, default: 0] + 1)
            seqs[event.listing] = event.seq
        }
        // A sequential run of the same commands in lsn order gives the same results and state.
        let reference = Engine()
        var scratch: [Event] = []
        for listing in listings { _ = reference.apply(openEnglish(listing), events: &scratch) }
        for outcome in outcomes.sorted(by: { $0.lsn! < $1.lsn! }) {
            let result = reference.apply(outcome.command, events: &scratch)
            #expect(result == outcome.result)
        }
        let writerHash = await writer.read { engine, _ in engine.stateHash() }
        #expect(writerHash == reference.stateHash())
        await writer.shutdown()
    }

    @Test func fullQueueRejectsWithOverloadedAndNeverBlocks() async throws {
        var configuration = WriterConfiguration()
        configuration.queueCapacity = 8
        let recorder = Recorder()
        let writer = Writer(configuration: configuration, clock: ManualClock(0), observer: recorder)
        writer.start()
        #expect(await writer.submit(openEnglish("L")).result.ok)
        let gate = WriterGate()
        await gate.hold(writer)
        for i in 0..<8 {
            let command = bid("L", "ann", Money(100 + i * 100), id: "b\(i)")
            #expect(writer.submit(command, replyTo: recorder) == nil)
        }
        let rejected = writer.submit(bid("L", "ann", 5000, id: "b8"), replyTo: nil)
        #expect(rejected?.error == .overloaded)
        #expect(rejected?.message.contains("8 commands waiting") == true)
        gate.release()
        await writer.barrier()
        #expect(recorder.outcomes.withLock { $0.count } == 8)
        // Once drained, the queue takes commands again.
        #expect(await writer.submit(bid("L", "ann", 9000, id: "b9")).result.ok)
        await writer.shutdown()
    }

    /// A producer that batches its wake-ups still wakes the writer once a listing's queue is a quarter full, so a
    /// flood read in one go is applied while it is read, not refused `overloaded` when the queue fills.
    @Test func aQueueAQuarterFullWakesTheWriterEvenWhenTheProducerDefersTheWakeUp() async throws {
        var configuration = WriterConfiguration()
        configuration.queueCapacity = 64
        let recorder = Recorder()
        let writer = Writer(configuration: configuration, clock: ManualClock(0), observer: recorder)
        writer.start()
        // A market with no closing time: no timer, so the writer sleeps until something wakes it.
        let open = Command(id: "o", listing: "M", body: .open(seller: "sam", terms: .market(.init())))
        #expect(await writer.submit(open).result.ok)
        try await Task.sleep(for: .milliseconds(50))
        let bids = (0..<16).map { k in
            Command(
                id: "b\(k)", listing: "M",
                body: .order(
                    trader: "u\(k)", side: .buy, price: Money(100 + k), quantity: 1, tif: .gtc, expiresAt: nil))
        }
        for command in bids { #expect(writer.submit(command, replyTo: recorder, wake: false) == nil) }
        // No wake(): the sixteenth command made the queue a quarter full.
        for _ in 0..<2000 {
            if recorder.outcomes.withLock({ $0.count }) == bids.count { break }
            try await Task.sleep(for: .milliseconds(1))
        }
        #expect(recorder.outcomes.withLock { $0.map(\.command.id) } == bids.map(\.id))
        await writer.shutdown()
    }

    @Test func commandsSubmittedWithoutWakingAreAppliedOnceTheWriterIsWoken() async throws {
        let done = DispatchSemaphore(value: 0)
        let recorder = Recorder(onResult: { done.signal() })
        let writer = Writer(clock: ManualClock(0), observer: recorder)
        writer.start()
        #expect(await writer.submit(openEnglish("L")).result.ok)
        let bids = (0..<3).map { bid("L", "u\($0)", Money(100 + $0 * 100), id: "b\($0)") }
        for command in bids {
            let rejected = writer.submit(command, replyTo: recorder, wake: false)
            #expect(rejected == nil)
        }
        writer.wake()
        for _ in bids { done.wait() }
        #expect(recorder.outcomes.withLock { $0.map(\.command.id) } == ["b0", "b1", "b2"])
        await writer.shutdown()
    }

    /// The writer applies a command with the digest its submission computed; a malformed identifier, a retry and a
    /// reused id come out exactly as the engine answers them on its own.
    @Test func writerResultsMatchTheEngineForMalformedRetriedAndReusedIds() async throws {
        let writer = Writer(clock: ManualClock(0))
        writer.start()
        let engine = Engine()
        var events: [Event] = []
        let commands = [
            openEnglish("L"), bid("L", "u1", 200, id: "b1"), bid("L", "u1", 200, id: "b1"),
            bid("L", "u1", 300, id: "b1"), bid("L", "bad bidder", 400, id: "b2"), bid("L", "u2", 500, id: "bad id"),
            bid("L", "u2", 600, id: "b3"),
        ]
        for command in commands {
            let expected = engine.apply(command, events: &events)
            let (result, _) = await writer.submit(command)
            #expect(result == expected, "\(command)")
        }
        #expect(engine.stateHash() == (await writer.read { engine, _ in engine.stateHash() }))
        await writer.shutdown()
    }

    @Test func hotListingCannotStarveOthers() async throws {
        var configuration = WriterConfiguration()
        configuration.perListingTurn = 4
        let recorder = Recorder()
        let writer = Writer(configuration: configuration, clock: ManualClock(0), observer: recorder)
        writer.start()
        #expect(await writer.submit(openEnglish("hot")).result.ok)
        #expect(await writer.submit(openEnglish("cold")).result.ok)
        let gate = WriterGate()
        await gate.hold(writer)
        for i in 0..<200 {
            let command = bid("hot", "u\(i % 2)", Money(100 + i * 100), id: "h\(i)")
            #expect(writer.submit(command, replyTo: recorder) == nil)
        }
        let cold = bid("cold", "ann", 100, id: "c")
        #expect(writer.submit(cold, replyTo: recorder) == nil)
        gate.release()
        await writer.barrier()
        let outcomes = recorder.outcomes.withLock { $0 }
        let coldLSN = try #require(outcomes.first { $0.command.id == "c" }?.lsn)
        let firstHot = outcomes.filter { $0.command.listing == "hot" }.compactMap(\.lsn).min()!
        // The cold listing is served after at most one turn of the hot one, not after all 200 commands.
        #expect(coldLSN - firstHot <= UInt64(configuration.perListingTurn))
        await writer.shutdown()
    }

    @Test func timersFireInTimeOrderAsStampedTickEntries() async throws {
        let clock = ManualClock(0)
        let recorder = Recorder()
        let writer = Writer(clock: clock, observer: recorder)
        writer.start()
        for (listing, closesAt) in [("C", 3000), ("A", 1000), ("B", 2000)] {
            #expect(await writer.submit(openEnglish(listing, closesAt: Millis(closesAt))).result.ok)
        }
        clock.set(2500)
        writer.wake()
        // Wait until both due listings have closed.
        for _ in 0..<2000 {
            if recorder.events.withLock({ $0.filter { $0.kind.typeName == "closed" }.count }) == 2 { break }
            try await Task.sleep(for: .milliseconds(1))
        }
        let closed = recorder.events.withLock { $0.filter { $0.kind.typeName == "closed" } }
        #expect(closed.map(\.listing) == ["A", "B"])
        #expect(closed.map(\.at) == [1000, 2000])
        let now = await writer.read { engine, _ in engine.now }
        #expect(now == 2500)
        await writer.shutdown()
    }

    @Test func shutdownAppliesEverythingQueuedThenRefusesNewCommands() async throws {
        let recorder = Recorder()
        let writer = Writer(clock: ManualClock(0), observer: recorder)
        writer.start()
        #expect(await writer.submit(openEnglish("L")).result.ok)
        let gate = WriterGate()
        await gate.hold(writer)
        for i in 0..<500 {
            let command = bid("L", "u\(i % 3)", Money(100 + i * 100), id: "b\(i)")
            #expect(writer.submit(command, replyTo: recorder) == nil)
        }
        async let stopped: Void = writer.shutdown()
        // Shutdown has begun: new commands are refused while the queued ones still drain.
        while writer.submit(bid("L", "late", 1, id: "late"), replyTo: nil) == nil {
            try await Task.sleep(for: .milliseconds(1))
        }
        gate.release()
        await stopped
        #expect(writer.isStopped)
        #expect(recorder.outcomes.withLock { $0.count } == 500)
        #expect(writer.submit(bid("L", "ann", 1_000_000, id: "after"), replyTo: nil)?.error == .overloaded)
    }
}
