import GavelCore
import Testing

@testable import GavelWire

/// The exact bytes of the messages a gateway session writes itself, as the session wrote them by hand before they
/// moved here: one representative input each.
@Suite struct SessionMessageTests {
    private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    private static let view = PublicListingView(
        opened: Event(
            listing: "L1", seq: 1, at: 5,
            kind: .opened(seller: "sam", terms: .english(.init(start: 100, buyNow: 900, closesAt: 60_000)))))!

    private static let summary =
        #"{"listing":"L1","format":"english","status":"open","seller":"sam","price":100,"opens_at":5,"#
        + #""closes_at":60000,"bids":0,"seq":1}"#

    @Test func hello() {
        var buffer = Array("old content".utf8)
        let limits = MessageEncoder.SessionLimits(
            maxMessageBytes: 65536, maxOutboundBytes: 1_048_576, maxSubscriptions: 100, ratePerSecond: 50,
            rateBurst: 100, idleTimeoutMs: 30000, historyEvents: 1024, userHistoryEvents: 256,
            maxReadBytesPerSecond: 1_000_000)
        MessageEncoder.hello(principal: "ann", role: "bidder", limits: limits, now: 1_700_000_000_000, into: &buffer)
        #expect(
            text(buffer)
                == #"{"type":"hello","server_time":1700000000000,"principal":"ann","role":"bidder","limits":"#
                + #"{"max_message_bytes":65536,"max_outbound_bytes":1048576,"max_subscriptions":100,"#
                + #""rate_per_second":50,"rate_burst":100,"idle_timeout_ms":30000,"history_events":1024,"#
                + #""user_history_events":256,"max_read_bytes_per_second":1000000},"ts":1700000000000}"#)
    }

    @Test func snapshotOfAListingAndOfNone() {
        #expect(
            text(MessageEncoder.snapshot(listing: "L1", seq: 7, view: Self.view, recovered: nil, ts: 1234))
                == #"{"type":"snapshot","listing":"L1","seq":7,"state":{"listing":"L1","format":"english","#
                + #""seller":"sam","status":"open","opens_at":5,"closes_at":60000,"terms":{"start":100,"#
                + #""opens_at":null,"closes_at":60000,"has_reserve":false,"buy_now":900,"increments":[[0,5],"#
                + #"[100,25],[500,50],[2500,100],[10000,250],[25000,500],[50000,1000],[100000,2500],[250000,5000],"#
                + #"[500000,10000]],"payment_due_ms":259200000,"ship_due_ms":432000000,"#
                + #""complaint_window_ms":259200000,"offer_due_ms":172800000},"price":100,"leader":null,"bids":0,"#
                + #""reserve_met":true},"ts":1234}"#)
        #expect(
            text(MessageEncoder.snapshot(listing: "L1", seq: 7, view: nil, recovered: false, ts: 1234))
                == #"{"type":"snapshot","listing":"L1","seq":7,"state":null,"recovered":false,"ts":1234}"#)
    }

    @Test func resumedAndUnsubscribed() {
        var buffer: [UInt8] = []
        MessageEncoder.resumed(listing: "L1", since: 3, seq: 9, ts: 1234, into: &buffer)
        #expect(text(buffer) == #"{"type":"resumed","listing":"L1","since":3,"seq":9,"recovered":true,"ts":1234}"#)
        MessageEncoder.unsubscribed(listing: "L1", ts: 1234, into: &buffer)
        #expect(text(buffer) == #"{"type":"unsubscribed","listing":"L1","ts":1234}"#)
    }

    @Test func userSubscribedWithAndWithoutIdAndSince() {
        var buffer: [UInt8] = []
        MessageEncoder.userSubscribed(
            id: "u1", user: "ann", epoch: "e-1", userSeq: 5, since: 2, recovered: true, ts: 1234, into: &buffer)
        #expect(
            text(buffer)
                == #"{"type":"user_subscribed","id":"u1","user":"ann","epoch":"e-1","user_seq":5,"since":2,"#
                + #""recovered":true,"ts":1234}"#)
        MessageEncoder.userSubscribed(
            id: nil, user: "ann", epoch: "e-1", userSeq: 5, since: nil, recovered: false, ts: 1234, into: &buffer)
        #expect(
            text(buffer)
                == #"{"type":"user_subscribed","user":"ann","epoch":"e-1","user_seq":5,"recovered":false,"ts":1234}"#)
    }

    @Test func feedRefusalsFeedMarkAndFeedLive() {
        var buffer: [UInt8] = []
        MessageEncoder.feedRefused(
            id: "f1", .feedLSNNotRetained, message: "gone", "oldest_lsn", lsn: 40, ts: 1234, into: &buffer)
        #expect(
            text(buffer)
                == #"{"type":"result","id":"f1","ok":false,"error":"feed_lsn_not_retained","message":"gone","#
                + #""oldest_lsn":40,"ts":1234}"#)
        MessageEncoder.feedRefused(
            id: nil, .feedHistoryDiverged, message: "other", "durable_lsn", lsn: 9, ts: 1234, into: &buffer)
        #expect(
            text(buffer)
                == #"{"type":"result","id":null,"ok":false,"error":"feed_history_diverged","message":"other","#
                + #""durable_lsn":9,"ts":1234}"#)
        MessageEncoder.feedMark(lsn: 12, chain: [UInt8](repeating: 0xab, count: 32), into: &buffer)
        #expect(
            text(buffer) == #"{"type":"feed_mark","lsn":12,"chain":""# + String(repeating: "ab", count: 32) + #""}"#)
        MessageEncoder.feedLive(lsn: 77, into: &buffer)
        #expect(text(buffer) == #"{"type":"feed_live","lsn":77}"#)
    }

    @Test func settlementsAndSettlementDetail() {
        let item = Array(#"{"settlement":"L1:1"}"#.utf8)
        #expect(
            text(
                MessageEncoder.settlements(
                    id: "m1", user: "ann", settlements: [UInt8(ascii: "[")] + item + [UInt8(ascii: "]")],
                    offers: Array("[]".utf8), next: nil, offersNext: "L9", ts: 1234))
                == #"{"type":"settlements","id":"m1","user":"ann","settlements":[{"settlement":"L1:1"}],"offers":[],"#
                + #""next":null,"offers_next":"L9","ts":1234}"#)
        #expect(
            text(MessageEncoder.settlementDetail(id: "g1", settlement: item, ts: 1234))
                == #"{"type":"settlement_detail","id":"g1","settlement":{"settlement":"L1:1"},"ts":1234}"#)
    }

    @Test func listingsOpenAndAll() {
        for (openOnly, status) in [(true, "open"), (false, "all")] {
            #expect(
                text(
                    MessageEncoder.listings(
                        id: "l1", openOnly: openOnly, views: [Self.view, Self.view], next: "L2", ts: 1234))
                    == #"{"type":"listings","id":"l1","status":"\#(status)","listings":["#
                    + Self.summary + "," + Self.summary + #"],"next":"L2","ts":1234}"#)
        }
    }

    @Test func noticeWrapsTheEncodedEventAndReusesItsBuffer() {
        let event = MessageEncoder.event(Event(listing: "L1", seq: 0, at: 9, kind: .outbid(bidder: "ann", price: 5)))
        var buffer: [UInt8] = []
        for userSeq in [UInt64(4), 5] {
            MessageEncoder.notice(event: event, userSeq: userSeq, ts: 1234, into: &buffer)
            #expect(
                text(buffer)
                    == #"{"type":"notice","event":{"type":"outbid","listing":"L1","at":9,"bidder":"ann","price":5},"#
                    + #""user_seq":\#(userSeq),"ts":1234}"#)
        }
    }
}
