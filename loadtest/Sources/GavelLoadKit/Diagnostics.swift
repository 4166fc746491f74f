import Foundation
import Synchronization

/// Tells the user at once, on standard error, when the server refuses the driver's commands with `rate_limited` or
/// closes one of its connections, with what to change; counts the refusals for the end of the run.
public final class Diagnostics: Sendable {
    private let write: @Sendable (String) -> Void
    private let state = Mutex<[String: Int]>([:])

    /// `write` gets each line (standard error by default).
    public init(write: @escaping @Sendable (String) -> Void = Diagnostics.standardError) { self.write = write }

    public static let standardError: @Sendable (String) -> Void = { line in
        FileHandle.standardError.write(Data(line.utf8 + [UInt8(ascii: "\n")]))
    }

    /// A line for the user, prefixed `gavel-load: `.
    func say(_ text: String) { write("gavel-load: " + text) }

    /// A `rate_limited` answer to a `command`: said the first time for each command, counted every time.
    func rateLimited(command: String, message: String?) {
        let first = state.withLock { counts in
            counts[command, default: 0] += 1
            return counts[command] == 1
        }
        if first { say(Self.rateLimitAdvice(command: command, message: message)) }
    }

    /// How many `command`s the server refused with `rate_limited`.
    func refusals(_ command: String) -> Int { state.withLock { $0[command] ?? 0 } }

    /// The server closed `connection` (e.g. "bidder connection 3") with `code` and `reason`.
    func closed(connection: String, code: Int, reason: String) {
        let count = state.withLock { counts in
            counts["close", default: 0] += 1
            return counts["close"]!
        }
        if count <= Self.closesSaid {
            say(Self.closeAdvice(connection: connection, code: code, reason: reason))
        } else if count == Self.closesSaid + 1 {
            say("the server closed more connections; the report counts them by close code")
        }
    }

    /// How many closes are said one by one.
    static let closesSaid = 5

    /// What to change when the server answers `command`s with `rate_limited`.
    static func rateLimitAdvice(command: String, message: String?) -> String {
        let opens = command == "open" ? " and --opens-per-minute" : ""
        return
            "the server refused \(command) commands with rate_limited (\(message ?? "no message")): start gavel serve with --rate, --rate-burst, --principal-rate, --principal-rate-burst\(opens) high enough for the load (e.g. 1000000 each), or pass a service token with --token-file"
    }

    /// What to change when the server closes a connection.
    static func closeAdvice(connection: String, code: Int, reason: String) -> String {
        let what = reason.isEmpty ? "" : " \"\(reason)\""
        let advice: String
        switch code {
        case 1008:
            advice =
                "its limits refused this driver (messages over its rate for too long, or a bad or expired token): start gavel serve with --rate, --rate-burst, --principal-rate and --principal-rate-burst high enough, or pass a service token with --token-file"
        case 1013:
            advice =
                "it found the connection too slow to read its messages (raise its --max-outbound-bytes, or --max-outbound-bytes-total when many connections fall behind at once)"
        case 1001:
            advice = "it is going away (stopped or restarting)"
        case 1006:
            advice = "the connection broke (did the server stop?)"
        default:
            advice = "see the server's log"
        }
        return "the server closed \(connection) with \(code)\(what): \(advice)"
    }
}
