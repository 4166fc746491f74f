import GavelCore
@_spi(Manual) import GavelEngine
import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import GavelGateway

/// The whole per-connection pipeline of the gateway (HTTP, upgrade, admission, session) on an `EmbeddedChannel`.
@Suite struct PipelineTests {
    let secret = Array("pipeline-secret".utf8)

    func makeChannel(_ configure: (inout GatewayConfiguration) -> Void = { _ in }) throws -> EmbeddedChannel {
        try makeChannel(on: makeServer(configure))
    }

    func makeServer(_ configure: (inout GatewayConfiguration) -> Void = { _ in }) -> GatewayServer {
        var configuration = GatewayConfiguration()
        configuration.jwtSecret = secret
        configure(&configuration)
        let loop = EmbeddedEventLoop()
        let metrics = GatewayMetrics()
        let fanOut = FanOut(group: loop, historyLimit: 16, metrics: metrics)
        let writer = Writer(clock: ManualClock(0), observer: fanOut)
        return GatewayServer(
            configuration: configuration, writer: writer, fanOut: fanOut, metrics: metrics, group: loop,
            page: Array("<p>page</p>".utf8), logger: Logger(label: "test"))
    }

    /// A connection to `server` from `address`, on the server's (embedded) event loop.
    func makeChannel(on server: GatewayServer, address: String = "127.0.0.1") throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(loop: server.group.next() as! EmbeddedEventLoop)
        try server.initialize(channel)
        try channel.connect(to: SocketAddress(ipAddress: address, port: 1)).wait()
        return channel
    }

    func upgradeRequest(_ path: String) -> String {
        "GET \(path) HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    }

    func output(_ channel: EmbeddedChannel) throws -> [UInt8] {
        var bytes: [UInt8] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
            bytes.append(contentsOf: buffer.readableBytesView)
        }
        return bytes
    }

    func statusLine(_ bytes: [UInt8]) -> String {
        String(decoding: bytes.prefix { $0 != 0x0D }, as: UTF8.self)
    }

    @Test func badTokenIsRefusedWith401AtTheUpgrade() throws {
        let channel = try makeChannel()
        try channel.writeInbound(ByteBuffer(string: upgradeRequest("/ws?token=not.a.token")))
        #expect(statusLine(try output(channel)) == "HTTP/1.1 401 Unauthorized")
    }

    @Test func noTokenIsRefusedWith401WithoutAnonymousAccess() throws {
        let channel = try makeChannel { $0.allowAnonymous = false }
        try channel.writeInbound(ByteBuffer(string: upgradeRequest("/ws")))
        #expect(statusLine(try output(channel)) == "HTTP/1.1 401 Unauthorized")
    }

    @Test func fullServerRefusesWith503() throws {
        let channel = try makeChannel { $0.maxConnections = 0 }
        try channel.writeInbound(ByteBuffer(string: upgradeRequest("/ws")))
        #expect(statusLine(try output(channel)) == "HTTP/1.1 503 Service Unavailable")
    }

    @Test func pageAndNotFound() throws {
        let page = try makeChannel()
        try page.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        let bytes = try output(page)
        #expect(statusLine(bytes) == "HTTP/1.1 200 OK")
        #expect(String(decoding: bytes, as: UTF8.self).hasSuffix("<p>page</p>"))
        let missing = try makeChannel()
        try missing.writeInbound(ByteBuffer(string: "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(statusLine(try output(missing)) == "HTTP/1.1 404 Not Found")
    }

    @Test func validTokenUpgradesAndAnOversizedFrameClosesWith1009() throws {
        let channel = try makeChannel { $0.maxMessageBytes = 256 }
        let token = JWT.sign(Claims(subject: "ann", role: .bidder, expires: Int64.max / 2), secret: secret)
        try channel.writeInbound(ByteBuffer(string: upgradeRequest("/ws?token=\(token)")))
        channel.embeddedEventLoop.run()
        let response = try output(channel)
        #expect(statusLine(response) == "HTTP/1.1 101 Switching Protocols")
        // A masked text frame header announcing 1000 bytes: over the limit before any payload arrives.
        let headEnd = response.firstRange(of: Array("\r\n\r\n".utf8))?.upperBound ?? response.count
        let hello = ServerFrameRead.parseAll(Array(response[headEnd...]) + (try output(channel)))
        #expect(hello.first?.type == "hello")
        #expect(hello.first?.json?["principal"] == .string("ann"))
        try channel.writeInbound(ByteBuffer(bytes: [0x81, 0xFE, 0x03, 0xE8, 1, 2, 3, 4]))
        channel.embeddedEventLoop.run()
        let frames = ServerFrameRead.parseAll(try output(channel))
        #expect(frames.last?.closeCode == 1009)
    }

    @Test func randomBytesAfterTheUpgradeNeverCrash() throws {
        var rng = SplitMix64(seed: 0xB17E5)
        let token = JWT.sign(Claims(subject: "ann", role: .seller, expires: Int64.max / 2), secret: secret)
        for _ in 0..<100 {
            let channel = try makeChannel { $0.maxMessageBytes = 300 }
            try channel.writeInbound(ByteBuffer(string: upgradeRequest("/ws?token=\(token)")))
            channel.embeddedEventLoop.run()
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                var bytes = (0..<Int.random(in: 1...400, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng)
                }
                // Often a plausible header: a masked frame of a random opcode.
                if Bool.random(using: &rng) && bytes.count > 6 {
                    bytes[0] = (bytes[0] & 0x8F) | (Bool.random(using: &rng) ? 0 : bytes[0] & 0x70)
                    bytes[1] = 0x80 | UInt8(min(bytes.count - 6, 125))
                }
                _ = try? channel.writeInbound(ByteBuffer(bytes: bytes))
                channel.embeddedEventLoop.run()
            }
            _ = try? output(channel)
            _ = try? channel.finish()
        }
    }

    // MARK: - Limits at the edge

    @Test func aConnectionThatDoesNotFinishItsRequestIsClosedAtTheHandshakeDeadline() throws {
        let channel = try makeChannel { $0.handshakeTimeoutMs = 1000 }
        try channel.writeInbound(ByteBuffer(string: "GET /ws HTTP/1.1\r\nHost: x\r\n"))  // and never the rest
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(900))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(200))
        #expect(!channel.isActive)
    }

    @Test func anUpgradedConnectionOutlivesTheHandshakeDeadline() throws {
        let channel = try makeChannel { $0.handshakeTimeoutMs = 1000 }
        try channel.writeInbound(ByteBuffer(string: upgradeRequest("/ws")))
        channel.embeddedEventLoop.run()
        #expect(statusLine(try output(channel)) == "HTTP/1.1 101 Switching Protocols")
        channel.embeddedEventLoop.advanceTime(by: .seconds(5))
        #expect(channel.isActive)
    }

    @Test func connectionsBeyondTheHandshakeCapAreClosedAtOnceAndCountedUntilUpgraded() throws {
        let server = makeServer { $0.maxHandshakes = 2 }
        let first = try makeChannel(on: server)
        let second = try makeChannel(on: server)
        #expect(throws: GatewayServer.TooManyHandshakes.self) {
            try server.initialize(EmbeddedChannel(loop: server.group.next() as! EmbeddedEventLoop))
        }
        // Once one is upgraded it no longer counts as a handshake.
        try first.writeInbound(ByteBuffer(string: upgradeRequest("/ws")))
        first.embeddedEventLoop.run()
        #expect(statusLine(try output(first)) == "HTTP/1.1 101 Switching Protocols")
        let third = try makeChannel(on: server)
        #expect(third.isActive && second.isActive)
    }

    @Test func aUserPastItsConnectionCapGets429WithTheReason() throws {
        let server = makeServer { $0.maxConnectionsPerUser = 1 }
        let token = JWT.sign(Claims(subject: "ann", role: .bidder, expires: Int64.max / 2), secret: secret)
        let first = try makeChannel(on: server)
        try first.writeInbound(ByteBuffer(string: upgradeRequest("/ws?token=\(token)")))
        first.embeddedEventLoop.run()
        #expect(statusLine(try output(first)) == "HTTP/1.1 101 Switching Protocols")
        let second = try makeChannel(on: server, address: "127.0.0.2")
        try second.writeInbound(ByteBuffer(string: upgradeRequest("/ws?token=\(token)")))
        second.embeddedEventLoop.run()
        let refused = String(decoding: try output(second), as: UTF8.self)
        #expect(refused.hasPrefix("HTTP/1.1 429 Too Many Requests"))
        #expect(refused.contains("user ann holds 1 connections (--max-connections-per-user)"))
        // Closing the first frees its place.
        try first.close().wait()
        first.embeddedEventLoop.run()
        let third = try makeChannel(on: server)
        try third.writeInbound(ByteBuffer(string: upgradeRequest("/ws?token=\(token)")))
        third.embeddedEventLoop.run()
        let out = String(decoding: try output(third), as: UTF8.self)
        #expect(out.hasPrefix("HTTP/1.1 101 Switching Protocols"), "\(out)")
    }
}
