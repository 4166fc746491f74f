import GavelCore
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import GavelGateway

@Suite struct SessionTests {
    @Test func helloComesFirstWithLimitsAndTs() throws {
        let h = try SessionHarness(principal: Principal(name: "ann", role: .bidder))
        let hello = try h.frames()
        #expect(hello.count == 1)
        #expect(hello[0].type == "hello")
        #expect(hello[0].json?["principal"] == .string("ann"))
        #expect(hello[0].json?["role"] == .string("bidder"))
        #expect(hello[0].json?["limits"]?["max_message_bytes"] == .integer(65536))
        #expect(hello[0].json?["ts"] != nil && hello[0].json?["server_time"] != nil)
    }

    @Test func unknownTypeListsEveryMessageTypeInTheProtocolsOrder() throws {
        let h = try SessionHarness(principal: Principal(name: "ann", role: .bidder))
        _ = try h.frames()
        try h.send(#"{"type":"teleport","id":"t1"}"#)
        let answer = try h.frames().first?.json
        #expect(answer?["id"] == .string("t1") && answer?["error"] == .string("bad_request"))
        #expect(
            answer?["message"]
                == .string(
                    #"unknown type "teleport"; expected subscribe, unsubscribe, subscribe_user, subscribe_feed, list, "#
                        + "my_settlements, get_settlement, open, bid, buy_now, accept, order, cancel, cancel_listing, "
                        + "confirm_payment, mark_shipped, confirm_delivery, open_dispute, resolve_dispute, refund, "
                        + "offer_second_chance, accept_offer, decline_offer"))
    }

    @Test func binaryMessageClosesWith1003() throws {
        let h = try SessionHarness()
        _ = try h.frames()
        try h.send(clientFrame(.binary, [1, 2, 3]))
        #expect(try h.frames().last?.closeCode == 1003)
    }

    @Test func unmaskedFrameClosesWith1002() throws {
        let h = try SessionHarness()
        _ = try h.frames()
        try h.send(clientFrame(.text, Array("{}".utf8), masked: false))
        #expect(try h.frames().last?.closeCode == 1002)
    }

    @Test func continuationWithoutStartClosesWith1002() throws {
        let h = try SessionHarness()
        _ = try h.frames()
        try h.send(clientFrame(.continuation, "x"))
        #expect(try h.frames().last?.closeCode == 1002)
    }

    @Test func reservedOpcodeClosesWith1002() throws {
        let h = try SessionHarness()
        _ = try h.frames()
        try h.send(clientFrame(WebSocketOpcode(encodedWebSocketOpcode: 0x3)!, "x"))
        #expect(try h.frames().last?.closeCode == 1002)
    }

    @Test func invalidUTF8ClosesWith1007() throws {
        let h = try SessionHarness()
        _ = try h.frames()
        try h.send(clientFrame(.text, [0x7B, 0xC3, 0x28, 0x7D]))
        #expect(try h.frames().last?.closeCode == 1007)
    }

    @Test func fragmentsAreReassembled() throws {
        let h = try SessionHarness()
        _ = try h.frames()
        try h.send(clientFrame(.text, #"{"type":"subsc"#, fin: false))
        try h.send(clientFrame(.continuation, #"ribe","listi"#, fin: false))
        try h.send(clientFrame(.ping, "p"))
        try h.send(clientFrame(.continuation, #"ng":"L1"}"#))
        let frames = try h.frames()
        #expect(frames.map(\.opcode) == [0xA, 0x1])
        #expect(frames[0].text == "p")
        #expect(frames[1].type == "snapshot")
    }

    @Test func reassembledMessageOverTheLimitClosesWith1009() throws {
        let h = try SessionHarness { $0.maxMessageBytes = 1024 }
        _ = try h.frames()
        try h.send(clientFrame(.text, String(repeating: "a", count: 1000), fin: false))
        try h.send(clientFrame(.continuation, String(repeating: "a", count: 100)))
        #expect(try h.frames().last?.closeCode == 1009)
    }

    @Test func badJSONGetsBadRequestAndTheConnectionStaysOpen() throws {
        let h = try SessionHarness()
        _ = try h.frames()
        try h.send("{nope")
        try h.send(#"{"type":"dance","id":"d1"}"#)
        try h.send(#"[1]"#)
        try h.send(#"{"type":"subscribe","listing":"bad id!","id":"s1"}"#)
        let frames = try h.frames()
        #expect(frames.map(\.type) == ["result", "result", "result", "result"])
        #expect(frames.allSatisfy { $0.json?["error"] == .string("bad_request") })
        #expect(frames[1].json?["id"] == .string("d1"))
        #expect(frames[3].json?["id"] == .string("s1"))
        try h.send(#"{"type":"subscribe","listing":"L1"}"#)
        #expect(try h.frames().first?.type == "snapshot")
    }

    @Test func watcherCommandsAreNotAuthorized() throws {
        let h = try SessionHarness()
        _ = try h.frames()
        try h.send(#"{"type":"bid","id":"b1","listing":"L1","bidder":"ann","amount":100}"#)
        let result = try h.frames().first
        #expect(result?.json?["error"] == .string("not_authorized"))
        #expect(result?.json?["id"] == .string("b1"))
    }

    @Test func bidderMayActOnlyAsItself() throws {
        let h = try SessionHarness(principal: Principal(name: "ann", role: .bidder))
        _ = try h.frames()
        try h.send(#"{"type":"bid","id":"b1","listing":"L1","bidder":"bob","amount":100}"#)
        try h.send(#"{"type":"open","id":"o1","listing":"L1","format":"market"}"#)
        try h.send(#"{"type":"bid","id":"b2","listing":"L1","amount":100,"on_behalf_of":"bob"}"#)
        try h.send(#"{"type":"bid","id":"b3","listing":"L1","amount":100,"at":5}"#)
        let frames = try h.frames()
        #expect(
            frames.map { $0.json?["error"] } == [
                .string("not_authorized"), .string("not_authorized"), .string("not_authorized"), .string("bad_request"),
            ])
    }

    @Test func commandsGetTheirResultAfterTheBatchAndSubscribersTheEvent() throws {
        let h = try SessionHarness(principal: Principal(name: "sam", role: .seller))
        _ = try h.frames()
        try h.send(#"{"type":"subscribe","listing":"L1"}"#)
        #expect(try h.frames().first?.json?["seq"] == .integer(0))
        try h.send(#"{"type":"open","id":"o1","listing":"L1","format":"english","start":100,"closes_at":99999999}"#)
        #expect(try h.frames().isEmpty)  // nothing before the batch is durable
        h.settle()
        let frames = try h.frames()
        #expect(frames.map(\.type) == ["result", "opened"])
        #expect(frames[0].json?["ok"] == .bool(true))
        #expect(frames[1].json?["seq"] == .integer(1) && frames[1].json?["ts"] != nil)
        // Resuming from seq 0 replays the opened event; from 1 there is nothing to replay.
        try h.send(#"{"type":"subscribe","listing":"L1","since":0}"#)
        let resumed = try h.frames()
        #expect(resumed.map(\.type) == ["resumed", "opened"])
        #expect(resumed[0].json?["recovered"] == .bool(true))
        try h.send(#"{"type":"subscribe","listing":"L1","since":7}"#)
        let fresh = try h.frames()
        #expect(fresh.map(\.type) == ["snapshot"])
        #expect(fresh[0].json?["recovered"] == .bool(false))
        #expect(fresh[0].json?["state"]?["status"] == .string("open"))
    }

    @Test func resultsAndEventsOfAGroupGoOutInApplyOrderOnlyOnceItsLastBatchIsDurable() throws {
        let sink = HeldSink()
        let h = try SessionHarness(principal: Principal(name: "sam", role: .seller), sink: sink)
        _ = try h.frames()
        try h.send(#"{"type":"subscribe","listing":"L2"}"#)
        _ = try h.frames()
        for n in 1...3 {
            try h.send(
                #"{"type":"open","id":"o\#(n)","listing":"L\#(n)","format":"english","start":100,"closes_at":99999999}"#
            )
            h.settle()
        }
        #expect(sink.count == 3, "one batch per settle")
        #expect(try h.frames().isEmpty, "nothing before its batch is durable")
        sink.release(2, endsGroup: false)
        h.channel.embeddedEventLoop.run()
        #expect(try h.frames().isEmpty, "the group's hand-off waits for its last batch")
        sink.release(1, endsGroup: true)
        h.channel.embeddedEventLoop.run()
        let frames = try h.frames()
        #expect(frames.map(\.type) == ["result", "result", "opened", "result"])
        #expect(
            frames.filter { $0.type == "result" }.compactMap { $0.json?["id"] } == [
                .string("o1"), .string("o2"), .string("o3"),
            ])
        #expect(frames[2].json?["listing"] == .string("L2"))
    }

    @Test func rateLimitAnswersRateLimitedThenClosesOnSustainedAbuse() throws {
        let h = try SessionHarness {
            $0.rate = RateLimit(perSecond: 1, burst: 3)
            $0.abuseFactor = 2
            $0.abuseWindowSeconds = 2
        }
        _ = try h.frames()
        for _ in 0..<4 { try h.send(#"{"type":"unsubscribe","listing":"L1","id":"u"}"#) }
        let frames = try h.frames()
        #expect(frames.prefix(3).allSatisfy { $0.type == "unsubscribed" })
        #expect(frames[3].json?["error"] == .string("rate_limited"))
        #expect(frames[3].json?["id"] == .string("u"))
        // (2 - 1) * 1/s * 2 s = 2 tolerated in the window; the third excess message closes.
        for _ in 0..<2 { try h.send(#"{"type":"unsubscribe","listing":"L1"}"#) }
        #expect(try h.frames().last?.closeCode == 1008)
    }

    @Test func subscriptionLimitIsAnErrorResult() throws {
        let h = try SessionHarness { $0.maxSubscriptions = 2 }
        _ = try h.frames()
        for listing in ["A", "B", "C"] {
            try h.send(#"{"type":"subscribe","listing":"\#(listing)","id":"s\#(listing)"}"#)
        }
        let frames = try h.frames()
        #expect(frames.map(\.type) == ["snapshot", "snapshot", "result"])
        #expect(frames[2].json?["error"] == .string("too_many_subscriptions"))
        #expect(frames[2].json?["id"] == .string("sC"))
        #expect(h.fanOut.subscriptionCount == 2)
    }

    /// A connection that falls behind (its channel no longer writable) takes its cap of the server's outbound
    /// budget and stays open; one that finds the budget taken is closed with 1013 at once; catching up gives the
    /// budget back.
    @Test func aConnectionFallingBehindTakesTheOutboundBudgetOrIsClosedWith1013() throws {
        var settings = GatewayConfiguration()
        settings.maxOutboundBytes = 65_536
        settings.maxOutboundBytesTotal = 65_536
        let limits = ConnectionLimits(settings)
        let behind = try SessionHarness(limits: limits) { $0 = settings }
        _ = try behind.frames()
        behind.channel.isWritable = false
        behind.channel.pipeline.fireChannelWritabilityChanged()
        #expect(try behind.frames().isEmpty, "it fell behind and took the budget")
        #expect(limits.outboundTakenBytes == 65_536)

        let late = try SessionHarness(limits: limits) { $0 = settings }
        _ = try late.frames()
        late.channel.isWritable = false
        late.channel.pipeline.fireChannelWritabilityChanged()
        #expect(try late.frames().last?.closeCode == 1013, "no budget left")
        #expect(limits.outboundTakenBytes == 65_536)

        behind.channel.isWritable = true
        behind.channel.pipeline.fireChannelWritabilityChanged()
        #expect(limits.outboundTakenBytes == 0, "caught up: the budget is back")
        #expect(late.metrics.exposition().count > 0)
    }

    @Test func pingIsAnsweredAndCloseIsEchoed() throws {
        let h = try SessionHarness()
        _ = try h.frames()
        try h.send(clientFrame(.ping, "hi"))
        #expect(try h.frames() == [ServerFrameRead(fin: true, opcode: 0xA, payload: Array("hi".utf8))])
        try h.send(clientFrame(.connectionClose, [0x03, 0xE8]))
        #expect(try h.frames().last?.closeCode == 1000)
    }

    @Test func closingSessionLeavesNoSubscriptions() throws {
        let h = try SessionHarness()
        _ = try h.frames()
        try h.send(#"{"type":"subscribe","listing":"L1"}"#)
        #expect(h.fanOut.subscriptionCount == 1)
        #expect(h.registry.count == 1)
        try h.channel.close().wait()
        #expect(h.fanOut.subscriptionCount == 0)
        #expect(h.registry.count == 0)
    }
}

@Suite struct HostileInputTests {
    /// Random frames of every opcode, flag and payload (bytes, broken JSON, near-miss commands) never crash the
    /// session; it answers or closes.
    @Test func randomFramesNeverCrash() throws {
        var rng = SplitMix64(seed: 0x6A7E1)
        let pieces = [
            #"{"type":"bid","id":"b","listing":"L1","amount":"#, #"{"type":"subscribe","listing":"#,
            "9999999999999999999999",
            #""on_behalf_of":"#, "[[[[[[", "null", #"{"type":"open","format":"dutch","#, "\u{00e9}", "\"", "}", ",",
            #"{"type":"unsubscribe"}"#, #"{"id":{"x":1}}"#, "-1", "1e309",
        ]
        for round in 0..<200 {
            let role = Role.allCases[round % Role.allCases.count]
            let h = try SessionHarness(principal: Principal(name: role == .watcher ? nil : "u\(round)", role: role)) {
                $0.maxMessageBytes = 512
            }
            for _ in 0..<Int.random(in: 1...12, using: &rng) {
                let opcode = WebSocketOpcode(encodedWebSocketOpcode: UInt8.random(in: 0...15, using: &rng))!
                var bytes: [UInt8] = []
                if Bool.random(using: &rng) {
                    for _ in 0..<Int.random(in: 0...8, using: &rng) {
                        bytes.append(contentsOf: Array(pieces.randomElement(using: &rng)!.utf8))
                    }
                } else {
                    bytes = (0..<Int.random(in: 0...600, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng)
                    }
                }
                var frame = clientFrame(
                    opcode, bytes, fin: Int.random(in: 0..<4, using: &rng) != 0,
                    masked: Int.random(in: 0..<20, using: &rng) != 0)
                frame.rsv1 = Int.random(in: 0..<30, using: &rng) == 0
                try? h.send(frame)
                h.settle()
            }
            _ = try h.frames()
        }
    }
}
