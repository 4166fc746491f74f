import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// The admin HTTP port: `GET /metrics` (Prometheus text) and `GET /healthz` (200 when connected to both ends,
/// else 503 with the last error). Runs until graceful shutdown.
public struct AdminServer: Service {
    let channel: any Channel
    let logger: Logger

    /// Binds the port (port 0 picks a free one) before anything else starts, so that a port in use stops the
    /// projector at once with a message that names it.
    ///
    /// - Throws: ``ProjectorError/invalidOption(_:)`` naming the address, the reason and the option to change.
    public static func listen(
        host: String, port: Int, metrics: ProjectorMetrics, group: any EventLoopGroup, logger: Logger
    ) async throws(ProjectorError) -> AdminServer {
        do {
            let channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        try channel.pipeline.syncOperations.addHandler(AdminHandler(metrics: metrics))
                    }
                }
                .bind(host: host, port: port).get()
            return AdminServer(channel: channel, logger: logger)
        } catch {
            let reason = (error as? IOError).map { String(cString: strerror($0.errnoCode)) } ?? "\(error)"
            throw .invalidOption(
                "cannot listen on \(host):\(port) for admin HTTP: \(reason); choose another --admin-port (0 picks a free one), or leave it out for none"
            )
        }
    }

    public func run() async throws {
        logger.info("admin HTTP listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
        try? await gracefulShutdown()
        try? await channel.close()
    }
}

final class AdminHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let metrics: ProjectorMetrics

    init(metrics: ProjectorMetrics) {
        self.metrics = metrics
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let status: HTTPResponseStatus
        let body: String
        var contentType = "text/plain; charset=utf-8"
        switch (head.method, path) {
        case (.GET, "/metrics"):
            status = .ok
            body = metrics.prometheusText()
            contentType = "text/plain; version=0.0.4; charset=utf-8"
        case (.GET, "/healthz"):
            let health = metrics.health
            if health.connected {
                status = .ok
                body = "ok: \(health.live ? "live" : "catching up"), \(health.lagLSN) lsn behind\n"
            } else {
                status = .serviceUnavailable
                body = "not connected: \(health.lastError ?? "starting")\n"
            }
        case (_, "/metrics"), (_, "/healthz"):
            status = .methodNotAllowed
            body = "only GET\n"
        default:
            status = .notFound
            body = "not found: the admin port serves /metrics and /healthz\n"
        }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        headers.add(name: "Connection", value: "close")
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
            promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
        written.futureResult.whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
    }
}
