import Foundation
import GavelCore
import GavelEngine
import GavelJournal
import GavelWire
import Testing

@testable import GavelGateway

/// A feed consumer that asks for `marks` learns, before the messages of each journal batch, the batch's last lsn
/// and chain (`feed_mark`); it keeps the one it had at its position and sends it back as `expect` when it resumes.
/// The server resumes it only when its journal holds that batch there, and otherwise refuses with
/// `feed_history_diverged` before it sends anything: the consumer handled entries the journal no longer has.
@Suite(.serialized) struct FeedHistoryTests {
    /// A `feed_mark`, as a consumer keeps it.
    struct Mark: Equatable {
        var lsn: Int64
        var chain: String

        /// As `expect` in `subscribe_feed`.
        var json: String { #"{"lsn":\#(lsn),"chain":"\#(chain)"}"# }
    }

    /// What one `subscribe_feed` got: its messages up to `feed_live` (or the refusal), the lsn of `feed_live`, and
    /// for each lsn handled (`last: true`, and `feed_live`'s) the mark the consumer had then.
    struct Read {
        var messages: [JSONValue] = []
        var live: Int64?
        var refusal: JSONValue?
        var marks: [Int64: Mark] = [:]
        var events: [JSONValue] { messages.filter { $0["type"] != .string("feed_mark") } }
    }

    static func integer(_ value: JSONValue?) -> Int64? {
        if case .integer(let n)? = value { return n }
        return nil
    }

    static func string(_ value: JSONValue?) -> String? {
        if case .string(let s)? = value { return s }
        return nil
    }

    /// Connects a service consumer and sends `subscribe_feed` (with `since_lsn`, `expect` and `marks`).
    static func subscribe(
        _ server: RunningServer, since: Int64? = nil, expect: Mark? = nil, extra: String = #","marks":true"#
    ) throws -> RawClient {
        let client = try RawClient(
            port: server.port, headers: ["Authorization: Bearer \(server.token("feed", .service))"])
        #expect(client.status() == 101)
        _ = client.next("hello")
        client.send(subscription(since: since, expect: expect, extra: extra))
        return client
    }

    static func subscription(since: Int64?, expect: Mark?, extra: String = #","marks":true"#) -> String {
        var text = #"{"type":"subscribe_feed","id":"f""#
        if let since { text += #","since_lsn":\#(since)"# }
        if let expect { text += #","expect":\#(expect.json)"# }
        return text + extra + "}"
    }

    /// Reads until `feed_live` (or a refusal), checking that each journal batch is marked before its messages (when
    /// the consumer asked for marks).
    static func readUntilLive(_ client: RawClient, marked: Bool = true) -> Read {
        var read = Read()
        var current: Mark?
        while let frame = client.receive(), let json = frame.json {
            switch frame.type {
            case "feed_mark":
                let mark = Mark(lsn: integer(json["lsn"]) ?? -1, chain: string(json["chain"]) ?? "")
                // A mark may come again (a catch-up's last batch continued live), never going back.
                #expect(mark.chain.count == 64 && mark.lsn > 0, "\(frame.text)")
                #expect(mark.lsn > current?.lsn ?? 0 || mark == current, "marks go forward: \(frame.text)")
                current = mark
                read.messages.append(json)
            case "feed_live":
                read.live = integer(json["lsn"])
                if let lsn = read.live, let current { read.marks[lsn] = current }
                return read
            case "result":
                read.refusal = json
                return read
            default:
                read.messages.append(json)
                guard let lsn = integer(json["lsn"]) else { continue }
                if marked {
                    #expect(current != nil && lsn <= current?.lsn ?? 0, "lsn \(lsn) comes after the mark of its batch")
                }
                if json["last"] == .bool(true), let current { read.marks[lsn] = current }
            }
        }
        return read
    }

    /// Opens `listing` for sam and has ann and bob bid on it `count` times, each acknowledged (each its own
    /// journal batch or so).
    static func trade(_ server: RunningServer, listing: String, bids count: Int, from start: Int = 100) throws {
        let seller = try RawClient(
            port: server.port, headers: ["Authorization: Bearer \(server.token("sam", .seller))"])
        #expect(seller.status() == 101)
        let closesAt = SystemClock().now() + 600_000
        seller.send(
            #"{"type":"open","id":"o-\#(listing)","listing":"\#(listing)","format":"english","start":100,"closes_at":\#(closesAt)}"#
        )
        #expect(seller.next("result")?.json?["ok"] == .bool(true))
        try bid(server, listing: listing, bids: count, from: start)
    }

    static func bid(_ server: RunningServer, listing: String, bids count: Int, from start: Int) throws {
        for n in 0..<count {
            let bidder = n % 2 == 0 ? "ann" : "bob"
            let client = try RawClient(port: server.port, path: "/ws?token=\(server.token(bidder, .bidder))")
            #expect(client.status() == 101)
            client.send(#"{"type":"bid","id":"b\#(start + n)","listing":"\#(listing)","amount":\#(start + 1_000 * n)}"#)
            let result = client.next("result")
            #expect(result?.json?["ok"] == .bool(true), "\(result?.text ?? "no result")")
        }
    }

    static func temporaryDirectory(_ name: String) -> String {
        NSTemporaryDirectory() + "gavel-feed-history-\(name)-\(UUID().uuidString)"
    }

    /// The mark with its chain's last digit changed: the same batch end, another history.
    static func tampered(_ mark: Mark) -> Mark {
        var chain = Array(mark.chain)
        chain[chain.count - 1] = chain[chain.count - 1] == "0" ? "1" : "0"
        return Mark(lsn: mark.lsn, chain: String(chain))
    }

    static func expectDiverged(_ read: Read, durable: Int64?, _ comment: Comment? = nil) {
        #expect(read.refusal?["error"] == .string("feed_history_diverged"), comment)
        #expect(string(read.refusal?["message"])?.contains("rebuild it from an empty state") == true, comment)
        if let durable { #expect(integer(read.refusal?["durable_lsn"]) == durable, comment) }
        #expect(read.messages.isEmpty, "nothing is sent before the refusal")
    }

    @Test(.timeLimit(.minutes(1))) func aConsumerResumesWithTheMarkOfItsPositionAndIsRefusedWithAnother() async throws {
        let directory = Self.temporaryDirectory("resume")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try await RunningServer.start(directory: directory)
        try Self.trade(server, listing: "L1", bids: 8)

        let all = Self.readUntilLive(try Self.subscribe(server, since: 1))
        let live = try #require(all.live)
        #expect(all.messages.first?["type"] == .string("feed_mark"))
        #expect(all.events.count >= 9 && all.marks[live] != nil)
        let positions = all.marks.keys.sorted()
        let middle = positions[positions.count / 2]
        let mark = try #require(all.marks[middle])

        // From the middle (a catch-up from the journal): the same messages as before from there on.
        let resumed = Self.readUntilLive(try Self.subscribe(server, since: middle + 1, expect: mark))
        #expect(resumed.refusal == nil && resumed.live == live)
        #expect(resumed.events == all.events.filter { (Self.integer($0["lsn"]) ?? 0) > middle })
        // An old consumer (no expect, no marks) still resumes, and gets no marks.
        let old = Self.readUntilLive(try Self.subscribe(server, since: middle + 1, extra: ""), marked: false)
        #expect(old.refusal == nil && old.messages == resumed.events)
        // From the end (live at once): the mark of the last batch, then feed_live.
        let atEnd = try Self.subscribe(server, since: live + 1, expect: all.marks[live])
        let end = Self.readUntilLive(atEnd)
        #expect(end.refusal == nil && end.live == live && end.marks[live] == all.marks[live])
        try Self.bid(server, listing: "L1", bids: 1, from: 100_000)
        #expect(atEnd.receive()?.type == "feed_mark")
        #expect(atEnd.receive()?.type == "bid_placed")

        let now = try #require(Self.readUntilLive(try Self.subscribe(server)).live)
        let last = try #require(Self.readUntilLive(try Self.subscribe(server, since: now)).marks[now])

        // Another chain at the same lsn: refused, from the journal and live; the connection may subscribe again.
        let other = try Self.subscribe(server, since: middle + 1, expect: Self.tampered(mark))
        Self.expectDiverged(Self.readUntilLive(other), durable: now, "catch-up")
        other.send(Self.subscription(since: nil, expect: nil))
        #expect(Self.readUntilLive(other).live == now)
        let otherAtEnd = try Self.subscribe(server, since: now + 1, expect: Self.tampered(last))
        Self.expectDiverged(Self.readUntilLive(otherAtEnd), durable: now, "live")
        // A batch that ends elsewhere, or past the journal's end; a since_lsn past the journal's end.
        if mark.lsn < now {
            let elsewhere = Mark(lsn: mark.lsn + 1, chain: mark.chain)
            let read = Self.readUntilLive(try Self.subscribe(server, since: middle + 1, expect: elsewhere))
            Self.expectDiverged(read, durable: now, "a batch that ends elsewhere")
        }
        let past = Mark(lsn: now + 5, chain: last.chain)
        Self.expectDiverged(
            Self.readUntilLive(try Self.subscribe(server, since: now + 1, expect: past)), durable: now, "past")
        let beyond = Self.readUntilLive(try Self.subscribe(server, since: now + 2))
        Self.expectDiverged(beyond, durable: now, "since_lsn past the end")
        #expect(Self.string(beyond.refusal?["message"])?.contains("past this server's journal") == true)
        try await server.stop()
    }

    @Test(.timeLimit(.minutes(1))) func malformedExpectAndMarksAreBadRequests() async throws {
        let directory = Self.temporaryDirectory("bad")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try await RunningServer.start(directory: directory)
        try Self.trade(server, listing: "L1", bids: 2)
        let chain = String(repeating: "ab", count: 32)
        for (request, says) in [
            (Self.subscription(since: 1, expect: Mark(lsn: 1, chain: chain)), "since_lsn of 2 or more"),
            (Self.subscription(since: nil, expect: Mark(lsn: 1, chain: chain)), "since_lsn of 2 or more"),
            (Self.subscription(since: 3, expect: Mark(lsn: 1, chain: chain)), "before since_lsn - 1"),
            (Self.subscription(since: 2, expect: Mark(lsn: 1, chain: "abc")), "64 hex digits"),
            (Self.subscription(since: 2, expect: Mark(lsn: 1, chain: chain.uppercased())), "64 hex digits"),
            (#"{"type":"subscribe_feed","id":"f","since_lsn":2,"expect":"1:ab"}"#, "64 hex digits"),
            (#"{"type":"subscribe_feed","id":"f","marks":"yes"}"#, "marks must be true or false"),
        ] {
            let client = try RawClient(
                port: server.port, headers: ["Authorization: Bearer \(server.token("feed", .service))"])
            #expect(client.status() == 101)
            client.send(request)
            let result = client.next("result")?.json
            #expect(result?["error"] == .string("bad_request"), "\(request)")
            #expect(Self.string(result?["message"])?.contains(says) == true, "\(request): \(result as Any)")
        }
        try await server.stop()
    }

    /// The case the check is for: a data directory restored from a backup goes on from an earlier lsn with other
    /// entries. A consumer that handled entries after the backup is refused, whether the server is still behind its
    /// position or has written past it since; one whose position is in the backup's history resumes.
    @Test(.timeLimit(.minutes(2))) func aServerRestoredFromABackupRefusesAConsumerThatHandledWhatItLost() async throws {
        let directory = Self.temporaryDirectory("restored")
        let backup = directory + "-backup"
        defer {
            try? FileManager.default.removeItem(atPath: directory)
            try? FileManager.default.removeItem(atPath: backup)
        }
        var server = try await RunningServer.start(directory: directory)
        try Self.trade(server, listing: "L1", bids: 3)
        let before = Self.readUntilLive(try Self.subscribe(server, since: 1))
        let kept = try #require(before.live)
        try await server.stop()
        try FileManager.default.copyItem(atPath: directory, toPath: backup)

        server = try await RunningServer.start(directory: directory)
        let resumed = Self.readUntilLive(try Self.subscribe(server, since: kept + 1, expect: before.marks[kept]))
        #expect(resumed.refusal == nil && resumed.live ?? 0 >= kept)
        try Self.bid(server, listing: "L1", bids: 4, from: 10_000)
        let after = Self.readUntilLive(try Self.subscribe(server, since: 1))
        let lost = try #require(after.live)
        #expect(lost > kept)
        try await server.stop()

        // The backup put back in place: behind the consumer's position...
        try FileManager.default.removeItem(atPath: directory)
        try FileManager.default.moveItem(atPath: backup, toPath: directory)
        server = try await RunningServer.start(directory: directory)
        let restored = try #require(Self.readUntilLive(try Self.subscribe(server)).live)
        #expect(restored < lost)
        let behind = Self.readUntilLive(try Self.subscribe(server, since: lost + 1, expect: after.marks[lost]))
        Self.expectDiverged(behind, durable: restored)
        // ...then past it, with other entries.
        try Self.bid(server, listing: "L1", bids: 8, from: 20_000)
        let past = Self.readUntilLive(try Self.subscribe(server, since: 1))
        #expect(try #require(past.live) > lost)
        let diverged = Self.readUntilLive(try Self.subscribe(server, since: lost + 1, expect: after.marks[lost]))
        Self.expectDiverged(diverged, durable: past.live)
        // A position in the backup's history is still this server's history.
        let same = Self.readUntilLive(try Self.subscribe(server, since: kept + 1, expect: before.marks[kept]))
        #expect(same.refusal == nil && same.live == past.live)
        #expect(same.events.count > 8)
        try await server.stop()
    }
}
