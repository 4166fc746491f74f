import Testing

@testable import GavelProjectorKit

/// `gavel_projector_lag_seconds` tells a read model that is behind from one that is in step.
@Suite struct LagMetricsTests {
    private func lagSeconds(_ text: String) -> String? {
        text.split(separator: "\n").first { $0.hasPrefix("gavel_projector_lag_seconds ") }
            .map { String($0.dropFirst("gavel_projector_lag_seconds ".count)) }
    }

    @Test func aReadModelStuckSinceTheStartIsNotShownInStep() {
        let metrics = ProjectorMetrics()
        metrics.started(at: 103)
        #expect(lagSeconds(metrics.prometheusText(nowMilliseconds: 1_000_000)) == "0.000")
        metrics.sawFeed(lsn: 1_103, nowMilliseconds: 1_000_000)
        #expect(lagSeconds(metrics.prometheusText(nowMilliseconds: 1_010_000)) == "10.000")
        // A reconnection while still nothing is applied keeps counting from when it was first seen.
        metrics.started(at: 103)
        metrics.sawFeed(lsn: 2_000, nowMilliseconds: 1_020_000)
        #expect(lagSeconds(metrics.prometheusText(nowMilliseconds: 1_030_000)) == "30.000")
    }
}
