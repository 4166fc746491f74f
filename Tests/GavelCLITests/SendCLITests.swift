import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The WebSocket address a started `gavel serve` printed, once it has.
func servedURL(_ serve: GavelProcess) -> String? {
    guard serve.waitForError("/ws, page") else { return nil }
    for line in serve.standardError.split(separator: "\n") {
        guard let start = line.range(of: "ws://"), let end = line.range(of: "/ws,") else { continue }
        return String(line[start.lowerBound..<end.upperBound].dropLast())
    }
    return nil
}

/// Runs `gavel send` to its exit (bounded) and gives its status and output.
func runSend(_ arguments: [String], input: String = "") throws -> (status: Int32?, out: String, err: String) {
    let send = try runGavel(["send"] + arguments, input: input, seconds: 30)
    return (send.status, send.standardOutput, send.standardError)
}

/// The JSON objects of `gavel send`'s standard output, one a line.
func jsonLines(_ text: String) -> [[String: Any]] {
    text.split(separator: "\n").compactMap {
        try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
    }
}

/// `gavel send` against a real `gavel serve`: the token it signs, what it prints, its exit status.
@Suite(
    .serialized,
    .enabled(if: gavelBinary != nil, "no .build/debug/gavel under the package root; run `swift build` first"))
struct SendCLITests {
    /// A `closes_at` ten minutes from now, in engine (wall-clock) ms.
    static var closesAt: Int64 { Int64(Date().timeIntervalSince1970 * 1000) + 600_000 }

    @Test func sendSignsATokenWithTheDataDirectoryKeyAndPrintsTheResultAndTheEventsItCaused() throws {
        try withDataDirectory { data in
            let serve = try startServe(data)
            defer { _ = serve.stop() }
            let url = try #require(servedURL(serve), "\(serve.standardError)")
            let open = #"{"type":"open","listing":"L1","format":"english","start":100,"closes_at":\#(Self.closesAt)}"#
            let run = try runSend(
                [
                    "--data-dir", data, "--url", url, "--role", "seller", "--sub", "sam", "--subscribe", "--timeout-ms",
                    "300", open,
                ])
            #expect(run.status == 0, "\(run.err)")
            let lines = jsonLines(run.out)
            #expect(lines.first?["type"] as? String == "hello")
            #expect(lines.first?["principal"] as? String == "sam")
            #expect(lines.contains { $0["type"] as? String == "snapshot" && $0["listing"] as? String == "L1" })
            let result = try #require(lines.first { $0["type"] as? String == "result" })
            #expect(result["ok"] as? Bool == true)
            let id = try #require(result["id"] as? String)
            #expect(run.err.contains("message 1 (open) has id \(id)"), "\(run.err)")
            #expect(lines.contains { $0["type"] as? String == "opened" && $0["seller"] as? String == "sam" })
        }
    }

    @Test func sendReadsJSONLinesFromStandardInputAndExitsOneWhenACommandIsRefused() throws {
        try withDataDirectory { data in
            let serve = try startServe(data)
            defer { _ = serve.stop() }
            let url = try #require(servedURL(serve), "\(serve.standardError)")
            let open =
                #"{"type":"open","id":"o1","listing":"L2","format":"english","start":100,"closes_at":\#(Self.closesAt)}"#
            let opened = try runSend(["--data-dir", data, "--url", url, "--role", "seller", "--sub", "sam", open])
            #expect(opened.status == 0, "\(opened.err)")
            // An admin may not bid: refused, so the exit status is 1; the list that follows is still answered.
            // A refused subscription is answered by its id (a subscription's snapshot carries none).
            let input =
                #"{"type":"bid","id":"b1","listing":"L2","amount":150}"# + "\n\n" + #"{"type":"list"}"# + "\n"
                + #"{"type":"subscribe","id":"s1","listing":"not an id"}"# + "\n"
            let run = try runSend(
                ["--data-dir", data, "--url", url, "--role", "admin", "--sub", "desk", "--timeout-ms", "200"],
                input: input)
            #expect(run.status == 1, "\(run.err)")
            let lines = jsonLines(run.out)
            let refusal = try #require(lines.first { $0["id"] as? String == "b1" })
            #expect(refusal["ok"] as? Bool == false)
            #expect(refusal["error"] as? String == "not_authorized")
            #expect((refusal["message"] as? String)?.contains("an admin token may not bid") == true)
            #expect(lines.contains { $0["type"] as? String == "listings" })
            #expect(lines.contains { $0["id"] as? String == "s1" && $0["error"] as? String == "bad_request" })
            #expect(lines.first?["role"] as? String == "admin")
        }
    }

    @Test func sendExitsTwoWithTheServersReasonWhenTheTokenIsRefused() throws {
        try withDataDirectory { data in
            let serve = try startServe(data)
            defer { _ = serve.stop() }
            let url = try #require(servedURL(serve), "\(serve.standardError)")
            let run = try runSend(["--url", url, "--token", "not.a.token", #"{"type":"list"}"#])
            #expect(run.status == 2)
            #expect(run.err.contains("the server refused the token (401)"), "\(run.err)")
            #expect(run.out.isEmpty)
        }
    }

    @Test func sendExitsTwoWhenNothingListensOrTheArgumentsAreWrong() throws {
        // A port that was free a moment ago: nothing listens there.
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) }
        }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) }
        }
        let port = UInt16(bigEndian: address.sin_port)
        close(socket)
        let refused = try runSend(["--url", "ws://127.0.0.1:\(port)/ws", #"{"type":"list"}"#])
        #expect(refused.status == 2)
        #expect(refused.err.contains("cannot connect to 127.0.0.1:\(port)"), "\(refused.err)")

        let notJSON = try runSend(["--url", "ws://127.0.0.1:\(port)/ws", "{nope"])
        #expect(notJSON.status == 2)
        #expect(notJSON.err.contains("message 1 is not JSON"), "\(notJSON.err)")

        // The server would answer it with `id` null: nothing could be matched to the message.
        let longID = String(repeating: "q", count: 129)
        let unechoed = try runSend(["--url", "ws://127.0.0.1:\(port)/ws", #"{"type":"list","id":"\#(longID)"}"#])
        #expect(unechoed.status == 2)
        #expect(unechoed.err.contains("message 1: id is 129 bytes long"), "\(unechoed.err)")

        let noKey = try runSend(["--data-dir", "/nonexistent-gavel-dir", "--role", "service", "--sub", "pay", "{}"])
        #expect(noKey.status == 2)
        #expect(noKey.err.contains("no key in /nonexistent-gavel-dir/jwt-secret"), "\(noKey.err)")
    }
}
