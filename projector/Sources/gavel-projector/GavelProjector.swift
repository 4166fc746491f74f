import ArgumentParser
import Foundation
import GavelProjectorKit
import Logging
import NIOPosix
import ServiceLifecycle

/// `gavel-projector`: keeps a PostgreSQL read model in step with a Gavel server's durable event feed.
@main
struct GavelProjector: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gavel-projector",
        abstract:
            "Keeps a PostgreSQL read model (listings, bids, trades, settlements) in step with gavel serve's feed.",
        discussion: """
            Reads the feed (subscribe_feed) of one gavel serve from the position stored in PostgreSQL and writes its \
            rows in batches, each batch and its position in one transaction: a crash or restart at any point \
            neither loses nor doubles a row. Creates and migrates its tables on start. Every option can also be \
            set by the environment variable named in its help; the option wins. Stop with SIGTERM or SIGINT.
            See docs/PROJECTOR.md for the schema and example queries.

            It stops with exit status 1 when the server no longer holds the lsn after its position (journal \
            retention), or when the server's journal is not the history the read model was built from (a data \
            directory restored from a backup, entries lost to a power loss under --fsync interval or none): the \
            read model then holds rows the server no longer has; rebuild it from an empty database.

            Give secrets in the environment or in files, not as options: every local user can read a command \
            line (ps). --token, --jwt-secret and the password of --postgres-url are overwritten in the process's \
            memory as it starts, with a warning, but show until then. A file (--token-file, --jwt-secret-file) must \
            be the running user's own and private to it (chmod 600); its text less one trailing newline counts. \
            A --postgres-url without a password takes PGPASSWORD, else the matching line of the password file \
            (PGPASSFILE, default ~/.pgpass, chmod 600), as libpq does.
            """)

    @Option(
        help:
            "The server's WebSocket endpoint, ws://HOST:PORT/ws. Env: GAVEL_PROJECTOR_GAVEL_URL. Default: ws://127.0.0.1:8080/ws."
    )
    var gavelURL: String?

    @Option(
        help:
            "A service or admin token for the server; prefer --token-file. Env: GAVEL_PROJECTOR_TOKEN. Give a token or the server's key."
    )
    var token: String?

    @Option(
        help:
            "A file holding the token (chmod 600, the running user's own). Env: GAVEL_PROJECTOR_TOKEN_FILE.")
    var tokenFile: String?

    @Option(
        help:
            "The server's HS256 key: the projector signs its own service token with it; prefer --jwt-secret-file. Env: GAVEL_PROJECTOR_JWT_SECRET."
    )
    var jwtSecret: String?

    @Option(
        help:
            "A file holding the server's key, as <data-dir>/jwt-secret (chmod 600, the running user's own). Env: GAVEL_PROJECTOR_JWT_SECRET_FILE."
    )
    var jwtSecretFile: String?

    @Option(
        help: "The user (sub) of the token made with --jwt-secret. Env: GAVEL_PROJECTOR_SUBJECT. Default: projector.")
    var subject: String?

    @Option(
        help:
            "The read model's database, postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=require]; without a password, PGPASSWORD or ~/.pgpass gives it. Env: GAVEL_PROJECTOR_POSTGRES_URL. Required."
    )
    var postgresURL: String?

    @Option(
        help:
            "The admin HTTP port (/metrics, /healthz); 0 picks a free one; without it, no admin port. Env: GAVEL_PROJECTOR_ADMIN_PORT."
    )
    var adminPort: Int?

    @Option(help: "The admin HTTP address. Env: GAVEL_PROJECTOR_ADMIN_HOST. Default: 127.0.0.1.")
    var adminHost: String?

    @Option(
        help:
            "A batch closes at the first lsn boundary once it holds this many events (1-100000). Env: GAVEL_PROJECTOR_BATCH_EVENTS. Default: 20000."
    )
    var batchEvents: Int?

    @Option(
        help: "...or this many ms after its first event (1-10000). Env: GAVEL_PROJECTOR_BATCH_LATENCY_MS. Default: 50.")
    var batchLatencyMs: Int?

    @Option(
        help:
            "...or once its events' feed frames hold this many bytes (1024-268435456). Env: GAVEL_PROJECTOR_BATCH_BYTES. Default: 8388608."
    )
    var batchBytes: Int?

    @Option(
        help:
            "The first wait before reconnecting, in ms, doubled after each failure (1-60000). Env: GAVEL_PROJECTOR_BACKOFF_MIN_MS. Default: 100."
    )
    var backoffMinMs: Int?

    @Option(
        help:
            "The longest wait before reconnecting, in ms (at least --backoff-min-ms, at most 600000). Env: GAVEL_PROJECTOR_BACKOFF_MAX_MS. Default: 10000."
    )
    var backoffMaxMs: Int?

    @Option(
        help:
            "Feed messages read ahead of PostgreSQL (16-1000000); the socket is not read past them. Env: GAVEL_PROJECTOR_READ_AHEAD. Default: 16384."
    )
    var readAhead: Int?

    @Option(
        help: "trace, debug, info, notice, warning, error or critical. Env: GAVEL_PROJECTOR_LOG_LEVEL. Default: info.")
    var logLevel: String?

    /// ArgumentParser's own main, except that the secrets given as options are overwritten in the process's
    /// argument memory before anything else; the parser reads a copy of the arguments taken first.
    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        Secrets.scrubArguments(options: ["--token", "--jwt-secret"], urlOptions: ["--postgres-url"])
        do {
            try await parse(arguments).run()
        } catch {
            exit(withError: error)
        }
    }

    func run() async throws {
        warnAboutSecretsOnCommandLine()
        let settings: Settings
        do {
            settings = try Settings(self, environment: ProcessInfo.processInfo.environment)
        } catch let error as ProjectorError {
            throw ValidationError(error.description)
        }
        let level = settings.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "gavel-projector")
        let group = MultiThreadedEventLoopGroup.singleton
        let metrics = ProjectorMetrics()
        var services: [any Service] = [
            Projector(configuration: settings.projector, metrics: metrics, group: group, logger: logger)
        ]
        if let port = settings.adminPort {
            do {
                services.append(
                    try await AdminServer.listen(
                        host: settings.adminHost, port: port, metrics: metrics, group: group, logger: logger))
            } catch {
                FileHandle.standardError.write(Data("gavel-projector: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
        let serviceGroup = ServiceGroup(
            configuration: .init(
                services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        do {
            try await serviceGroup.run()
        } catch let error as ProjectorError {
            FileHandle.standardError.write(Data("gavel-projector: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

extension GavelProjector {
    /// One warning line on standard error for each secret given as an option.
    func warnAboutSecretsOnCommandLine() {
        func warn(_ option: String, _ instead: String) {
            FileHandle.standardError.write(
                Data(
                    "gavel-projector: warning: \(option) on the command line can be read by other local users (ps, /proc/PID/cmdline) while gavel-projector starts, before it overwrites it: give \(instead) instead\n"
                        .utf8))
        }
        if token != nil { warn("--token", "GAVEL_PROJECTOR_TOKEN or --token-file") }
        if jwtSecret != nil { warn("--jwt-secret", "GAVEL_PROJECTOR_JWT_SECRET or --jwt-secret-file") }
        if let postgresURL, Secrets.hasPassword(postgresURL) {
            warn(
                "the password in --postgres-url",
                "GAVEL_PROJECTOR_POSTGRES_URL, PGPASSWORD or a line of the password file (~/.pgpass, PGPASSFILE)")
        }
    }
}

/// The options after the environment and the defaults, validated.
struct Settings {
    var projector: ProjectorConfiguration
    var adminPort: Int?
    var adminHost: String
    var logLevel: Logger.Level

    init(_ o: GavelProjector, environment env: [String: String]) throws {
        func int(_ value: Int?, _ name: String, _ variable: String, _ fallback: Int, _ range: ClosedRange<Int>) throws
            -> Int
        {
            var resolved = fallback
            if let value {
                resolved = value
            } else if let text = env[variable] {
                guard let parsed = Int(text) else {
                    throw ProjectorError.invalidOption("\(variable) must be an integer (got \(text.prefix(100)))")
                }
                resolved = parsed
            }
            guard range.contains(resolved) else {
                throw ProjectorError.invalidOption(
                    "--\(name) (\(variable)) must be from \(range.lowerBound) to \(range.upperBound) (got \(resolved))")
            }
            return resolved
        }
        let gavel = try GavelTarget(url: o.gavelURL ?? env["GAVEL_PROJECTOR_GAVEL_URL"] ?? "ws://127.0.0.1:8080/ws")
        guard let postgresURL = o.postgresURL ?? env["GAVEL_PROJECTOR_POSTGRES_URL"] else {
            throw ProjectorError.invalidOption(
                "--postgres-url (GAVEL_PROJECTOR_POSTGRES_URL) is required: postgres://USER@HOST:PORT/DB (scripts/postgres start makes one)"
            )
        }
        var postgres = try PostgresTarget(url: postgresURL)
        if postgres.password == nil {
            postgres.password = try Secrets.postgresPassword(for: postgres, environment: env)
        }
        let token: TokenSource
        let given = try Secrets.given(
            value: o.token, file: o.tokenFile, names: ("--token", "--token-file"), environment: env,
            variables: ("GAVEL_PROJECTOR_TOKEN", "GAVEL_PROJECTOR_TOKEN_FILE"), risk: Secrets.tokenRisk)
        let key = try Secrets.given(
            value: o.jwtSecret, file: o.jwtSecretFile, names: ("--jwt-secret", "--jwt-secret-file"), environment: env,
            variables: ("GAVEL_PROJECTOR_JWT_SECRET", "GAVEL_PROJECTOR_JWT_SECRET_FILE"), risk: Secrets.keyRisk)
        switch (given, key) {
        case (let given?, nil) where !given.isEmpty:
            token = .fixed(given)
        case (nil, let secret?) where secret.utf8.count >= 32:
            let subject = o.subject ?? env["GAVEL_PROJECTOR_SUBJECT"] ?? "projector"
            guard (1...64).contains(subject.count),
                subject.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "_.:-".contains($0)) })
            else {
                throw ProjectorError.invalidOption(
                    "--subject must be 1-64 characters from [A-Za-z0-9_.:-] (got \(subject.prefix(100)))")
            }
            token = .secret(secret, subject: subject)
        case (nil, _?):
            throw ProjectorError.invalidOption(
                "the key of --jwt-secret-file or --jwt-secret (GAVEL_PROJECTOR_JWT_SECRET_FILE, GAVEL_PROJECTOR_JWT_SECRET) is shorter than 32 bytes; gavel serve refuses such a key"
            )
        case (_?, _?):
            throw ProjectorError.invalidOption(
                "give a token (--token-file, --token) or the server's key (--jwt-secret-file, --jwt-secret), not both")
        default:
            throw ProjectorError.invalidOption(
                "a token is required: --token-file F (a service token: gavel token --sub projector --role service > F) or --jwt-secret-file F (the server's key, as <data-dir>/jwt-secret), or their variables"
            )
        }
        let backoffMin = try int(o.backoffMinMs, "backoff-min-ms", "GAVEL_PROJECTOR_BACKOFF_MIN_MS", 100, 1...60_000)
        let backoffMax = try int(
            o.backoffMaxMs, "backoff-max-ms", "GAVEL_PROJECTOR_BACKOFF_MAX_MS", max(10_000, backoffMin),
            backoffMin...600_000)
        projector = ProjectorConfiguration(
            gavel: gavel, token: token, postgres: postgres,
            batchEvents: try int(o.batchEvents, "batch-events", "GAVEL_PROJECTOR_BATCH_EVENTS", 20000, 1...100_000),
            batchLatency: .milliseconds(
                try int(o.batchLatencyMs, "batch-latency-ms", "GAVEL_PROJECTOR_BATCH_LATENCY_MS", 50, 1...10_000)),
            backoffMin: .milliseconds(backoffMin), backoffMax: .milliseconds(backoffMax),
            readAhead: try int(o.readAhead, "read-ahead", "GAVEL_PROJECTOR_READ_AHEAD", 16384, 16...1_000_000),
            batchBytes: try int(
                o.batchBytes, "batch-bytes", "GAVEL_PROJECTOR_BATCH_BYTES", 8 << 20, 1024...(256 << 20)))
        if o.adminPort != nil || env["GAVEL_PROJECTOR_ADMIN_PORT"] != nil {
            adminPort = try int(o.adminPort, "admin-port", "GAVEL_PROJECTOR_ADMIN_PORT", 0, 0...65535)
        }
        adminHost = o.adminHost ?? env["GAVEL_PROJECTOR_ADMIN_HOST"] ?? "127.0.0.1"
        let levelName = o.logLevel ?? env["GAVEL_PROJECTOR_LOG_LEVEL"] ?? "info"
        guard let level = Logger.Level(rawValue: levelName) else {
            throw ProjectorError.invalidOption(
                "--log-level must be trace, debug, info, notice, warning, error or critical (got \(levelName.prefix(50)))"
            )
        }
        logLevel = level
    }
}
