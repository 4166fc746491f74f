import ArgumentParser
import GavelWire

/// The load driver's entry point. For now it only describes itself: the driver arrives with the WebSocket gateway.
@main
struct GavelLoad: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gavel-load",
        abstract: "Drive load against a Gavel server and report latency percentiles.",
        discussion: """
            Not implemented yet: the load driver arrives with the WebSocket gateway (gavel serve). It will open \
            many WebSocket connections to a Gavel server on this machine, send bids and orders at a fixed rate \
            for a bounded time, and report throughput and the latency of each result (p50, p99, p99.9, max). \
            Until then, measure the engine with the package in Benchmarks/ (see docs/PERFORMANCE.md).
            """
    )

    func run() throws {
        print("gavel-load: the load driver arrives with the WebSocket gateway (gavel serve); nothing to drive yet.")
        print("Measure the rules engine meanwhile: cd Benchmarks && swift package benchmark --target RulesEngine")
    }
}
