import ArgumentParser
import GavelGateway
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// How `gavel serve` writes its log: plain text lines, or one JSON object per line for a log shipper.
struct LogOptions: ParsableArguments {
    enum Format: String, ExpressibleByArgument, CaseIterable {
        case text, json
    }

    @Option(
        name: .long,
        help:
            "text, or json: one object per line on standard error with time (RFC 3339, UTC, ms), level, label, message and the metadata, the start-up lines included. Env GAVEL_LOG_FORMAT; default text (on a terminal or not)."
    )
    var logFormat: Format?

    func format() throws -> Format {
        if let logFormat { return logFormat }
        guard let text = Setting.environment("GAVEL_LOG_FORMAT") else { return .text }
        guard let format = Format(rawValue: text) else {
            throw ValidationError("GAVEL_LOG_FORMAT=\(text) is not a valid value: text or json")
        }
        return format
    }

    func validate() throws { _ = try format() }

    /// Sets up swift-log for the process, and `printError`'s lines to match.
    func bootstrap() throws {
        switch try format() {
        case .text:
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = .info
                return handler
            }
        case .json:
            errorLinesAsJSON.store(true, ordering: .relaxed)
            LoggingSystem.bootstrap { label in JSONLogHandler(label: label) }
        }
    }
}

/// Whether `printError` writes JSON log lines (`gavel serve --log-format json`) instead of plain text.
let errorLinesAsJSON = Atomic<Bool>(false)
