import GavelCore
import GavelEngine
import NIOEmbedded
import Prometheus
import PropertyBased
import Testing

@testable import GavelGateway

/// `gavel_ack_seconds` is counted per event loop and merged once per task (``LatencyHistogram``): a scrape must read
/// exactly what swift-prometheus's own histogram printed for the same observations, however they were split into
/// tasks.
@Suite struct LatencyHistogramTests {
    static let buckets = GatewayMetrics.latencyBuckets

    /// The lines swift-prometheus prints for a `DurationHistogram` named `name` that recorded `observations`.
    static func prometheusText(_ name: String, help: String, _ observations: [Int64]) -> String {
        let registry = PrometheusCollectorRegistry()
        let histogram = registry.makeDurationHistogram(
            descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), buckets: buckets)
        for nanos in observations { histogram.recordNanoseconds(nanos) }
        return String(decoding: registry.emitToBuffer(), as: UTF8.self)
    }

    @Test func printsWhatSwiftPrometheusPrintsForTheSameObservationsMergedInAnyNumberOfTasks() async {
        await propertyCheck(count: 200, input: Gen.int(in: 0...Int(Int32.max))) { seed in
            var rng = SplitMix64(seed: UInt64(seed))
            // Values on and either side of every bound, tiny and beyond the last bucket, and any in between.
            let bounds = Self.buckets.map { LatencyHistogram.nanoseconds($0) }
            let observations = (0..<Int(rng.next() % 300)).map { _ -> Int64 in
                switch rng.next() % 4 {
                case 0: return bounds[Int(rng.next() % UInt64(bounds.count))] + Int64(rng.next() % 3) - 1
                case 1: return Int64(rng.next() % 1_000)
                case 2: return 1_000_000_000 + Int64(rng.next() % 5_000_000_000)
                default: return Int64(rng.next() % 1_200_000_000)
                }
            }
            let histogram = LatencyHistogram(name: "gavel_ack_seconds", help: "Acks.", buckets: Self.buckets)
            var tally = histogram.makeTally()
            for nanos in observations {
                tally.record(nanos: nanos)
                if rng.next() % 7 == 0 { histogram.merge(&tally) }
            }
            histogram.merge(&tally)
            var ours: [UInt8] = []
            histogram.write(into: &ours)
            let theirs = Self.prometheusText("gavel_ack_seconds", help: "Acks.", observations)
            #expect(String(decoding: ours, as: UTF8.self) == theirs, "seed \(seed)")
            #expect(tally.count == 0 && tally.sumNanos == 0, "a merged tally is empty")
        }
    }

    @Test func aScrapeReadsTheAckHistogramAndCommandsInFlightOfResultsDeliveredOnALoop() throws {
        let metrics = GatewayMetrics()
        let loop = EmbeddedEventLoop()
        let fanOut = LoopFanOut(eventLoop: loop, index: 0, metrics: metrics)
        metrics.inFlight.increment(by: 3.0)
        // Outside a fan-out task (a command refused at submit): counted at once.
        fanOut.countAnswered(nanos: 120_000)
        var parsed = MetricsExpositionTests.Parsed(metrics.exposition())
        #expect(parsed.samples["gavel_ack_seconds_count"] == 1)
        #expect(parsed.samples["gavel_ack_seconds_bucket{le=\"0.00015\"}"] == 1)
        #expect(parsed.samples["gavel_ack_seconds_bucket{le=\"0.0001\"}"] == 0)
        #expect(parsed.samples["gavel_commands_in_flight"] == 2)
        #expect(parsed.type["gavel_ack_seconds"] == "histogram")
        // A task with no results counts none.
        fanOut.run([], releasedAt: monotonicNanos())
        parsed = MetricsExpositionTests.Parsed(metrics.exposition())
        #expect(parsed.samples["gavel_ack_seconds_count"] == 1)
        #expect(parsed.samples["gavel_commands_in_flight"] == 2)
    }
}
