import Foundation
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

@Suite(.serialized) struct SmokeTests {
    @Test(.timeLimit(.minutes(1)))
    func aShortSteadyRunAgainstARealServerGetsEveryResultAndDeliversToWatchers() async throws {
        guard FileManager.default.isExecutableFile(atPath: gavelBinary) else {
            Issue.record("the gavel binary is missing at \(gavelBinary): run `swift build` in the main package first")
            return
        }
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("gavel-load-smoke-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        let port = freePort()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: gavelBinary)
        server.arguments = [
            "serve", "--host", "127.0.0.1", "--port", String(port), "--admin-port", "0", "--data-dir", data,
            "--jwt-secret", "smoke-secret", "--rate", "10000", "--rate-burst", "10000", "--fsync", "always",
        ]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer {
            server.terminate()
            server.waitUntilExit()
        }
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
        try #require(up, "gavel serve did not listen on port \(port) within 10 s")

        var c = LoadConfiguration()
        c.port = port
        c.connections = 4
        c.watchers = 4
        c.listings = 20
        c.rate = 200
        c.durationSeconds = 2
        c.warmupSeconds = 0.5
        c.drainSeconds = 5
        let report = try await Driver(configuration: c, credentials: .secret("smoke-secret")).run()
        let m = report.measurements
        #expect(m.sent > 300 && m.sent <= 400, "about 200/s for 2 s: \(m.sent)")
        #expect(m.results == m.sent, "every bid got its result")
        #expect(m.errors.isEmpty, "\(m.errors)")
        #expect(m.deliveries > 0, "watchers saw bid_placed events")
        #expect(m.closedByServer.isEmpty, "\(m.closedByServer)")
        #expect(m.ack.totalCount == UInt64(m.results))
    }
}
