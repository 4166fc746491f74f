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
        let upgraded: EventLoopFuture<NIOAsyncChannel<WebSocketFrame, WebSocketFrame>?> = try await bootstrap.connect(
            host: target.host, port: target.port
        ) { channel in
            channel.eventLoop.makeCompletedFuture {
                let upgrader = NIOTypedWebSocketClientUpgrader<NIOAsyncChannel<WebSocketFrame, WebSocketFrame>?>(
                    maxFrameSize: 1 << 24,
                    upgradePipelineHandler: { channel, _ in
                        channel.eventLoop.makeCompletedFuture {
                            () -> NIOAsyncChannel<WebSocketFrame, WebSocketFrame>? in
                            try channel.pipeline.syncOperations.addHandler(
                                NIOWebSocketFrameAggregator(
                                    minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 1 << 16,
                                    maxAccumulatedFrameSize: 1 << 24))
                            return try NIOAsyncChannel<WebSocketFrame, WebSocketFrame>(
                                wrappingChannelSynchronously: channel,
                                configuration: .init(
                                    backPressureStrategy: .init(
                                        lowWatermark: max(1, bufferedFrames / 2), highWatermark: max(2, bufferedFrames))
                                ))
                        }
                    })
                var headers = HTTPHeaders()
                headers.add(name: "Host", value: "\(target.host):\(target.port)")
                headers.add(name: "Authorization", value: "Bearer \(token)")
                let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: target.path, headers: headers)
                let configuration = NIOTypedHTTPClientUpgradeConfiguration(
                    upgradeRequestHead: head, upgraders: [upgrader],
                    notUpgradingCompletionHandler: { channel in
                        channel.eventLoop.makeCompletedFuture {
                            () -> NIOAsyncChannel<WebSocketFrame, WebSocketFrame>? in
                            nil
                        }
                    })
                return try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
                    configuration: .init(upgradeConfiguration: configuration))
            }
        }
        guard let channel = try await upgraded.get() else {
            throw ProjectorError.upgradeRefused(
                "the server at \(target) refused the WebSocket upgrade: a bad or expired token, a token whose role is not service or admin, or a connection limit"
            )
        }
        return FeedConnection(channel: channel)
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
