import GavelEngine
import GavelJournal
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// Where an identity provider's key set comes from, and how it is read again: a file (again on SIGHUP) or an
/// `http://` or `https://` URL (fetched at start, again on SIGHUP, and again when a token names a `kid` the cached
/// set does not hold, at most once per ``minimumRefreshInterval``).
public final class JWKSSource: Sendable {
    public enum Location: Sendable, CustomStringConvertible {
        case file(String)
        case url(JWKSURL)

        public var description: String {
            switch self {
            case .file(let path): path
            case .url(let url): url.description
            }
        }
    }

    public let location: Location
    /// The keys, issuer, audience and role claim tokens are checked with.
    public let provider: IdentityProvider
    /// The shortest time between two fetches on an unknown `kid`, in nanoseconds.
    public let minimumRefreshInterval: UInt64
    private let group: EventLoopGroup
    private let tls: NIOSSLContext?
    private let logger: Logger
    /// When the URL was last fetched for an unknown `kid` (monotonic nanoseconds; the fetch at start does not count,
    /// so the first unknown `kid` always looks), and the fetch under way.
    private let refresh = Mutex<(last: UInt64?, inFlight: EventLoopFuture<Void>?)>((nil, nil))

    /// Reads the key set at `location` for the first time.
    ///
    /// - Parameters:
    ///   - trust: PEM CA certificates an `https` URL's server must chain to; `nil`: the system's.
    /// - Throws: ``JWKSKeys/Failure`` saying what is wrong with the file or the URL.
    public init(
        location: Location, issuer: String?, audience: String?, roleClaim: String, refreshSeconds: Int,
        trust: String?, group: EventLoopGroup, logger: Logger
    ) async throws(JWKSKeys.Failure) {
        self.location = location
        self.group = group
        self.logger = logger
        self.minimumRefreshInterval = UInt64(refreshSeconds) * 1_000_000_000
        var tls: NIOSSLContext?
        if case .url(let url) = location, url.secure {
            do {
                var configuration = TLSConfiguration.makeClientConfiguration()
                configuration.minimumTLSVersion = .tlsv12
                if let trust {
                    configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Files.readAll(trust)))
                }
                tls = try NIOSSLContext(configuration: configuration)
            } catch {
                throw JWKSKeys.Failure(description: "cannot use the CA file \(trust ?? "(system)"): \(error)")
            }
        }
        self.tls = tls
        let keys = try await Self.read(location, group: group, tls: tls)
        self.provider = IdentityProvider(keys: keys, issuer: issuer, audience: audience, roleClaim: roleClaim)
    }

    /// Whether an unknown `kid` makes the key set be fetched again (a URL, not a file).
    public var fetchesOnUnknownKey: Bool {
        if case .url = location { return true }
        return false
    }

    /// Reads the key set again and uses it; on failure keeps the keys in use.
    ///
    /// - Throws: ``JWKSKeys/Failure`` saying why the new set was not taken.
    public func reload() async throws(JWKSKeys.Failure) {
        let keys = try await Self.read(location, group: group, tls: tls)
        provider.replace(keys)
        logger.info("key set \(location) loaded: kid \(keys.identifiers.joined(separator: ", "))")
    }

    /// Fetches the URL's key set again because a token named a `kid` not in the cached one: `nil` when the keys come
    /// from a file or the last fetch was less than ``minimumRefreshInterval`` ago; else a future that succeeds once
    /// the fetch is over (whether or not it brought new keys), shared by every connection that asks meanwhile.
    func refreshForUnknownKey(on loop: EventLoop) -> EventLoopFuture<Void>? {
        guard fetchesOnUnknownKey else { return nil }
        let now = monotonicNanos()
        let future: EventLoopFuture<Void>? = refresh.withLock { state in
            if let inFlight = state.inFlight { return inFlight }
            if let last = state.last, now <= last || now - last < minimumRefreshInterval { return nil }
            state.last = now
            let promise = loop.makePromise(of: Void.self)
            promise.completeWithTask { [self] in
                do {
                    try await reload()
                } catch {
                    logger.warning("key set \(location) not refreshed, the cached one stays: \(error)")
                }
            }
            state.inFlight = promise.futureResult
            return promise.futureResult
        }
        future?.whenComplete { [self] _ in
            refresh.withLock { state in
                if state.inFlight === future { state.inFlight = nil }
            }
        }
        return future?.hop(to: loop)
    }

    /// The key set at `location`.
    static func read(_ location: Location, group: EventLoopGroup, tls: NIOSSLContext?) async throws(JWKSKeys.Failure)
        -> JWKSKeys
    {
        let bytes: [UInt8]
        switch location {
        case .file(let path):
            do {
                bytes = try Files.readAll(path)
            } catch {
                throw JWKSKeys.Failure(description: "cannot read the key set: \(error)")
            }
        case .url(let url):
            bytes = try await HTTPGet.fetch(url, group: group, tls: tls)
        }
        do {
            return try await JWKSKeys.parse(bytes)
        } catch {
            throw JWKSKeys.Failure(description: "\(location): \(error)")
        }
    }
}

/// An `http://` or `https://` URL of a key set.
public struct JWKSURL: Sendable, CustomStringConvertible {
    public var secure: Bool
    public var host: String
    public var port: Int
    /// The path and query, from the first `/`.
    public var path: String

    /// Parses `http://HOST[:PORT][/PATH]` or `https://...` (an IPv6 host in brackets); `nil` for anything else.
    public init?(_ text: String) {
        let rest: Substring
        if text.hasPrefix("https://") {
            secure = true
            rest = text.dropFirst("https://".count)
        } else if text.hasPrefix("http://") {
            secure = false
            rest = text.dropFirst("http://".count)
        } else {
            return nil
        }
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        let tail = rest.dropFirst(authority.count).prefix { $0 != "#" }
        path = tail.first == "/" ? String(tail) : "/" + tail
        guard !authority.isEmpty, !authority.contains("@") else { return nil }
        var hostPart = authority
        var portPart: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            hostPart = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return nil }
                portPart = after.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            hostPart = authority[..<colon]
            portPart = authority[authority.index(after: colon)...]
        }
        host = String(hostPart)
        if let portPart {
            guard let port = Int(portPart), (1...65535).contains(port) else { return nil }
            self.port = port
        } else {
            port = secure ? 443 : 80
        }
        guard !host.isEmpty else { return nil }
    }

    public var description: String {
        let shownHost = host.contains(":") ? "[\(host)]" : host
        return "\(secure ? "https" : "http")://\(shownHost):\(port)\(path)"
    }
}

/// A single HTTP/1.1 GET over a new connection: enough to fetch a key set, without an HTTP client library.
enum HTTPGet {
    /// The largest body accepted.
    static let maxBytes = 1 << 20
    /// How long the whole exchange may take.
    static let timeout = TimeAmount.seconds(10)

    static func fetch(_ url: JWKSURL, group: EventLoopGroup, tls: NIOSSLContext?) async throws(JWKSKeys.Failure)
        -> [UInt8]
    {
        let loop = group.next()
        let promise = loop.makePromise(of: [UInt8].self)
        // Completed on every path, so that no promise is left pending (NIO checks).
        defer { promise.fail(JWKSKeys.Failure(description: "no answer")) }
        do {
            let channel = try await ClientBootstrap(group: loop)
                .connectTimeout(.seconds(5))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tls {
                            let name = isIPAddress(url.host) ? nil : url.host
                            try channel.pipeline.syncOperations.addHandler(
                                NIOSSLClientHandler(context: tls, serverHostname: name))
                        }
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(ResponseCollector(promise: promise))
                    }
                }
                .connect(host: url.host, port: url.port).get()
            let deadline = loop.scheduleTask(in: timeout) {
                promise.fail(JWKSKeys.Failure(description: "no complete answer within 10 s"))
            }
            promise.futureResult.whenComplete { _ in
                deadline.cancel()
                channel.close(promise: nil)
            }
            var headers = HTTPHeaders()
            headers.add(name: "Host", value: url.host)
            headers.add(name: "Accept", value: "application/json")
            headers.add(name: "Connection", value: "close")
            let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: url.path, headers: headers)
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
            return try await promise.futureResult.get()
        } catch let failure as JWKSKeys.Failure {
            throw JWKSKeys.Failure(description: "cannot fetch \(url): \(failure.description)")
        } catch {
            throw JWKSKeys.Failure(description: "cannot fetch \(url): \(error)")
        }
    }

    static func isIPAddress(_ host: String) -> Bool {
        host.contains(":") || host.allSatisfy { $0.isNumber || $0 == "." }
    }

    /// Gathers one response's body; fails on a status other than 200, a body over ``maxBytes``, or an early close.
    final class ResponseCollector: ChannelInboundHandler {
        typealias InboundIn = HTTPClientResponsePart

        private let promise: EventLoopPromise<[UInt8]>
        private var status: HTTPResponseStatus?
        private var body: [UInt8] = []

        init(promise: EventLoopPromise<[UInt8]>) { self.promise = promise }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                status = head.status
            case .body(let buffer):
                guard body.count + buffer.readableBytes <= HTTPGet.maxBytes else {
                    promise.fail(JWKSKeys.Failure(description: "the answer is over \(HTTPGet.maxBytes) bytes"))
                    return
                }
                body.append(contentsOf: buffer.readableBytesView)
            case .end:
                if status == .ok {
                    promise.succeed(body)
                } else {
                    promise.fail(JWKSKeys.Failure(description: "status \(status.map { "\($0.code)" } ?? "none")"))
                }
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            promise.fail(error)
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            promise.fail(JWKSKeys.Failure(description: "the connection closed before the answer ended"))
        }
    }
}
