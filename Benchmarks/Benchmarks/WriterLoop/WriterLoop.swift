// Benchmarks of the single-writer loop: the lock-free queues, the writer applying bids, and the timer heap.
//
//     cd Benchmarks && swift package benchmark --target WriterLoop
//
// Figures marked `*` are per command, per queue operation or per timer (`scalingFactor: .kilo`: an iteration is
// 1,000 of them). The writer runs on the benchmark's thread (`startManual`/`runUntilIdle`), so a figure is the
// writer's own work on one core, with an in-memory sink that releases each batch at once.

import Benchmark
import Dispatch
import GavelCore
@_spi(Manual) import GavelEngine
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

let listingCount = 10_000
let bidders = (0..<7).map { "bidder-\($0)" }
let farFuture: Millis = 1_000_000_000_000

func listingID(_ index: Int) -> String { "L\(index)" }

/// Listing indices drawn from a Zipf distribution with exponent `s` over `count` listings (rank 0 is the most
/// popular), from a seed so that every run draws the same stream.
func zipfIndices(_ n: Int, count: Int, s: Double, seed: UInt64) -> [Int] {
    var cumulative: [Double] = []
    cumulative.reserveCapacity(count)
    var total = 0.0
    for rank in 1...count {
        total += 1.0 / pow(Double(rank), s)
        cumulative.append(total)
    }
    var rng = SplitMix64(seed: seed)
    return (0..<n).map { _ in
        let u = Double(rng.next() >> 11) / Double(1 << 53) * total
        var low = 0
        var high = count - 1
        while low < high {
            let mid = (low + high) / 2
            if cumulative[mid] < u { low = mid + 1 } else { high = mid }
        }
        return low
    }
}

/// `n` english bids over ``listingCount`` listings with Zipf(1.0) popularity; every one is accepted: a listing's
/// k-th bid comes from the next bidder with a maximum 20,000 above its (k-1)-th.
func zipfBids(_ n: Int, seed: UInt64 = 42) -> [Command] {
    var bidsOn = [Int](repeating: 0, count: listingCount)
    return zipfIndices(n, count: listingCount, s: 1.0, seed: seed).enumerated().map { i, listing in
        let k = bidsOn[listing]
        bidsOn[listing] += 1
        return Command(
            id: "z\(i)", listing: listingID(listing),
            body: .bid(bidder: bidders[k % bidders.count], amount: Money(1_000 + k * 20_000)))
    }
}

/// An observer that keeps every released batch until ``recycleAll()`` gives them back, as the gateway's fan-out keeps
/// them for its event loops.
final class KeptBatches: ReleaseObserver, @unchecked Sendable {
    private var batches: [Batch] = []
    var keepsBatches: Bool { true }

    init() { batches.reserveCapacity(64) }

    func released(_ batch: Batch, endsGroup: Bool) { batches.append(batch) }

    /// Resets every kept batch and gives it back to the writer's pool.
    func recycleAll() {
        for batch in batches { batch.recycle() }
        batches.removeAll(keepingCapacity: true)
    }
}

/// Counts the results addressed to it in each released batch, then does what the gateway's fan-out and event loop
/// do with the batch: gives it back reset, and hands the submissions whose results it delivered back to the
/// thread's spares (``Submission/recycle(_:)``), which the producer's next submits fill again.
final class RecyclingResults: ReleaseObserver, ResultRecipient, @unchecked Sendable {
    private(set) var value = 0
    private var spent: [Submission] = []
    var keepsBatches: Bool { true }

    init() { spent.reserveCapacity(4_096) }

    func released(_ batch: Batch, endsGroup: Bool) {
        for entry in batch.entries {
            guard let submission = entry.submission, submission.recipient === self else { continue }
            value += 1
            spent.append(submission)
        }
        batch.recycle()
        Submission.recycle(&spent)
    }
}

/// A manually driven writer with ``listingCount`` open english listings.
final class WriterFixture: @unchecked Sendable {
    let writer: Writer
    let clock = ManualClock(0)
    var commands: [Command] = []
    var next = 0
    var rejected = 0

    init(bids: Int, observer: ReleaseObserver? = nil) {
        var configuration = WriterConfiguration()
        configuration.engine.expectedRequestIDs = bids + listingCount
        writer = Writer(configuration: configuration, sink: InMemorySink(), clock: clock, observer: observer)
        writer.startManual()
        for index in 0..<listingCount {
            let open = Command(
                id: "open-\(index)", listing: listingID(index),
                body: .open(seller: "seller", terms: .english(.init(start: 100, closesAt: farFuture))))
            writer.submit(open, replyTo: nil)
            if index % 1_000 == 999 { writer.runUntilIdle() }
        }
        writer.runUntilIdle()
        commands = zipfBids(bids)
    }

    /// Submits the next `count` bids as the gateway does: `submit(_:replyTo:started:wake:)`, which finds the
    /// listing's queue itself, with one wake-up after the last.
    func submit(_ count: Int, replyTo recipient: (any ResultRecipient)?) {
        for _ in 0..<count {
            let command = commands[next]
            next += 1
            if writer.submit(command, replyTo: recipient, wake: false) != nil { rejected += 1 }
        }
        writer.wake()
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.throughput, .wallClock, .mallocCountTotal, .instructions],
        warmupIterations: 1,
        scalingFactor: .kilo,
        maxDuration: .seconds(3),
        maxIterations: 500
    )
    let bidsNeeded = 501 * 1_000

    // MARK: - The writer

    // Take, apply and batch, twice: with each released batch reset on the writer's thread (the writer runs with no
    // observer, and recycles each batch itself), and with the released batches kept by the observer and given back
    // after the measurement, as in `gavel serve`, where the fan-out keeps each batch and its event loops reset it
    // (destroying its entries and events: the submissions' last references), so the writer thread never does.
    for recycledOff in [false, true] {
        nonisolated(unsafe) var fixture: WriterFixture!
        let kept = recycledOff ? KeptBatches() : nil
        Benchmark(
            recycledOff
                ? "writer: take, apply and batch queued english bids, batches recycled off the writer as the fan-out does"
                : "writer: take, apply and batch queued english bids, Zipf(1.0) over 10,000 listings",
            configuration: .init(
                thresholds: [.mallocCountTotal: .init(absolute: [.p90: 0])])
        ) { benchmark in
            fixture.submit(benchmark.scaledIterations.count, replyTo: nil)
            benchmark.startMeasurement()
            let applied = fixture.writer.runUntilIdle()
            benchmark.stopMeasurement()
            kept?.recycleAll()
            if applied != benchmark.scaledIterations.count { benchmark.error("applied \(applied) entries") }
        } setup: {
            fixture = WriterFixture(bids: bidsNeeded, observer: kept)
            kept?.recycleAll()
        } teardown: {
            if fixture.rejected > 0 { print("\(fixture.rejected) submissions were refused") }
            fixture = nil
        }
    }

    nonisolated(unsafe) var endToEnd: WriterFixture!
    nonisolated(unsafe) var results: RecyclingResults!
    Benchmark("writer: submit + apply + release to an observer that finds each result's recipient, Zipf(1.0)") {
        benchmark in
        let before = results.value
        endToEnd.submit(benchmark.scaledIterations.count, replyTo: results)
        endToEnd.writer.runUntilIdle()
        let released = results.value - before
        if released != benchmark.scaledIterations.count { benchmark.error("released \(released) results") }
    } setup: {
        results = RecyclingResults()
        endToEnd = WriterFixture(bids: bidsNeeded, observer: results)
    } teardown: {
        endToEnd = nil
    }

    // MARK: - Queues

    let nodes = (0..<1_000).map {
        Submission(Command(id: "q\($0)", listing: "L", body: .cancelListing(seller: "s")), recipient: nil)
    }
    let single = IntrusiveMPSCQueue<Submission>()
    Benchmark(
        "queue: push + pop, one producer (same thread)",
        configuration: .init(thresholds: [.mallocCountTotal: .init(absolute: [.p90: 0])])
    ) { benchmark in
        for node in nodes { single.push(node) }
        var popped = 0
        while let node = single.pop() {
            blackHole(node)
            popped += 1
        }
        if popped != nodes.count { benchmark.error("popped \(popped)") }
    }

    for producers in [2, 4] {
        // Each producer pushes its own nodes (a node is in one queue at a time); the benchmark thread consumes.
        let perProducer = 250
        let pools = (0..<producers).map { p in
            (0..<perProducer).map {
                Submission(Command(id: "p\(p)-\($0)", listing: "L", body: .cancelListing(seller: "s")), recipient: nil)
            }
        }
        let shared = IntrusiveMPSCQueue<Submission>()
        Benchmark(
            "queue: push + pop, \(producers) producer threads, one consumer",
            configuration: .init(metrics: [.throughput, .wallClock], scalingFactor: .kilo)
        ) { benchmark in
            // 1,000 nodes per round; several rounds per iteration so thread start-up is amortized.
            let rounds = 100
            for _ in 0..<rounds {
                let group = DispatchGroup()
                for p in 0..<producers {
                    DispatchQueue.global().async(group: group) {
                        for node in pools[p] { shared.push(node) }
                    }
                }
                var popped = 0
                while popped < producers * perProducer {
                    if let node = shared.pop() {
                        blackHole(node)
                        popped += 1
                    }
                }
                group.wait()
            }
        }
    }

    // MARK: - Timers

    nonisolated(unsafe) var timers = TimerQueue()
    nonisolated(unsafe) var timerTime: Millis = 0
    let listingNames = (0..<1_000).map { listingID($0) }
    Benchmark(
        "timers: schedule + fire, 1,000,000 scheduled",
        configuration: .init(thresholds: [.mallocCountTotal: .init(absolute: [.p90: 0])])
    ) { benchmark in
        // Each round schedules 1,000 timers spread over the next 1,000,000 ms and fires those now due, so the
        // heap holds about a million timers throughout.
        for i in 0..<1_000 {
            timers.schedule(.close, listing: listingNames[i], at: timerTime + 1_000_000 + Millis(i))
        }
        timerTime += 1_000
        var fired = 0
        while let timer = timers.popDue(atOrBefore: timerTime) {
            blackHole(timer)
            fired += 1
        }
        blackHole(fired)
    } setup: {
        timers = TimerQueue()
        timerTime = 0
        for i in 0..<1_000_000 {
            timers.schedule(.close, listing: listingNames[i % 1_000], at: Millis(i + 1))
        }
    }
}
