import GavelCore
import Testing

@testable import GavelWire

/// Decoding client lines into commands: every field, every default, and `bad_request` with the id echoed when it
/// could be read.
@Suite struct CommandDecoderTests {
    private func command(_ line: String, sourceLocation: SourceLocation = #_sourceLocation) -> (Command, Millis?)? {
        guard case .command(let command, let at) = CommandDecoder.decode(line: line) else {
            Issue.record(
                "expected a command from \(line), got \(CommandDecoder.decode(line: line))",
                sourceLocation: sourceLocation)
            return nil
        }
        return (command, at)
    }

    /// The id and message of an invalid line, or `nil` when the line decoded.
    private func invalid(_ line: String) -> (id: String?, message: String)? {
        guard case .invalid(let id, let message) = CommandDecoder.decode(line: line) else { return nil }
        return (id, message)
    }

    @Test func decodesTheSpecsExampleOpen() {
        let line =
            #"{"type":"open","id":"o1","listing":"L1","seller":"sam","format":"english","start":100,"closes_at":60000,"at":0}"#
        guard let (c, at) = command(line) else { return }
        #expect(at == 0)
        #expect(
            c
                == Command(
                    id: "o1", listing: "L1",
                    body: .open(seller: "sam", terms: .english(.init(start: 100, closesAt: 60_000)))))
    }

    @Test func decodesTheSpecsExampleBid() {
        guard let (c, at) = command(#"{"type":"bid","id":"b1","listing":"L1","bidder":"ann","amount":1000,"at":10}"#)
        else { return }
        #expect(at == 10)
        #expect(c == Command(id: "b1", listing: "L1", body: .bid(bidder: "ann", amount: 1000)))
    }

    @Test func atIsOptional() {
        guard let (_, at) = command(#"{"type":"bid","id":"b1","listing":"L1","bidder":"ann","amount":1000}"#)
        else { return }
        #expect(at == nil)
    }

    @Test func decodesEveryEnglishTerm() {
        let line = """
            {"type":"open","id":"o1","listing":"L","seller":"sam","format":"english","start":100,"reserve":500,\
            "buy_now":900,"closes_at":60000,"opens_at":10,"increments":[[0,5],[1000,50]],\
            "soft_close":{"window_ms":100,"extend_ms":200,"max_closes_at":70000}}
            """
        guard let (c, _) = command(line) else { return }
        let terms = ListingTerms.english(
            .init(
                start: 100, reserve: 500, buyNow: 900, closesAt: 60_000, opensAt: 10,
                increments: [IncrementStep(from: 0, step: 5), IncrementStep(from: 1000, step: 50)],
                softClose: SoftClose(windowMs: 100, extendMs: 200, maxClosesAt: 70_000)))
        #expect(c.body == .open(seller: "sam", terms: terms))
    }

    @Test func softCloseCapIsOptional() {
        let line = """
            {"type":"open","id":"o1","listing":"L","seller":"sam","format":"english","start":100,"closes_at":60000,\
            "soft_close":{"window_ms":100,"extend_ms":200}}
            """
        guard let (c, _) = command(line) else { return }
        guard case .open(_, .english(let t)) = c.body else {
            Issue.record("not an english open")
            return
        }
        #expect(t.softClose == SoftClose(windowMs: 100, extendMs: 200, maxClosesAt: nil))
    }

    @Test func decodesSealedDutchAndMarketTerms() {
        let sealed = command(
            #"{"type":"open","id":"o","listing":"S","seller":"s","format":"sealed","pricing":"second","start":5,"reserve":9,"closes_at":100}"#
        )
        #expect(
            sealed?.0.body
                == .open(seller: "s", terms: .sealed(.init(pricing: .second, start: 5, reserve: 9, closesAt: 100))))
        let dutch = command(
            #"{"type":"open","id":"o","listing":"D","seller":"s","format":"dutch","start":900,"floor":100,"step":50,"step_every_ms":1000,"quantity":7,"closes_at":100000,"opens_at":5}"#
        )
        #expect(
            dutch?.0.body
                == .open(
                    seller: "s",
                    terms: .dutch(
                        .init(
                            start: 900, floor: 100, step: 50, stepEveryMs: 1000, quantity: 7, closesAt: 100_000,
                            opensAt: 5))))
        let market = command(#"{"type":"open","id":"o","listing":"M","seller":"s","format":"market"}"#)
        #expect(market?.0.body == .open(seller: "s", terms: .market(.init())))
    }

    @Test func sealedNeedsAKnownPricing() {
        let missing = invalid(
            #"{"type":"open","id":"o","listing":"S","seller":"s","format":"sealed","start":5,"closes_at":100}"#)
        #expect(missing?.id == "o")
        #expect(missing?.message.contains("pricing") == true)
        let unknown = invalid(
            #"{"type":"open","id":"o","listing":"S","seller":"s","format":"sealed","pricing":"third","start":5,"closes_at":100}"#
        )
        #expect(unknown?.message.contains("pricing") == true)
    }

    @Test func unknownFormatIsInvalid() {
        let r = invalid(#"{"type":"open","id":"o","listing":"S","seller":"s","format":"reverse","closes_at":100}"#)
        #expect(r?.id == "o")
        #expect(r?.message.contains("format") == true)
    }

    @Test func malformedLadderOrSoftCloseIsInvalid() {
        let base = #"{"type":"open","id":"o","listing":"L","seller":"s","format":"english","start":1,"closes_at":9,"#
        #expect(invalid(base + #""increments":[[0,5,1]]}"#)?.id == "o")
        #expect(invalid(base + #""increments":[0,5]}"#) != nil)
        #expect(invalid(base + #""increments":[[0,1.5]]}"#) != nil)
        #expect(invalid(base + #""increments":{"0":5}}"#) != nil)
        #expect(invalid(base + #""soft_close":5}"#) != nil)
        #expect(invalid(base + #""soft_close":{"window_ms":100}}"#)?.message.contains("extend_ms") == true)
    }

    @Test func decodesBuyNowAcceptOrderCancelAndCancelListing() {
        #expect(
            command(#"{"type":"buy_now","id":"n","listing":"L","buyer":"ann"}"#)?.0.body == .buyNow(buyer: "ann"))
        #expect(
            command(#"{"type":"accept","id":"a","listing":"D","bidder":"ann","quantity":3}"#)?.0.body
                == .accept(bidder: "ann", quantity: 3))
        #expect(
            command(
                #"{"type":"order","id":"q","listing":"M","trader":"ann","side":"sell","price":100,"quantity":4,"tif":"ioc","expires_at":500}"#
            )?.0.body
                == .order(trader: "ann", side: .sell, price: 100, quantity: 4, tif: .ioc, expiresAt: 500))
        #expect(
            command(#"{"type":"cancel","id":"c","listing":"M","trader":"ann","order":"q"}"#)?.0.body
                == .cancel(trader: "ann", order: "q"))
        #expect(
            command(#"{"type":"cancel_listing","id":"x","listing":"L","seller":"sam"}"#)?.0.body
                == .cancelListing(seller: "sam"))
    }

    @Test func acceptQuantityDefaultsToOne() {
        #expect(
            command(#"{"type":"accept","id":"a","listing":"D","bidder":"ann"}"#)?.0.body
                == .accept(bidder: "ann", quantity: 1))
        #expect(
            command(#"{"type":"accept","id":"a","listing":"D","bidder":"ann","quantity":null}"#)?.0.body
                == .accept(bidder: "ann", quantity: 1))
    }

    @Test func orderTifDefaultsToGtcAndExpiryToNone() {
        #expect(
            command(#"{"type":"order","id":"q","listing":"M","trader":"ann","side":"buy","price":100,"quantity":4}"#)?
                .0.body == .order(trader: "ann", side: .buy, price: 100, quantity: 4, tif: .gtc, expiresAt: nil))
    }

    @Test func orderNeedsAKnownSideAndTif() {
        let base = #"{"type":"order","id":"q","listing":"M","trader":"ann","price":100,"quantity":4"#
        #expect(invalid(base + "}")?.message.contains("side") == true)
        #expect(invalid(base + #","side":"hold"}"#)?.message.contains("side") == true)
        #expect(invalid(base + #","side":"BUY"}"#) != nil)
        #expect(invalid(base + #","side":"buy","tif":"fok"}"#)?.message.contains("tif") == true)
        #expect(invalid(base + #","side":"buy","expires_at":1.5}"#)?.id == "q")
    }

    @Test func missingFieldIsInvalidWithTheIdEchoed() {
        let r = invalid(#"{"type":"bid","id":"b1","listing":"L","amount":100}"#)
        #expect(r?.id == "b1")
        #expect(r?.message.contains("bidder") == true)
        #expect(invalid(#"{"type":"bid","id":"b1","bidder":"ann","amount":100}"#)?.id == "b1")
        #expect(invalid(#"{"type":"bid","id":"b1","listing":"L","bidder":"ann"}"#)?.message.contains("amount") == true)
        #expect(
            invalid(#"{"type":"cancel","id":"c1","listing":"M","trader":"ann"}"#)?.message.contains("order") == true)
    }

    @Test func nullCountsAsMissing() {
        let r = invalid(#"{"type":"bid","id":"b1","listing":"L","bidder":null,"amount":100}"#)
        #expect(r?.id == "b1")
        #expect(r?.message.contains("missing") == true)
    }

    @Test func mistypedFieldIsInvalidWithTheIdEchoed() {
        let amountString = invalid(#"{"type":"bid","id":"b1","listing":"L","bidder":"ann","amount":"100"}"#)
        #expect(amountString?.id == "b1")
        #expect(amountString?.message.contains("amount") == true)
        #expect(invalid(#"{"type":"bid","id":"b1","listing":"L","bidder":7,"amount":100}"#)?.id == "b1")
        #expect(invalid(#"{"type":"bid","id":"b1","listing":["L"],"bidder":"ann","amount":100}"#)?.id == "b1")
        #expect(invalid(#"{"type":"bid","id":"b1","listing":"L","bidder":"ann","amount":true}"#)?.id == "b1")
        #expect(invalid(#"{"type":"bid","id":"b1","listing":"L","bidder":"ann","amount":100,"at":"5"}"#)?.id == "b1")
    }

    @Test func fractionalTimesAreInvalid() {
        let r = invalid(
            #"{"type":"open","id":"o1","listing":"L","seller":"s","format":"english","start":1,"closes_at":1.5}"#)
        #expect(r?.id == "o1")
        #expect(r?.message.contains("closes_at") == true)
        #expect(invalid(#"{"type":"bid","id":"b1","listing":"L","bidder":"ann","amount":100,"at":1.5}"#)?.id == "b1")
    }

    @Test func fractionalAmountDecodesToZeroSoTheRulesSayInvalidAmount() {
        guard let (c, _) = command(#"{"type":"bid","id":"b1","listing":"L","bidder":"ann","amount":1.5}"#)
        else { return }
        #expect(c.body == .bid(bidder: "ann", amount: 0))
        let engine = Engine()
        var events: [Event] = []
        _ = engine.apply(
            Command(id: "o", listing: "L", body: .open(seller: "sam", terms: .english(.init(start: 1, closesAt: 9)))),
            events: &events)
        #expect(engine.apply(c, events: &events).error == .invalidAmount)
    }

    @Test func hugeOrExponentAmountsDecodeToZero() {
        #expect(
            command(#"{"type":"bid","id":"b","listing":"L","bidder":"a","amount":99999999999999999999}"#)?.0.body
                == .bid(bidder: "a", amount: 0))
        #expect(
            command(#"{"type":"bid","id":"b","listing":"L","bidder":"a","amount":1e3}"#)?.0.body
                == .bid(bidder: "a", amount: 0))
        #expect(
            command(#"{"type":"order","id":"q","listing":"M","trader":"a","side":"buy","price":1.25,"quantity":2.5}"#)?
                .0.body == .order(trader: "a", side: .buy, price: 0, quantity: 0, tif: .gtc, expiresAt: nil))
    }

    @Test func fractionalQuantityDecodesToZeroSoTheRulesSayInvalidQuantity() {
        guard let (c, _) = command(#"{"type":"accept","id":"a","listing":"D","bidder":"ann","quantity":1.5}"#)
        else { return }
        #expect(c.body == .accept(bidder: "ann", quantity: 0))
        let engine = Engine()
        var events: [Event] = []
        _ = engine.apply(
            Command(
                id: "o", listing: "D",
                body: .open(
                    seller: "sam",
                    terms: .dutch(.init(start: 9, floor: 1, step: 1, stepEveryMs: 10, quantity: 3, closesAt: 99)))),
            events: &events)
        #expect(engine.apply(c, events: &events).error == .invalidQuantity)
    }

    @Test func negativeAmountsDecodeAsTheyAreForTheRulesToReject() {
        #expect(
            command(#"{"type":"bid","id":"b","listing":"L","bidder":"a","amount":-5}"#)?.0.body
                == .bid(bidder: "a", amount: -5))
    }

    @Test func unknownTypeIsInvalidWithTheIdEchoed() {
        let r = invalid(#"{"type":"teleport","id":"t1","listing":"L"}"#)
        #expect(r?.id == "t1")
        #expect(r?.message.contains("teleport") == true)
    }

    @Test func anUnknownTypeIsShownEscapedAndCutToFortyCharacters() {
        let long = String(repeating: "x", count: 10_000)
        let message = invalid(#"{"type":""# + long + #"","id":"t1","listing":"L"}"#)?.message ?? ""
        #expect(message.hasPrefix("unknown type \"" + String(repeating: "x", count: 40) + "…\"; expected open"))
        #expect(message.count < 400)
        #expect(
            invalid(#"{"type":"a\"b\\c","id":"t1","listing":"L"}"#)?.message.hasPrefix(#"unknown type "a\"b\\c";"#)
                == true)
    }

    @Test func unknownTypeListsEveryTypeInTheProtocolsOrder() {
        #expect(
            invalid(#"{"type":"teleport","id":"t1","listing":"L"}"#)?.message
                == #"unknown type "teleport"; expected open, bid, buy_now, accept, order, cancel, cancel_listing, "#
                + "confirm_payment, mark_shipped, confirm_delivery, open_dispute, resolve_dispute, refund, "
                + "offer_second_chance, accept_offer, decline_offer or advance")
        // The listing is read before the type is found unknown.
        #expect(
            invalid(#"{"type":"teleport","id":"t1","listing":"L L"}"#)?.message
                == "listing must be an identifier: 1-64 characters from [A-Za-z0-9_.:-]")
    }

    @Test func everyCommandKindNamesItsActorRolesAndFamily() {
        let table: [(CommandKind, String, String?, trading: Bool, settlement: Bool)] = [
            (.open, "seller", nil, true, false), (.bid, "bidder", nil, true, false),
            (.buyNow, "buyer", "bidder", true, false), (.accept, "bidder", "buyer", true, false),
            (.order, "trader", nil, true, false), (.cancel, "trader", nil, true, false),
            (.cancelListing, "seller", nil, false, false), (.confirmPayment, "by", nil, false, true),
            (.markShipped, "by", nil, false, true), (.confirmDelivery, "by", nil, false, true),
            (.openDispute, "by", nil, false, true), (.resolveDispute, "by", nil, false, true),
            (.refund, "by", nil, false, true), (.offerSecondChance, "by", nil, false, true),
            (.acceptOffer, "by", nil, false, true), (.declineOffer, "by", nil, false, true),
        ]
        #expect(table.map(\.0) == CommandKind.allCases)
        for (kind, field, alias, trading, settlement) in table {
            #expect(kind.actorField == field && kind.actorAlias == alias, "\(kind)")
            #expect(kind.isTrading == trading && kind.isSettlement == settlement, "\(kind)")
            #expect(kind.mayBeSent(by: .bidder) == (kind != .open && kind != .cancelListing), "\(kind)")
            #expect(kind.mayBeSent(by: .admin) == !trading, "\(kind)")
            #expect(kind.mayBeSent(by: .seller) && kind.mayBeSent(by: .service), "\(kind)")
            #expect(CommandKind(rawValue: kind.wireName) == kind)
        }
        #expect(CommandKind.allCases.compactMap(\.offerAction) == OfferAction.allCases)
        #expect(OfferAction.allCases.allSatisfy { $0.kind.rawValue == $0.rawValue })
    }

    @Test func missingOrMistypedTypeIsInvalidWithTheIdEchoed() {
        #expect(invalid(#"{"id":"t1","listing":"L"}"#)?.id == "t1")
        #expect(invalid(#"{"type":5,"id":"t1","listing":"L"}"#)?.id == "t1")
    }

    @Test func missingOrMistypedIdIsInvalidWithoutAnId() {
        let missing = invalid(#"{"type":"bid","listing":"L","bidder":"ann","amount":100}"#)
        #expect(missing != nil)
        #expect(missing?.id == nil)
        #expect(missing?.message.contains("id") == true)
        let number = invalid(#"{"type":"bid","id":7,"listing":"L","bidder":"ann","amount":100}"#)
        #expect(number?.id == nil)
        #expect(number?.message.contains("id must be a string") == true)
    }

    @Test func malformedJSONIsInvalidWithoutAnId() {
        let r = invalid(#"{"type":"bid","id":"b1","listing":"L""#)
        #expect(r?.id == nil)
        #expect(r?.message.contains("invalid JSON") == true)
    }

    @Test func nonObjectsAreInvalid() {
        #expect(invalid("[1,2]")?.message.contains("an array") == true)
        #expect(invalid("42") != nil)
        #expect(invalid(#""bid""#) != nil)
        #expect(invalid("null") != nil)
    }

    @Test func advanceNeedsOnlyAt() {
        #expect(CommandDecoder.decode(line: #"{"type":"advance","at":5000}"#) == .advance(at: 5000))
        #expect(CommandDecoder.decode(line: #"{"type":"advance","at":5000,"id":"x"}"#) == .advance(at: 5000))
        #expect(invalid(#"{"type":"advance"}"#)?.message.contains("at") == true)
        #expect(invalid(#"{"type":"advance","at":1.5}"#) != nil)
        #expect(invalid(#"{"type":"advance","at":"5"}"#) != nil)
    }

    @Test func buyerAndBidderAreAliasesForBuyNowAndAccept() {
        #expect(
            command(#"{"type":"buy_now","id":"n","listing":"L","bidder":"ann"}"#)?.0.body == .buyNow(buyer: "ann"))
        #expect(
            command(#"{"type":"accept","id":"a","listing":"D","buyer":"ann"}"#)?.0.body
                == .accept(bidder: "ann", quantity: 1))
        #expect(invalid(#"{"type":"buy_now","id":"n","listing":"L"}"#)?.message.contains("buyer") == true)
    }

    @Test func unknownExtraFieldsAreIgnored() {
        #expect(
            command(#"{"type":"bid","id":"b","listing":"L","bidder":"a","amount":5,"note":{"x":[1]}}"#)?.0.body
                == .bid(bidder: "a", amount: 5))
    }

    @Test func identifiersAreCheckedAgainstTheRuleAfterEscapesDecode() {
        guard let (c, _) = command(#"{"type":"bid","id":"b\u0031","listing":"L","bidder":"a","amount":5}"#)
        else { return }
        #expect(c.id == "b1")
        // A character outside [A-Za-z0-9_.:-], escaped or not, or more than 64 of them: refused by the decoder,
        // naming the field, before the command can reach a queue or the journal.
        for (line, field) in [
            (#"{"type":"bid","id":"b","listing":"L","bidder":"a\u0020b","amount":5}"#, "bidder"),
            (
                #"{"type":"bid","id":"b","listing":"\#(String(repeating: "L", count: 65))","bidder":"a","amount":5}"#,
                "listing"
            ),
            (#"{"type":"cancel","id":"c","listing":"M","trader":"t","order":"o/1"}"#, "order"),
        ] {
            #expect(invalid(line)?.message == "\(field) must be an identifier: 1-64 characters from [A-Za-z0-9_.:-]")
        }
        let ladder = (0..<65).map { "[\($0 * 10),1]" }.joined(separator: ",")
        let open =
            #"{"type":"open","id":"o","listing":"L","seller":"s","format":"english","start":1,"closes_at":9,"increments":[\#(ladder)]}"#
        #expect(invalid(open)?.message == "increments may have at most 64 [from, step] pairs")
    }
}
