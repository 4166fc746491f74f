// Benchmarks of the gateway's per-message work: building the one WebSocket frame that every subscriber of a
// listing is sent, and reading a client's command frame.
//
//     cd Benchmarks && swift package benchmark --target Gateway
//
// Every benchmark runs 1,000 messages per iteration (`scalingFactor: .kilo`); figures marked `*` are per message.

import Benchmark
import GavelCore
@_spi(Manual) import GavelEngine
import GavelGateway
import GavelWire
import NIOCore

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.throughput, .wallClock, .mallocCountTotal],
        warmupIterations: 1,
        scalingFactor: .kilo,
        maxDuration: .seconds(3),
        maxIterations: 500
    )

    let events: [Event] = (0..<1_024).map { (k: Int) -> Event in
        let leader: String = "bidder-" + String(k % 7)
        let kind = EventKind.bidPlaced(
            price: Money(1_050 + k), leader: leader, bids: Int64(k + 2), closesAt: Millis(1_000_000_000_000),
            reserveMet: true)
        return Event(listing: "L" + String(k), seq: UInt64(k + 2), at: Millis(k), kind: kind)
    }
    let allocator = ByteBufferAllocator()
    // The encoders write into a buffer the caller keeps. The first two frame cases make each frame a new buffer; the
    // "reused" cases do what `gavel serve` does: the fan-out writes each event's frame into the next of the buffers it
    // keeps (`FanOut.liveFrame`, a listing's history reusing the one it drops), and a session writes its result frame
    // into its outbound buffer, cleared once the socket took the last one.
    let scratch = Scratch()
    Benchmark("frame: a bid_placed event encoded once into a complete WebSocket frame") { benchmark in
        for index in benchmark.scaledIterations {
            MessageEncoder.event(events[index & 1_023], ts: 1_795_000_000_000, into: &scratch.bytes)
            blackHole(ServerFrame.text(scratch.bytes, allocator: allocator))
        }
    }

    Benchmark(
        "frame: a bid_placed event encoded once into a reused WebSocket frame buffer, as the fan-out does",
        configuration: .init(thresholds: [.mallocCountTotal: .init(absolute: [.p90: 0])])
    ) { benchmark in
        scratch.writeReused(benchmark) { index, bytes in
            MessageEncoder.event(events[index & 1_023], ts: 1_795_000_000_000, into: &bytes)
        }
    }

    let results = (0..<1_024).map { (k: Int) -> (id: String, result: CommandResult) in
        let price = Money(1_050 + k)
        return (id: "b" + String(k), result: CommandResult(error: nil, message: "", price: price, leading: true))
    }
    Benchmark("frame: a bid's result encoded into a complete WebSocket frame") { benchmark in
        for index in benchmark.scaledIterations {
            let (id, result) = results[index & 1_023]
            MessageEncoder.result(id: id, result, ts: 1_795_000_000_000, into: &scratch.bytes)
            blackHole(ServerFrame.text(scratch.bytes, allocator: allocator))
        }
    }

    Benchmark(
        "frame: a bid's result encoded into a reused WebSocket frame buffer, as the session does",
        configuration: .init(thresholds: [.mallocCountTotal: .init(absolute: [.p90: 0])])
    ) { benchmark in
        scratch.writeReused(benchmark) { index, bytes in
            let (id, result) = results[index & 1_023]
            MessageEncoder.result(id: id, result, ts: 1_795_000_000_000, into: &bytes)
        }
    }

    // The release path, warm: every listing's history full, so each frame is written into the buffer of the one it
    // drops. The bids are made and submitted before the measurement (their submissions are the producer's).
    // Threshold: 5 allocations a measured sample (of 1,000 bids), none per bid: `EmbeddedEventLoop` allocates for
    // the one routing task the releases queue (its `scheduleTask`: a promise, the task, its place in the queue);
    // NIO's own event loop runs the fan-out's task, made once, without allocating.
    nonisolated(unsafe) var release: ReleaseFixture!
    Benchmark(
        "release: english bids applied and routed through the fan-out (view, frame, history), 100 listings",
        configuration: .init(thresholds: [.mallocCountTotal: .init(absolute: [.p90: 5])])
    ) { benchmark in
        release.prepare(benchmark.scaledIterations.count)
        if release.submit() > 0 { return benchmark.error("bids refused at submit") }
        benchmark.startMeasurement()
        let applied = release.writer.runUntilIdle()
        // The fan-out routes on its first event loop: the one task the releases queued there.
        release.loop.run()
        benchmark.stopMeasurement()
        if applied != benchmark.scaledIterations.count { benchmark.error("applied \(applied) entries") }
        if !release.routedEveryBid() { benchmark.error("a listing's view is not at its last bid") }
    } setup: {
        release = ReleaseFixture()
        for _ in 0..<40 {
            release.prepare(1_000)
            _ = release.submit()
            release.writer.runUntilIdle()
            release.loop.run()
        }
    } teardown: {
        release = nil
    }

    let lines: [String] = (0..<1_024).map { (k: Int) -> String in
        let id = "b" + String(k)
        let listing = "L" + String(k)
        let bidder = "bidder-" + String(k % 7)
        return #"{"type":"bid","id":"\#(id)","listing":"\#(listing)","bidder":"\#(bidder)","amount":\#(1_000 + k)}"#
    }
    Benchmark("command, generic path: a client's bid text frame parsed into a JSON tree and decoded") { benchmark in
        for index in benchmark.scaledIterations {
            guard let value = try? JSONParser.parse(lines[index & 1_023]) else { return benchmark.error("bad JSON") }
            blackHole(CommandDecoder.decode(value))
        }
    }

    // What the session does with a bid or order frame: read it straight from the received buffer.
    let bidFrames = lines.map { ByteBuffer(string: $0) }
    Benchmark("command: a client's bid text frame decoded straight from its bytes, as the session does") { benchmark in
        for index in benchmark.scaledIterations {
            guard let frame = bidFrames[index & 1_023].withUnsafeReadableBytes(FastCommandDecoder.decode) else {
                return benchmark.error("not read by the fast path")
            }
            blackHole(frame.command(actor: frame.actor ?? "ann"))
        }
    }

    let orderFrames = (0..<1_024).map { (k: Int) -> ByteBuffer in
        let side = k % 2 == 0 ? "buy" : "sell"
        return ByteBuffer(
            string:
                #"{"type":"order","id":"o\#(k)","listing":"M1","trader":"trader-\#(k % 7)","side":"\#(side)","price":\#(500 + k),"quantity":\#(1 + k % 10),"tif":"ioc"}"#
        )
    }
    Benchmark("command: a client's order text frame decoded straight from its bytes, as the session does") {
        benchmark in
        for index in benchmark.scaledIterations {
            guard let frame = orderFrames[index & 1_023].withUnsafeReadableBytes(FastCommandDecoder.decode) else {
                return benchmark.error("not read by the fast path")
            }
            blackHole(frame.command(actor: frame.actor ?? "ann"))
        }
    }
}

/// The buffer the frame benchmarks encode into, kept from one message to the next as the fan-out keeps its own.
final class Scratch: @unchecked Sendable {
    var bytes: [UInt8] = []
    /// A frame buffer kept from one message to the next, as the fan-out's and a session's are.
    var frame = ByteBufferAllocator().buffer(capacity: 1_024)

    /// Writes each message of the sample as `gavel serve` does: `encode` into the reused byte buffer, then its text
    /// frame into the reused frame buffer (cleared first). The buffers are taken out of this object for the sample
    /// and put back after it: this package is built with exclusivity checks, which `gavel serve`'s release build is
    /// not, and a check per message is not its cost.
    func writeReused(_ benchmark: Benchmark, _ encode: (Int, inout [UInt8]) -> Void) {
        var (bytes, frame) = (self.bytes, self.frame)
        (self.bytes, self.frame) = ([], ByteBuffer())
        defer { (self.bytes, self.frame) = (bytes, frame) }
        for index in benchmark.scaledIterations {
            encode(index, &bytes)
            frame.clear()
            ServerFrame.appendText(bytes, to: &frame)
            blackHole(frame.readableBytes)
        }
    }
}
