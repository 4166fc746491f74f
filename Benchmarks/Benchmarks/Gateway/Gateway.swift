// Benchmarks of the gateway's per-message work: building the one WebSocket frame that every subscriber of a
// listing is sent, and reading a client's command frame.
//
//     cd Benchmarks && swift package benchmark --target Gateway
//
// Every benchmark runs 1,000 messages per iteration (`scalingFactor: .kilo`); figures marked `*` are per message.

import Benchmark
import GavelCore
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
    Benchmark("frame: a bid_placed event encoded once into a complete WebSocket frame") { benchmark in
        for index in benchmark.scaledIterations {
            let payload = MessageEncoder.event(events[index & 1_023], ts: 1_795_000_000_000)
            blackHole(ServerFrame.text(payload, allocator: allocator))
        }
    }

    let lines: [String] = (0..<1_024).map { (k: Int) -> String in
        let id = "b" + String(k)
        let listing = "L" + String(k)
        let bidder = "bidder-" + String(k % 7)
        return #"{"type":"bid","id":"\#(id)","listing":"\#(listing)","bidder":"\#(bidder)","amount":\#(1_000 + k)}"#
    }
    Benchmark("command: a client's bid text frame parsed and decoded, as the session does") { benchmark in
        for index in benchmark.scaledIterations {
            guard let value = try? JSONParser.parse(lines[index & 1_023]) else { return benchmark.error("bad JSON") }
            blackHole(CommandDecoder.decode(value))
        }
    }
}
