import Foundation
import GavelCore
import Testing

@testable import GavelGateway

/// What a connection holds in the gateway is returned when it goes: through a real server on loopback, every
/// session object is freed and the fan-out and connection-limit tables are empty again.
@Suite struct DisconnectMemoryTests {
    /// Polls `done` every 20 ms for up to `seconds`; whether it came true.
    func eventually(seconds: Double = 5, _ done: () -> Bool) async throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !done() {
            guard Date() < deadline else { return false }
            try await Task.sleep(for: .milliseconds(20))
        }
        return true
    }

    @Test(.timeLimit(.minutes(1))) func disconnectedClientsLeaveNoSessionSubscriptionOrLimitEntryBehind()
        async throws
    {
        let directory = NSTemporaryDirectory() + "gavel-disconnect-memory-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let running = try await RunningServer.start(directory: directory)
        let server = running.server
        for round in 0..<3 {
            var clients: [RawClient] = []
            for i in 0..<20 {
                let headers = i % 2 == 0 ? ["Authorization: Bearer \(running.token("u\(i)", .bidder))"] : []
                let client = try RawClient(port: running.port, headers: headers)
                #expect(client.status() == 101)
                #expect(client.next("hello") != nil)
                for s in 0..<5 { client.send(#"{"type":"subscribe","listing":"r\#(round)-c\#(i)-\#(s)"}"#) }
                for _ in 0..<5 { #expect(client.next("snapshot") != nil) }
                clients.append(client)
            }
            #expect(server.registry.aliveCount == 20)
            #expect(server.fanOut.subscriptionCount == 100)
            #expect(server.limits.tracked.principals == 10 && server.limits.tracked.anonymous == 10)
            clients.removeAll()  // closes every socket
            #expect(try await eventually { server.registry.aliveCount == 0 && server.sessionCount == 0 })
            #expect(server.fanOut.subscriptionCount == 0)
            #expect(server.fanOut.tracked == (listings: 0, users: 0))
            let limits = server.limits.tracked
            #expect(limits.addresses == 0 && limits.anonymous == 0)
        }
        // The users' entries go at the next connection once their buckets are full (they sent no commands: now).
        let next = try RawClient(port: running.port)
        #expect(next.status() == 101)
        #expect(server.limits.tracked == (principals: 0, addresses: 1, anonymous: 1, idle: 0))
        try await running.stop()
        #expect(try await eventually { server.registry.aliveCount == 0 })
    }
}
