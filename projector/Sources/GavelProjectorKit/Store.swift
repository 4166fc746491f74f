import Foundation
import Logging
import NIOCore
import NIOSSL
import PostgresNIO

/// Where the read model lives: a `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=disable|require]` URL.
public struct PostgresTarget: Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var user: String
    public var password: String?
    public var database: String
    public var requireTLS: Bool

    /// - Throws: `ProjectorError.invalidOption` naming what is wrong with `url`.
    public init(url: String) throws {
        guard let parts = URLComponents(string: url), parts.scheme == "postgres" || parts.scheme == "postgresql"
        else {
            throw ProjectorError.invalidOption(
                "--postgres-url must look like postgres://USER@HOST:PORT/DB (what was given is not shown: it may hold a password)"
            )
        }
        guard let host = parts.host, !host.isEmpty else {
            throw ProjectorError.invalidOption(
                "--postgres-url has no host: postgres://USER@HOST:PORT/DB (a password with / ? # or @ in it is written %2F %3F %23 %40)"
            )
        }
        guard let user = parts.user, !user.isEmpty else {
            throw ProjectorError.invalidOption("--postgres-url has no user: postgres://USER@HOST:PORT/DB")
        }
        let database = String(parts.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty else {
            throw ProjectorError.invalidOption("--postgres-url names no database: postgres://USER@HOST:PORT/DB")
        }
        self.host = host
        self.port = parts.port ?? 5432
        self.user = user.removingPercentEncoding ?? user
        self.password = parts.password.map { $0.removingPercentEncoding ?? $0 }
        self.database = database
        switch parts.queryItems?.first(where: { $0.name == "sslmode" })?.value ?? "disable" {
        case "disable": requireTLS = false
        case "require": requireTLS = true
        case let other:
            throw ProjectorError.invalidOption("--postgres-url: sslmode must be disable or require (got \(other))")
        }
    }

    /// The URL without its password, for logs.
    public var description: String { "postgres://\(user)@\(host):\(port)/\(database)" }

    func configuration() throws -> PostgresConnection.Configuration {
        PostgresConnection.Configuration(
            host: host, port: port, username: user, password: password, database: database,
            tls: requireTLS ? .require(try NIOSSLContext(configuration: .makeClientConfiguration())) : .disable)
    }
}

/// One connection to the read model: migrations, the stored position, and batches applied with their position in
/// one transaction.
public final class Store: Sendable {
    let connection: PostgresConnection
    let logger: Logger

    private init(connection: PostgresConnection, logger: Logger) {
        self.connection = connection
        self.logger = logger
    }

    /// Connects to `target`.
    public static func connect(to target: PostgresTarget, logger: Logger) async throws -> Store {
        let connection = try await PostgresConnection.connect(
            configuration: try target.configuration(), id: 1, logger: logger)
        return Store(connection: connection, logger: logger)
    }

    public func close() async {
        try? await connection.close()
    }

    /// Brings the schema to `Schema.latest`, one migration per transaction, under an advisory lock so that two
    /// projectors starting at once do not both run one.
    /// - Returns: the versions applied now.
    /// - Throws: `ProjectorError.schemaTooNew` when the database has a version this projector does not know.
    @discardableResult
    public func migrate() async throws -> [Int32] {
        try await connection.query(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """, logger: logger)
        var applied: [Int32] = []
        for migration in Schema.migrations {
            let ran = try await connection.withTransaction(logger: logger) { connection -> Bool in
                try await connection.query("SELECT pg_advisory_xact_lock(7147007001)", logger: logger)
                let rows = try await connection.query("SELECT max(version) FROM schema_migrations", logger: logger)
                var current: Int32 = 0
                for try await (version) in rows.decode((Int32?).self) { current = version ?? 0 }
                if current > Schema.latest { throw ProjectorError.schemaTooNew(current, Schema.latest) }
                guard current < migration.version else { return false }
                for statement in migration.statements {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query(
                    "INSERT INTO schema_migrations (version, name) VALUES (\(migration.version), \(migration.name))",
                    logger: logger)
                return true
            }
            if ran {
                logger.info("migrated the read model", metadata: ["version": "\(migration.version)"])
                applied.append(migration.version)
            }
        }
        return applied
    }

    /// The last lsn whose rows are all in the read model (0: none yet), and the server's `feed_mark` of the journal
    /// batch that holds it (nil before the read model has stored one).
    public func position() async throws -> (lsn: Int64, mark: FeedMark?) {
        let rows = try await connection.query(
            "SELECT lsn, mark_lsn, mark_chain FROM feed_position", logger: logger)
        for try await (lsn, markLSN, chain) in rows.decode((Int64, Int64?, String?).self) {
            guard let markLSN, let chain else { return (lsn, nil) }
            return (lsn, FeedMark(lsn: markLSN, chain: chain))
        }
        throw ProjectorError.corrupt("feed_position has no row")
    }

    /// Makes this connection's staging tables (temporary: each connection has its own, emptied at every commit).
    public func prepare() async throws {
        for statement in SQL.stagingTables {
            try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
        }
    }

    /// Writes the batch's rows and moves the position from `batch.startPosition` to `batch.position`, in one
    /// transaction: one COPY per table the batch touches (`SQL.copies`), then the statement that moves staged rows
    /// into place. `prepare()` must have run on this connection.
    /// - Throws: `ProjectorError.positionMoved` when the stored position is not the batch's start (another
    ///   projector writes to the same database); nothing is written then.
    public func apply(_ batch: Batch) async throws {
        let copies = SQL.copies(for: batch)
        try await connection.withTransaction(logger: logger) { connection in
            let moved = try await connection.query(
                """
                UPDATE feed_position SET lsn = \(batch.position), mark_lsn = \(batch.mark?.lsn), \
                mark_chain = \(batch.mark?.chain), updated_at = now() \
                WHERE lsn = \(batch.startPosition) RETURNING lsn
                """,
                logger: logger)
            var updated = 0
            for try await _ in moved.decode(Int64.self) { updated += 1 }
            guard updated == 1 else { throw ProjectorError.positionMoved(expected: batch.startPosition) }
            try await archiveReopened(batch, on: connection)
            for copy in copies {
                var text = CopyText(capacity: copy.rows * 16 * copy.columns.count)
                copy.write(&text)
                let rows = text.buffer
                try await connection.copyFrom(table: copy.table, columns: copy.columns, logger: logger) { writer in
                    try await writer.write(rows)
                }
                if let then = copy.then {
                    try await connection.query(PostgresQuery(unsafeSQL: then), logger: logger)
                }
            }
        }
    }

    /// Renames the rows of the earlier listing of each id the batch opens again (`Batch.Reopening`), before the
    /// batch's rows are written: one lookup of the ids the batch opens, then five statements for each id the read
    /// model already holds (rare: most opened ids are new).
    private func archiveReopened(_ batch: Batch, on connection: PostgresConnection) async throws {
        guard !batch.reopenings.isEmpty else { return }
        let ids = batch.reopenings.map(\.listing)
        let rows = try await connection.query("SELECT id FROM listings WHERE id = ANY(\(ids))", logger: logger)
        var held: Set<String> = []
        for try await id in rows.decode(String.self) { held.insert(id) }
        for reopening in batch.reopenings where held.contains(reopening.listing) {
            logger.info(
                "a listing id was opened again; the earlier listing's rows are renamed",
                metadata: [
                    "listing": "\(reopening.listing)",
                    "renamed": "\(Batch.archivedID(reopening.listing, lsn: reopening.lsn))",
                ])
            for statement in SQL.archive(listing: reopening.listing, lsn: reopening.lsn) {
                try await connection.query(statement, logger: logger)
            }
        }
    }
}

/// Errors the projector stops or reconnects on, each with a message a person can act on.
public enum ProjectorError: Error, CustomStringConvertible {
    case invalidOption(String)
    case schemaTooNew(Int32, Int32)
    case corrupt(String)
    case positionMoved(expected: Int64)
    case notRetained(requested: Int64, oldest: Int64?, message: String)
    /// The server's journal is not the history the read model was built from (`feed_history_diverged`).
    case historyDiverged(position: Int64, message: String)
    case refused(code: String, message: String)
    case upgradeRefused(String)
    case closed(String)

    /// Whether retrying cannot help: the process stops with this error.
    public var isFatal: Bool {
        switch self {
        case .invalidOption, .schemaTooNew, .corrupt, .notRetained, .historyDiverged, .positionMoved: true
        case .refused(let code, _): code == "not_authorized" || code == "bad_request"
        case .upgradeRefused, .closed: false
        }
    }

    public var description: String {
        switch self {
        case .invalidOption(let message): message
        case .schemaTooNew(let found, let known):
            "the read model is at schema version \(found), newer than this gavel-projector knows (\(known)); run the newer gavel-projector"
        case .corrupt(let what): "the read model is damaged: \(what)"
        case .positionMoved(let expected):
            "feed_position is no longer \(expected): another gavel-projector writes to this database; run one per database"
        case .notRetained(let requested, let oldest, let message):
            "the server no longer holds lsn \(requested)\(oldest.map { " (its oldest is \($0))" } ?? ""): \(message). "
                + (requested <= 1
                    ? "A read model is built from lsn 1, which only a server that kept its whole journal (--archive-dir, "
                        + "or --retain-journal long enough, from its first start) still holds: give the server the "
                        + "archive that holds the segments from lsn 1; nothing else can build it"
                    : "Give the server the archive (--archive-dir) that holds those segments, or rebuild the read "
                        + "model from an empty database against a server that still holds lsn 1")
        case .historyDiverged(let position, let message):
            "the server's journal is not the history this read model was built from: \(message). The read model holds "
                + "rows of lsns up to \(position) that the server no longer has (or has others at), and cannot be brought "
                + "in step: rebuild it from an empty database (drop the database, create it again and start "
                + "gavel-projector), against a server that still holds lsn 1"
        case .refused(let code, let message): "the server refused the feed: \(code): \(message)"
        case .upgradeRefused(let why): why
        case .closed(let why): why
        }
    }
}
