import Foundation
import GavelCore
import GavelEngine
import GavelJournal
import GavelWire
import Logging
import NIOCore
import NIOPosix
import Testing

@testable import GavelGateway

/// A blocking WebSocket client on a raw socket, written from RFC 6455 (not with NIO), every read bounded by a
/// timeout.
final class RawClient {
    let fd: Int32
    private var buffer: [UInt8] = []

    /// Connects to 127.0.0.1:`port` and sends `request` (a whole HTTP request).
    init(port: Int, request: String) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else { throw POSIXError(.ECONNREFUSED) }
        write(Array(request.utf8))
    }

    /// Connects and upgrades to WebSocket on `path`; the HTTP status line is `status`.
    convenience init(port: Int, path: String = "/ws", headers: [String] = []) throws {
        let request =
            "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            + headers.map { $0 + "\r\n" }.joined() + "\r\n"
        try self.init(port: port, request: request)
    }

    deinit { close(fd) }

    private func write(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    private func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return false }
        buffer.append(contentsOf: chunk[0..<n])
        return true
    }

    /// The HTTP status code of the response head.
    func status() -> Int? {
        while true {
            if let end = buffer.firstRange(of: Array("\r\n\r\n".utf8)) {
                let head = String(decoding: buffer[..<end.lowerBound], as: UTF8.self)
                buffer.removeSubrange(..<end.upperBound)
                return head.split(separator: " ").dropFirst().first.flatMap { Int($0) }
            }
            guard fill() else { return nil }
        }
    }

    /// Sends one masked text frame.
    func send(_ text: String) {
        let payload = Array(text.utf8)
        let key: [UInt8] = [0x11, 0x22, 0x33, 0x44]
        var frame: [UInt8] = [0x81]
        if payload.count < 126 {
            frame.append(0x80 | UInt8(payload.count))
        } else {
            frame.append(0x80 | 126)
            frame.append(UInt8(payload.count >> 8))
            frame.append(UInt8(payload.count & 0xFF))
        }
        frame.append(contentsOf: key)
        for (i, byte) in payload.enumerated() { frame.append(byte ^ key[i % 4]) }
        write(frame)
    }

    /// The next frame, or `nil` on timeout or end of stream.
    func receive() -> ServerFrameRead? {
        while true {
            let frames = ServerFrameRead.parseAll(buffer)
            if let first = frames.first {
                let header = first.payload.count < 126 ? 2 : (first.payload.count <= 65535 ? 4 : 10)
                buffer.removeFirst(header + first.payload.count)
                return first
            }
            guard fill() else { return nil }
        }
    }

    /// The next message of `type`, skipping others.
    func next(_ type: String) -> ServerFrameRead? {
        while let frame = receive() {
            if frame.type == type { return frame }
        }
        return nil
    }
}

/// The gateway with its writer and journal on a temporary data directory, wired by ``ServingCore`` as in `gavel serve`.
struct RunningServer {
    let directory: String
    let group: MultiThreadedEventLoopGroup
    let journal: Journal
    let writer: Writer
    let server: GatewayServer
    let secret = Array("end-to-end-secret".utf8)

    static func start(directory: String) async throws -> RunningServer {
        let data = DataDirectory(directory)
        try data.create()
        var configuration = GatewayConfiguration()
        let metrics = GatewayMetrics()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let core = try ServingCore.assemble(directory: data, gateway: configuration, group: group, metrics: metrics)
        let (journal, fanOut, writer) = (core.journal, core.fanOut, core.writer)
        writer.start()
        configuration.port = 0
        configuration.jwtSecret = Array("end-to-end-secret".utf8)
        let server = GatewayServer(
            configuration: configuration, writer: writer, fanOut: fanOut, metrics: metrics, group: group,
            page: Page.load(), logger: Logger(label: "test"))
        try await server.start()
        return RunningServer(directory: directory, group: group, journal: journal, writer: writer, server: server)
    }

    var port: Int { server.port ?? 0 }

    func token(_ sub: String, _ role: Role) -> String {
        JWT.sign(Claims(subject: sub, role: role, expires: SystemClock().now() / 1000 + 600), secret: secret)
    }

    func stop() async throws {
        await server.shutdown(timeout: .seconds(5))
        await writer.shutdown()
        journal.close()
        try await group.shutdownGracefully()
    }
}

@Suite struct EndToEndTests {
    @Test(.timeLimit(.minutes(1))) func bidIsAcknowledgedAfterDurableFannedOutResumedAndRecovered() async throws {
        let directory = NSTemporaryDirectory() + "gavel-gateway-e2e-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let running = try await RunningServer.start(directory: directory)
        let port = running.port

        let seller = try RawClient(port: port, headers: ["Authorization: Bearer \(running.token("sam", .seller))"])
        #expect(seller.status() == 101)
        #expect(seller.next("hello")?.json?["role"] == .string("seller"))
        let watcher = try RawClient(port: port)
        #expect(watcher.status() == 101)
        #expect(watcher.next("hello")?.json?["principal"] == .null)
        watcher.send(#"{"type":"subscribe","listing":"L1"}"#)
        let empty = watcher.next("snapshot")
        #expect(empty?.json?["seq"] == .integer(0) && empty?.json?["state"] == .null)

        let closesAt = SystemClock().now() + 600_000
        seller.send(
            #"{"type":"open","id":"o1","listing":"L1","format":"english","start":100,"closes_at":\#(closesAt)}"#)
        #expect(seller.next("result")?.json?["ok"] == .bool(true))
        #expect(watcher.next("opened")?.json?["seq"] == .integer(1))

        let bidder = try RawClient(port: port, path: "/ws?token=\(running.token("ann", .bidder))")
        #expect(bidder.status() == 101)
        #expect(bidder.next("hello")?.json?["principal"] == .string("ann"))
        bidder.send(#"{"type":"bid","id":"b1","listing":"L1","amount":1000}"#)
        let result = bidder.next("result")
        #expect(result?.json?["ok"] == .bool(true) && result?.json?["leading"] == .bool(true))
        let placed = watcher.next("bid_placed")
        #expect(placed?.json?["seq"] == .integer(2) && placed?.json?["leader"] == .string("ann"))

        // A second watcher that has seen seq 1 resumes with exactly the bid.
        let late = try RawClient(port: port)
        #expect(late.status() == 101)
        late.send(#"{"type":"subscribe","listing":"L1","since":1}"#)
        let resumed = late.next("resumed")
        #expect(resumed?.json?["recovered"] == .bool(true) && resumed?.json?["seq"] == .integer(2))
        #expect(late.receive()?.json?["seq"] == .integer(2))

        // Bad tokens are refused at the upgrade, with no detail.
        let forged = try RawClient(port: port, path: "/ws?token=\(running.token("ann", .bidder))x")
        #expect(forged.status() == 401)

        try await running.stop()
        #expect(watcher.receive()?.closeCode == 1001)

        // What was acknowledged is in the journal: recovery shows the bid.
        let recovered = try Recovery.recover(DataDirectory(directory))
        let view = PublicListingView(recovered.engine, listing: "L1")
        guard case .english(_, let leader, let bids, _)? = view?.book else {
            Issue.record("L1 did not recover")
            return
        }
        #expect(leader == "ann" && bids == 1)
    }
}
