import GavelCore
@_spi(Manual) import GavelEngine
import GavelWire
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import GavelGateway

/// The text of a result frame's `message`.
private func message(_ frame: ServerFrameRead) -> String {
    if case .string(let s)? = frame.json?["message"] { return s }
    return ""
}

@Suite struct IdentifiersAtTheEdgeTests {
    @Test func malformedIdentifiersAreRefusedNamingTheFieldAndNeverReachTheWriter() throws {
        let held = HeldSink()
        let h = try SessionHarness(principal: Principal(name: "svc", role: .service), sink: held)
        _ = try h.frames()
        let long = String(repeating: "x", count: 65)
        let huge = String(repeating: "L", count: 60_000)
        let cases: [(String, String)] = [
            (#"{"type":"bid","id":"b1","listing":"\#(huge)","bidder":"ann","amount":100}"#, "listing"),
            (#"{"type":"bid","id":"b2","listing":"\#(long)","bidder":"ann","amount":100}"#, "listing"),
            (#"{"type":"bid","id":"b3","listing":"bad id","bidder":"ann","amount":100}"#, "listing"),
            (#"{"type":"bid","id":"\#(long)","listing":"L1","bidder":"ann","amount":100}"#, "id"),
            (#"{"type":"bid","id":"","listing":"L1","bidder":"ann","amount":100}"#, "id"),
            (#"{"type":"bid","id":"b4","listing":"L1","bidder":"\#(long)","amount":100}"#, "bidder"),
            (#"{"type":"buy_now","id":"b5","listing":"L1","buyer":"a/b"}"#, "buyer"),
            (#"{"type":"buy_now","id":"b6","listing":"L1","bidder":"a b"}"#, "bidder"),
            (#"{"type":"accept","id":"b7","listing":"L1","bidder":"é"}"#, "bidder"),
            (
                #"{"type":"order","id":"b8","listing":"M1","trader":"t t","side":"buy","price":5,"quantity":1}"#,
                "trader"
            ),
            (#"{"type":"cancel","id":"b9","listing":"M1","trader":"tom","order":"\#(long)"}"#, "order"),
            (#"{"type":"cancel_listing","id":"c1","listing":"L1","seller":"s!"}"#, "seller"),
            (
                #"{"type":"open","id":"o1","listing":"L1","seller":"\#(long)","format":"market"}"#, "seller"
            ),
            (#"{"type":"bid","id":"b10","listing":"L1","on_behalf_of":"\#(long)","amount":100}"#, "on_behalf_of"),
        ]
        for (text, field) in cases {
            try h.send(text)
            h.settle()
            let frames = try h.frames()
            #expect(frames.count == 1 && frames.first?.json?["error"] == .string("bad_request"), "\(field)")
            guard let frame = frames.first else { continue }
            #expect(
                message(frame) == "\(field) must be an identifier: 1-64 characters from [A-Za-z0-9_.:-]",
                "\(message(frame))")
        }
        // Nothing was submitted, so nothing could be queued or journaled.
        #expect(held.count == 0)
    }

    @Test func aBidderSessionRefusesAMalformedOnBehalfOfAsABadRequest() throws {
        let h = try SessionHarness(principal: Principal(name: "ann", role: .bidder))
        _ = try h.frames()
        try h.send(#"{"type":"bid","id":"b1","listing":"L1","on_behalf_of":"a b","amount":100}"#)
        let frames = try h.frames()
        #expect(frames.first?.json?["error"] == .string("bad_request"))
        #expect(frames.first.map(message)?.hasPrefix("on_behalf_of must be an identifier") == true)
    }
}

@Suite struct TokenExpiryTests {
    @Test func theSessionIsClosedWith1008WhenItsTokenExpiresAndLaterCommandsAreNotApplied() throws {
        let held = HeldSink()
        let expires = SystemClock().now() / 1000 + 2
        let h = try SessionHarness(principal: Principal(name: "ann", role: .bidder), sink: held, expires: expires)
        _ = try h.frames()
        h.channel.embeddedEventLoop.advanceTime(by: .milliseconds(500))
        #expect(try h.frames().isEmpty)
        h.channel.embeddedEventLoop.advanceTime(by: .seconds(3))
        let frames = try h.frames()
        #expect(frames.count == 1 && frames.first?.closeCode == 1008)
        #expect(
            frames.first.map { String(decoding: $0.payload.dropFirst(2), as: UTF8.self) }
                == "token expired; reconnect with a fresh token")
        try? h.send(#"{"type":"bid","id":"late","listing":"L1","amount":100}"#)
        h.settle()
        #expect(held.count == 0)
    }

    @Test func anAnonymousSessionHasNoExpiry() throws {
        let h = try SessionHarness(principal: .anonymous)
        _ = try h.frames()
        h.channel.embeddedEventLoop.advanceTime(by: .seconds(3600))
        #expect(try h.frames().allSatisfy { $0.closeCode == nil })
        #expect(h.channel.isActive)
    }
}

@Suite struct ConnectionLimitsTests {
    func limits(_ configure: (inout GatewayConfiguration) -> Void) -> ConnectionLimits {
        var configuration = GatewayConfiguration()
        configure(&configuration)
        return ConnectionLimits(configuration)
    }

    let ann = Principal(name: "ann", role: .bidder)
    let sam = Principal(name: "sam", role: .seller)
    let second: UInt64 = 1_000_000_000

    @Test func connectionsOfOneUserPastTheCapAreRefusedWith429UntilOneCloses() {
        let l = limits { $0.maxConnectionsPerUser = 2 }
        #expect(l.admit(ann, address: "10.0.0.1", now: 0) == nil)
        #expect(l.admit(ann, address: "10.0.0.2", now: 0) == nil)
        let refusal = l.admit(ann, address: "10.0.0.3", now: 0)
        #expect(refusal?.status == .tooManyRequests)
        #expect(refusal?.reason.contains("--max-connections-per-user") == true)
        #expect(l.admit(sam, address: "10.0.0.3", now: 0) == nil)
        l.release(ann, address: "10.0.0.1")
        #expect(l.admit(ann, address: "10.0.0.3", now: 0) == nil)
        // Service tokens are not counted per user.
        let service = Principal(name: "svc", role: .service)
        for _ in 0..<5 { #expect(l.admit(service, address: nil, now: 0) == nil) }
    }

    @Test func connectionsOfOneAddressPastTheCapAreRefusedWith429() {
        let l = limits { $0.maxConnectionsPerAddress = 2 }
        #expect(l.admit(.anonymous, address: "10.0.0.1", now: 0) == nil)
        #expect(l.admit(ann, address: "10.0.0.1", now: 0) == nil)
        let refusal = l.admit(sam, address: "10.0.0.1", now: 0)
        #expect(refusal?.status == .tooManyRequests)
        #expect(refusal?.reason.contains("--max-connections-per-address") == true)
        #expect(l.admit(sam, address: "10.0.0.2", now: 0) == nil)
        l.release(.anonymous, address: "10.0.0.1")
        #expect(l.admit(sam, address: "10.0.0.1", now: 0) == nil)
    }

    @Test func theAnonymousCapLeavesRoomForTokenHolders() {
        let l = limits { $0.maxAnonymousConnections = 3 }
        for _ in 0..<3 { #expect(l.admit(.anonymous, address: nil, now: 0) == nil) }
        let refusal = l.admit(.anonymous, address: nil, now: 0)
        #expect(refusal?.status == .serviceUnavailable)
        #expect(refusal?.reason.contains("connect with a token") == true)
        #expect(l.admit(ann, address: nil, now: 0) == nil)
    }

    @Test func opensPerMinuteAreSharedByEveryConnectionOfASellerAndSayWhenToRetry() {
        let l = limits { $0.opensPerMinute = 3 }
        #expect(l.admit(sam, address: nil, now: 0) == nil)
        #expect(l.admit(sam, address: nil, now: 0) == nil)
        for _ in 0..<3 { #expect(l.takeOpen("sam", now: 0) == nil) }
        let wait = l.takeOpen("sam", now: 0)
        #expect(wait != nil && (19_000...20_001).contains(wait ?? 0))
        #expect(l.takeOpen("sam", now: 10 * second) != nil)
        #expect(l.takeOpen("sam", now: 20 * second) == nil)
    }

    @Test func aPrincipalsCommandRateIsSharedAndNotRefilledByReconnecting() {
        let l = limits { $0.principalRate = RateLimit(perSecond: 10, burst: 20) }
        #expect(l.admit(ann, address: nil, now: 0) == nil)
        #expect(l.takeCommands("ann", want: 15, now: 0) == 15)
        #expect(l.admit(ann, address: nil, now: 0) == nil)
        #expect(l.takeCommands("ann", want: 15, now: 0) == 5)
        l.release(ann, address: nil)
        l.release(ann, address: nil)
        #expect(l.admit(ann, address: nil, now: 0) == nil)
        #expect(l.takeCommands("ann", want: 1, now: 0) == 0)
        #expect(l.millisUntilCommand("ann", now: 0) == 101)
        #expect(l.takeCommands("ann", want: 1, now: second) == 1)
    }

    @Test func aClockReadBeforeAnotherThreadsRefillAddsNoTokens() {
        // Event loops read the clock before they take the table's lock, so the table can see a `now` earlier than
        // the last one it used. That must not count as a long wait (an unsigned difference wraps to 1,000 s).
        let l = limits {
            $0.principalRate = RateLimit(perSecond: 20, burst: 40)
            $0.opensPerMinute = 20
        }
        #expect(l.admit(sam, address: nil, now: 10 * second) == nil)
        #expect(l.takeCommands("sam", want: 40, now: 10 * second + 1_000) == 40)
        #expect(l.takeCommands("sam", want: 40, now: 10 * second + 500) == 0)
        #expect(l.takeCommands("sam", want: 40, now: 10 * second + 1_000) == 0)
        for _ in 0..<20 { #expect(l.takeOpen("sam", now: 10 * second + 1_000) == nil) }
        #expect(l.takeOpen("sam", now: 10 * second + 999) != nil)
        #expect(l.takeOpen("sam", now: 10 * second + 1_000) != nil)
        var budget = ByteBudget(perSecond: 1_000, now: 10 * second)
        let first = budget.allows(now: 10 * second + 1_000)
        budget.charge(5_000)
        let early = budget.allows(now: 10 * second)
        let later = budget.allows(now: 10 * second + 2_000)
        #expect(first && !early && !later)
    }

    @Test func anEntryIsDroppedOnceItsLastConnectionIsGoneAndItsBucketsHaveRefilled() {
        let l = limits { _ in }
        for i in 0..<100 {
            let user = Principal(name: "u\(i)", role: .seller)
            #expect(l.admit(user, address: "10.0.0.1", now: 0) == nil)
            _ = l.takeOpen("u\(i)", now: 0)
            l.release(user, address: "10.0.0.1")
        }
        #expect(l.principalCount == 100)
        #expect(l.admit(ann, address: nil, now: second / 2) == nil)
        #expect(l.principalCount == 101)  // at 60 opens per minute, an open takes a second to come back
        #expect(l.admit(ann, address: "10.0.0.1", now: 2 * second) == nil)
        #expect(l.principalCount == 1)
    }

    @Test func aSellerReconnectingEveryHalfSecondDoesNotKeepEveryoneWhoLeftInTheTable() {
        let l = limits { _ in }
        // sam spends an open every half second and is gone in between: his bucket never refills.
        for round in 0..<20 {
            let now = UInt64(round) * second / 2
            #expect(l.admit(sam, address: "10.0.0.2", now: now) == nil)
            #expect(l.takeOpen("sam", now: now) == nil)
            l.release(sam, address: "10.0.0.2")
            let visitor = Principal(name: "v\(round)", role: .bidder)
            #expect(l.admit(visitor, address: "10.0.0.3", now: now) == nil)
            l.release(visitor, address: "10.0.0.3")
        }
        #expect(l.admit(ann, address: "10.0.0.1", now: 10 * second) == nil)
        #expect(l.principalCount == 3)  // ann, sam (still refilling) and the visitor who left after him
    }
}

@Suite struct SharedPrincipalRateTests {
    @Test func oneBidderOverTwoConnectionsIsLimitedInTotal() throws {
        var configuration = GatewayConfiguration()
        configuration.principalRate = RateLimit(perSecond: 1, burst: 6)
        let limits = ConnectionLimits(configuration)
        let ann = Principal(name: "ann", role: .bidder)
        var sessions: [SessionHarness] = []
        for _ in 0..<2 {
            #expect(limits.admit(ann, address: nil, now: monotonicNanos()) == nil)
            let h = try SessionHarness(principal: ann, limits: limits) {
                $0.principalRate = configuration.principalRate
            }
            _ = try h.frames()
            sessions.append(h)
        }
        var limited = 0
        var answered = 0
        for i in 0..<5 {
            for (n, h) in sessions.enumerated() {
                try h.send(#"{"type":"bid","id":"b\#(n)-\#(i)","listing":"L1","amount":100}"#)
                h.settle()
                for frame in try h.frames() where frame.type == "result" {
                    answered += 1
                    if frame.json?["error"] == .string("rate_limited") {
                        limited += 1
                        #expect(message(frame).contains("over all its connections; retry in"))
                    }
                }
            }
        }
        // Each connection alone would take 5 (its own rate is 50/s, burst 100); together they share 6.
        #expect(answered == 10)
        #expect((3...4).contains(limited))  // 4, or 3 if a second passed and refilled one
    }
}

@Suite struct ReadAmplificationTests {
    /// A service session with `count` english listings open.
    func harness(count: Int, _ configure: (inout GatewayConfiguration) -> Void = { _ in }) throws -> SessionHarness {
        let h = try SessionHarness(principal: Principal(name: "svc", role: .service), configure: configure)
        for i in 0..<count {
            let listing = "listing-with-a-long-name-\(1000 + i)"
            try h.send(
                #"{"type":"open","id":"o\#(i)","listing":"\#(listing)","seller":"sam","format":"english","start":100,"closes_at":99999999}"#
            )
            h.settle()
        }
        _ = try h.frames()
        return h
    }

    @Test func aShortListRequestAnswersAtMostAHundredListings() throws {
        let h = try harness(count: 150)
        try h.send(#"{"type":"list","limit":1000}"#)
        let refused = try h.frames()
        #expect(refused.first?.json?["error"] == .string("bad_request"))
        #expect(message(refused.first ?? ServerFrameRead(fin: true, opcode: 1, payload: [])).hasPrefix("limit"))
        try h.send(#"{"type":"list","status":"all"}"#)
        let page = try h.frames()
        guard case .array(let items)? = page.first?.json?["listings"] else {
            Issue.record("no listings")
            return
        }
        #expect(items.count == 20 && page.first?.json?["next"] != .null)
        try h.send(#"{"type":"list","limit":100}"#)
        let most = try h.frames()
        guard case .array(let many)? = most.first?.json?["listings"] else {
            Issue.record("no listings")
            return
        }
        #expect(many.count == 100)
        #expect(most[0].payload.count < 32 * 1024)
    }

    @Test func repeatedListsAreRefusedOnceTheReadBudgetIsSpent() throws {
        let h = try harness(count: 100) { $0.maxReadBytesPerSecond = 4096 }
        try h.send(#"{"type":"list","limit":100,"id":"q1"}"#)
        #expect(try h.frames().first?.type == "listings")
        try h.send(#"{"type":"list","limit":100,"id":"q2"}"#)
        let refused = try h.frames()
        #expect(refused.first?.json?["error"] == .string("rate_limited"))
        #expect(refused.first?.json?["id"] == .string("q2"))
        #expect(refused.first.map(message)?.hasPrefix("list refused: the answers to reads") == true)
        #expect(
            refused.first.map(message)?.contains(
                "bytes per second per connection (--max-read-bytes-per-second); retry in") == true)
        try h.send(#"{"type":"subscribe","listing":"listing-with-a-long-name-1000","id":"s1"}"#)
        let subscribe = try h.frames()
        #expect(subscribe.first?.json?["error"] == .string("rate_limited"))
        #expect(subscribe.first.map(message)?.hasPrefix("subscribe refused:") == true)
    }
}

@Suite struct AddressKeyTests {
    /// The key of `ip`; `nil` (which every expectation below fails on) when `ip` does not parse.
    func key(_ ip: String, _ bits: Int = 64) -> String? {
        (try? SocketAddress(ipAddress: ip, port: 443)).flatMap { AddressKey.of($0, ipv6PrefixBits: bits) }
    }

    @Test func everyAddressOfOneIPv6NetworkIsCountedUnderOneKey() {
        let first = key("2001:db8:1:2::1")
        #expect(first == "2001:db8:1:2::/64")
        #expect(key("2001:db8:1:2:ffff:ffff:ffff:ffff") == first)
        #expect(key("2001:db8:1:2:dead:beef:0:7") == first)
        #expect(key("2001:db8:1:3::1") == "2001:db8:1:3::/64")
    }

    @Test func thePrefixLengthIsTheSettingsAndAt128EachAddressIsItsOwnKey() {
        #expect(key("2001:db8:1:2::1", 48) == "2001:db8:1::/48")
        #expect(key("2001:db8:1:200::1", 56) == "2001:db8:1:200::/56")
        #expect(key("2001:db8:1:2ff::9", 56) == "2001:db8:1:200::/56")
        #expect(key("2001:db8:1:2ff::9", 57) == "2001:db8:1:280::/57")
        #expect(key("2001:db8:1:2::1", 128) == "2001:db8:1:2::1")
        #expect(key("2001:db8:1:2::2", 128) == "2001:db8:1:2::2")
        #expect(key("2001:db8:1:2::1", 1) == "::/1")
    }

    @Test func ipv4AndIPv4MappedClientsAreCountedPerAddress() {
        #expect(key("203.0.113.7") == "203.0.113.7")
        #expect(key("::ffff:203.0.113.7") == "203.0.113.7")
        #expect(key("::ffff:203.0.113.8") == "203.0.113.8")
    }

    @Test func manyAddressesOfOneNetworkShareItsConnectionCap() {
        var configuration = GatewayConfiguration()
        configuration.maxConnectionsPerAddress = 2
        let limits = ConnectionLimits(configuration)
        let ann = Principal(name: "ann", role: .bidder)
        #expect(limits.admit(ann, address: key("2001:db8:1:2::1"), now: 0) == nil)
        #expect(limits.admit(ann, address: key("2001:db8:1:2::2"), now: 0) == nil)
        let refusal = limits.admit(ann, address: key("2001:db8:1:2::3"), now: 0)
        #expect(refusal?.status == .tooManyRequests)
        #expect(refusal?.reason.contains("address 2001:db8:1:2::/64 holds 2 connections") == true)
        #expect(limits.admit(ann, address: key("2001:db8:1:3::3"), now: 0) == nil)
    }
}
