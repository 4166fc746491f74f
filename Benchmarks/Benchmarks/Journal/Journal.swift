// Benchmarks of durability: the record codec, LZ4 segment append, durable acknowledgements under each fsync
// policy, snapshot write and load, and replay.
//
//     cd Benchmarks && swift package benchmark --target Journal
//
// Engine-side figures are per entry (`scalingFactor: .kilo` where marked). The data directories live under
// /tmp/gavel-bench-* and are removed at the end of each benchmark.

import Benchmark
import Dispatch
import GavelCore
@_spi(Manual) import GavelEngine
import GavelJournal
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

let listings = 10_000
let bidders = ["ann", "bob", "cy", "dee"]

func listingID(_ k: Int) -> String { "listing-\(k)" }

/// The command opening english listing `k` (start 100, closing far in the future).
func openCommand(_ k: Int) -> Command {
    Command(
        id: "open-\(k)", listing: listingID(k),
        body: .open(seller: "seller", terms: .english(.init(start: 100, closesAt: 1 << 40))))
}

/// Opens `listings` english auctions through `writer` and runs it until idle.
func openListings(_ writer: Writer) {
    for k in 0..<listings {
        writer.submit(openCommand(k), replyTo: nil)
        if k % 1000 == 999 { writer.runUntilIdle() }
    }
    writer.runUntilIdle()
}

/// `count` accepted bids, spread round-robin over the listings, each raising the price.
func bidCommands(_ count: Int, offset: Int = 0) -> [Command] {
    (0..<count).map { i in
        let n = i + offset
        let round = n / listings
        return Command(
            id: "b\(n)", listing: listingID(n % listings),
            body: .bid(bidder: bidders[round % bidders.count], amount: Money(200 + round * 1_000)))
    }
}

func temporaryDirectory(_ name: String) -> String {
    let path = "/tmp/gavel-bench-\(name)-\(getpid())"
    removeTree(path)
    return path
}

func removeTree(_ path: String) {
    let directory = DataDirectory(path)
    for (_, file) in directory.segments() { unlink(file) }
    for (_, file) in directory.snapshotFiles() { unlink(file) }
    rmdir(directory.journal)
    rmdir(directory.snapshots)
    rmdir(path)
}

/// A journaled writer on a fresh directory.
func journaledWriter(_ path: String, fsync: FsyncPolicy, threaded: Bool, observer: ReleaseObserver? = nil) throws
    -> (Writer, Journal)
{
    let directory = DataDirectory(path)
    try directory.create()
    var journalConfiguration = JournalConfiguration()
    journalConfiguration.fsync = fsync
    let journal = try Journal(
        directory: directory, configuration: journalConfiguration, recovery: try Recovery.recover(directory))
    var configuration = WriterConfiguration()
    configuration.snapshotOnShutdown = false
    configuration.engine.expectedRequestIDs = 2_000_000
    let writer = Writer(
        configuration: configuration, sink: journal, snapshots: journal, clock: ManualClock(0), observer: observer)
    if threaded { writer.start() } else { writer.startManual() }
    return (writer, journal)
}

let largeListings = 100_000

/// Submits `count` accepted bids over the `largeListings` listings, each with a request id of its own.
func submitLargeBids(_ writer: Writer, count: Int, offset: Int) {
    for i in 0..<count {
        let n = i + offset
        let command = Command(
            id: "s\(n)", listing: listingID(n % largeListings),
            body: .bid(bidder: bidders[(n / largeListings) % bidders.count], amount: Money(200 + n)))
        writer.submit(command, replyTo: nil)
        if i % 4_096 == 4_095 { writer.runUntilIdle() }
    }
    writer.runUntilIdle()
}

/// A large journaled state kept across a benchmark's iterations.
final class LargeState: @unchecked Sendable {
    let path: String
    private(set) var writer: Writer?
    private(set) var journal: Journal?
    private var round = 0

    init(_ name: String) { path = temporaryDirectory(name) }

    func open() throws { (writer, journal) = try largeJournaledState(path) }

    /// The offset of the next 100,000 bids' request ids, new at every call.
    func nextOffset() -> Int {
        round += 1
        return round * 1_000_000
    }

    func close() {
        journal?.close()
        (writer, journal) = (nil, nil)
        removeTree(path)
    }
}

/// A manually driven journaled writer (fsync none) holding 100,000 open english listings and 1,000,000 remembered
/// request ids (the opens and 900,000 bids), all in its journal.
func largeJournaledState(_ path: String) throws -> (Writer, Journal) {
    let directory = DataDirectory(path)
    try directory.create()
    var journalConfiguration = JournalConfiguration()
    journalConfiguration.fsync = .none
    journalConfiguration.keepSnapshots = 2
    var configuration = WriterConfiguration()
    configuration.snapshotOnShutdown = false
    configuration.engine.expectedRequestIDs = 2_000_000
    configuration.engine.maxRequestIDsPerPrincipal = 10_000_000
    configuration.engine.idempotencyWindowMs = 1 << 40
    var options = RecoveryOptions()
    options.engine = configuration.engine
    let journal = try Journal(
        directory: directory, configuration: journalConfiguration,
        recovery: try Recovery.recover(directory, options: options))
    let writer = Writer(configuration: configuration, sink: journal, snapshots: journal, clock: ManualClock(0))
    writer.startManual()
    for k in 0..<largeListings {
        writer.submit(openCommand(k), replyTo: nil)
        if k % 4_096 == 4_095 { writer.runUntilIdle() }
    }
    submitLargeBids(writer, count: 1_000_000 - largeListings, offset: 0)
    return (writer, journal)
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.throughput, .wallClock, .mallocCountTotal],
        warmupIterations: 1,
        maxDuration: .seconds(5),
        maxIterations: 50
    )

    // MARK: - Record codec

    let records: [JournalRecord] = bidCommands(1_024).enumerated().map { i, command in
        .command(lsn: UInt64(i + 1), at: 1_000, principal: command.principal, command: command, outcome: .applied)
    }
    Benchmark("record encode (bid)", configuration: .init(scalingFactor: .kilo)) { benchmark in
        var out: [UInt8] = []
        out.reserveCapacity(1 << 20)
        var scratch = BinaryWriter(capacity: 256)
        for i in benchmark.scaledIterations {
            if out.count > 1 << 19 { out.removeAll(keepingCapacity: true) }
            records[i & 1_023].encode(into: &out, scratch: &scratch)
        }
        blackHole(out)
    }

    var encoded: [UInt8] = []
    var scratch = BinaryWriter(capacity: 256)
    for record in records { record.encode(into: &encoded, scratch: &scratch) }
    Benchmark("record decode (bid)", configuration: .init(scalingFactor: .kilo)) { benchmark in
        var offset = 0
        for _ in benchmark.scaledIterations {
            if offset >= encoded.count { offset = 0 }
            let (record, next) = try JournalRecord.decode(encoded, at: offset)
            blackHole(record)
            offset = next
        }
    }

    // MARK: - Appending to segments

    for policy in [FsyncPolicy.none, .always] {
        let batch = 4_096
        Benchmark(
            "journaled bids, batches of \(batch), fsync \(policy)",
            configuration: .init(
                metrics: [.throughput, .wallClock, .mallocCountTotal], scalingFactor: .mega, maxIterations: 3,
                // One allocation a bid (the queue node the producer pays); the segment's buffers vary by a few.
                thresholds: [.mallocCountTotal: .init(relative: [.p90: 1.0])])
        ) { benchmark in
            let path = temporaryDirectory("append")
            defer { removeTree(path) }
            let (writer, journal) = try journaledWriter(path, fsync: policy, threaded: false)
            openListings(writer)
            let commands = bidCommands(benchmark.scaledIterations.count)
            journal.flush()
            let before = journal.stats.frameBytes.load(ordering: .relaxed)
            let rawBefore = journal.stats.rawBytes.load(ordering: .relaxed)
            benchmark.startMeasurement()
            var i = 0
            for command in commands {
                writer.submit(command, replyTo: nil)
                i += 1
                if i % batch == 0 { writer.runUntilIdle() }
            }
            writer.runUntilIdle()
            journal.flush()
            benchmark.stopMeasurement()
            let frameBytes = journal.stats.frameBytes.load(ordering: .relaxed) - before
            let rawBytes = journal.stats.rawBytes.load(ordering: .relaxed) - rawBefore
            benchmark.measurement(
                .custom("disk bytes per entry", polarity: .prefersSmaller, useScalingFactor: false),
                Int(frameBytes) / commands.count)
            benchmark.measurement(
                .custom("raw bytes per entry", polarity: .prefersSmaller, useScalingFactor: false),
                Int(rawBytes) / commands.count)
            benchmark.measurement(
                .custom("compression x100", polarity: .prefersLarger, useScalingFactor: false),
                Int(rawBytes * 100 / max(frameBytes, 1)))
            journal.close()
        }
    }

    // MARK: - Durable acknowledgements through group commit

    for policy in [FsyncPolicy.always, .interval(ms: 10), .none] {
        Benchmark(
            "acknowledged bids, 4 producers, fsync \(policy)",
            configuration: .init(metrics: [.throughput, .wallClock], scalingFactor: .mega, maxIterations: 3)
        ) { benchmark in
            let path = temporaryDirectory("ack")
            defer { removeTree(path) }
            let acknowledged = ResultCount()
            let (writer, journal) = try journaledWriter(path, fsync: policy, threaded: true, observer: acknowledged)
            for k in 0..<listings {
                writer.submit(openCommand(k), replyTo: nil)
            }
            await writer.barrier()
            let total = benchmark.scaledIterations.count
            let commands = bidCommands(total)
            let producers = 4
            benchmark.startMeasurement()
            DispatchQueue.concurrentPerform(iterations: producers) { p in
                var i = p
                while i < total {
                    // Each producer owns a quarter of the listings, so its bids stay in order per listing.
                    let command = commands[i]
                    while writer.submit(command, replyTo: acknowledged) != nil { usleep(20) }
                    i += producers
                }
            }
            while acknowledged.value < total { usleep(100) }
            benchmark.stopMeasurement()
            benchmark.measurement(
                .custom("fsyncs", polarity: .prefersSmaller, useScalingFactor: false),
                Int(journal.stats.syncs.load(ordering: .relaxed)))
            await writer.shutdown()
            journal.close()
        }
    }

    // MARK: - Snapshots

    let snapshotEngine: Engine = {
        let engine = Engine()
        var events: [Event] = []
        for k in 0..<listings {
            _ = engine.apply(openCommand(k), events: &events)
            events.removeAll(keepingCapacity: true)
        }
        for command in bidCommands(100_000) {
            _ = engine.apply(command, events: &events)
            events.removeAll(keepingCapacity: true)
        }
        return engine
    }()
    // The size the snapshot target names: 100,000 open listings and 1,000,000 remembered request ids, in a journaled data directory
    // built once per benchmark (setup) and removed afterwards (teardown).
    let pauseState = LargeState("snapshot-pause")
    Benchmark(
        "snapshot: the writer's pause at a snapshot point, 100,000 open listings, 1,000,000 ids",
        configuration: .init(
            metrics: [.wallClock, .mallocCountTotal], maxDuration: .seconds(60), maxIterations: 50,
            // 0 or 1 allocation a pause from one run to the next (the p90 of 50 turns): a difference of one either
            // way is not a change.
            thresholds: [.mallocCountTotal: .init(absolute: [.p90: 1])]),
        closure: { benchmark in
            guard let writer = pauseState.writer else { return }
            writer.requestSnapshot()
            // One turn: serve the request and hand the snapshot point to the journal; nothing is copied.
            benchmark.startMeasurement()
            writer.runUntilIdle()
            benchmark.stopMeasurement()
        }, setup: { try pauseState.open() }, teardown: { pauseState.close() })
    let backgroundState = LargeState("snapshot-background")
    Benchmark(
        "snapshot: the checkpointer catches up 100,000 entries and writes the file, 100,000 listings, 1,000,000 ids",
        configuration: .init(
            metrics: [.wallClock, .mallocCountTotal], maxDuration: .seconds(120), maxIterations: 5,
            // About 360 allocations a snapshot (815 when this threshold was first set): reading the segment and
            // decoding its frames (75 a snapshot for the frames' chain records alone), the state and the file; none
            // per entry; the frames read vary by a few.
            thresholds: [.mallocCountTotal: .init(relative: [.p90: 5.0])]),
        closure: { benchmark in
            guard let writer = backgroundState.writer, let journal = backgroundState.journal else { return }
            submitLargeBids(writer, count: 100_000, offset: backgroundState.nextOffset())
            benchmark.startMeasurement()
            writer.requestSnapshot()
            writer.runUntilIdle()
            journal.waitForSnapshots()
            benchmark.stopMeasurement()
        },
        setup: {
            try backgroundState.open()
            // The first snapshot makes the shadow engine (recovery of the whole journal); later ones carry it forward.
            backgroundState.writer?.requestSnapshot()
            backgroundState.writer?.runUntilIdle()
            backgroundState.journal?.waitForSnapshots()
        }, teardown: { backgroundState.close() })

    Benchmark("snapshot: encode the state (stop-the-world copy), 10,000 listings, 110,000 ids") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(snapshotEngine.encodeState()) }
    }
    let state = snapshotEngine.encodeState()
    Benchmark("snapshot: compress, hash and encode the file") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(SnapshotFile.make(lsn: 1, now: 0, chain: Chain.genesis, state: state).encoded())
        }
    }
    let file = SnapshotFile.make(lsn: 1, now: 0, chain: Chain.genesis, state: state).encoded()
    Benchmark("snapshot: load (decode, verify, restore)") { benchmark in
        for _ in benchmark.scaledIterations {
            let decoded = try SnapshotFile.decode(file)
            blackHole(try Engine.restore(from: decoded.state))
        }
    }

    // MARK: - Replay

    Benchmark(
        "replay from the journal (english bids)",
        configuration: .init(
            metrics: [.throughput, .wallClock, .mallocCountTotal], scalingFactor: .mega, maxIterations: 3,
            // About 27 allocations per 1,000 entries (the decoded frames' buffers), none per entry.
            thresholds: [.mallocCountTotal: .init(relative: [.p90: 5.0])])
    ) { benchmark in
        let path = temporaryDirectory("replay")
        defer { removeTree(path) }
        let (writer, journal) = try journaledWriter(path, fsync: .none, threaded: false)
        openListings(writer)
        var i = 0
        for command in bidCommands(benchmark.scaledIterations.count) {
            writer.submit(command, replyTo: nil)
            i += 1
            if i % 4_096 == 0 { writer.runUntilIdle() }
        }
        writer.runUntilIdle()
        journal.close()
        var options = RecoveryOptions()
        options.repair = false
        options.engine.expectedRequestIDs = benchmark.scaledIterations.count + listings
        benchmark.startMeasurement()
        let report = try Recovery.recover(DataDirectory(path), options: options)
        benchmark.stopMeasurement()
        blackHole(report.engine)
    }
}
