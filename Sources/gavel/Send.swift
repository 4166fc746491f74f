import ArgumentParser
import GavelCore
import GavelEngine
import GavelGateway
import GavelWire
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

#if canImport(Glibc)
    import Glibc
#endif

struct Send: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send commands to a running `gavel serve` over its WebSocket and print what comes back.",
        discussion: """
            Each MESSAGE is one JSON object of docs/PROTOCOL.md (a command, a query, a subscription); with none, \
            JSON objects are read from standard input, one a line, up to its end. The messages are sent one at a \
            time: each waits for its answer (a command's result, a query's answer, a subscription's snapshot). A \
            message without an "id" gets one, and the id chosen is printed on standard error; one whose "id" is \
            longer than 128 bytes is refused before anything is sent (the server would not echo it).

            Every message the server sends (hello, results, events, notices) is printed on standard output as one \
            JSON line, until every message has its answer and then --timeout-ms pass with nothing more arriving.

            The token: --token-file (or --token), else one signed for --sub with --role by the key of the data \
            directory (as `gavel token` does; GAVEL_JWT_SECRET_FILE, GAVEL_JWT_SECRET, --jwt-secret-file or \
            --jwt-secret when the server runs with one), valid for 5 minutes; with neither, the connection is an \
            anonymous watcher. A token or key file must be the user's own and private (chmod 600).

            Exit status: 0 when every answer was ok, 1 when any was refused, 2 when the connection failed or \
            the arguments are wrong; 64 for what the option parser refuses (an unknown option, a missing or \
            malformed value).

            Examples:
              gavel send --role service --sub payments '{"type":"confirm_payment","settlement":"L1:1","payment_ref":"pay-77"}'
              gavel send --role admin --sub desk '{"type":"resolve_dispute","settlement":"L1:1","outcome":"refund"}'
              gavel send --role bidder --sub ann --subscribe '{"type":"bid","listing":"L1","amount":150}'
              gavel send '{"type":"list","status":"all"}'
              printf '%s\\n' '{"type":"my_settlements"}' | gavel send --role seller --sub sam
            """
    )

    @Option(name: .long, help: "The role of the token to sign: bidder, seller, service, admin or watcher.")
    var role: String?

    @Option(name: .long, help: "The user of the token to sign (an identifier: 1-64 of [A-Za-z0-9_.:-]).")
    var sub: String?

    @Option(
        name: .long,
        help:
            "A token to connect with (from `gavel token`), instead of signing one. Other local users can read a command line: prefer --token-file."
    )
    var token: String?

    @Option(
        name: .long,
        help:
            "A file holding the token to connect with (less one trailing newline), of the user running gavel and private to it (chmod 600)."
    )
    var tokenFile: String?

    @Option(name: .long, help: "The server's WebSocket endpoint. Env GAVEL_URL; default ws://127.0.0.1:8080/ws.")
    var url: String?

    @OptionGroup var key: SigningKeyOptions

    @Option(
        name: .long,
        help: "Milliseconds of quiet, after the last answer, before disconnecting (1 to 600000).")
    var timeoutMs: Int = 1000

    @Flag(
        name: .long,
        help: "Subscribe to each message's listing (or its settlement's listing) before sending it, to see its events.")
    var subscribe = false

    @Argument(help: "JSON messages to send; none: read them from standard input, one a line.")
    var messages: [String] = []

    /// How long a message may wait for its answer before the connection is given up.
    static let answerWaitMs = 10_000

    func run() async throws {
        if token != nil { warnAboutSecretOnCommandLine("--token", tool: "gavel send", instead: "--token-file") }
        key.jwt.warnIfOnCommandLine(tool: "gavel send")
        let code: Int32
        do {
            let plan = try prepare()
            code = try await SendClient.run(plan)
        } catch let failure as SendFailure {
            printError("gavel send: \(failure.message)")
            code = 2
        }
        throw ExitCode(code)
    }

    /// Everything the connection needs, checked before connecting.
    private func prepare() throws -> SendPlan {
        guard (1...600_000).contains(timeoutMs) else { throw SendFailure("--timeout-ms must be from 1 to 600000") }
        let endpoint = try SendEndpoint(try Setting.value(url, "GAVEL_URL", default: "ws://127.0.0.1:8080/ws"))
        let bearer = try bearerToken()
        var texts = messages
        if texts.isEmpty {
            while texts.count <= 100_000, let line = readLine() {
                if !line.allSatisfy({ $0 == " " || $0 == "\t" || $0 == "\r" }) { texts.append(line) }
            }
        }
        guard !texts.isEmpty else {
            throw SendFailure("nothing to send: give JSON messages as arguments or one a line on standard input")
        }
        var prefix = "send-"
        var random = SystemRandomNumberGenerator()
        for _ in 0..<6 { prefix.append(Character(Unicode.Scalar(UInt8(ascii: "a") + UInt8(random.next() % 26)))) }
        var outgoing: [OutgoingMessage] = []
        var subscribed: Set<String> = []
        for (index, text) in texts.enumerated() {
            let message = try OutgoingMessage(text, number: index + 1, idPrefix: prefix)
            if subscribe, let listing = message.listing, message.type != "subscribe",
                subscribed.insert(listing).inserted
            {
                outgoing.append(OutgoingMessage(subscribeTo: listing))
            }
            outgoing.append(message)
        }
        return SendPlan(
            endpoint: endpoint, token: bearer, messages: outgoing, quietMs: Int64(timeoutMs),
            answerWaitMs: Int64(max(timeoutMs, Self.answerWaitMs)))
    }

    /// The token to connect with: `--token-file`'s or `--token`, one signed for `--sub`/`--role`, or none.
    private func bearerToken() throws -> String? {
        do {
            return try givenOrSignedToken()
        } catch let refusal as Refusal {
            throw SendFailure(refusal.description)
        } catch let error as ValidationError {
            throw SendFailure(error.message)
        }
    }

    private func givenOrSignedToken() throws -> String? {
        if let given = try givenSecret(
            option: token, file: tokenFile, names: ("--token", "--token-file"), variables: nil,
            risk: SecretFileRisk.token)
        {
            guard role == nil, sub == nil else {
                throw SendFailure("give either --token-file (or --token) or --role and --sub, not both")
            }
            return String(decoding: given.bytes, as: UTF8.self)
        }
        guard role != nil || sub != nil else { return nil }
        guard let roleName = role, let role = Role(rawValue: roleName) else {
            throw SendFailure("--role must be bidder, seller, service, admin or watcher (with --sub)")
        }
        guard let sub, Identifier.isValid(sub) else {
            throw SendFailure("--sub must be given with --role: 1-64 characters from [A-Za-z0-9_.:-]")
        }
        let secret: [UInt8]
        if let given = try key.jwt.secret() {
            secret = given
        } else {
            let directory = try Setting.value(key.dataDir, "GAVEL_DATA_DIR", default: "./gavel-data")
            guard access(directory + "/jwt-secret", F_OK) == 0 else {
                throw SendFailure(
                    "no key in \(directory)/jwt-secret to sign a token with: give the --data-dir of the running gavel serve (or its --jwt-secret-file), or a --token-file"
                )
            }
            secret = try servingSecret(key.jwt, dataDir: key.dataDir)
        }
        let expires = SystemClock().now() / 1000 + 300
        return JWT.sign(Claims(subject: sub, role: role, expires: expires), secret: secret)
    }
}

/// A reason `gavel send` stops with exit status 2.
struct SendFailure: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

/// Where to connect: a `ws://host:port/path?query` URL.
struct SendEndpoint {
    var host: String
    var port: Int
    var uri: String
    /// The `Host` header.
    var hostHeader: String

    init(_ url: String) throws {
        guard url.hasPrefix("ws://") else {
            throw SendFailure("--url must be a ws:// address (like ws://127.0.0.1:8080/ws); got \(url)")
        }
        let rest = url.dropFirst("ws://".count)
        let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let authority = rest[..<slash]
        var path = String(rest[slash...])
        if path.isEmpty { path = "/ws" }
        if path.hasPrefix("?") { path = "/" + path }
        var host = Substring(authority)
        var port = 80
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw SendFailure("--url has a bad host: \(url)") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()), (1...65535).contains(p) else {
                    throw SendFailure("--url has a bad port: \(url)")
                }
                port = p
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            guard let p = Int(authority[authority.index(after: colon)...]), (1...65535).contains(p) else {
                throw SendFailure("--url has a bad port: \(url)")
            }
            port = p
        }
        guard !host.isEmpty else { throw SendFailure("--url has no host: \(url)") }
        self.host = String(host)
        self.port = port
        uri = path
        hostHeader = String(authority)
    }
}

/// One message to send and how its answer is recognised.
struct OutgoingMessage {
    /// The JSON text sent (with the id added when it had none).
    var text: String
    var type: String
    /// The id its answer carries (a subscription's refusal; its snapshot carries none). `nil` for a subscription
    /// `--subscribe` added.
    var id: String?
    /// The listing it is about: its `listing`, or the listing part of its `settlement`.
    var listing: String?
    /// 1, 2, ... over the messages given; `nil` for a subscription `--subscribe` added.
    var number: Int?

    init(_ text: String, number: Int, idPrefix: String) throws {
        let value: JSONValue
        do {
            value = try JSONParser.parse(text)
        } catch {
            throw SendFailure("message \(number) is not JSON (\(error)): \(text)")
        }
        guard case .object = value, case .string(let type)? = value["type"] else {
            throw SendFailure("message \(number) must be a JSON object with a \"type\" string: \(text)")
        }
        self.type = type
        self.number = number
        if case .string(let s)? = value["listing"] {
            listing = s
        } else if case .string(let s)? = value["settlement"], let colon = s.lastIndex(of: ":") {
            listing = String(s[..<colon])
        }
        if case .string(let s)? = value["id"] {
            // The server answers a longer id with `id` null, so an answer to it could not be told from another's.
            guard s.utf8.count <= Limits.maxEchoedIDBytes else {
                throw SendFailure(
                    "message \(number): id is \(s.utf8.count) bytes long; an id is an identifier of at most "
                        + "\(Limits.maxIdentifierLength) characters, and the server does not echo one over "
                        + "\(Limits.maxEchoedIDBytes) bytes")
            }
            id = s
            self.text = text
        } else if value["id"] == nil || value["id"] == .null {
            let chosen = "\(idPrefix)-\(number)"
            id = chosen
            self.text = Self.adding(id: chosen, to: text, empty: value.isEmptyObject)
            printError("gavel send: message \(number) (\(type)) has id \(chosen)")
        } else {
            throw SendFailure("message \(number): id must be a string")
        }
    }

    init(subscribeTo listing: String) {
        var w = JSONObjectWriter()
        w.field("type", "subscribe")
        w.field("listing", listing)
        text = String(decoding: w.finish(), as: UTF8.self)
        type = "subscribe"
        self.listing = listing
    }

    /// `text` (a JSON object) with `"id":id` as its first member.
    static func adding(id: String, to text: String, empty: Bool) -> String {
        guard let brace = text.firstIndex(of: "{") else { return text }
        let member = "\"id\":\"\(id)\"" + (empty ? "" : ",")
        return String(text[...brace]) + member + String(text[text.index(after: brace)...])
    }

    /// Whether `answer` (a message from the server) answers this message; `ok` says whether it was accepted.
    func answered(by answer: JSONValue) -> (done: Bool, ok: Bool) {
        guard case .string(let answerType)? = answer["type"] else { return (false, true) }
        if let id, case .string(let answerID)? = answer["id"], answerID == id {
            if case .bool(false)? = answer["ok"] { return (true, false) }
            return (true, true)
        }
        // A subscription's answer carries no id (only its refusal does): it is the snapshot of its listing.
        guard case .string(let answerListing)? = answer["listing"], answerListing == listing else {
            return (false, true)
        }
        switch (type, answerType) {
        case ("subscribe", "snapshot"), ("subscribe", "resumed"), ("unsubscribe", "unsubscribed"): return (true, true)
        default: return (false, true)
        }
    }
}

extension JSONValue {
    fileprivate var isEmptyObject: Bool {
        if case .object(let members) = self { return members.isEmpty }
        return false
    }
}

struct SendPlan {
    var endpoint: SendEndpoint
    var token: String?
    var messages: [OutgoingMessage]
    var quietMs: Int64
    var answerWaitMs: Int64
}

/// The connection of `gavel send`: the WebSocket upgrade, then one message at a time, printing all that arrives.
enum SendClient {
    static func run(_ plan: SendPlan) async throws -> Int32 {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            let code = try await run(plan, on: group)
            try? await group.shutdownGracefully()
            return code
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private static func run(_ plan: SendPlan, on group: MultiThreadedEventLoopGroup) async throws -> Int32 {
        let loop = group.next()
        let done = loop.makePromise(of: Int32.self)
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Made on the channel's loop and used only there (checked at each access).
                    let session = NIOLoopBound(SendSession(plan: plan, done: done), eventLoop: channel.eventLoop)
                    let upgradeFailed = NIOLoopBound(UpgradeResponseCatcher(done: done), eventLoop: channel.eventLoop)
                    let upgrader = NIOWebSocketClientUpgrader(
                        maxFrameSize: 1 << 24, automaticErrorHandling: false,
                        upgradePipelineHandler: { channel, _ in
                            channel.eventLoop.makeCompletedFuture {
                                try channel.pipeline.syncOperations.addHandler(session.value)
                            }
                        })
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(
                        leftOverBytesStrategy: .forwardBytes,
                        withClientUpgrade: (
                            upgraders: [upgrader],
                            completionHandler: { context in
                                context.pipeline.syncOperations.removeHandler(upgradeFailed.value, promise: nil)
                            }
                        ))
                    try channel.pipeline.syncOperations.addHandler(upgradeFailed.value)
                }
            }
        let channel: Channel
        do {
            channel = try await bootstrap.connect(host: plan.endpoint.host, port: plan.endpoint.port).get()
        } catch {
            let reason = "\(error)".contains("Connection refused") ? "connection refused" : "\(error)"
            let failure = SendFailure(
                "cannot connect to \(plan.endpoint.hostHeader): \(reason) (is gavel serve running there? see --url)")
            done.fail(failure)
            throw failure
        }
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: plan.endpoint.hostHeader)
        headers.add(name: "Content-Length", value: "0")
        if let token = plan.token { headers.add(name: "Authorization", value: "Bearer \(token)") }
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: plan.endpoint.uri, headers: headers)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        channel.closeFuture.whenComplete { _ in
            done.fail(SendFailure("the server closed the connection before every message had its answer"))
        }
        do {
            let code = try await done.futureResult.get()
            try? await channel.close()
            return code
        } catch let failure as SendFailure {
            try? await channel.close()
            throw failure
        }
    }
}

/// Reads the answer to the upgrade request when it is not `101 Switching Protocols`: the status and the one-line
/// reason in its body.
final class UpgradeResponseCatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let done: EventLoopPromise<Int32>
    private var status: HTTPResponseStatus?
    private var body: [UInt8] = []

    init(done: EventLoopPromise<Int32>) { self.done = done }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = head.status
        case .body(let buffer):
            if body.count < 1024 { body.append(contentsOf: buffer.readableBytesView.prefix(1024 - body.count)) }
        case .end:
            let code = status?.code ?? 0
            var reason = String(decoding: body, as: UTF8.self)
            while reason.last?.isNewline == true { reason.removeLast() }
            if reason.isEmpty { reason = status?.reasonPhrase ?? "no reason given" }
            let what = code == 401 ? "the server refused the token" : "the server refused the connection"
            done.fail(SendFailure("\(what) (\(code)): \(reason)"))
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if error is NIOHTTPClientUpgradeError { return }
        done.fail(SendFailure("the connection failed: \(error)"))
        context.close(promise: nil)
    }
}

/// The WebSocket session of `gavel send`, on its channel's event loop.
final class SendSession: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let plan: SendPlan
    private let done: EventLoopPromise<Int32>
    /// The index of the message waiting for its answer; `plan.messages.count` once all are answered.
    private var next = 0
    private var waiting = false
    private var refused = false
    private var timer: Scheduled<Void>?
    private var fragments: [UInt8]?
    private var finished = false
    private var context: ChannelHandlerContext?

    init(plan: SendPlan, done: EventLoopPromise<Int32>) {
        self.plan = plan
        self.done = done
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        sendNext(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    private func sendNext(_ context: ChannelHandlerContext) {
        guard next < plan.messages.count else {
            arm(context, after: plan.quietMs) { [self] in finish(code: refused ? 1 : 0) }
            return
        }
        let message = plan.messages[next]
        let buffer = context.channel.allocator.buffer(string: message.text)
        let frame = WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: buffer)
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
        waiting = true
        let what =
            message.number.map { "message \($0) (\(message.type))" } ?? "the subscription to \(message.listing ?? "")"
        arm(context, after: plan.answerWaitMs) { [self] in
            fail("no answer to \(what) within \(plan.answerWaitMs) ms")
        }
    }

    /// Runs `body` in `ms` unless armed again first.
    /// Runs `body` on the session's event loop after `ms`, in place of the timer armed before.
    private func arm(_ context: ChannelHandlerContext, after ms: Int64, _ body: @escaping () -> Void) {
        timer?.cancel()
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(ms), body)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text:
            if frame.fin {
                received(context, Array(frame.data.readableBytesView))
            } else {
                fragments = Array(frame.data.readableBytesView)
            }
        case .continuation:
            guard fragments != nil else { return }
            fragments?.append(contentsOf: frame.data.readableBytesView)
            if frame.fin, let whole = fragments {
                fragments = nil
                received(context, whole)
            }
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.data)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            var payload = frame.data
            let code = payload.readInteger(as: UInt16.self).map { Int($0) } ?? 1005
            let reason = payload.readString(length: payload.readableBytes) ?? ""
            let allAnswered = next >= plan.messages.count
            if allAnswered && (code == 1000 || code == 1001) {
                finish(code: refused ? 1 : 0)
            } else {
                fail("the server closed the connection (\(code))\(reason.isEmpty ? "" : ": " + reason)")
            }
        default:
            break
        }
    }

    private func received(_ context: ChannelHandlerContext, _ bytes: [UInt8]) {
        printLine(String(decoding: bytes, as: UTF8.self))
        guard next < plan.messages.count else {
            // All answered: each further message starts the quiet time again.
            arm(context, after: plan.quietMs) { [self] in finish(code: refused ? 1 : 0) }
            return
        }
        guard waiting, let value = try? JSONParser.parse(bytes) else { return }
        let (answered, ok) = plan.messages[next].answered(by: value)
        guard answered else { return }
        if !ok { refused = true }
        waiting = false
        next += 1
        sendNext(context)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail("the connection failed: \(error)")
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        if !finished {
            let allAnswered = next >= plan.messages.count
            if allAnswered {
                finish(code: refused ? 1 : 0)
            } else {
                fail("the server closed the connection before every message had its answer")
            }
        }
        context.fireChannelInactive()
    }

    private func fail(_ message: String) {
        guard !finished else { return }
        finished = true
        timer?.cancel()
        done.fail(SendFailure(message))
        context?.close(promise: nil)
    }

    /// Says goodbye with a normal close and ends with `code`.
    private func finish(code: Int32) {
        guard !finished, let context else { return }
        finished = true
        timer?.cancel()
        var payload = context.channel.allocator.buffer(capacity: 2)
        payload.writeInteger(UInt16(1000))
        let close = WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: payload)
        context.writeAndFlush(wrapOutboundOut(close), promise: nil)
        done.succeed(code)
    }
}
