import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// Reads the value of a string or number field from one of the server's JSON lines without a full parse (the
/// server writes compact JSON with no spaces; the driver must not be the bottleneck it measures).
enum Scan {
    static func string(_ name: String, in text: Substring.UTF8View) -> Substring? {
        let key = Array("\"\(name)\":\"".utf8)
        guard let start = find(key, in: text) else { return nil }
        guard let end = text[start...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
        return Substring(text[start..<end])
    }

    static func integer(_ name: String, in text: Substring.UTF8View) -> Int? {
        let key = Array("\"\(name)\":".utf8)
        guard let start = find(key, in: text) else { return nil }
        var value = 0
        var index = start
        var any = false
        while index < text.endIndex, let digit = Optional(text[index]), digit >= 48, digit <= 57 {
            value = value * 10 + Int(digit - 48)
            index = text.index(after: index)
            any = true
        }
        return any ? value : nil
    }

    /// The index just past the first occurrence of `key`.
    static func find(_ key: [UInt8], in text: Substring.UTF8View) -> Substring.UTF8View.Index? {
        var index = text.startIndex
        while index < text.endIndex {
            guard let first = text[index...].firstIndex(of: key[0]) else { return nil }
            var probe = first
            var matched = 0
            while matched < key.count, probe < text.endIndex, text[probe] == key[matched] {
                matched += 1
                probe = text.index(after: probe)
            }
            if matched == key.count { return probe }
            index = text.index(after: first)
        }
        return nil
    }
}

/// One WebSocket connection of the driver. Everything but `send` runs on the channel's event loop.
final class LoadConnection: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let index: Int
    let onMessage: @Sendable (LoadConnection, Substring, UInt64) -> Void
    let onClose: @Sendable (Int, String) -> Void
    var channel: Channel?
    /// Request id → intended send time (ns), for results; confined to the event loop.
    var pending: [Substring: UInt64] = [:]
    /// Market watchers: the schedule number of the last `order_placed` seen (a `book` event follows it).
    var lastOrder: UInt64?
    private var fragments: ByteBuffer?
    private var closeReported = false

    init(
        index: Int, onMessage: @escaping @Sendable (LoadConnection, Substring, UInt64) -> Void,
        onClose: @escaping @Sendable (Int, String) -> Void
    ) {
        self.index = index
        self.onMessage = onMessage
        self.onClose = onClose
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text where frame.fin:
            deliver(frame.unmaskedData)
        case .text:
            fragments = frame.unmaskedData
        case .continuation:
            var data = frame.unmaskedData
            fragments?.writeBuffer(&data)
            if frame.fin, let whole = fragments {
                fragments = nil
                deliver(whole)
            }
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            var data = frame.unmaskedData
            let code = data.readInteger(as: UInt16.self).map(Int.init) ?? 1005
            reportClose(code, reason: data.readString(length: data.readableBytes) ?? "")
            context.close(promise: nil)
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        reportClose(1006, reason: "")
    }

    private func reportClose(_ code: Int, reason: String) {
        guard !closeReported else { return }
        closeReported = true
        onClose(code, reason)
    }

    private func deliver(_ buffer: ByteBuffer) {
        let received = monotonicNanos()
        let text = String(buffer: buffer)
        onMessage(self, Substring(text), received)
    }

    /// Sends `text`; `intended` is recorded under `id` first, on the event loop.
    func send(_ text: String, id: String?, intended: UInt64) {
        guard let channel else { return }
        channel.eventLoop.execute { [self] in
            if let id { pending[Substring(id)] = intended }
            let frame = WebSocketFrame(
                fin: true, opcode: .text, maskKey: .random(), data: channel.allocator.buffer(string: text))
            channel.writeAndFlush(frame, promise: nil)
        }
    }

    func close() {
        guard let channel else { return }
        channel.eventLoop.execute { [self] in
            // The driver's own close: not the server's doing.
            closeReported = true
            let frame = WebSocketFrame(
                fin: true, opcode: .connectionClose, maskKey: .random(),
                data: channel.allocator.buffer(integer: UInt16(1000)))
            channel.writeAndFlush(frame).whenComplete { _ in channel.close(promise: nil) }
        }
    }

    /// Connects and upgrades; the handler is in the pipeline when the future succeeds.
    static func connect(
        group: EventLoopGroup, host: String, port: Int, source: String?, path: String, token: String?,
        handler: LoadConnection
    ) async throws -> Channel {
        var bootstrap = ClientBootstrap(group: group).connectTimeout(.seconds(10))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
        if let source { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0)) }
        let uri = token.map { path + (path.contains("?") ? "&" : "?") + "token=" + $0 } ?? path
        let upgraded: EventLoopFuture<Bool> = try await bootstrap.connect(host: host, port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                let upgrader = NIOTypedWebSocketClientUpgrader<Bool>(
                    maxFrameSize: 1 << 20,
                    upgradePipelineHandler: { channel, _ in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(handler)
                            handler.channel = channel
                            return true
                        }
                    })
                var headers = HTTPHeaders()
                headers.add(name: "Host", value: "\(host):\(port)")
                let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: uri, headers: headers)
                let configuration = NIOTypedHTTPClientUpgradeConfiguration(
                    upgradeRequestHead: head, upgraders: [upgrader],
                    notUpgradingCompletionHandler: { channel in
                        channel.eventLoop.makeCompletedFuture { false }
                    })
                return try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
                    configuration: .init(upgradeConfiguration: configuration))
            }
        }
        guard try await upgraded.get(), let channel = handler.channel else {
            throw LoadError.server(
                "the server at \(host):\(port)\(path) refused the WebSocket upgrade (a bad token, or its --max-connections reached?)"
            )
        }
        return channel
    }
}

func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
