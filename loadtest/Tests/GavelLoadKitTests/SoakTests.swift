import Foundation
import Testing

@testable import GavelLoadKit

@Suite struct SoakArgumentTests {
    @Test func theSoakPresetRunsTenMinutesReportingEveryMinute() {
        let soak = LoadConfiguration.defaults(for: .soak)
        #expect(soak.durationSeconds == 600 && soak.reportSeconds == 60)
        #expect(LoadConfiguration.defaults(for: .steady).reportSeconds == nil)
    }

    @Test func theSoakRateIsEightyPercentOfTheMaximumUnlessARateOrFractionIsGiven() throws {
        #expect(try LoadConfiguration.rate(preset: .soak, rate: nil, maxRate: 10_000, fraction: nil) == 8_000)
        #expect(try LoadConfiguration.rate(preset: .soak, rate: nil, maxRate: 10_000, fraction: 0.5) == 5_000)
        #expect(try LoadConfiguration.rate(preset: .soak, rate: 123, maxRate: nil, fraction: nil) == 123)
        #expect(try LoadConfiguration.rate(preset: .soak, rate: nil, maxRate: nil, fraction: nil) == nil)
        #expect(try LoadConfiguration.rate(preset: .steady, rate: 50, maxRate: nil, fraction: nil) == 50)
    }

    @Test func maxRateAndFractionAreRefusedOutsideTheSoakOrAlone() {
        for (preset, maxRate, fraction, option) in [
            (Preset.steady, Optional(1_000), Optional<Double>.none, "--max-rate"),
            (.soak, nil, 0.5, "--fraction"),
            (.soak, 1_000, 2.0, "--fraction"),
        ] {
            do {
                _ = try LoadConfiguration.rate(preset: preset, rate: nil, maxRate: maxRate, fraction: fraction)
                Issue.record("accepted \(preset) \(String(describing: maxRate)) \(String(describing: fraction))")
            } catch { #expect(error.description.contains(option), "\(error.description)") }
        }
    }

    @Test func aReportIntervalOutsideOneSecondToAnHourIsRefusedByName() {
        var c = LoadConfiguration.defaults(for: .soak)
        c.serverPID = 1
        c.durationSeconds = 60
        #expect(throws: Never.self) { try c.validate() }
        for bad in [0, 0.5, 3_601, .nan] {
            c.reportSeconds = bad
            do {
                try c.validate()
                Issue.record("accepted --report-seconds \(bad)")
            } catch { #expect(error.description.contains("--report-seconds")) }
        }
    }
}

@Suite struct SoakSummaryTests {
    func interval(_ t: Double, _ rss: UInt64?, results: Int = 100, errors: Int = 0, p50: UInt64, p99: UInt64)
        -> SoakInterval
    {
        SoakInterval(seconds: t, residentBytes: rss, results: results, errors: errors, p50: p50, p99: p99)
    }

    @Test func growthCountsFromTheFirstIntervalAndDriftComparesTheLastWithTheFirst() throws {
        let summary = SoakSummary(intervals: [
            interval(60, 100_000_000, p50: 400, p99: 2_000),
            interval(120, 102_000_000, errors: 2, p50: 420, p99: 2_100),
            interval(180, 104_000_000, errors: 1, p50: 600, p99: 5_000),
        ])
        #expect(abs(try #require(summary.residentGrowthAfterFirst) - 0.04) < 1e-9)
        let drift = try #require(summary.latencyDrift)
        #expect(abs(drift.p50 - 1.5) < 1e-9 && abs(drift.p99 - 2.5) < 1e-9)
        #expect(summary.errors == 3)
        #expect(summary.lines.last?.contains("+4.0 %") == true)
        #expect(summary.lines.count == 5)
    }

    @Test func oneIntervalOrNoMemoryGivesNoGrowthAndNoDrift() {
        #expect(SoakSummary(intervals: [interval(60, 1, p50: 1, p99: 1)]).residentGrowthAfterFirst == nil)
        #expect(SoakSummary(intervals: [interval(60, 1, p50: 1, p99: 1)]).latencyDrift == nil)
        let noMemory = SoakSummary(intervals: [interval(60, nil, p50: 1, p99: 1), interval(120, nil, p50: 1, p99: 1)])
        #expect(noMemory.residentGrowthAfterFirst == nil)
        #expect(noMemory.lines.last?.contains("n/a") == true)
    }
}
