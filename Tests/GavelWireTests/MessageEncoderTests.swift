import GavelCore
import Testing

@testable import GavelWire

/// The JSON the protocol writes: results, events with the spec's field names, and string escaping.
@Suite struct MessageEncoderTests {
    private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    private func keys(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> [String] {
        guard case .object(let members)? = try? JSONParser.parse(bytes) else {
            Issue.record("not a JSON object: \(text(bytes))", sourceLocation: sourceLocation)
            return []
        }
        return members.map(\.key)
    }

    private func event(_ kind: EventKind, seq: UInt64 = 3) -> [UInt8] {
        MessageEncoder.event(Event(listing: "L", seq: seq, at: 42, kind: kind))
    }

    // MARK: - Results

    @Test func acceptedResultIsMinimal() {
        #expect(text(MessageEncoder.result(id: "b1", .accepted)) == #"{"type":"result","id":"b1","ok":true}"#)
    }

    @Test func acceptedBidResultCarriesPriceAndLeading() {
        let r = CommandResult(error: nil, message: "", price: 550, leading: false)
        #expect(
            text(MessageEncoder.result(id: "b2", r))
                == #"{"type":"result","id":"b2","ok":true,"price":550,"leading":false}"#)
    }

    @Test func acceptedFillResultCarriesFilledAndRemaining() {
        let r = CommandResult(error: nil, message: "", price: 800, filled: 2, remaining: 3)
        #expect(
            text(MessageEncoder.result(id: "a1", r))
                == #"{"type":"result","id":"a1","ok":true,"price":800,"filled":2,"remaining":3}"#)
    }

    @Test func rejectionCarriesErrorMessageAndMinBid() {
        let r = CommandResult.rejected(.bidTooLow, "the minimum bid is 125", minBid: 125)
        #expect(
            text(MessageEncoder.result(id: "b3", r))
                == #"{"type":"result","id":"b3","ok":false,"error":"bid_too_low","message":"the minimum bid is 125","min_bid":125}"#
        )
    }

    @Test func rejectionWithoutMinBidHasNoMinBid() {
        let bytes = MessageEncoder.result(id: "b3", .rejected(.listingClosed, "closed"))
        #expect(keys(bytes) == ["type", "id", "ok", "error", "message"])
    }

    @Test func duplicateIsFlagged() {
        var r = CommandResult.accepted
        r.duplicate = true
        #expect(
            text(MessageEncoder.result(id: "b1", r)) == #"{"type":"result","id":"b1","ok":true,"duplicate":true}"#)
    }

    @Test func unreadableIdIsNull() {
        #expect(
            text(MessageEncoder.badRequest(id: nil, message: "bad"))
                == #"{"type":"result","id":null,"ok":false,"error":"bad_request","message":"bad"}"#)
    }

    @Test func errorCodesAreTheSpecsCodes() {
        let codes = ErrorCode.allCases.map(\.rawValue)
        for code in [
            "bad_request", "unknown_listing", "listing_exists", "not_open", "listing_closed", "invalid_amount",
            "invalid_quantity", "unsupported", "bid_too_low", "seller_cannot_bid", "buy_now_unavailable", "not_owner",
            "listing_has_bids", "unknown_order", "idempotency_conflict",
        ] {
            #expect(codes.contains(code), "\(code)")
        }
    }

    // MARK: - Escaping

    @Test func stringsAreEscaped() {
        var bytes: [UInt8] = []
        JSONObjectWriter.appendString("q\"b\\n\nr\rt\t\u{01}\u{1F}/\u{7F}\u{e9}\u{1F600}", to: &bytes)
        #expect(text(bytes) == "\"q\\\"b\\\\n\\nr\\rt\\t\\u0001\\u001f/\u{7F}\u{e9}\u{1F600}\"")
    }

    @Test func everyControlCharacterIsEscapedAndRoundTrips() throws {
        let all = String(decoding: (0..<0x20).map { UInt8($0) }, as: UTF8.self) + "\"\\end"
        let bytes = MessageEncoder.badRequest(id: "x", message: all)
        #expect(!bytes.contains { $0 < 0x20 }, "no raw control byte in the output")
        #expect(try JSONParser.parse(bytes)["message"] == .string(all))
    }

    @Test func messagesWithQuotesStayOneValidLine() throws {
        let message = #"unknown type "te\st"; expected open"#
        let bytes = MessageEncoder.badRequest(id: "a\"b", message: message)
        #expect(!bytes.contains(0x0A))
        let value = try JSONParser.parse(bytes)
        #expect(value["id"] == .string("a\"b"))
        #expect(value["message"] == .string(message))
    }

    @Test func negativeAndExtremeIntegersAreWrittenExactly() throws {
        var w = JSONObjectWriter()
        w.field("a", Int64.min)
        w.field("b", Int64.max)
        w.field("c", Int64(0))
        w.field("d", Int64(-7))
        w.field("e", UInt64.max)
        #expect(
            w.finishString()
                == #"{"a":-9223372036854775808,"b":9223372036854775807,"c":0,"d":-7,"e":18446744073709551615}"#)
    }

    // MARK: - Events

    @Test func bidPlacedHasTheSpecsFields() {
        let bytes = event(.bidPlaced(price: 100, leader: "ann", bids: 1, closesAt: 60_000, reserveMet: true), seq: 2)
        #expect(
            text(bytes)
                == #"{"type":"bid_placed","listing":"L","seq":2,"at":42,"price":100,"leader":"ann","bids":1,"closes_at":60000,"reserve_met":true}"#
        )
    }

    @Test func sealedBidPlacedShowsOnlyTheCount() {
        #expect(keys(event(.sealedBidPlaced(bids: 4))) == ["type", "listing", "seq", "at", "bids"])
        #expect(text(event(.sealedBidPlaced(bids: 4))).hasPrefix(#"{"type":"bid_placed""#))
    }

    @Test func outbidHasNoSeq() {
        let bytes = event(.outbid(bidder: "bob", price: 550), seq: 0)
        #expect(text(bytes) == #"{"type":"outbid","listing":"L","at":42,"bidder":"bob","price":550}"#)
    }

    @Test func everyPublicEventHasTypeListingAndSeq() {
        let kinds: [EventKind] = [
            .opened(seller: "s", terms: .market(.init())),
            .bidPlaced(price: 1, leader: "a", bids: 1, closesAt: 2, reserveMet: true),
            .sealedBidPlaced(bids: 1), .extended(closesAt: 5), .price(9),
            .filled(bidder: "a", price: 1, quantity: 1, remaining: 0),
            .closed(winner: nil, price: nil, reserveMet: false),
            .dutchClosed(sold: 1), .marketClosed,
            .orderPlaced(order: "o", trader: "t", side: .buy, price: 1, quantity: 1),
            .orderCancelled(order: "o", trader: "t", reason: .ioc, remaining: 1),
            .trade(buyer: "b", seller: "s", price: 1, quantity: 1, buyOrder: "x", sellOrder: "y"),
            .book(bestBid: nil, bestAsk: nil, bidQuantity: nil, askQuantity: nil), .listingCancelled,
        ]
        for kind in kinds {
            let k = keys(event(kind, seq: 9))
            #expect(Array(k.prefix(3)) == ["type", "listing", "seq"], "\(kind)")
        }
    }

    @Test func eventTypeNamesAreTheSpecsNames() {
        #expect(EventKind.extended(closesAt: 1).typeName == "extended")
        #expect(EventKind.price(1).typeName == "price")
        #expect(EventKind.dutchClosed(sold: 1).typeName == "closed")
        #expect(EventKind.marketClosed.typeName == "closed")
        #expect(EventKind.listingCancelled.typeName == "listing_cancelled")
        #expect(
            EventKind.orderCancelled(order: "o", trader: "t", reason: .expired, remaining: 1).typeName
                == "order_cancelled")
    }

    @Test func extendedPriceAndFilledFields() {
        #expect(
            text(event(.extended(closesAt: 66_000)))
                == #"{"type":"extended","listing":"L","seq":3,"at":42,"closes_at":66000}"#)
        #expect(text(event(.price(900))) == #"{"type":"price","listing":"L","seq":3,"at":42,"price":900}"#)
        #expect(
            text(event(.filled(bidder: "ann", price: 800, quantity: 2, remaining: 3)))
                == #"{"type":"filled","listing":"L","seq":3,"at":42,"bidder":"ann","price":800,"quantity":2,"remaining":3}"#
        )
    }

    @Test func closedWithoutWinnerHasNulls() {
        #expect(
            text(event(.closed(winner: nil, price: nil, reserveMet: false)))
                == #"{"type":"closed","listing":"L","seq":3,"at":42,"winner":null,"price":null,"reserve_met":false}"#)
        #expect(
            text(event(.closed(winner: "ann", price: 550, reserveMet: true)))
                == #"{"type":"closed","listing":"L","seq":3,"at":42,"winner":"ann","price":550,"reserve_met":true}"#)
    }

    @Test func dutchClosedCarriesSold() {
        #expect(text(event(.dutchClosed(sold: 5))) == #"{"type":"closed","listing":"L","seq":3,"at":42,"sold":5}"#)
    }

    @Test func marketEventFields() {
        #expect(
            text(event(.orderPlaced(order: "q1", trader: "sue", side: .sell, price: 100, quantity: 10)))
                == #"{"type":"order_placed","listing":"L","seq":3,"at":42,"order":"q1","trader":"sue","side":"sell","price":100,"quantity":10}"#
        )
        let cancelled = event(.orderCancelled(order: "q1", trader: "sue", reason: .selfTrade, remaining: 4))
        #expect(text(cancelled).contains(#""order":"q1""#))
        #expect(text(cancelled).contains(#""reason":"self_trade""#))
        #expect(
            text(event(.trade(buyer: "bob", seller: "sue", price: 100, quantity: 4, buyOrder: "b1", sellOrder: "q1")))
                == #"{"type":"trade","listing":"L","seq":3,"at":42,"buyer":"bob","seller":"sue","price":100,"quantity":4,"buy_order":"b1","sell_order":"q1"}"#
        )
        #expect(
            text(event(.book(bestBid: nil, bestAsk: 100, bidQuantity: nil, askQuantity: 6)))
                == #"{"type":"book","listing":"L","seq":3,"at":42,"best_bid":null,"best_ask":100,"bid_quantity":null,"ask_quantity":6}"#
        )
    }

    @Test func cancelReasonsAreTheSpecsReasons() {
        #expect(
            [CancelReason.cancelled, .ioc, .selfTrade, .expired, .closed].map(\.rawValue)
                == ["cancelled", "ioc", "self_trade", "expired", "closed"])
    }

    @Test func listingCancelledHasNoExtraFields() {
        #expect(text(event(.listingCancelled)) == #"{"type":"listing_cancelled","listing":"L","seq":3,"at":42}"#)
    }

    @Test func openedNeverShowsTheReserveAmount() throws {
        let english = event(
            .opened(
                seller: "sam",
                terms: .english(.init(start: 100, reserve: 7777, buyNow: 9000, closesAt: 60_000, opensAt: 0))),
            seq: 1)
        #expect(!text(english).contains("7777"))
        let value = try JSONParser.parse(english)
        #expect(value["reserve"] == nil)
        #expect(value["has_reserve"] == .bool(true))
        #expect(value["buy_now"] == .integer(9000))
        #expect(value["format"] == .string("english"))
        #expect(value["seller"] == .string("sam"))
        let sealed = event(
            .opened(seller: "sam", terms: .sealed(.init(pricing: .second, start: 5, reserve: 6543, closesAt: 99))),
            seq: 1)
        #expect(!text(sealed).contains("6543"))
        #expect(try JSONParser.parse(sealed)["has_reserve"] == .bool(true))
        #expect(try JSONParser.parse(sealed)["pricing"] == .string("second"))
    }

    @Test func openedShowsTheLadderInUseAndSoftClose() throws {
        let bytes = event(
            .opened(
                seller: "s",
                terms: .english(
                    .init(
                        start: 1, closesAt: 9, opensAt: 0, increments: [IncrementStep(from: 0, step: 3)],
                        softClose: SoftClose(windowMs: 10, extendMs: 20, maxClosesAt: nil)))), seq: 1)
        let value = try JSONParser.parse(bytes)
        #expect(value["increments"] == .array([.array([.integer(0), .integer(3)])]))
        #expect(value["soft_close"]?["window_ms"] == .integer(10))
        #expect(value["soft_close"]?["extend_ms"] == .integer(20))
        #expect(value["soft_close"]?["max_closes_at"] == .null)
    }

    @Test func openedDutchShowsItsClock() throws {
        let bytes = event(
            .opened(
                seller: "s",
                terms: .dutch(
                    .init(
                        start: 900, floor: 100, step: 50, stepEveryMs: 1000, quantity: 7, closesAt: 99_000, opensAt: 0))
            ),
            seq: 1)
        #expect(
            keys(bytes) == [
                "type", "listing", "seq", "at", "format", "seller", "start", "floor", "step", "step_every_ms",
                "quantity",
                "opens_at", "closes_at", "payment_due_ms", "ship_due_ms", "complaint_window_ms", "offer_due_ms",
            ])
    }

    @Test func openedShowsTheEffectiveSettlementDeadlines() throws {
        let given = SettlementDeadlines(shipDueMs: 1000, offerDueMs: 5)
        let value = try JSONParser.parse(event(.opened(seller: "s", terms: .market(.init(deadlines: given))), seq: 1))
        #expect(value["payment_due_ms"] == .integer(259_200_000))
        #expect(value["ship_due_ms"] == .integer(1000))
        #expect(value["complaint_window_ms"] == .integer(259_200_000))
        #expect(value["offer_due_ms"] == .integer(5))
    }

    @Test func eventsWithUserStringsAreEscaped() throws {
        let bytes = event(.outbid(bidder: "we\"ird\\", price: 1), seq: 0)
        #expect(try JSONParser.parse(bytes)["bidder"] == .string("we\"ird\\"))
    }
}
