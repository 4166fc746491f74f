import GavelCore
import GavelWire
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import GavelGateway

@Suite struct SortedIDsTests {
    @Test func matchesASortedSetUnderRandomInsertsAndRemovals() {
        var ids = SortedIDs()
        var reference = Set<String>()
        var generator = SplitMix(seed: 7)
        for _ in 0..<20_000 {
            let id = "L\(generator.next() % 3000)"
            if generator.next() % 3 == 0 {
                #expect(ids.remove(id) == (reference.remove(id) != nil))
            } else {
                #expect(ids.insert(id) == reference.insert(id).inserted)
            }
        }
        let sorted = reference.sorted()
        #expect(ids.count == sorted.count)
        #expect(ids.ids(after: nil, limit: .max) == sorted)
        // Paging from any cursor, present or not, gives the ids strictly after it.
        for cursor in ["L0", "L1500", "L2999x", "A", "Z", sorted[sorted.count / 2]] {
            #expect(ids.ids(after: cursor, limit: 7) == Array(sorted.filter { $0 > cursor }.prefix(7)))
        }
        for id in sorted.prefix(50) { #expect(ids.contains(id)) }
        #expect(!ids.contains("nope"))
    }

    @Test func pagesWalkEveryIdOnce() {
        var ids = SortedIDs()
        for i in (0..<2000).reversed() { ids.insert(String(format: "L%05d", i)) }
        var seen: [String] = []
        var cursor: String?
        while true {
            let page = ids.ids(after: cursor, limit: 333)
            guard let last = page.last else { break }
            seen += page
            cursor = last
        }
        #expect(seen == (0..<2000).map { String(format: "L%05d", $0) })
    }
}

/// A small deterministic generator for the tests.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct ListMessageTests {
    /// A service session that opens listings for `sam`: english L1 and L3, sealed S2 with bids of 777 and 888 and a
    /// reserve of 555, and english L0 cancelled.
    func harness(_ configure: (inout GatewayConfiguration) -> Void = { _ in }) throws -> SessionHarness {
        let h = try SessionHarness(principal: Principal(name: "svc", role: .service), configure: configure)
        for message in [
            #"{"type":"open","id":"o1","listing":"L1","seller":"sam","format":"english","start":100,"closes_at":99999999}"#,
            #"{"type":"open","id":"o2","listing":"S2","seller":"sam","format":"sealed","pricing":"second","start":100,"reserve":555,"closes_at":99999999}"#,
            #"{"type":"open","id":"o3","listing":"L3","seller":"sam","format":"english","start":200,"closes_at":99999999}"#,
            #"{"type":"open","id":"o0","listing":"L0","seller":"sam","format":"english","start":100,"closes_at":99999999}"#,
            #"{"type":"bid","id":"b1","listing":"S2","bidder":"ann","amount":777}"#,
            #"{"type":"bid","id":"b2","listing":"S2","bidder":"bob","amount":888}"#,
            #"{"type":"bid","id":"b3","listing":"L1","bidder":"ann","amount":450}"#,
            #"{"type":"cancel_listing","id":"c0","listing":"L0","seller":"sam"}"#,
        ] {
            try h.send(message)
            h.settle()
        }
        let results = try h.frames().filter { $0.type == "result" }
        #expect(results.count == 8 && results.allSatisfy { $0.json?["ok"] == .bool(true) })
        return h
    }

    func list(_ h: SessionHarness, _ message: String) throws -> JSONValue? {
        try h.send(message)
        let frames = try h.frames()
        #expect(frames.count == 1)
        return frames.first?.json
    }

    func ids(_ answer: JSONValue?) -> [String] {
        guard case .array(let items)? = answer?["listings"] else { return [] }
        return items.compactMap { if case .string(let s)? = $0["listing"] { s } else { nil } }
    }

    @Test func listsOpenListingsInIdOrderWithTheirPublicSummary() throws {
        let h = try harness()
        let answer = try list(h, #"{"type":"list"}"#)
        #expect(answer?["type"] == .string("listings"))
        #expect(answer?["status"] == .string("open"))
        #expect(ids(answer) == ["L1", "L3", "S2"])
        #expect(answer?["next"] == .null && answer?["ts"] != nil)
        guard case .array(let items)? = answer?["listings"] else { return }
        #expect(items[0]["format"] == .string("english") && items[0]["price"] == .integer(100))
        #expect(items[0]["bids"] == .integer(1) && items[0]["seller"] == .string("sam"))
        #expect(items[0]["status"] == .string("open") && items[0]["closes_at"] == .integer(99_999_999))
        #expect(items[0]["seq"] == .integer(2))
        let all = try list(h, #"{"type":"list","status":"all","id":"q1"}"#)
        #expect(ids(all) == ["L0", "L1", "L3", "S2"])
        #expect(all?["id"] == .string("q1"))
        guard case .array(let everything)? = all?["listings"] else { return }
        #expect(everything[0]["status"] == .string("cancelled"))
    }

    @Test func sealedSummaryShowsNoAmounts() throws {
        let h = try harness()
        try h.send(#"{"type":"list","status":"all","after":"L3"}"#)
        let frames = try h.frames()
        #expect(frames.count == 1)
        let sealed = frames[0].json?["listings"]
        guard case .array(let items)? = sealed, let item = items.first else {
            Issue.record("no listings")
            return
        }
        #expect(items.count == 1 && item["listing"] == .string("S2"))
        #expect(item["price"] == .null && item["bids"] == .integer(2))
        // Neither a bid nor the reserve appears anywhere in the answer, and no leader does. The answer's own `ts` is
        // the server clock and may hold any digits, so it is left out of the search.
        guard case .object(let members)? = frames[0].json else {
            Issue.record("the answer is not an object")
            return
        }
        let scalars = members.filter { $0.key != "ts" }.flatMap {
            [JSONValue.string($0.key)] + Self.scalars(in: $0.value)
        }
        #expect(scalars.contains(.string("S2")))
        for value in scalars {
            switch value {
            case .integer(let n): #expect(![777, 888, 555].contains(n), "an amount leaked: \(n)")
            case .string(let s):
                #expect(!["777", "888", "555", "ann", "bob"].contains { s.contains($0) }, "leaked: \(s)")
            case .otherNumber(let n): #expect(!["777", "888", "555"].contains { n.contains($0) }, "leaked: \(n)")
            default: break
            }
        }
    }

    /// Every key and scalar value inside `value`, depth first.
    static func scalars(in value: JSONValue) -> [JSONValue] {
        switch value {
        case .array(let items): items.flatMap { scalars(in: $0) }
        case .object(let members): members.flatMap { [JSONValue.string($0.key)] + scalars(in: $0.value) }
        default: [value]
        }
    }

    @Test func pagesWithAfterAndNext() throws {
        let h = try harness()
        let first = try list(h, #"{"type":"list","status":"all","limit":3}"#)
        #expect(ids(first) == ["L0", "L1", "L3"])
        #expect(first?["next"] == .string("L3"))
        let second = try list(h, #"{"type":"list","status":"all","limit":3,"after":"L3"}"#)
        #expect(ids(second) == ["S2"])
        #expect(second?["next"] == .null)
        let exact = try list(h, #"{"type":"list","limit":3}"#)
        #expect(ids(exact) == ["L1", "L3", "S2"] && exact?["next"] == .null)
        let open = try list(h, #"{"type":"list","limit":1,"after":"L0"}"#)
        #expect(ids(open) == ["L1"] && open?["next"] == .string("L1"))
        let past = try list(h, #"{"type":"list","after":"Z"}"#)
        #expect(ids(past) == [] && past?["next"] == .null)
    }

    @Test func anonymousWatcherMayList() throws {
        let h = try SessionHarness(principal: .anonymous)
        _ = try h.frames()
        // Listings opened by somebody else, straight through the writer.
        for listing in ["W2", "W1"] {
            let json = try JSONParser.parse(
                #"{"type":"open","id":"o\#(listing)","listing":"\#(listing)","seller":"sam","format":"english","start":100,"closes_at":99999999}"#
            )
            guard case .command(let command, _) = CommandDecoder.decode(json) else {
                Issue.record("not a command")
                return
            }
            #expect(h.writer.submit(command, replyTo: nil) == nil)
        }
        h.settle()
        let answer = try list(h, #"{"type":"list"}"#)
        #expect(answer?["type"] == .string("listings") && ids(answer) == ["W1", "W2"])
    }

    @Test func badFieldsAreBadRequestsNamingTheField() throws {
        let h = try harness()
        for (message, field) in [
            (#"{"type":"list","id":"x","status":"closed"}"#, "status"),
            (#"{"type":"list","id":"x","status":1}"#, "status"),
            (#"{"type":"list","id":"x","limit":0}"#, "limit"),
            (#"{"type":"list","id":"x","limit":101}"#, "limit"),
            (#"{"type":"list","id":"x","limit":"5"}"#, "limit"),
            (#"{"type":"list","id":"x","after":"bad id"}"#, "after"),
            (#"{"type":"list","id":"x","after":5}"#, "after"),
        ] {
            let answer = try list(h, message)
            #expect(answer?["type"] == .string("result") && answer?["error"] == .string("bad_request"))
            #expect(answer?["id"] == .string("x"))
            guard case .string(let text)? = answer?["message"] else {
                Issue.record("no message for \(message)")
                continue
            }
            #expect(text.hasPrefix(field), "\(message): \(text)")
        }
    }

    @Test func listCountsAgainstTheRateLimit() throws {
        let h = try SessionHarness { $0.rate = RateLimit(perSecond: 1, burst: 2) }
        _ = try h.frames()
        for _ in 0..<3 { try h.send(#"{"type":"list","id":"q"}"#) }
        let frames = try h.frames()
        #expect(frames.map(\.type) == ["listings", "listings", "result"])
        #expect(frames[2].json?["error"] == .string("rate_limited"))
    }
}

@Suite struct LocalTokenTests {
    let tokens = LocalTokens(
        secret: Array("k".utf8), code: Array("0123456789abcdef".utf8), ttlSeconds: 3600, now: { 1_000_000 })

    func head(_ method: HTTPMethod, host: String = "127.0.0.1:8080", json: Bool = true) -> HTTPRequestHead {
        var headers = HTTPHeaders([("host", host), (LocalTokens.codeHeader, "0123456789abcdef")])
        if json { headers.add(name: "content-type", value: "application/json") }
        return HTTPRequestHead(version: .http1_1, method: method, uri: "/token", headers: headers)
    }

    func post(_ body: String, peer: String = "127.0.0.1", host: String = "127.0.0.1:8080") throws -> (
        HTTPResponseStatus, JSONValue?
    ) {
        let (status, json) = tokens.answer(
            head: head(.POST, host: host), body: Array(body.utf8),
            peer: try SocketAddress(ipAddress: peer, port: 40000))
        return (status, try? JSONParser.parse(json))
    }

    @Test func loopbackAddresses() throws {
        for address in ["127.0.0.1", "127.9.8.7", "::1", "::ffff:127.0.0.1"] {
            #expect(LocalTokens.isLoopback(try SocketAddress(ipAddress: address, port: 1)), "\(address)")
        }
        for address in ["10.0.0.5", "192.168.1.2", "128.0.0.1", "::2", "fe80::1", "::ffff:10.0.0.1", "0.0.0.0"] {
            #expect(!LocalTokens.isLoopback(try SocketAddress(ipAddress: address, port: 1)), "\(address)")
        }
        #expect(!LocalTokens.isLoopback(nil))
        for host in ["127.0.0.1:8080", "localhost", "LOCALHOST:1", "[::1]:8080", "127.1.2.3"] {
            #expect(LocalTokens.isLoopbackHost(host), "\(host)")
        }
        for host in ["evil.example", "127.0.0.1.evil.example", "10.0.0.1:8080", "[::2]", "", "localhost.evil"] {
            #expect(!LocalTokens.isLoopbackHost(host), "\(host)")
        }
    }

    @Test func issuesBidderAndSellerTokensToLoopbackOnly() throws {
        let (status, json) = try post(#"{"sub":"ann","role":"bidder"}"#)
        #expect(status == .ok)
        guard case .string(let token)? = json?["token"] else {
            Issue.record("no token")
            return
        }
        let claims = try JWT.verify(token, secret: Array("k".utf8), now: 1_000_000)
        #expect(claims == Claims(subject: "ann", role: .bidder, expires: 1_003_600))
        #expect(json?["expires_at"] == .integer(1_003_600_000))
        #expect(try post(#"{"sub":"sam","role":"seller"}"#).0 == .ok)
        // Not loopback, or a Host that is not loopback: as if there were no /token.
        #expect(try post(#"{"sub":"ann","role":"bidder"}"#, peer: "10.0.0.5").0 == .notFound)
        #expect(try post(#"{"sub":"ann","role":"bidder"}"#, peer: "::ffff:192.168.0.9").0 == .notFound)
        #expect(try post(#"{"sub":"ann","role":"bidder"}"#, host: "evil.example:8080").0 == .notFound)
    }

    @Test func refusesOtherRolesAndBadInput() throws {
        for role in ["service", "watcher"] {
            let (status, json) = try post(#"{"sub":"ann","role":"\#(role)"}"#)
            #expect(status == .badRequest)
            guard case .string(let message)? = json?["error"] else { continue }
            #expect(message.contains("role \(role) is not issued here"))
        }
        for body in [
            #"{"sub":"ann","role":"admin"}"#, #"{"sub":"a b","role":"bidder"}"#, #"{"role":"bidder"}"#, "[]", "{",
        ] {
            #expect(try post(body).0 == .badRequest, "\(body)")
        }
        let longName = String(repeating: "a", count: 65)
        #expect(try post(#"{"sub":"\#(longName)","role":"bidder"}"#).0 == .badRequest)
        let plain = tokens.answer(
            head: head(.POST, json: false), body: Array(#"{"sub":"ann","role":"bidder"}"#.utf8),
            peer: try SocketAddress(ipAddress: "127.0.0.1", port: 1))
        #expect(plain.0 == .unsupportedMediaType)
        let put = tokens.answer(head: head(.PUT), body: [], peer: try SocketAddress(ipAddress: "127.0.0.1", port: 1))
        #expect(put.0 == .methodNotAllowed)
        let get = tokens.answer(head: head(.GET), body: [], peer: try SocketAddress(ipAddress: "::1", port: 1))
        #expect(get.0 == .ok)
    }

    @Test func pageHandlerAnswersTokenOnlyInLocalModeAndFromLoopback() throws {
        func exchange(localTokens: LocalTokens?, peer: String) throws -> HTTPResponseStatus? {
            let channel = EmbeddedChannel()
            try channel.pipeline.syncOperations.addHandler(
                PageHandler(page: Array("page".utf8), localTokens: localTokens, refusal: { _ in nil }))
            try channel.connect(to: SocketAddress(ipAddress: peer, port: 40000)).wait()
            try channel.writeInbound(HTTPServerRequestPart.head(head(.POST)))
            try channel.writeInbound(
                HTTPServerRequestPart.body(ByteBuffer(string: #"{"sub":"ann","role":"bidder"}"#)))
            try channel.writeInbound(HTTPServerRequestPart.end(nil))
            guard case .head(let response)? = try channel.readOutbound(as: HTTPServerResponsePart.self) else {
                return nil
            }
            return response.status
        }
        #expect(try exchange(localTokens: tokens, peer: "127.0.0.1") == .ok)
        #expect(try exchange(localTokens: tokens, peer: "192.0.2.1") == .notFound)
        #expect(try exchange(localTokens: nil, peer: "127.0.0.1") == .notFound)
    }
}
