import Testing

@testable import GavelCore

/// Rules shared by every format: opening, validation, cancel_listing, opens_at, closing, unknown listings, commands
/// a format does not take, invalid amounts and quantities, identifiers and `seq`.
@Suite struct OpenValidationTests {
    static let allFormats: [ListingTerms] = [
        Terms.english(), Terms.sealed(), Terms.dutch(), Terms.market(closesAt: 60_000),
    ]

    @Test(arguments: allFormats)
    func openEmitsOpenedWithSeqOne(terms: ListingTerms) {
        let h = Harness()
        let r = h.open(seller: "sam", terms, at: 0)
        #expect(r.ok)
        #expect(h.events.count == 1)
        #expect(h.events.first?.seq == 1)
        guard case .opened(let seller, let opened)? = h.events.first?.kind else {
            Issue.record("expected opened, got \(h.kinds)")
            return
        }
        #expect(seller == "sam")
        #expect(opened.format == terms.format)
        #expect(h.status() == .open)
    }

    @Test func openedTermsCarryTheResolvedOpensAt() {
        let h = Harness()
        h.advance(to: 1234)
        h.open(Terms.english(closesAt: 60_000))
        #expect(h.kinds == [.opened(seller: "sam", terms: Terms.english(closesAt: 60_000, opensAt: 1234))])
    }

    @Test(arguments: allFormats)
    func openingAnExistingListingIsListingExists(terms: ListingTerms) {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        let r = h.open(seller: "sue", terms)
        #expect(r.error == .listingExists)
        #expect(h.events.isEmpty)
        #expect(h.listing("L")?.seller == "sam")
    }

    @Test func closesAtNotAfterOpensAtIsBadRequest() {
        let h = Harness()
        #expect(h.open("A", Terms.english(closesAt: 500, opensAt: 500), at: 0).error == .badRequest)
        #expect(h.open("B", Terms.sealed(closesAt: 400, opensAt: 500), at: 0).error == .badRequest)
        #expect(h.open("C", Terms.dutch(closesAt: 500, opensAt: 500), at: 0).error == .badRequest)
        #expect(h.open("D", Terms.market(closesAt: 500, opensAt: 600), at: 0).error == .badRequest)
        #expect(h.open("E", Terms.english(closesAt: 501, opensAt: 500), at: 0).ok)
        #expect(h.engine.listingCount == 1)
    }

    @Test func closesAtNotAfterNowIsBadRequestWhenOpensAtDefaultsToNow() {
        let h = Harness()
        h.advance(to: 1000)
        #expect(h.open("A", Terms.english(closesAt: 1000)).error == .badRequest)
        #expect(h.open("B", Terms.english(closesAt: 1001)).ok)
    }

    @Test func marketWithoutClosesAtNeverCloses() {
        let h = Harness()
        h.open("M", Terms.market(), at: 0)
        h.advance(to: Int64.max)
        #expect(h.events.isEmpty)
        #expect(h.status("M") == .open)
    }

    /// At the end of the clock a listing's retention never ends: it stays, and its id may not be opened again.
    @Test func aListingEndedAtTheEndOfTheClockIsNeverEvicted() {
        let h = Harness()
        h.advance(to: Int64.max)
        #expect(h.open("L", Terms.market()).ok)
        #expect(h.cancelListing("sam").ok)
        #expect(h.advance(to: Int64.max))
        #expect(h.open("L", Terms.market(), at: Int64.max).error == .listingExists)
        #expect(h.status("L") == .cancelled)
    }

    @Test(arguments: [Int64(0), -1, Limits.maxAmount + 1])
    func invalidStartIsInvalidAmount(start: Money) {
        let h = Harness()
        #expect(h.open("A", Terms.english(start: start), at: 0).error == .invalidAmount)
        #expect(h.open("B", Terms.sealed(start: start), at: 0).error == .invalidAmount)
        #expect(h.open("C", Terms.dutch(start: start, floor: 1), at: 0).error == .invalidAmount)
        #expect(h.engine.listingCount == 0)
    }

    @Test func invalidOptionalAmountsAreInvalidAmount() {
        let h = Harness()
        #expect(h.open("A", Terms.english(reserve: 0), at: 0).error == .invalidAmount)
        #expect(h.open("B", Terms.english(buyNow: -5), at: 0).error == .invalidAmount)
        #expect(h.open("C", Terms.sealed(reserve: Limits.maxAmount + 1), at: 0).error == .invalidAmount)
        #expect(h.open("D", Terms.dutch(floor: 0), at: 0).error == .invalidAmount)
        #expect(h.open("E", Terms.dutch(step: 0), at: 0).error == .invalidAmount)
    }

    @Test func largestAmountIsAccepted() {
        let h = Harness()
        #expect(h.open(Terms.english(start: Limits.maxAmount), at: 0).ok)
        #expect(h.bid("ann", Limits.maxAmount).ok)
    }

    @Test func dutchQuantityMustBeAPositiveInteger() {
        let h = Harness()
        #expect(h.open("A", Terms.dutch(quantity: 0), at: 0).error == .invalidQuantity)
        #expect(h.open("B", Terms.dutch(quantity: Limits.maxAmount + 1), at: 0).error == .invalidQuantity)
        #expect(h.open("C", Terms.dutch(quantity: 1), at: 0).ok)
    }

    @Test func inconsistentTermsAreBadRequest() {
        let h = Harness()
        #expect(h.open("A", Terms.english(start: 500, reserve: 400), at: 0).error == .badRequest)
        #expect(h.open("B", Terms.english(start: 500, buyNow: 400), at: 0).error == .badRequest)
        #expect(h.open("C", Terms.sealed(start: 500, reserve: 499), at: 0).error == .badRequest)
        #expect(h.open("D", Terms.dutch(start: 500, floor: 501), at: 0).error == .badRequest)
        #expect(h.open("E", Terms.dutch(stepEveryMs: 0), at: 0).error == .badRequest)
        #expect(h.engine.listingCount == 0)
    }

    @Test func incrementLadderMustStartAtZeroAndAscend() {
        let h = Harness()
        let notFromZero = [IncrementStep(from: 10, step: 5)]
        let descending = [
            IncrementStep(from: 0, step: 5), IncrementStep(from: 100, step: 10), .init(from: 50, step: 1),
        ]
        let repeated = [IncrementStep(from: 0, step: 5), IncrementStep(from: 0, step: 10)]
        let zeroStep = [IncrementStep(from: 0, step: 0)]
        #expect(h.open("A", Terms.english(increments: []), at: 0).error == .badRequest)
        #expect(h.open("B", Terms.english(increments: notFromZero), at: 0).error == .badRequest)
        #expect(h.open("C", Terms.english(increments: descending), at: 0).error == .badRequest)
        #expect(h.open("D", Terms.english(increments: repeated), at: 0).error == .badRequest)
        #expect(h.open("E", Terms.english(increments: zeroStep), at: 0).error == .badRequest)
        #expect(h.open("F", Terms.english(increments: [IncrementStep(from: 0, step: 1)]), at: 0).ok)
    }

    @Test func softCloseNeedsPositiveWindowAndExtensionAndACapNotBeforeTheClose() {
        let h = Harness()
        let noWindow = SoftClose(windowMs: 0, extendMs: 10, maxClosesAt: nil)
        let noExtend = SoftClose(windowMs: 10, extendMs: 0, maxClosesAt: nil)
        let earlyCap = SoftClose(windowMs: 10, extendMs: 10, maxClosesAt: 59_999)
        #expect(h.open("A", Terms.english(softClose: noWindow), at: 0).error == .badRequest)
        #expect(h.open("B", Terms.english(softClose: noExtend), at: 0).error == .badRequest)
        #expect(h.open("C", Terms.english(softClose: earlyCap), at: 0).error == .badRequest)
    }

    @Test(arguments: ["", String(repeating: "x", count: 65), "has space", "semi;colon", "caf\u{e9}", "a/b"])
    func malformedIdentifiersAreBadRequest(identifier: String) {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        #expect(h.open(identifier, Terms.english()).error == .badRequest)
        #expect(h.open("ok", seller: identifier, Terms.english()).error == .badRequest)
        #expect(h.bid(identifier, 500).error == .badRequest)
        #expect(h.bid("ann", 500, id: identifier).error == .badRequest)
        #expect(h.cancel("ann", order: identifier).error == .badRequest)
        #expect(h.english()?.leader == nil)
    }

    @Test func identifierOfSixtyFourAllowedCharactersIsAccepted() {
        let h = Harness()
        let id = "Az09_.:-" + String(repeating: "q", count: 56)
        #expect(id.utf8.count == 64)
        #expect(h.open(id, seller: id, Terms.english(), at: 0, id: id).ok)
        #expect(h.bid("ann", 100, on: id, id: id).ok)
    }
}

@Suite struct OpeningTimeTests {
    @Test func bidBeforeOpensAtIsNotOpen() {
        let h = Harness()
        h.open(Terms.english(opensAt: 1000), at: 0)
        let r = h.bid("ann", 500, at: 999)
        #expect(r.error == .notOpen)
        #expect(h.events.isEmpty)
        #expect(h.bid("ann", 500, at: 1000).ok)
    }

    @Test func sealedBidBeforeOpensAtIsNotOpen() {
        let h = Harness()
        h.open(Terms.sealed(opensAt: 1000), at: 0)
        #expect(h.bid("ann", 500, at: 10).error == .notOpen)
    }

    @Test func openListingMayBeCancelledBeforeItOpens() {
        let h = Harness()
        h.open(Terms.english(opensAt: 1000), at: 0)
        #expect(h.cancelListing("sam").ok)
    }
}

@Suite struct ClosedAndUnknownListingTests {
    @Test func everyCommandOnAnUnknownListingIsUnknownListing() {
        let h = Harness()
        #expect(h.bid("ann", 100, on: "nope").error == .unknownListing)
        #expect(h.buyNow("ann", on: "nope").error == .unknownListing)
        #expect(h.accept("ann", on: "nope").error == .unknownListing)
        #expect(h.order("ann", .buy, 1, price: 1, on: "nope").error == .unknownListing)
        #expect(h.cancel("ann", order: "o", on: "nope").error == .unknownListing)
        #expect(h.cancelListing("ann", on: "nope").error == .unknownListing)
        #expect(h.log.isEmpty)
    }

    @Test func commandsAfterTheCloseAreListingClosed() {
        let h = Harness()
        h.open("E", Terms.english(closesAt: 100), at: 0)
        h.open("S", Terms.sealed(closesAt: 100), at: 0)
        h.open("D", Terms.dutch(closesAt: 100), at: 0)
        h.open("M", Terms.market(closesAt: 100), at: 0)
        h.advance(to: 100)
        #expect(h.bid("ann", 500, on: "E").error == .listingClosed)
        #expect(h.buyNow("ann", on: "E").error == .listingClosed)
        #expect(h.bid("ann", 500, on: "S").error == .listingClosed)
        #expect(h.accept("ann", on: "D").error == .listingClosed)
        #expect(h.order("ann", .buy, 1, price: 1, on: "M").error == .listingClosed)
        #expect(h.cancelListing("sam", on: "E").error == .listingClosed)
    }

    @Test func unsupportedCommandsPerFormat() {
        let h = Harness()
        h.open("E", Terms.english(), at: 0)
        h.open("S", Terms.sealed(), at: 0)
        h.open("D", Terms.dutch(), at: 0)
        h.open("M", Terms.market(), at: 0)
        for listing in ["E", "S"] {
            #expect(h.accept("ann", on: listing).error == .unsupported)
            #expect(h.order("ann", .buy, 1, price: 1, on: listing).error == .unsupported)
            #expect(h.cancel("ann", order: "o", on: listing).error == .unsupported)
        }
        #expect(h.buyNow("ann", on: "S").error == .unsupported)
        #expect(h.bid("ann", 1000, on: "D").error == .unsupported)
        #expect(h.buyNow("ann", on: "D").error == .unsupported)
        #expect(h.order("ann", .buy, 1, price: 1, on: "D").error == .unsupported)
        #expect(h.cancel("ann", order: "o", on: "D").error == .unsupported)
        #expect(h.bid("ann", 1000, on: "M").error == .unsupported)
        #expect(h.buyNow("ann", on: "M").error == .unsupported)
        #expect(h.accept("ann", on: "M").error == .unsupported)
        #expect(h.log.count == 4, "only the four opened events")
    }

    @Test(arguments: [Int64(0), -1, Int64.min, Limits.maxAmount + 1, Int64.max])
    func bidAmountOutsideOneToTenToTheFifteenIsInvalidAmount(amount: Money) {
        let h = Harness()
        h.open("E", Terms.english(), at: 0)
        h.open("S", Terms.sealed(), at: 0)
        #expect(h.bid("ann", amount, on: "E").error == .invalidAmount)
        #expect(h.bid("ann", amount, on: "S").error == .invalidAmount)
        #expect(h.events.isEmpty)
    }

    @Test func invalidAmountIsReportedEvenOnAnUnknownListing() {
        let h = Harness()
        #expect(h.bid("ann", 0, on: "nope").error == .invalidAmount)
    }

    @Test(arguments: [Int64(0), -3, Limits.maxAmount + 1])
    func quantityOutsideOneToTenToTheFifteenIsInvalidQuantity(quantity: Int64) {
        let h = Harness()
        h.open("D", Terms.dutch(), at: 0)
        h.open("M", Terms.market(), at: 0)
        #expect(h.accept("ann", quantity, on: "D").error == .invalidQuantity)
        #expect(h.order("ann", .sell, quantity, price: 100, on: "M").error == .invalidQuantity)
    }
}

@Suite struct CancelListingTests {
    @Test(arguments: OpenValidationTests.allFormats)
    func sellerCancelsBeforeAnyBidOrFill(terms: ListingTerms) {
        let h = Harness()
        h.open(seller: "sam", terms, at: 0)
        let r = h.cancelListing("sam", at: 10)
        #expect(r.ok)
        #expect(h.kinds == [.listingCancelled])
        #expect(h.events.first?.seq == 2)
        #expect(h.status() == .cancelled)
        h.advance(to: 200_000)
        #expect(h.events.isEmpty, "a cancelled listing neither closes nor steps")
    }

    @Test func anyoneElseIsNotOwner() {
        let h = Harness()
        h.open(seller: "sam", Terms.english(), at: 0)
        #expect(h.cancelListing("ann").error == .notOwner)
        #expect(h.status() == .open)
    }

    @Test func englishWithABidCannotBeCancelled() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.bid("ann", 100)
        #expect(h.cancelListing("sam").error == .listingHasBids)
        #expect(h.status() == .open)
    }

    @Test func englishWithOnlyRejectedBidsCanBeCancelled() {
        let h = Harness()
        h.open(Terms.english(start: 100), at: 0)
        h.bid("ann", 50)
        #expect(h.cancelListing("sam").ok)
    }

    @Test func sealedWithABidCannotBeCancelled() {
        let h = Harness()
        h.open(Terms.sealed(), at: 0)
        h.bid("ann", 100)
        #expect(h.cancelListing("sam").error == .listingHasBids)
    }

    @Test func dutchWithAFillCannotBeCancelled() {
        let h = Harness()
        h.open(Terms.dutch(), at: 0)
        h.accept("ann")
        #expect(h.cancelListing("sam").error == .listingHasBids)
    }

    @Test func marketWithRestingOrdersButNoTradeCancelsThem() {
        let h = Harness()
        h.open("M", seller: "sam", Terms.market(), at: 0)
        h.order("bob", .buy, 2, price: 99, id: "b1")
        let r = h.cancelListing("sam", on: "M")
        #expect(r.ok)
        #expect(
            h.kinds == [
                .orderCancelled(order: "b1", trader: "bob", reason: .closed, remaining: 2),
                .book(bestBid: nil, bestAsk: nil, bidQuantity: nil, askQuantity: nil),
                .listingCancelled,
            ])
        #expect(h.order("bob", .buy, 2, price: 99).error == .listingClosed)
    }

    @Test func marketWithATradeCannotBeCancelled() {
        let h = Harness()
        h.open("M", seller: "sam", Terms.market(), at: 0)
        h.order("bob", .buy, 2, price: 100)
        h.order("sue", .sell, 1, price: 100)
        #expect(h.cancelListing("sam", on: "M").error == .listingHasBids)
    }

    @Test func cancellingTwiceIsListingClosed() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.cancelListing("sam")
        #expect(h.cancelListing("sam").error == .listingClosed)
        #expect(h.bid("ann", 500).error == .listingClosed)
    }
}

@Suite struct SequenceTests {
    @Test func seqCountsEachListingsPublicEventsFromOne() {
        let h = Harness()
        h.open("A", Terms.english(), at: 0)
        h.open("B", Terms.english(), at: 0)
        h.bid("ann", 1000, on: "A")
        h.bid("bob", 500, on: "A")  // bid_placed + outbid
        h.bid("bob", 500, on: "B")
        h.advance(to: 60_000)
        for listing in ["A", "B"] {
            let seqs = h.log.filter { $0.listing == listing }.publicEvents.map(\.seq)
            #expect(seqs == Array(1...UInt64(seqs.count)))
        }
        let outbids = h.log.filter { $0.kind.outbidNotice != nil }
        #expect(outbids.count == 1)
        #expect(outbids.allSatisfy { $0.seq == 0 }, "outbid is a private notice without seq")
    }

    @Test func rejectedCommandsUseNoSeq() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.bid("ann", 1)
        h.bid("ann", 100)
        #expect(h.events.first?.seq == 2)
    }
}
