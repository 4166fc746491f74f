import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// Where the feed comes from: `ws://HOST:PORT/PATH`.
public struct GavelTarget: Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var path: String

    /// - Throws: `ProjectorError.invalidOption` naming what is wrong with `url`.
    public init(url: String) throws {
        guard let parts = URLComponents(string: url), parts.scheme == "ws", let host = parts.host, !host.isEmpty else {
            throw ProjectorError.invalidOption(
                "--gavel-url must look like ws://HOST:PORT/ws (got \(url.prefix(200))); wss:// is not supported: run the projector beside the server"
            )
        }
        self.host = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        self.port = parts.port ?? 80
        let path = parts.percentEncodedPath.isEmpty ? "/ws" : parts.percentEncodedPath
        self.path = parts.percentEncodedQuery.map { path + "?" + $0 } ?? path
    }

    public var description: String { "ws://\(host):\(port)\(path)" }
}

/// A WebSocket connection to `gavel serve` that reads the feed, paced by the reader: the channel stops reading from
/// the socket while `bufferedFrames` frames wait, so a server catching up is held back by TCP, not by memory here.
struct FeedConnection {
    let channel: NIOAsyncChannel<WebSocketFrame, WebSocketFrame>

    static func connect(
        to target: GavelTarget, token: String, bufferedFrames: Int, group: any EventLoopGroup
    ) async throws -> FeedConnection {
        let bootstrap = ClientBootstrap(group: group).connectTimeout(.seconds(10))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
        let upgraded: EventLoopFuture<Upgrade> = try await bootstrap.connect(
            host: target.host, port: target.port
        ) { channel in
            channel.eventLoop.makeCompletedFuture {
                let upgrader = NIOTypedWebSocketClientUpgrader<Upgrade>(
                    maxFrameSize: 1 << 24,
                    upgradePipelineHandler: { channel, _ in
                        channel.eventLoop.makeCompletedFuture { () -> Upgrade in
                            try channel.pipeline.syncOperations.addHandler(
                                NIOWebSocketFrameAggregator(
                                    minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 1 << 16,
                                    maxAccumulatedFrameSize: 1 << 24))
                            return .upgraded(
                                try NIOAsyncChannel<WebSocketFrame, WebSocketFrame>(
                                    wrappingChannelSynchronously: channel,
                                    configuration: .init(
                                        backPressureStrategy: .init(
                                            lowWatermark: max(1, bufferedFrames / 2),
                                            highWatermark: max(2, bufferedFrames))
                                    )))
                        }
                    })
                var headers = HTTPHeaders()
                headers.add(name: "Host", value: "\(target.host):\(target.port)")
                headers.add(name: "Authorization", value: "Bearer \(token)")
                let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: target.path, headers: headers)
                let configuration = NIOTypedHTTPClientUpgradeConfiguration(
                    upgradeRequestHead: head, upgraders: [upgrader],
                    notUpgradingCompletionHandler: { channel in
                        // The response the upgrade handler holds goes down the pipeline once this returns: read it.
                        channel.eventLoop.makeCompletedFuture { () -> Upgrade in
                            let reader = RefusalReader(promise: channel.eventLoop.makePromise())
                            try channel.pipeline.syncOperations.addHandler(reader)
                            return .refused(reader.promise.futureResult)
                        }
                    })
                return try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
                    configuration: .init(upgradeConfiguration: configuration))
            }
        }
        switch try await upgraded.get() {
        case .upgraded(let channel):
            return FeedConnection(channel: channel)
        case .refused(let response):
            let refusal = try? await response.get()
            throw ProjectorError.upgradeRefused(Self.refusal(refusal, from: target))
        }
    }

    /// What the upgrade gave: the WebSocket, or the HTTP answer that refused it (its status and the start of its
    /// body, once read).
    enum Upgrade: Sendable {
        case upgraded(NIOAsyncChannel<WebSocketFrame, WebSocketFrame>)
        case refused(EventLoopFuture<Refusal>)
    }

    /// The HTTP answer to a refused upgrade.
    struct Refusal: Sendable, Equatable {
        var status: HTTPResponseStatus
        /// The body's first ``RefusalReader/maxBodyBytes`` bytes, as text, trimmed.
        var body: String
    }

    /// The message of a refused upgrade: the server's status and what it usually means for the projector (`nil`:
    /// the answer could not be read).
    static func refusal(_ refusal: Refusal?, from target: GavelTarget) -> String {
        guard let refusal else {
            return "the server at \(target) refused the WebSocket upgrade and closed before its answer could be read"
        }
        let status = "\(refusal.status.code) \(refusal.status.reasonPhrase)"
        let said = refusal.body.isEmpty || refusal.body == status ? "" : " (\"\(refusal.body)\")"
        let meaning =
            switch refusal.status.code {
            case 401:
                "the token is missing, malformed, expired or not signed with a key the server takes (its log says which): make a new one (gavel token --role service, or the identity provider's) and give it with --token-file, or give the server's key with --jwt-secret-file"
            case 403: "the server refuses this request: its log says why"
            case 404: "no WebSocket endpoint at \(target.path): --gavel-url must name the server's /ws path"
            case 429: "the server limits new connections from this address: it is retried with backoff"
            case 503: "the server is at a connection limit or shutting down: it is retried with backoff"
            default: "see the server's log for the reason"
            }
        return "the server at \(target) refused the WebSocket upgrade with \(status)\(said): \(meaning)"
    }

    /// The text frame that asks for the feed from `sinceLSN`, with a `feed_mark` before each journal batch, and
    /// `expect`: the mark of the journal batch of lsn `sinceLSN - 1` when one is stored (none at position 0, or in
    /// a read model from before marks were kept: that one resumes unchecked until it has stored one).
    static func subscription(sinceLSN: Int64, expect mark: FeedMark? = nil) -> String {
        guard let mark, sinceLSN >= 2, FeedMark.isChain(mark.chain) else {
            return #"{"type":"subscribe_feed","id":"projector","since_lsn":\#(sinceLSN),"marks":true}"#
        }
        return
            #"{"type":"subscribe_feed","id":"projector","since_lsn":\#(sinceLSN),"marks":true,"expect":{"lsn":\#(mark.lsn),"chain":"\#(mark.chain)"}}"#
    }

    static func textFrame(_ text: String) -> WebSocketFrame {
        WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: ByteBuffer(string: text))
    }
}

/// Reads the HTTP answer of a refused upgrade (its head, and its body up to ``maxBodyBytes``) into `promise`, which
/// is completed at the answer's end or when the connection closes, whichever comes first.
final class RefusalReader: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    static let maxBodyBytes = 512

    let promise: EventLoopPromise<FeedConnection.Refusal>
    private var status: HTTPResponseStatus?
    private var body: [UInt8] = []

    init(promise: EventLoopPromise<FeedConnection.Refusal>) {
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = head.status
        case .body(var buffer):
            let room = Self.maxBodyBytes - body.count
            if room > 0, let bytes = buffer.readBytes(length: min(room, buffer.readableBytes)) {
                body.append(contentsOf: bytes)
            }
        case .end:
            finish(context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(context: context)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        finish(context: context)
    }

    private func finish(context: ChannelHandlerContext) {
        guard let status else {
            promise.fail(ChannelError.ioOnClosedChannel)
            return
        }
        let text = String(decoding: body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        promise.succeed(FeedConnection.Refusal(status: status, body: text))
        self.status = nil
        context.close(promise: nil)
    }
}
