import NIOCore
import NIOHTTP1
import NIOWebSocket
import Synchronization

/// Writes one complete HTTP response and closes the connection.
func respond(
    context: ChannelHandlerContext, status: HTTPResponseStatus, contentType: String = "text/plain; charset=utf-8",
    body: [UInt8], headOnly: Bool = false
) {
    var headers = HTTPHeaders()
    headers.add(name: "content-type", value: contentType)
    headers.add(name: "content-length", value: String(body.count))
    headers.add(name: "connection", value: "close")
    headers.add(name: "cache-control", value: "no-store")
    // No page of this server may be framed by another (the page's "Buy now" is one click from a binding sale), nor
    // its answers read as another type than they are.
    headers.add(name: "x-frame-options", value: "DENY")
    headers.add(name: "content-security-policy", value: "frame-ancestors 'none'")
    headers.add(name: "x-content-type-options", value: "nosniff")
    let head = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
    context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
    if !headOnly {
        var buffer = context.channel.allocator.buffer(capacity: body.count)
        buffer.writeBytes(body)
        context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(buffer))), promise: nil)
    }
    let channel = context.channel
    context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil))).whenComplete { _ in
        channel.close(promise: nil)
    }
}

/// Collects one request (head, up to ``maxBody`` bytes of body, end) and answers it.
class SimpleHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// The most body bytes kept; a longer body is answered 413.
    var maxBody: Int { LocalTokens.maxBody }
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var answered = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            // A body announced longer than the limit is refused at once, not read to its end first (a client
            // announcing 10 GB would otherwise have the server read them all before it answers).
            if let length = head.headers.first(name: "content-length").flatMap({ Int($0) }), length > maxBody {
                refuseBody(context: context)
            }
        case .body(let chunk):
            if body.count + chunk.readableBytes > maxBody {
                refuseBody(context: context)
            } else {
                body.append(contentsOf: chunk.readableBytesView)
            }
        case .end:
            guard let head else { return }
            answered = true
            answer(context: context, head: head, body: body)
        }
    }

    /// Answers 413 and closes the connection; what else arrives is not read.
    private func refuseBody(context: ChannelHandlerContext) {
        answered = true
        body = []
        respond(context: context, status: .payloadTooLarge, body: Array("body over \(maxBody) bytes\n".utf8))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A refused upgrade is reported as an error before the request is passed on to be answered here.
        if error is NIOWebSocketUpgradeError { return }
        // Malformed HTTP or a broken connection: nothing sensible to answer.
        context.close(promise: nil)
    }

    func answer(context: ChannelHandlerContext, head: HTTPRequestHead, body: [UInt8]) {
        respond(context: context, status: .notFound, body: Array("not found\n".utf8))
    }
}

/// The main port's plain HTTP: the page at `/`, `/token` in local mode, and the reason a request to `/ws` was not
/// upgraded.
final class PageHandler: SimpleHTTPHandler {
    private let page: [UInt8]
    private let refusal: @Sendable (HTTPRequestHead) -> Refusal?
    private let localTokens: LocalTokens?

    /// - Parameters:
    ///   - refusal: why an upgrade request to the endpoint was refused (401, 429, 503), if it was.
    ///   - localTokens: who answers `/token` (local mode only); `nil`: `/token` is 404.
    init(
        page: [UInt8], localTokens: LocalTokens? = nil,
        refusal: @escaping @Sendable (HTTPRequestHead) -> Refusal?
    ) {
        self.page = page
        self.localTokens = localTokens
        self.refusal = refusal
    }

    override func answer(context: ChannelHandlerContext, head: HTTPRequestHead, body: [UInt8]) {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        if path == "/token" {
            guard let localTokens else {
                return respond(context: context, status: .notFound, body: Array("not found\n".utf8))
            }
            let (status, json) = localTokens.answer(head: head, body: body, peer: context.channel.remoteAddress)
            return respond(
                context: context, status: status, contentType: "application/json", body: json,
                headOnly: head.method == .HEAD)
        }
        if Authenticator.isEndpoint(head.uri) {
            if let refusal = refusal(head) {
                return respond(context: context, status: refusal.status, body: Array((refusal.reason + "\n").utf8))
            }
            return respond(
                context: context, status: .upgradeRequired, body: Array("this endpoint speaks WebSocket only\n".utf8))
        }
        guard head.method == .GET || head.method == .HEAD else {
            return respond(context: context, status: .methodNotAllowed, body: Array("GET only\n".utf8))
        }
        switch path {
        case "/", "/index.html":
            respond(
                context: context, status: .ok, contentType: "text/html; charset=utf-8", body: page,
                headOnly: head.method == .HEAD)
        default:
            respond(context: context, status: .notFound, body: Array("not found\n".utf8))
        }
    }
}

/// Whether the server has finished recovery and serves; `/readyz` reads it.
public final class Readiness: Sendable {
    private let ready = Atomic<Bool>(false)

    public init() {}

    public var isReady: Bool { ready.load(ordering: .acquiring) }

    public func set(_ value: Bool) { ready.store(value, ordering: .releasing) }
}

/// The admin port: `/healthz` (always 200), `/readyz` (503 until recovery is done and the gateway listens, and
/// again while shutting down), `/metrics` (Prometheus text).
final class AdminHandler: SimpleHTTPHandler {
    private let metrics: GatewayMetrics
    private let readiness: Readiness
    private let refresh: @Sendable () -> Void

    init(metrics: GatewayMetrics, readiness: Readiness, refresh: @escaping @Sendable () -> Void) {
        self.metrics = metrics
        self.readiness = readiness
        self.refresh = refresh
    }

    override func answer(context: ChannelHandlerContext, head: HTTPRequestHead, body: [UInt8]) {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        switch path {
        case "/healthz":
            respond(context: context, status: .ok, body: Array("ok\n".utf8))
        case "/readyz":
            if readiness.isReady {
                respond(context: context, status: .ok, body: Array("ready\n".utf8))
            } else {
                respond(context: context, status: .serviceUnavailable, body: Array("not ready\n".utf8))
            }
        case "/metrics":
            refresh()
            respond(
                context: context, status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8",
                body: metrics.exposition())
        default:
            respond(
                context: context, status: .notFound, body: Array("not found; try /healthz, /readyz, /metrics\n".utf8))
        }
    }
}
