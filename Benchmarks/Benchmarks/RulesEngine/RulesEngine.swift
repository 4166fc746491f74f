// Benchmarks of the rules engine and the JSON codec.
//
//     cd Benchmarks && swift package benchmark --target RulesEngine
//
// Every benchmark runs 1,000 commands (or lines) per iteration (`scalingFactor: .kilo`); the table shows figures
// per command, marked with `*`. Commands are prepared in setup, outside the measured part, so the measured loop
// does no string formatting: what it counts is the engine's (or the codec's) own work and allocations.

import Benchmark
import GavelCore
import GavelWire

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.throughput, .wallClock, .mallocCountTotal, .instructions],
        warmupIterations: Plan.warmupIterations,
        scalingFactor: .kilo,
        maxDuration: .seconds(3),
        maxIterations: Plan.maxIterations,
        // The harness's own allocations vary by a few between runs (16 or 18 for the zero-allocation bids); one
        // more allocation per command is 1,000 an iteration, far past this.
        thresholds: [.mallocCountTotal: .init(absolute: [.p90: 50])]
    )

    // MARK: - Engine

    let englishBids = Fixture<Command>()
    Benchmark("english bids on 10,000 open listings") { benchmark in
        englishBids.applyCommands(benchmark.scaledIterations.count, to: benchmark, what: "bids")
    } setup: {
        englishBids.engine = engineWithEnglishListings()
        englishBids.inputs = englishBidCommands()
        englishBids.events.reserveCapacity(16)
    }

    let marketOrders = Fixture<Command>()
    Benchmark("market orders: maker rests, ioc taker partially fills") { benchmark in
        marketOrders.applyCommands(benchmark.scaledIterations.count, to: benchmark, what: "orders")
    } setup: {
        marketOrders.engine = engineWithMarketBook()
        marketOrders.inputs = marketOrderCommands()
        marketOrders.events.reserveCapacity(16)
    }

    // MARK: - Wire

    let bidLines = englishBidLines().prefix(1_024).map { $0 }
    Benchmark("JSON decode of a bid command line") { benchmark in
        for index in benchmark.scaledIterations {
            blackHole(CommandDecoder.decode(line: bidLines[index & 1_023]))
        }
    }

    // The same lines as bytes, as a connection receives them, read by the fast path straight into a `Command`
    // (identifiers of at most 15 bytes are small strings: building them allocates nothing).
    let bidLineBytes = bidLines.map { Array($0.utf8) }
    Benchmark("fast decode of a bid command line (FastCommandDecoder)") { benchmark in
        for index in benchmark.scaledIterations {
            blackHole(FastCommandDecoder.decodedInput(bidLineBytes[index & 1_023], actor: nil))
        }
    }

    // What a producer computes for each command it submits (`Submission`), so that the writer does not: the request
    // and principal hashes, the fingerprint, the listing's hash and whether the identifiers are well-formed.
    let bidCommands = bidLines.compactMap { line -> Command? in
        if case .command(let command, _) = CommandDecoder.decode(line: line) { return command }
        return nil
    }
    Benchmark("digest of a bid command (CommandDigest)") { benchmark in
        guard bidCommands.count == 1_024 else { return benchmark.error("decoded \(bidCommands.count) bids") }
        for index in benchmark.scaledIterations {
            blackHole(CommandDigest(bidCommands[index & 1_023]))
        }
    }

    let orderLineBytes = (0..<1_024).map { k in
        Array(
            #"{"type":"order","id":"o\#(k)","listing":"M1","trader":"trader-\#(k % 7)","side":"\#(k % 2 == 0 ? "buy" : "sell")","price":\#(500 + k),"quantity":\#(1 + k % 10),"tif":"ioc"}"#
                .utf8)
    }
    Benchmark("fast decode of an order command line (FastCommandDecoder)") { benchmark in
        for index in benchmark.scaledIterations {
            blackHole(FastCommandDecoder.decodedInput(orderLineBytes[index & 1_023], actor: nil))
        }
    }

    let bidPlacedEvents = (0..<1_024).map { k in
        Event(
            listing: listingID(k), seq: UInt64(k + 2), at: Millis(k),
            kind: .bidPlaced(
                price: Money(1_050 + k), leader: Plan.bidders[k % Plan.bidders.count], bids: Int64(k + 2),
                closesAt: Plan.closesAt, reserveMet: true))
    }
    Benchmark("JSON encode of a bid_placed event") { benchmark in
        for index in benchmark.scaledIterations {
            blackHole(MessageEncoder.event(bidPlacedEvents[index & 1_023]))
        }
    }

    let encoded = Buffer()
    Benchmark("JSON encode of a bid_placed event into a reused buffer") { benchmark in
        for index in benchmark.scaledIterations {
            MessageEncoder.event(bidPlacedEvents[index & 1_023], ts: 1_795_000_000_000, into: &encoded.bytes)
            blackHole(encoded.bytes.count)
        }
    }

    let results = (0..<1_024).map { k in
        (id: "b\(k)", result: CommandResult(error: nil, message: "", price: Money(1_050 + k), leading: k % 3 != 0))
    }
    Benchmark("JSON encode of a bid's result into a reused buffer") { benchmark in
        for index in benchmark.scaledIterations {
            let (id, result) = results[index & 1_023]
            MessageEncoder.result(id: id, result, ts: 1_795_000_000_000, into: &encoded.bytes)
            blackHole(encoded.bytes.count)
        }
    }

    // MARK: - Wire and engine together

    // The same bid stream as the english benchmark, as lines: decode, apply, encode the result and each event.
    let simulated = Fixture<String>()
    Benchmark("bid line to result and event lines (Simulator) on 10,000 listings") { benchmark in
        guard let simulator = simulated.simulator else { return benchmark.error("setup did not run") }
        simulated.withOwned { _, lines, next, _, _ in
            for _ in benchmark.scaledIterations {
                simulator.process(line: lines[next]) { blackHole($0) }
                next += 1
            }
        }
    } setup: {
        simulated.simulator = Simulator(engine: engineWithEnglishListings())
        simulated.inputs = englishBidLines()
    }

    memoryBenchmarks()
}

/// A buffer the encoding benchmarks write into, kept from one message to the next as the gateway keeps its own.
final class Buffer: @unchecked Sendable {
    var bytes: [UInt8] = []
}
