import Foundation
import Synchronization
import Testing

@testable import GavelLoadKit

/// The `gavel` binary of the main package (built by the README's test command before this suite runs).
let gavelBinary = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(".build/debug/gavel").path

/// A free loopback port (bound, read, released).
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// The key the smoke servers sign with (`gavel serve` refuses one shorter than 32 bytes).
let smokeSecret = "smoke-secret-of-at-least-32-bytes"

/// A `gavel serve` on a free loopback port with a fresh data directory, stopped and removed by `stop()`.
struct SmokeServer {
    let port: Int
    let data: String
    let process: Process

    /// `limits` replace the raised message rates (e.g. `[]` for gavel serve's defaults).
    static func start(secret: String, limits: [String] = raisedLimits) async throws -> SmokeServer? {
        guard FileManager.default.isExecutableFile(atPath: gavelBinary) else {
            Issue.record("the gavel binary is missing at \(gavelBinary): run `swift build` in the main package first")
            return nil
        }
        let data = FileManager.default.temporaryDirectory.appendingPathComponent(
            "gavel-load-smoke-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        ).path
        let port = freePort()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: gavelBinary)
        server.arguments =
            [
                "serve", "--host", "127.0.0.1", "--port", String(port), "--admin-port", "0", "--data-dir", data,
                "--jwt-secret", secret, "--fsync", "always",
            ] + limits
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        let running = SmokeServer(port: port, data: data, process: server)
        // Wait until it accepts connections.
        var up = false
        for _ in 0..<100 where !up {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = UInt16(port).bigEndian
            up =
                withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                } == 0
            close(fd)
            if !up { try await Task.sleep(for: .milliseconds(100)) }
        }
        guard up else {
            running.stop()
            Issue.record("gavel serve did not listen on port \(port) within 10 s")
            return nil
        }
        return running
    }

    /// Message rates per connection and per principal that admit the smoke runs (the closed loop sends as fast as
    /// the server answers).
    static let raisedLimits = [
        "--rate", "100000", "--rate-burst", "100000", "--principal-rate", "100000", "--principal-rate-burst", "100000",
    ]

    func stop() {
        process.terminate()
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: data)
    }
}

@Suite(.serialized) struct SmokeTests {
    func shortRun(port: Int, listings: Int) -> LoadConfiguration {
        var c = LoadConfiguration()
        c.port = port
        c.connections = 4
        c.watchers = 4
        c.listings = listings
        c.rate = 200
        c.durationSeconds = 2
        c.warmupSeconds = 0.5
        c.drainSeconds = 5
        return c
    }

    @Test(.timeLimit(.minutes(1)))
    func aShortSteadyRunAgainstARealServerGetsEveryResultAndDeliversToWatchers() async throws {
        guard let server = try await SmokeServer.start(secret: smokeSecret) else { return }
        defer { server.stop() }
        let report = try await Driver(
            configuration: shortRun(port: server.port, listings: 20), credentials: .secret(smokeSecret)
        ).run()
        let m = report.measurements
        #expect(m.sent > 300 && m.sent <= 400, "about 200/s for 2 s: \(m.sent)")
        #expect(m.results == m.sent, "every bid got its result")
        #expect(m.errors.isEmpty, "\(m.errors)")
        #expect(m.deliveries > 0, "watchers saw bid_placed events")
        #expect(m.closedByServer.isEmpty, "\(m.closedByServer)")
        #expect(m.ack.totalCount == UInt64(m.results))
    }

    @Test(.timeLimit(.minutes(1)))
    func aRunOnExistingListingsBidsAboveTheirPricesWithoutErrorsAndMeasuresFanOut() async throws {
        guard let server = try await SmokeServer.start(secret: smokeSecret) else { return }
        defer { server.stop() }
        // A first run opens 12 listings (ids ld7-...) and bids on them, so they have prices and bids.
        var first = shortRun(port: server.port, listings: 12)
        first.seed = 7
        first.durationSeconds = 1
        let opened = try await Driver(configuration: first, credentials: .secret(smokeSecret)).run()
        #expect(opened.measurements.errors.isEmpty && opened.measurements.results == opened.measurements.sent)

        // The second run finds them and bids on up to 8 of them, each bid above the price the first run left.
        var c = shortRun(port: server.port, listings: 8)
        c.existing = true
        c.existingPrefix = "ld7-"
        let driver = Driver(configuration: c, credentials: .secret(smokeSecret))
        let report = try await driver.run()
        let m = report.measurements
        #expect(report.configuration.listings == 8 && report.configuration.existing)
        #expect(driver.listings.ids.allSatisfy { $0.hasPrefix("ld7-") } && Set(driver.listings.ids).count == 8)
        #expect(
            driver.listings.baseBids.reduce(0, +) > 0, "the first run's bids are counted: \(driver.listings.baseBids)")
        #expect(m.sent > 300 && m.results == m.sent, "every bid got its result: \(m.results) of \(m.sent)")
        #expect(m.errors.isEmpty, "every bid was accepted: \(m.errors)")
        // Watcher w watches listing w % 8: one delivery is expected for each measured bid on listings 0...3. A
        // `bids` count not offset by the listing's earlier bids would match few of them.
        let from = driver.recorder.measureFrom
        let expected = driver.sendLog.withLock { log in (0..<4).reduce(0) { $0 + log[$1].filter { $0 >= from }.count } }
        #expect(
            expected > 0 && m.deliveries <= expected && m.deliveries >= expected * 9 / 10,
            "\(m.deliveries) of \(expected)")
    }

    @Test(.timeLimit(.minutes(1)))
    func aShortSoakReportsEachIntervalWithTheServersMemoryAndConcludesGrowthAndDrift() async throws {
        guard let server = try await SmokeServer.start(secret: smokeSecret) else { return }
        defer { server.stop() }
        var c = shortRun(port: server.port, listings: 10)
        c.preset = .soak
        c.serverPID = server.process.processIdentifier
        c.durationSeconds = 3
        c.warmupSeconds = 0.5
        c.reportSeconds = 1
        let printed = Mutex<[SoakInterval]>([])
        let report = try await Driver(
            configuration: c, credentials: .secret(smokeSecret),
            intervalReport: { interval in printed.withLock { $0.append(interval) } }
        ).run()
        let soak = try #require(report.soak)
        #expect(soak.intervals.count >= 2, "\(soak.intervals)")
        #expect(printed.withLock { $0 } == soak.intervals)
        #expect(soak.intervals.allSatisfy { ($0.residentBytes ?? 0) > 1_000_000 })
        #expect(soak.intervals.reduce(0) { $0 + $1.results } > 0)
        #expect(soak.errors == 0)
        #expect(soak.residentGrowthAfterFirst != nil && soak.latencyDrift != nil)
        #expect(report.table.contains("soak: RSS growth after the first interval"))
        #expect(report.json.contains("\"rss_growth_after_first_interval\""))
    }

    func closedLoopRun(port: Int, listings: Int) -> LoadConfiguration {
        var c = shortRun(port: port, listings: listings)
        c.connections = 2
        c.watchers = 0
        c.inFlight = 4
        c.zipf = 0
        c.durationSeconds = 1.5
        return c
    }

    /// Runs `c` and returns its report and every line the driver said on standard error.
    func runSaying(_ c: LoadConfiguration) async throws -> (Report, [String]) {
        let said = Mutex<[String]>([])
        let report = try await Driver(
            configuration: c, credentials: .secret(smokeSecret),
            diagnostics: Diagnostics(write: { line in said.withLock { $0.append(line) } })
        ).run()
        return (report, said.withLock { $0 })
    }

    @Test(.timeLimit(.minutes(1)))
    func aShortClosedLoopRunAgainstARealServerGetsResultsWithoutErrorsAndMeasuresItsCPU() async throws {
        guard let server = try await SmokeServer.start(secret: smokeSecret) else { return }
        defer { server.stop() }
        var c = closedLoopRun(port: server.port, listings: 20)
        c.serverPID = server.process.processIdentifier
        let (report, said) = try await runSaying(c)
        let m = report.measurements
        #expect(m.results > 0, "the closed loop got results")
        #expect(m.results == m.sent, "every measured bid was answered: \(m.results) of \(m.sent)")
        // A bid that reaches its listing behind two higher ones sent on the other connection is refused as too
        // low (the 20,000 step absorbs one): rare, and the only refusal allowed.
        #expect(m.errors.keys.allSatisfy { $0 == "bid_too_low" }, "\(m.errors)")
        #expect((m.errors["bid_too_low"] ?? 0) * 100 <= m.results, "\(m.errors) of \(m.results)")
        #expect(m.closedByServer.isEmpty, "\(m.closedByServer)")
        #expect(m.ack.totalCount == UInt64(m.results))
        #expect(said.isEmpty, "\(said)")
        #expect(report.measuredSeconds >= 1.4 && report.measuredSeconds < 2, "\(report.measuredSeconds)")
        #expect((report.driverCPUSeconds ?? -1) >= 0 && (report.serverCPUSeconds ?? 0) > 0)
    }

    /// Paced: 400 bids a second on schedule over two connections, every one answered, as many sent as the
    /// schedule says for the window (not as many as results allowed), and the report names the pace.
    @Test(.timeLimit(.minutes(1)))
    func aPacedRunSendsOnScheduleAndEveryBidIsAnswered() async throws {
        guard let server = try await SmokeServer.start(secret: smokeSecret) else { return }
        defer { server.stop() }
        var c = closedLoopRun(port: server.port, listings: 20)
        c.inFlight = 8
        c.rate = 400
        c.rateGiven = true
        let (report, said) = try await runSaying(c)
        let m = report.measurements
        let scheduled = 400 * c.durationSeconds
        #expect(abs(Double(m.sent) - scheduled) <= 2, "sent \(m.sent) of \(scheduled) due in the window")
        #expect(m.results == m.sent, "every measured bid was answered: \(m.results) of \(m.sent)")
        #expect(m.errors.keys.allSatisfy { $0 == "bid_too_low" }, "\(m.errors)")
        #expect(m.closedByServer.isEmpty && said.isEmpty, "\(m.closedByServer) \(said)")
        #expect(m.ack.totalCount == UInt64(m.results) && m.ack.valueAtPercentile(50) < 1_000_000)
        #expect(report.table.contains("paced at 400/s (open loop), at most 8 in flight per connection"))
    }

    @Test(.timeLimit(.minutes(1)))
    func aClosedLoopAgainstDefaultLimitsSaysAtOnceThatTheServerRateLimitsItAndWhatToChange() async throws {
        // gavel serve's defaults but for the connection rate: 200 commands/s per principal.
        guard
            let server = try await SmokeServer.start(
                secret: smokeSecret, limits: ["--rate", "100000", "--rate-burst", "100000"])
        else { return }
        defer { server.stop() }
        var c = closedLoopRun(port: server.port, listings: 10)
        c.durationSeconds = 1
        c.warmupSeconds = 0
        let (report, lines) = try await runSaying(c)
        #expect((report.measurements.errors["rate_limited"] ?? 0) > 0, "\(report.measurements.errors)")
        #expect(
            lines.first.map {
                $0.contains("rate_limited") && $0.contains("--principal-rate") && $0.contains("--token-file")
            } == true, "\(lines)")
        #expect(lines.filter { $0.contains("refused bid commands") }.count == 1, "said once: \(lines)")
    }

    @Test(.timeLimit(.minutes(1)))
    func openingListingsAgainstADefaultServerSaysWhatRefusedThemInsteadOfWaiting() async throws {
        guard let server = try await SmokeServer.start(secret: smokeSecret, limits: []) else { return }
        defer { server.stop() }
        var c = shortRun(port: server.port, listings: 1_000)
        c.watchers = 0
        let said = Mutex<[String]>([])
        let started = monotonicNanos()
        do {
            _ = try await Driver(
                configuration: c, credentials: .secret(smokeSecret),
                diagnostics: Diagnostics(write: { line in said.withLock { $0.append(line) } })
            ).run()
            Issue.record("a default server opened 1,000 listings for one seller")
        } catch let error as LoadError {
            let lines = said.withLock { $0 }
            #expect(lines.contains { $0.contains("rate_limited") && $0.contains("--opens-per-minute") }, "\(lines)")
            #expect(error.description.contains("could not open the listings"), "\(error)")
        }
        #expect(monotonicNanos() - started < 25_000_000_000, "it did not wait for a 30 s timeout")
    }
}
