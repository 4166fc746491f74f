import Crypto
import Foundation
import Logging
import NIOCore
import NIOWebSocket
import ServiceLifecycle
import Synchronization

/// How the projector authenticates to `gavel serve`.
public enum TokenSource: Sendable {
    /// A token as given (`--token`).
    case fixed(String)
    /// An HS256 token signed with the server's secret for `subject` with role `service`, made anew for each
    /// connection and valid for an hour (`--jwt-secret`).
    case secret(String, subject: String)

    func token(now: Date = Date()) -> String {
        switch self {
        case .fixed(let token): return token
        case .secret(let secret, let subject):
            let header = base64URL(Data(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
            let exp = Int(now.timeIntervalSince1970) + 3600
            let payload = base64URL(Data(#"{"sub":"\#(subject)","role":"service","exp":\#(exp)}"#.utf8))
            let input = header + "." + payload
            let mac = HMAC<SHA256>.authenticationCode(
                for: Data(input.utf8), using: SymmetricKey(data: Data(secret.utf8)))
            return input + "." + base64URL(Data(mac))
        }
    }

    private func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

/// Everything the projector is told at start.
public struct ProjectorConfiguration: Sendable {
    public var gavel: GavelTarget
    public var token: TokenSource
    public var postgres: PostgresTarget
    /// A batch closes at the first lsn boundary once it holds this many events...
    public var batchEvents: Int
    /// ...or this long after its first event, whichever comes first.
    public var batchLatency: Duration
    /// Reconnection waits: the first, doubled after each failure up to the last.
    public var backoffMin: Duration
    public var backoffMax: Duration
    /// Feed messages read ahead of the writer (the socket is not read while this many wait).
    public var readAhead: Int
    /// A batch also closes at the first lsn boundary once its events' frames hold this many bytes.
    public var batchBytes: Int

    public init(
        gavel: GavelTarget, token: TokenSource, postgres: PostgresTarget, batchEvents: Int, batchLatency: Duration,
        backoffMin: Duration, backoffMax: Duration, readAhead: Int, batchBytes: Int = 8 << 20
    ) {
        self.gavel = gavel
        self.token = token
        self.postgres = postgres
        self.batchEvents = batchEvents
        self.batchLatency = batchLatency
        self.backoffMin = backoffMin
        self.backoffMax = backoffMax
        self.readAhead = readAhead
        self.batchBytes = batchBytes
    }
}

/// The long-running projector: reads the feed from the stored position + 1 and applies it to PostgreSQL in batches,
/// each batch's rows and position in one transaction; reconnects to either end with capped exponential backoff.
/// Stops on graceful shutdown (an uncommitted batch is simply read again next time), or with an error retrying
/// cannot mend.
public final class Projector: Service, Sendable {
    let configuration: ProjectorConfiguration
    let metrics: ProjectorMetrics
    let group: any EventLoopGroup
    let logger: Logger

    public init(
        configuration: ProjectorConfiguration, metrics: ProjectorMetrics, group: any EventLoopGroup, logger: Logger
    ) {
        self.configuration = configuration
        self.metrics = metrics
        self.group = group
        self.logger = logger
    }

    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown { try await self.loop() }
        } catch is CancellationError {
            logger.info("stopped")
        }
    }

    private func loop() async throws {
        var backoff = configuration.backoffMin
        while !Task.isCancelled {
            var progressed = false
            do {
                try await session(progressed: &progressed)
            } catch let error as ProjectorError where error.isFatal {
                logger.error("\(error)")
                throw error
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                if Task.isCancelled { throw CancellationError() }
                if progressed { backoff = configuration.backoffMin }
                let peer = error is SessionError.Postgres ? "postgres" : "gavel"
                let why = "\(error)"
                metrics.reconnecting(peer: peer, because: why)
                logger.warning(
                    "reconnecting",
                    metadata: ["peer": "\(peer)", "error": "\(why)", "in_ms": "\(backoff.milliseconds)"])
                try await Task.sleep(for: backoff)
                backoff = min(configuration.backoffMax, backoff * 2)
            }
        }
        throw CancellationError()
    }

    /// One connection to each end, until either fails.
    private func session(progressed: inout Bool) async throws {
        let store: Store
        do {
            store = try await Store.connect(to: configuration.postgres, logger: logger)
        } catch {
            throw SessionError.Postgres(underlying: error)
        }
        defer { Task { await store.close() } }
        let position: Int64
        let mark: FeedMark?
        do {
            try await store.migrate()
            try await store.prepare()
            (position, mark) = try await store.position()
        } catch let error as ProjectorError {
            throw error
        } catch {
            throw SessionError.Postgres(underlying: error)
        }
        let feed = try await FeedConnection.connect(
            to: configuration.gavel, token: configuration.token.token(), bufferedFrames: configuration.readAhead,
            group: group)
        metrics.started(at: position)
        logger.info(
            "connected",
            metadata: [
                "gavel": "\(configuration.gavel)", "postgres": "\(configuration.postgres)",
                "since_lsn": "\(position + 1)", "expect": "\(mark.map { "\($0.lsn)" } ?? "none")",
            ])
        let queue = MessageQueue(capacity: configuration.readAhead)
        let result = Progress()
        do {
            try await feed.channel.executeThenClose { inbound, outbound in
                try await outbound.write(
                    FeedConnection.textFrame(FeedConnection.subscription(sinceLSN: position + 1, expect: mark)))
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        defer { queue.finish() }
                        try await self.read(inbound, outbound, into: queue)
                    }
                    group.addTask {
                        defer { queue.finish() }
                        try await self.write(from: queue, to: store, position: position, mark: mark, progress: result)
                    }
                    // The writer ends every session with an error (a closed feed included); its error cancels the
                    // reader.
                    for try await _ in group {}
                }
            }
        } catch {
            progressed = result.value
            throw error
        }
        progressed = result.value
        throw ProjectorError.closed("the server closed the feed")
    }

    /// Reads frames, answers pings, parses text frames into the queue; returns when the connection ends.
    private func read(
        _ inbound: NIOAsyncChannelInboundStream<WebSocketFrame>,
        _ outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>,
        into queue: MessageQueue
    ) async throws {
        for try await frame in inbound {
            switch frame.opcode {
            case .text:
                let bytes = frame.unmaskedData.readableBytesView
                let message = try FeedMessage.parse(bytes)
                guard await queue.push(Received(message: message, bytes: bytes.count)) else { return }
            case .ping:
                try await outbound.write(
                    WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData))
            case .connectionClose:
                var data = frame.unmaskedData
                let code = data.readInteger(as: UInt16.self).map { "\($0)" } ?? "none"
                let reason = data.readString(length: data.readableBytes) ?? ""
                logger.warning("the server closed the feed", metadata: ["code": "\(code)", "reason": "\(reason)"])
                return
            default:
                continue
            }
        }
    }

    /// Takes messages from the queue into batches and applies each at an lsn boundary, once it is full (in events or
    /// bytes) or its latency is up. One batch is written while the next one fills: a batch's transaction starts
    /// only after the one before it committed, so the positions still follow one another. A batch whose latency is
    /// up while the one before it is still being written goes on filling until that one is done (it could not be
    /// written sooner), so batches grow when PostgreSQL is slow. Throws when the feed ends or PostgreSQL fails.
    private func write(
        from queue: MessageQueue, to store: Store, position: Int64, mark: FeedMark?, progress: Progress
    ) async throws {
        var batch = Batch(position: position, mark: mark)
        var deadline: ContinuousClock.Instant?
        var lastAt: Int64?
        var writing: Task<Void, any Error>?
        var written = WriteDone(done: true)
        let (metrics, logger) = (self.metrics, self.logger)
        func commit() async throws {
            guard !batch.isEmpty, batch.position > batch.startPosition || batch.events > 0 else { return }
            try await writing?.value
            let full = batch
            let at = lastAt
            let done = WriteDone()
            written = done
            writing = Task {
                defer { done.flag.store(true, ordering: .releasing) }
                let started = ContinuousClock.now
                do {
                    try await store.apply(full)
                } catch {
                    // Ends the queue so that a writer waiting for the feed learns of the failure now.
                    queue.finish()
                    if error is ProjectorError { throw error }
                    throw SessionError.Postgres(underlying: error)
                }
                metrics.applied(full, lastAt: at)
                progress.value = true
                logger.debug(
                    "applied",
                    metadata: [
                        "lsn": "\(full.position)", "events": "\(full.events)", "bytes": "\(full.bytes)",
                        "ms": "\((ContinuousClock.now - started).milliseconds)",
                    ])
            }
            batch = batch.next()
            deadline = nil
        }
        do {
            while true {
                // A batch that could close waits for more only until its latency is up; one inside an lsn waits
                // for the rest of it.
                let closable = !batch.isEmpty && batch.isAtBoundary
                var until = closable ? deadline : nil
                if let due = until, !written.flag.load(ordering: .acquiring) {
                    // Latency up, the batch before still being written: look again shortly.
                    until = max(due, .now.advanced(by: .milliseconds(2)))
                }
                guard let received = await queue.take(max: 1024, until: until) else {
                    if batch.isAtBoundary { try await commit() }
                    try await writing?.value
                    throw ProjectorError.closed("the feed connection ended")
                }
                for item in received {
                    switch item.message {
                    case .event(let event, let terms):
                        if let lsn = event.lsn { metrics.sawFeed(lsn: lsn) }
                        try batch.add(event, terms: terms, bytes: item.bytes)
                        if let at = event.at { lastAt = at }
                        if deadline == nil { deadline = .now.advanced(by: configuration.batchLatency) }
                        if batch.isAtBoundary
                            && (batch.events >= configuration.batchEvents || batch.bytes >= configuration.batchBytes)
                        {
                            try await commit()
                        }
                    case .live(let lsn):
                        metrics.wentLive(lsn: lsn)
                        logger.info("caught up; the feed is live", metadata: ["lsn": "\(lsn)"])
                        batch.advance(to: lsn)
                        try await commit()
                    case .mark(let mark):
                        batch.receive(mark)
                    case .refused(let code, let message, let oldest):
                        if oldest != nil || code.contains("retain") {
                            throw ProjectorError.notRetained(requested: position + 1, oldest: oldest, message: message)
                        }
                        if code == "feed_history_diverged" {
                            throw ProjectorError.historyDiverged(position: position, message: message)
                        }
                        throw ProjectorError.refused(code: code, message: message)
                    case .other:
                        continue
                    }
                }
                if batch.isAtBoundary, let due = deadline, ContinuousClock.now >= due,
                    written.flag.load(ordering: .acquiring)
                {
                    try await commit()
                }
            }
        } catch {
            // The batch being written finishes (committed or not) before the session ends and its connection closes.
            _ = await writing?.result
            throw error
        }
    }
}

/// Set once a batch's write has ended (committed or failed).
final class WriteDone: Sendable {
    let flag: Atomic<Bool>

    /// `done`: there is no write in flight (before the first batch).
    init(done: Bool = false) {
        flag = Atomic(done)
    }
}

/// Whether a session applied anything (then the next reconnection starts from the shortest wait again).
final class Progress: @unchecked Sendable {
    var value = false
}

enum SessionError {
    /// PostgreSQL could not be reached or failed a statement.
    struct Postgres: Error, CustomStringConvertible {
        var underlying: any Error
        var description: String { "PostgreSQL: \(String(reflecting: underlying))" }
    }
}

extension Duration {
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
