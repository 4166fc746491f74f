import GavelCore
import Testing

@testable import GavelWire

// Results and events written into a reused buffer are byte for byte what the encoder wrote before it took one:
// the golden lines below were produced by the encoder that built a fresh array for every message (the `opened`
// lines since gained the effective settlement deadlines).

@Suite struct EncoderReuseTests {
    @Test func everyEventAndResultKindIsWrittenAsBeforeFreshAndIntoAReusedBuffer() {
        var expected = goldenLines.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)[...]
        // Starts dirty and longer than some messages, so that leftovers of an earlier message would show.
        var reused = [UInt8](repeating: UInt8(ascii: "#"), count: 600)
        for event in goldenEvents {
            for ts in [nil, 1_795_000_000_000] as [Millis?] {
                let line = expected.popFirst()
                #expect(String(decoding: MessageEncoder.event(event, ts: ts), as: UTF8.self) == line)
                MessageEncoder.event(event, ts: ts, into: &reused)
                #expect(String(decoding: reused, as: UTF8.self) == line)
            }
        }
        for (id, result) in goldenResults {
            for ts in [nil, 1_795_000_000_000] as [Millis?] {
                let line = expected.popFirst()
                #expect(String(decoding: MessageEncoder.result(id: id, result, ts: ts), as: UTF8.self) == line)
                MessageEncoder.result(id: id, result, ts: ts, into: &reused)
                #expect(String(decoding: reused, as: UTF8.self) == line)
            }
        }
        #expect(expected.isEmpty)
    }

    @Test func aReusedBufferKeepsItsStorage() {
        var reused: [UInt8] = []
        reused.reserveCapacity(1_024)
        let storage = reused.withUnsafeBufferPointer { $0.baseAddress }
        for event in goldenEvents { MessageEncoder.event(event, ts: 1, into: &reused) }
        #expect(reused.withUnsafeBufferPointer { $0.baseAddress } == storage)
    }
}

private let goldenEvents: [Event] = [
    Event(
        listing: "L1", seq: 2, at: 10,
        kind: .opened(
            seller: "sam",
            terms: .english(
                .init(
                    start: 100, reserve: 5, buyNow: 900, closesAt: 60_000, opensAt: 1,
                    increments: [IncrementStep(from: 0, step: 5)],
                    softClose: SoftClose(windowMs: 1, extendMs: 2, maxClosesAt: nil))))),
    Event(
        listing: "L2", seq: 2, at: 10,
        kind: .opened(seller: "sam", terms: .english(.init(start: 100, closesAt: 60_000)))),
    Event(
        listing: "L3", seq: 2, at: 10,
        kind: .opened(
            seller: "sam", terms: .sealed(.init(pricing: .second, start: 1, reserve: nil, closesAt: 9, opensAt: nil)))),
    Event(
        listing: "L4", seq: 2, at: 10,
        kind: .opened(
            seller: "sam",
            terms: .dutch(
                .init(start: 100, floor: 10, step: 5, stepEveryMs: 1000, quantity: 3, closesAt: 99, opensAt: 4)))),
    Event(
        listing: "L5", seq: 2, at: 10, kind: .opened(seller: "sam", terms: .market(.init(closesAt: nil, opensAt: 4)))),
    Event(
        listing: "L1", seq: 3, at: 11,
        kind: .bidPlaced(price: 1_050, leader: "bidder-3", bids: 7, closesAt: 1_000_000_000_000, reserveMet: true)),
    Event(
        listing: "L1", seq: 3, at: -11,
        kind: .bidPlaced(
            price: -9_223_372_036_854_775_808, leader: "q\"uo\\te\n\u{01}é", bids: 0,
            closesAt: 9_223_372_036_854_775_807, reserveMet: false)),
    Event(listing: "L1", seq: 18_446_744_073_709_551_615, at: 11, kind: .sealedBidPlaced(bids: 4)),
    Event(listing: "L1", seq: 0, at: 11, kind: .outbid(bidder: "ann", price: 55)),
    Event(listing: "L1", seq: 4, at: 11, kind: .extended(closesAt: 77)),
    Event(listing: "L1", seq: 5, at: 11, kind: .price(88)),
    Event(listing: "L1", seq: 6, at: 11, kind: .filled(bidder: "ann", price: 3, quantity: 2, remaining: 1)),
    Event(listing: "L1", seq: 7, at: 11, kind: .closed(winner: "ann", price: 9, reserveMet: true)),
    Event(listing: "L1", seq: 7, at: 11, kind: .closed(winner: nil, price: nil, reserveMet: false)),
    Event(listing: "L1", seq: 8, at: 11, kind: .dutchClosed(sold: 2)),
    Event(listing: "L1", seq: 9, at: 11, kind: .marketClosed),
    Event(
        listing: "M", seq: 10, at: 11, kind: .orderPlaced(order: "o1", trader: "t", side: .sell, price: 5, quantity: 6)),
    Event(
        listing: "M", seq: 11, at: 11, kind: .orderCancelled(order: "o1", trader: "t", reason: .selfTrade, remaining: 6)
    ),
    Event(
        listing: "M", seq: 12, at: 11,
        kind: .trade(buyer: "b", seller: "s", price: 5, quantity: 1, buyOrder: "x", sellOrder: "y")),
    Event(listing: "M", seq: 13, at: 11, kind: .book(bestBid: 4, bestAsk: nil, bidQuantity: 3, askQuantity: nil)),
    Event(listing: "M", seq: 14, at: 11, kind: .listingCancelled),
]

private let goldenResults: [(String?, CommandResult)] = [
    ("b1", .accepted),
    (nil, .accepted),
    ("b2", CommandResult(error: nil, message: "", duplicate: true, price: 550, leading: false)),
    ("b3", CommandResult(error: nil, message: "", filled: 3, remaining: 0)),
    ("b4", .rejected(.bidTooLow, "bid at least 1100", minBid: 1_100)),
    ("b\"5", .rejected(.badRequest, "invalid JSON at byte 3: \"x\"\n\t")),
    ("b6", .rejected(.rateLimited, "slow down")),
]

private let goldenLines = #"""
    {"type":"opened","listing":"L1","seq":2,"at":10,"format":"english","seller":"sam","start":100,"opens_at":1,"closes_at":60000,"has_reserve":true,"buy_now":900,"increments":[[0,5]],"soft_close":{"window_ms":1,"extend_ms":2,"max_closes_at":null},"payment_due_ms":259200000,"ship_due_ms":432000000,"complaint_window_ms":259200000,"offer_due_ms":172800000}
    {"type":"opened","listing":"L1","seq":2,"at":10,"format":"english","seller":"sam","start":100,"opens_at":1,"closes_at":60000,"has_reserve":true,"buy_now":900,"increments":[[0,5]],"soft_close":{"window_ms":1,"extend_ms":2,"max_closes_at":null},"payment_due_ms":259200000,"ship_due_ms":432000000,"complaint_window_ms":259200000,"offer_due_ms":172800000,"ts":1795000000000}
    {"type":"opened","listing":"L2","seq":2,"at":10,"format":"english","seller":"sam","start":100,"opens_at":null,"closes_at":60000,"has_reserve":false,"buy_now":null,"increments":[[0,5],[100,25],[500,50],[2500,100],[10000,250],[25000,500],[50000,1000],[100000,2500],[250000,5000],[500000,10000]],"payment_due_ms":259200000,"ship_due_ms":432000000,"complaint_window_ms":259200000,"offer_due_ms":172800000}
    {"type":"opened","listing":"L2","seq":2,"at":10,"format":"english","seller":"sam","start":100,"opens_at":null,"closes_at":60000,"has_reserve":false,"buy_now":null,"increments":[[0,5],[100,25],[500,50],[2500,100],[10000,250],[25000,500],[50000,1000],[100000,2500],[250000,5000],[500000,10000]],"payment_due_ms":259200000,"ship_due_ms":432000000,"complaint_window_ms":259200000,"offer_due_ms":172800000,"ts":1795000000000}
    {"type":"opened","listing":"L3","seq":2,"at":10,"format":"sealed","seller":"sam","pricing":"second","start":1,"opens_at":null,"closes_at":9,"has_reserve":false,"payment_due_ms":259200000,"ship_due_ms":432000000,"complaint_window_ms":259200000,"offer_due_ms":172800000}
    {"type":"opened","listing":"L3","seq":2,"at":10,"format":"sealed","seller":"sam","pricing":"second","start":1,"opens_at":null,"closes_at":9,"has_reserve":false,"payment_due_ms":259200000,"ship_due_ms":432000000,"complaint_window_ms":259200000,"offer_due_ms":172800000,"ts":1795000000000}
    {"type":"opened","listing":"L4","seq":2,"at":10,"format":"dutch","seller":"sam","start":100,"floor":10,"step":5,"step_every_ms":1000,"quantity":3,"opens_at":4,"closes_at":99,"payment_due_ms":259200000,"ship_due_ms":432000000,"complaint_window_ms":259200000,"offer_due_ms":172800000}
    {"type":"opened","listing":"L4","seq":2,"at":10,"format":"dutch","seller":"sam","start":100,"floor":10,"step":5,"step_every_ms":1000,"quantity":3,"opens_at":4,"closes_at":99,"payment_due_ms":259200000,"ship_due_ms":432000000,"complaint_window_ms":259200000,"offer_due_ms":172800000,"ts":1795000000000}
    {"type":"opened","listing":"L5","seq":2,"at":10,"format":"market","seller":"sam","opens_at":4,"closes_at":null,"payment_due_ms":259200000,"ship_due_ms":432000000,"complaint_window_ms":259200000,"offer_due_ms":172800000}
    {"type":"opened","listing":"L5","seq":2,"at":10,"format":"market","seller":"sam","opens_at":4,"closes_at":null,"payment_due_ms":259200000,"ship_due_ms":432000000,"complaint_window_ms":259200000,"offer_due_ms":172800000,"ts":1795000000000}
    {"type":"bid_placed","listing":"L1","seq":3,"at":11,"price":1050,"leader":"bidder-3","bids":7,"closes_at":1000000000000,"reserve_met":true}
    {"type":"bid_placed","listing":"L1","seq":3,"at":11,"price":1050,"leader":"bidder-3","bids":7,"closes_at":1000000000000,"reserve_met":true,"ts":1795000000000}
    {"type":"bid_placed","listing":"L1","seq":3,"at":-11,"price":-9223372036854775808,"leader":"q\"uo\\te\n\u0001é","bids":0,"closes_at":9223372036854775807,"reserve_met":false}
    {"type":"bid_placed","listing":"L1","seq":3,"at":-11,"price":-9223372036854775808,"leader":"q\"uo\\te\n\u0001é","bids":0,"closes_at":9223372036854775807,"reserve_met":false,"ts":1795000000000}
    {"type":"bid_placed","listing":"L1","seq":18446744073709551615,"at":11,"bids":4}
    {"type":"bid_placed","listing":"L1","seq":18446744073709551615,"at":11,"bids":4,"ts":1795000000000}
    {"type":"outbid","listing":"L1","at":11,"bidder":"ann","price":55}
    {"type":"outbid","listing":"L1","at":11,"bidder":"ann","price":55,"ts":1795000000000}
    {"type":"extended","listing":"L1","seq":4,"at":11,"closes_at":77}
    {"type":"extended","listing":"L1","seq":4,"at":11,"closes_at":77,"ts":1795000000000}
    {"type":"price","listing":"L1","seq":5,"at":11,"price":88}
    {"type":"price","listing":"L1","seq":5,"at":11,"price":88,"ts":1795000000000}
    {"type":"filled","listing":"L1","seq":6,"at":11,"bidder":"ann","price":3,"quantity":2,"remaining":1}
    {"type":"filled","listing":"L1","seq":6,"at":11,"bidder":"ann","price":3,"quantity":2,"remaining":1,"ts":1795000000000}
    {"type":"closed","listing":"L1","seq":7,"at":11,"winner":"ann","price":9,"reserve_met":true}
    {"type":"closed","listing":"L1","seq":7,"at":11,"winner":"ann","price":9,"reserve_met":true,"ts":1795000000000}
    {"type":"closed","listing":"L1","seq":7,"at":11,"winner":null,"price":null,"reserve_met":false}
    {"type":"closed","listing":"L1","seq":7,"at":11,"winner":null,"price":null,"reserve_met":false,"ts":1795000000000}
    {"type":"closed","listing":"L1","seq":8,"at":11,"sold":2}
    {"type":"closed","listing":"L1","seq":8,"at":11,"sold":2,"ts":1795000000000}
    {"type":"closed","listing":"L1","seq":9,"at":11}
    {"type":"closed","listing":"L1","seq":9,"at":11,"ts":1795000000000}
    {"type":"order_placed","listing":"M","seq":10,"at":11,"order":"o1","trader":"t","side":"sell","price":5,"quantity":6}
    {"type":"order_placed","listing":"M","seq":10,"at":11,"order":"o1","trader":"t","side":"sell","price":5,"quantity":6,"ts":1795000000000}
    {"type":"order_cancelled","listing":"M","seq":11,"at":11,"order":"o1","trader":"t","reason":"self_trade","remaining":6}
    {"type":"order_cancelled","listing":"M","seq":11,"at":11,"order":"o1","trader":"t","reason":"self_trade","remaining":6,"ts":1795000000000}
    {"type":"trade","listing":"M","seq":12,"at":11,"buyer":"b","seller":"s","price":5,"quantity":1,"buy_order":"x","sell_order":"y"}
    {"type":"trade","listing":"M","seq":12,"at":11,"buyer":"b","seller":"s","price":5,"quantity":1,"buy_order":"x","sell_order":"y","ts":1795000000000}
    {"type":"book","listing":"M","seq":13,"at":11,"best_bid":4,"best_ask":null,"bid_quantity":3,"ask_quantity":null}
    {"type":"book","listing":"M","seq":13,"at":11,"best_bid":4,"best_ask":null,"bid_quantity":3,"ask_quantity":null,"ts":1795000000000}
    {"type":"listing_cancelled","listing":"M","seq":14,"at":11}
    {"type":"listing_cancelled","listing":"M","seq":14,"at":11,"ts":1795000000000}
    {"type":"result","id":"b1","ok":true}
    {"type":"result","id":"b1","ok":true,"ts":1795000000000}
    {"type":"result","id":null,"ok":true}
    {"type":"result","id":null,"ok":true,"ts":1795000000000}
    {"type":"result","id":"b2","ok":true,"duplicate":true,"price":550,"leading":false}
    {"type":"result","id":"b2","ok":true,"duplicate":true,"price":550,"leading":false,"ts":1795000000000}
    {"type":"result","id":"b3","ok":true,"filled":3,"remaining":0}
    {"type":"result","id":"b3","ok":true,"filled":3,"remaining":0,"ts":1795000000000}
    {"type":"result","id":"b4","ok":false,"error":"bid_too_low","message":"bid at least 1100","min_bid":1100}
    {"type":"result","id":"b4","ok":false,"error":"bid_too_low","message":"bid at least 1100","min_bid":1100,"ts":1795000000000}
    {"type":"result","id":"b\"5","ok":false,"error":"bad_request","message":"invalid JSON at byte 3: \"x\"\n\t"}
    {"type":"result","id":"b\"5","ok":false,"error":"bad_request","message":"invalid JSON at byte 3: \"x\"\n\t","ts":1795000000000}
    {"type":"result","id":"b6","ok":false,"error":"rate_limited","message":"slow down"}
    {"type":"result","id":"b6","ok":false,"error":"rate_limited","message":"slow down","ts":1795000000000}
    """#
