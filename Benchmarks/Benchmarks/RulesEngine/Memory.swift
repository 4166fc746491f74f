// What the engine's state costs in memory, and what its idempotency table's growth costs in time.
//
//     cd Benchmarks && swift package benchmark --target RulesEngine --filter 'memory|idempotency'
//
// The memory figures are the growth of the process's resident size (`/proc/self/statm`) while an engine is filled,
// divided by what was added, reported as custom metrics (one iteration each; the figure is the same at every
// percentile). The request ids the filling commands leave in the idempotency table are included: 11 per listing
// (its open and 10 bids), one per order; their ids are short (at most 15 bytes, kept inline in `String`), unlike
// the 20-character ids of the per-id figure.

import Benchmark
import GavelCore

#if canImport(Glibc)
    import Glibc
#endif

/// The resident size of the process, in bytes (0 where `/proc` is missing): the second field of `/proc/self/statm`,
/// in pages.
func residentBytes() -> Int {
    let fd = open("/proc/self/statm", O_RDONLY)
    guard fd >= 0 else { return 0 }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 128)
    let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard count > 0 else { return 0 }
    let fields = buffer[..<count].split(separator: UInt8(ascii: " "))
    guard fields.count > 1, let pages = Int(String(decoding: fields[1], as: UTF8.self)) else { return 0 }
    return pages * sysconf(Int32(_SC_PAGESIZE))
}

/// glibc's `malloc_trim(0)`, which `Glibc` does not export (looked up at run time; nothing where it is missing).
private func trimMalloc() {
    guard let symbol = dlsym(nil, "malloc_trim") else { return }
    typealias Trim = @convention(c) (Int) -> Int32
    _ = unsafeBitCast(symbol, to: Trim.self)(0)
}

/// Applies every command of `commands` to `engine`, requiring each to be accepted when `mustAccept` is set.
private func fill(_ engine: Engine, _ commands: some Sequence<Command>, mustAccept: Bool = true) {
    var events: [Event] = []
    events.reserveCapacity(16)
    for command in commands {
        let result = engine.apply(command, events: &events)
        if mustAccept { precondition(result.ok, "\(command.id) refused: \(result.message)") }
        events.removeAll(keepingCapacity: true)
    }
}

/// Resident bytes added by `body`, which returns what it built (kept alive until measured).
private func residentGrowth(_ body: () -> AnyObject) -> (bytes: Int, kept: AnyObject) {
    // Give the memory freed by earlier measurements back first (glibc's allocator is the one under the benchmark's
    // malloc counter), so that what `body` allocates shows as growth instead of reusing it.
    trimMalloc()
    let before = residentBytes()
    let kept = body()
    return (residentBytes() - before, kept)
}

enum MemoryPlan {
    static let requestIDs = 1_000_000
    static let listings = 100_000
    static let bidsPerListing = 10
    static let restingOrders = 100_000
    /// A request id like the ones clients send: 20 characters, under principals of 12.
    static func requestID(_ n: Int) -> String { "req-\(String(n, radix: 10).leftPadded(to: 16))" }
    /// A request id as many clients make them: a random UUID in its canonical text form (36 characters).
    static func uuid(_ n: Int) -> String {
        let high = UInt64(truncatingIfNeeded: n) &* 0x9E37_79B9_7F4A_7C15
        let low = (UInt64(truncatingIfNeeded: n) ^ 0xD1B5_4A32_D192_ED03) &* 0xBF58_476D_1CE4_E5B9
        let hex = String(high, radix: 16).leftPadded(to: 16) + String(low, radix: 16).leftPadded(to: 16)
        let digits = Array(hex)
        return [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { String(digits[$0]) }.joined(separator: "-")
    }
    static func principal(_ n: Int) -> String { "user-\(String(n % 10_000, radix: 10).leftPadded(to: 7))" }
}

extension String {
    fileprivate func leftPadded(to length: Int) -> String {
        count >= length ? self : String(repeating: "0", count: length - count) + self
    }
}

/// Resident bytes per remembered request id: rejected `cancel_listing`s (unknown listing), each remembered, their ids
/// made by `id`.
/// made by `id`. Each command is made just before it is applied and dropped after, so that what the engine keeps of
/// its strings is counted (a `String` over 15 bytes is a heap block, which a table keeping the id as a `String`
/// keeps alive).
private func bytesPerRequestID(_ id: @escaping (Int) -> String = MemoryPlan.requestID) -> Int {
    let commands = (0..<MemoryPlan.requestIDs).lazy.map { n in
        Command(id: id(n), listing: "none", body: .cancelListing(seller: MemoryPlan.principal(n)))
    }
    var configuration = EngineConfiguration()
    configuration.maxRequestIDsPerPrincipal = MemoryPlan.requestIDs
    let (bytes, kept) = residentGrowth {
        let engine = Engine(configuration: configuration)
        fill(engine, commands, mustAccept: false)
        return engine
    }
    precondition((kept as! Engine).rememberedCount == MemoryPlan.requestIDs)
    return bytes / MemoryPlan.requestIDs
}

func memoryBenchmarks() {
    let perID = BenchmarkMetric.custom("bytes per request id", polarity: .prefersSmaller, useScalingFactor: false)
    let perListing = BenchmarkMetric.custom("bytes per listing", polarity: .prefersSmaller, useScalingFactor: false)
    let perOrder = BenchmarkMetric.custom("bytes per order", polarity: .prefersSmaller, useScalingFactor: false)
    func once(_ metric: BenchmarkMetric) -> Benchmark.Configuration {
        .init(
            metrics: [metric], warmupIterations: 0, scalingFactor: .one, maxDuration: .seconds(120), maxIterations: 1,
            thresholds: [:])
    }

    Benchmark("memory: bytes per remembered request id, 1,000,000 ids", configuration: once(perID)) { benchmark in
        benchmark.measurement(perID, bytesPerRequestID())
    }

    Benchmark("memory: bytes per remembered UUID request id, 1,000,000 ids", configuration: once(perID)) { benchmark in
        benchmark.measurement(perID, bytesPerRequestID(MemoryPlan.uuid))
    }

    Benchmark("memory: bytes per open english listing with 10 bids, 100,000 listings", configuration: once(perListing))
    {
        benchmark in
        let opens = (0..<MemoryPlan.listings).map { n in
            Command(
                id: "open-\(n)", listing: "listing-\(n)",
                body: .open(seller: "seller-\(n % 1_000)", terms: .english(.init(start: 100, closesAt: Plan.closesAt))))
        }
        let bids = (0..<MemoryPlan.bidsPerListing).flatMap { round in
            (0..<MemoryPlan.listings).map { n in
                Command(
                    id: "bid-\(round)-\(n)", listing: "listing-\(n)",
                    body: .bid(bidder: "bidder-\((n + round) % 5_000)", amount: Money(1_000 + round * 20_000)))
            }
        }
        let (bytes, kept) = residentGrowth {
            let engine = Engine()
            fill(engine, opens)
            fill(engine, bids)
            return engine
        }
        benchmark.measurement(perListing, bytes / MemoryPlan.listings)
        blackHole(kept)
    }

    Benchmark("memory: bytes per resting market order, 100,000 orders", configuration: once(perOrder)) { benchmark in
        let orders = (0..<MemoryPlan.restingOrders).map { n in
            // 200 traders under the per-trader cap; buys below 10^6 and sells above, so nothing trades.
            let buy = n % 2 == 0
            return Command(
                id: "order-\(n)", listing: "M",
                body: .order(
                    trader: "trader-\(n % 200)", side: buy ? .buy : .sell,
                    price: buy ? Money(1_000_000 - n % 5_000) : Money(1_000_001 + n % 5_000), quantity: 10,
                    tif: .gtc, expiresAt: nil))
        }
        let (bytes, kept) = residentGrowth {
            let engine = Engine()
            fill(engine, [Command(id: "open", listing: "M", body: .open(seller: "x", terms: .market(.init())))])
            fill(engine, orders)
            return engine
        }
        benchmark.measurement(perOrder, bytes / MemoryPlan.restingOrders)
        blackHole(kept)
    }

    // The worst single command while the idempotency table grows from empty to 10^6 ids with no room reserved
    // (`--expected-request-ids 0`): p100 of the wall clock is the worst single insert, table growth included.
    let growing = Fixture<Command>()
    Benchmark(
        "idempotency: one new request id per command, table growing from 0 to 1,000,000 ids",
        configuration: .init(
            metrics: [.wallClock], warmupIterations: 0, scalingFactor: .one, maxDuration: .seconds(120),
            maxIterations: MemoryPlan.requestIDs, thresholds: [:])
    ) { benchmark in
        growing.withOwned { engine, commands, next, events, _ in
            events.removeAll(keepingCapacity: true)
            blackHole(engine.apply(commands[next], events: &events))
            next += 1
        }
    } setup: {
        var configuration = EngineConfiguration()
        configuration.maxRequestIDsPerPrincipal = MemoryPlan.requestIDs
        growing.engine = Engine(configuration: configuration)
        growing.inputs = (0..<MemoryPlan.requestIDs).map { n in
            Command(id: MemoryPlan.requestID(n), listing: "none", body: .cancelListing(seller: MemoryPlan.principal(n)))
        }
        growing.events.reserveCapacity(16)
    }
}
