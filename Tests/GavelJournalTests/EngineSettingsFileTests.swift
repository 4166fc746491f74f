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
            (good + "min_dutch_step_ms 10\n", "line 12"),
            (good + "color blue\n", "line 12"),
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

    /// A value the engine, and so a snapshot holding it, cannot take (a cap of 0, a dutch step of 0) is refused:
    /// taken, it would have the server write snapshots nothing can read, and retention would then remove the
    /// journal they cover.
    @Test func aValueOutOfItsRangeIsRefusedNamingItAndAZeroListingDurationIsNoLimit() throws {
        let temp = try TemporaryDirectory("settings-ranges")
        defer { temp.remove() }
        let directory = DataDirectory(temp.path)
        let good = String(decoding: EngineSettingsFile.encode(fixed), as: UTF8.self)
        for (line, zero) in [
            ("idempotency_window_ms 123456", "idempotency_window_ms 0"),
            ("max_request_ids_per_principal 7", "max_request_ids_per_principal 0"),
            ("max_resting_orders_per_listing 8", "max_resting_orders_per_listing 0"),
            ("max_resting_orders_per_trader 9", "max_resting_orders_per_trader 0"),
            ("min_dutch_step_ms 10", "min_dutch_step_ms 0"),
        ] {
            try writeBytes(
                Array(good.replacingOccurrences(of: line, with: zero).utf8), to: EngineSettingsFile.path(directory))
            do {
                _ = try EngineSettingsFile.load(directory, into: .init())
                Issue.record("\(zero) was taken")
            } catch {
                #expect(error.description.contains("\(zero) is out of range (at least 1"), "\(error)")
            }
        }
        for name in [
            "max_open_listings_per_seller", "max_resting_orders_per_trader_total", "max_listings_held_per_seller",
            "max_unfinished_settlements_per_user",
        ] {
            try writeBytes(Array((good + "\(name) 0\n").utf8), to: EngineSettingsFile.path(directory))
            #expect(throws: EngineSettingsFile.Failure.self) { try EngineSettingsFile.load(directory, into: .init()) }
        }
        let noLimit = good.replacingOccurrences(
            of: "max_listing_duration_ms \(Int64.max)", with: "max_listing_duration_ms 0")
        try writeBytes(Array(noLimit.utf8), to: EngineSettingsFile.path(directory))
        let read = try #require(try EngineSettingsFile.load(directory, into: .init()))
        #expect(read.maxListingDurationMs == .max && read.closedListingRetentionMs == 0)
    }

    /// A file written before the caps of listings held per seller and unfinished settlements per user existed: the
    /// data directory keeps having neither, whatever is given at start, since its journal holds commands accepted
    /// without them; the caps of open listings per seller and resting orders per trader take the start's values.
    @Test func aFileFromBeforeTheHeldCapsLeavesThemUnlimitedWhateverIsGivenAtStart() throws {
        let temp = try TemporaryDirectory("settings-older")
        defer { temp.remove() }
        let directory = DataDirectory(temp.path)
        let older = String(decoding: EngineSettingsFile.encode(fixed), as: UTF8.self)
            .split(separator: "\n").filter {
                !$0.hasPrefix("max_listings_held_per_seller") && !$0.hasPrefix("max_unfinished_settlements_per_user")
                    && !$0.hasPrefix("max_open_listings_per_seller")
                    && !$0.hasPrefix("max_resting_orders_per_trader_total")
            }.map { $0 + "\n" }.joined()
        try writeBytes(Array(older.utf8), to: EngineSettingsFile.path(directory))
        let read = try #require(try EngineSettingsFile.load(directory, into: .served))
        #expect(read.maxListingsHeldPerSeller == .max && read.maxUnfinishedSettlementsPerUser == .max)
        #expect(read.maxOpenListingsPerSeller == EngineConfiguration.servedMaxOpenListingsPerSeller)
        #expect(read.minDutchStepMs == 10, "the file's own settings are kept")
        // A file written now holds both, and they are read back.
        let temp2 = try TemporaryDirectory("settings-newer")
        defer { temp2.remove() }
        let newer = DataDirectory(temp2.path)
        try newer.create()
        try EngineSettingsFile.keep(.served, in: newer)
        let text = String(decoding: try Files.readAll(EngineSettingsFile.path(newer)), as: UTF8.self)
        #expect(text.contains("max_listings_held_per_seller 20000\nmax_unfinished_settlements_per_user 10000\n"))
        #expect(try EngineSettingsFile.load(newer, into: EngineConfiguration()) == .served)
    }

    @Test func somethingOtherThanARegularFileInItsPlaceIsRefusedWithoutWaiting() throws {
        let temp = try TemporaryDirectory("settings-fifo")
        defer { temp.remove() }
        let directory = DataDirectory(temp.path)
        // Opening a FIFO for reading would wait for a writer forever.
        #expect(mkfifo(EngineSettingsFile.path(directory), 0o600) == 0)
        #expect(throws: EngineSettingsFile.Failure.self) { try EngineSettingsFile.load(directory, into: .init()) }
    }

    @Test func aSymbolicLinkToNothingIsRefusedNotTakenAsNoFileNorReplaced() throws {
        let temp = try TemporaryDirectory("settings-dangling")
        defer { temp.remove() }
        let directory = DataDirectory(temp.path)
        try directory.create()
        let file = EngineSettingsFile.path(directory)
        let target = temp.path + "/unmounted/engine-settings"
        #expect(symlink(target, file) == 0)
        do {
            _ = try EngineSettingsFile.load(directory, into: .init())
            Issue.record("a link to nothing was taken as no file")
        } catch {
            #expect(error.description.hasPrefix("\(file) is a symbolic link to \(target), which does not exist"))
            #expect(error.description.contains("restore the file it points to, or remove the link"))
        }
        #expect(throws: EngineSettingsFile.Failure.self) { try Recovery.recover(directory, options: RecoveryOptions()) }
        do {
            try EngineSettingsFile.keep(fixed, in: directory)
            Issue.record("a link to nothing was replaced")
        } catch {
            #expect(error.description.contains("is a symbolic link to \(target), which does not exist"))
        }
        var st = stat()
        #expect(lstat(file, &st) == 0 && st.st_mode & S_IFMT == S_IFLNK, "the link is left as it was")
        // Once the file it points to is back, it is read through the link.
        #expect(mkdir(temp.path + "/unmounted", 0o700) == 0)
        try writeBytes(EngineSettingsFile.encode(fixed), to: target)
        #expect(try EngineSettingsFile.load(directory, into: EngineConfiguration()) == fixed)
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
