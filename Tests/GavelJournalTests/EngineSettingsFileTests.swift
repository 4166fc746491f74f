import Foundation
import GavelCore
import Glibc
import Testing

@testable import GavelJournal

/// `<data-dir>/engine-settings`: the state's settings as the first start fixed them, which a replay from the
/// journal's start uses whatever the options say.
@Suite struct EngineSettingsFileTests {
    private let fixed = EngineConfiguration(
        idempotencyWindowMs: 123_456, closedListingRetentionMs: 0, maxRequestIDsPerPrincipal: 7,
        maxRestingOrdersPerListing: 8, maxRestingOrdersPerTrader: 9, minDutchStepMs: 10, maxListingDurationMs: .max)

    @Test func theSettingsWrittenAreTheSettingsReadAndTheFileIsWrittenOnce() throws {
        let temp = try TemporaryDirectory("settings")
        defer { temp.remove() }
        let directory = DataDirectory(temp.path)
        #expect(try EngineSettingsFile.load(directory, into: EngineConfiguration()) == nil)
        try EngineSettingsFile.keep(fixed, in: directory)
        let read = try #require(
            try EngineSettingsFile.load(directory, into: EngineConfiguration(expectedRequestIDs: 5)))
        #expect(
            read
                == EngineConfiguration(
                    idempotencyWindowMs: 123_456, expectedRequestIDs: 5, closedListingRetentionMs: 0,
                    maxRequestIDsPerPrincipal: 7, maxRestingOrdersPerListing: 8, maxRestingOrdersPerTrader: 9,
                    minDutchStepMs: 10, maxListingDurationMs: .max))
        try EngineSettingsFile.keep(EngineConfiguration(), in: directory)
        #expect(try EngineSettingsFile.load(directory, into: EngineConfiguration()) == read.with(expected: 0))
    }

    @Test func aDamagedFileIsRefusedNamingItsLineNotTakenAsTheDefaults() throws {
        let temp = try TemporaryDirectory("settings-damaged")
        defer { temp.remove() }
        let directory = DataDirectory(temp.path)
        let good = String(decoding: EngineSettingsFile.encode(fixed), as: UTF8.self)
        for (text, says) in [
            (good.replacingOccurrences(of: "min_dutch_step_ms 10", with: "min_dutch_step_ms ten"), "line 6"),
            (
                good.replacingOccurrences(of: "max_resting_orders_per_trader 9\n", with: ""),
                "lacks max_resting_orders_per_trader"
            ),
            (good + "min_dutch_step_ms 10\n", "line 10"),
            (good + "color blue\n", "line 10"),
        ] {
            try writeBytes(Array(text.utf8), to: EngineSettingsFile.path(directory))
            #expect(throws: EngineSettingsFile.Failure.self) { try EngineSettingsFile.load(directory, into: .init()) }
            do {
                _ = try EngineSettingsFile.load(directory, into: .init())
            } catch {
                #expect(
                    error.description.contains(EngineSettingsFile.path(directory)) && error.description.contains(says))
            }
        }
    }

    @Test func somethingOtherThanARegularFileInItsPlaceIsRefusedWithoutWaiting() throws {
        let temp = try TemporaryDirectory("settings-fifo")
        defer { temp.remove() }
        let directory = DataDirectory(temp.path)
        // Opening a FIFO for reading would wait for a writer forever.
        #expect(mkfifo(EngineSettingsFile.path(directory), 0o600) == 0)
        #expect(throws: EngineSettingsFile.Failure.self) { try EngineSettingsFile.load(directory, into: .init()) }
    }

    @Test func recoveryFromTheJournalsStartUsesTheFileNotTheOptions() throws {
        let temp = try TemporaryDirectory("settings-recovery")
        defer { temp.remove() }
        let directory = DataDirectory(temp.path)
        try directory.create()
        try EngineSettingsFile.keep(fixed, in: directory)
        var options = RecoveryOptions()
        options.engine = EngineConfiguration(minDutchStepMs: 1_000)
        let report = try Recovery.recover(directory, options: options)
        #expect(report.engine.configuration.minDutchStepMs == 10)
        #expect(report.engine.configuration.maxRestingOrdersPerTrader == 9)
    }
}

extension EngineConfiguration {
    fileprivate func with(expected: Int) -> EngineConfiguration {
        var c = self
        c.expectedRequestIDs = expected
        return c
    }
}
