import Testing

@testable import GavelCore

/// The english rules of the spec, one behaviour per test. Unless a test says otherwise the listing `L` is opened at
/// time 0 by `sam` with `start` 100, `closes_at` 60000 and the default ladder (inc: 5 below 100, 25 from 100, 50
/// from 500, 100 from 2500).
@Suite struct EnglishFirstBidTests {
    @Test func aBuyNowBelowTheReserveIsRefusedAtOpenAndOneAtTheReserveIsNot() {
        let h = Harness()
        let low = h.open(Terms.english(reserve: 1_000, buyNow: 800), at: 0)
        #expect(low.error == .badRequest)
        #expect(low.message.hasPrefix("buy_now 800 must be at least reserve 1000"))
        #expect(!h.engine.hasListing("L"))
        #expect(h.open(Terms.english(reserve: 1_000, buyNow: 1_000), at: 0).ok)
        #expect(h.buyNow("cat").ok)
        h.advance(to: 1)
        let closed = h.log.compactMap { if case .closed(_, _, let met) = $0.kind { met } else { nil } }
        #expect(closed == [true], "a buy-now sale meets the reserve")
    }

    @Test func firstBidBelowStartIsTooLowWithStartAsMinBid() {
        let h = Harness()
        h.open(Terms.english(start: 100), at: 0)
        let r = h.bid("ann", 99)
        #expect(r.error == .bidTooLow)
        #expect(r.minBid == 100)
        #expect(h.events.isEmpty)
        #expect(h.english()?.leader == nil)
        #expect(h.english()?.bids == 0)
    }

    @Test func firstBidAtStartLeadsAtStart() {
        let h = Harness()
        h.open(Terms.english(start: 100), at: 0)
        let r = h.bid("ann", 100, at: 10)
        #expect(r.ok)
        #expect(r.price == 100)
        #expect(r.leading == true)
        #expect(h.kinds == [.bidPlaced(price: 100, leader: "ann", bids: 1, closesAt: 60_000, reserveMet: true)])
    }

    @Test func firstBidAboveStartIsAProxyMaximumAndPricesAtStart() {
        let h = Harness()
        h.open(Terms.english(start: 100), at: 0)
        #expect(h.bid("ann", 1000).price == 100)
        #expect(h.english()?.maximum == 1000)
        #expect(h.english()?.leader == "ann")
    }

    @Test func firstBidMeetingReserveJumpsPriceToReserve() {
        let h = Harness()
        h.open(Terms.english(start: 100, reserve: 700), at: 0)
        #expect(h.bid("ann", 800).price == 700)
        #expect(h.kinds == [.bidPlaced(price: 700, leader: "ann", bids: 1, closesAt: 60_000, reserveMet: true)])
    }

    @Test func firstBidExactlyAtReserveMeetsIt() {
        let h = Harness()
        h.open(Terms.english(start: 100, reserve: 700), at: 0)
        #expect(h.bid("ann", 700).price == 700)
        #expect(h.english()?.reserveMet == true)
    }

    @Test func firstBidBelowReserveStaysAtStartWithReserveNotMet() {
        let h = Harness()
        h.open(Terms.english(start: 100, reserve: 700), at: 0)
        #expect(h.bid("ann", 699).price == 100)
        #expect(h.kinds == [.bidPlaced(price: 100, leader: "ann", bids: 1, closesAt: 60_000, reserveMet: false)])
    }
}

@Suite struct EnglishLeaderRaiseTests {
    @Test func leaderRaiseMustExceedOwnMaximum() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.bid("ann", 1000)
        let same = h.bid("ann", 1000)
        #expect(same.error == .bidTooLow)
        #expect(same.minBid == 1001)
        let lower = h.bid("ann", 200)
        #expect(lower.error == .bidTooLow)
        #expect(lower.minBid == 1001)
        #expect(h.english()?.maximum == 1000)
        #expect(h.english()?.bids == 1)
    }

    @Test func leaderRaiseByOneIsAcceptedBelowTheIncrement() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.bid("ann", 1000)
        #expect(h.bid("ann", 1001).ok)
        #expect(h.english()?.maximum == 1001)
    }

    @Test func leaderRaiseWithoutReserveLeavesPriceAndCountsAsBid() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.bid("ann", 1000)
        let r = h.bid("ann", 2000)
        #expect(r.ok)
        #expect(r.price == 100)
        #expect(r.leading == true)
        #expect(h.kinds == [.bidPlaced(price: 100, leader: "ann", bids: 2, closesAt: 60_000, reserveMet: true)])
        #expect(h.english()?.maximum == 2000)
    }

    @Test func leaderRaiseMeetingReserveLiftsPriceToReserve() {
        let h = Harness()
        h.open(Terms.english(start: 100, reserve: 700), at: 0)
        h.bid("ann", 500)
        #expect(h.english()?.price == 100)
        let r = h.bid("ann", 800)
        #expect(r.price == 700)
        #expect(h.kinds == [.bidPlaced(price: 700, leader: "ann", bids: 2, closesAt: 60_000, reserveMet: true)])
    }

    @Test func leaderRaiseBelowReserveLeavesPrice() {
        let h = Harness()
        h.open(Terms.english(start: 100, reserve: 700), at: 0)
        h.bid("ann", 300)
        let r = h.bid("ann", 699)
        #expect(r.price == 100)
        #expect(h.kinds == [.bidPlaced(price: 100, leader: "ann", bids: 2, closesAt: 60_000, reserveMet: false)])
    }

    @Test func leaderRaiseWhenReserveAlreadyMetLeavesPrice() {
        let h = Harness()
        h.open(Terms.english(start: 100, reserve: 200), at: 0)
        h.bid("ann", 150)
        // bob takes the lead: min(300, 150 + 25) = 175, raised to the reserve 200 because 300 meets it.
        #expect(h.bid("bob", 300).price == 200)
        #expect(h.bid("bob", 5000).price == 200)
        #expect(h.english()?.leader == "bob")
    }

    @Test func leaderRaiseEmitsNoOutbid() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.bid("ann", 1000)
        h.bid("bob", 500)
        h.bid("ann", 3000)
        #expect(h.kinds.allSatisfy { $0.outbidNotice == nil })
    }
}

@Suite struct EnglishChallengerTests {
    @Test func challengerMustReachPricePlusIncrementOfPrice() {
        let h = Harness()
        h.open(Terms.english(start: 100), at: 0)
        h.bid("ann", 1000)
        let low = h.bid("bob", 124)
        #expect(low.error == .bidTooLow)
        #expect(low.minBid == 125)
        #expect(h.events.isEmpty)
        #expect(h.bid("bob", 125).ok)
    }

    @Test func minBidUsesTheBracketHoldingThePrice() {
        let h = Harness()
        h.open(Terms.english(start: 95), at: 0)
        h.bid("ann", 1000)
        // inc(95) = 5, not the 25 of the bracket the minimum bid lands in.
        #expect(h.bid("bob", 99).minBid == 100)
        #expect(h.bid("bob", 100).ok)
        // Now P = min(1000, 100 + inc(100)) = 125 and inc(125) = 25.
        #expect(h.english()?.price == 125)
        #expect(h.bid("bob", 149).minBid == 150)
    }

    @Test func challengerAboveMaximumLeadsAtMaximumPlusIncrement() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.bid("ann", 1000)
        let r = h.bid("bob", 2000, at: 20)
        #expect(r.price == 1050)
        #expect(r.leading == true)
        #expect(
            h.kinds == [
                .bidPlaced(price: 1050, leader: "bob", bids: 2, closesAt: 60_000, reserveMet: true),
                .outbid(bidder: "ann", price: 1050),
            ])
        #expect(h.english()?.maximum == 2000)
    }

    @Test func challengerJustAboveMaximumPaysOwnAmount() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.bid("ann", 1000)
        #expect(h.bid("bob", 1010).price == 1010)
        #expect(h.english()?.leader == "bob")
    }

    @Test func challengerBelowMaximumIsOutbidAtOnceAndPriceRises() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.bid("ann", 1000)
        let r = h.bid("bob", 500)
        #expect(r.ok)
        #expect(r.leading == false)
        #expect(r.price == 550)
        #expect(
            h.kinds == [
                .bidPlaced(price: 550, leader: "ann", bids: 2, closesAt: 60_000, reserveMet: true),
                .outbid(bidder: "bob", price: 550),
            ])
    }

    @Test func challengerNearMaximumPushesPriceOnlyToMaximum() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.bid("ann", 1000)
        // min(M, A + inc(A)) = min(1000, 990 + 50) = 1000.
        #expect(h.bid("bob", 990).price == 1000)
        #expect(h.english()?.leader == "ann")
    }

    @Test func tieGoesToEarlierMaximum() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.bid("ann", 1000, at: 1)
        let r = h.bid("bob", 1000, at: 2)
        #expect(r.leading == false)
        #expect(h.english()?.leader == "ann")
        #expect(h.english()?.price == 1000)
        #expect(h.kinds.last == .outbid(bidder: "bob", price: 1000))
    }

    @Test func tieWithRaisedMaximumStillGoesToEarlierMaximum() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.bid("ann", 500)
        h.bid("ann", 1000)
        h.bid("bob", 1000)
        #expect(h.english()?.leader == "ann")
    }

    @Test func challengerTakingLeadMeetingReserveJumpsToReserve() {
        let h = Harness()
        h.open(Terms.english(start: 100, reserve: 5000), at: 0)
        h.bid("ann", 1000)
        let r = h.bid("bob", 6000)
        #expect(r.price == 5000)
        #expect(
            h.kinds == [
                .bidPlaced(price: 5000, leader: "bob", bids: 2, closesAt: 60_000, reserveMet: true),
                .outbid(bidder: "ann", price: 5000),
            ])
    }

    @Test func challengerTakingLeadBelowReserveDoesNotJump() {
        let h = Harness()
        h.open(Terms.english(start: 100, reserve: 5000), at: 0)
        h.bid("ann", 1000)
        #expect(h.bid("bob", 2000).price == 1050)
        #expect(h.kinds.first?.bidPlacedPrice == 1050)
        #expect(h.english()?.reserveMet == false)
    }

    @Test func challengerTakingLeadAboveReserveKeepsProxyPrice() {
        let h = Harness()
        h.open(Terms.english(start: 100, reserve: 300), at: 0)
        h.bid("ann", 1000)  // P = 300
        #expect(h.bid("bob", 3000).price == 1050)  // min(3000, 1000 + 50) >= reserve: no jump needed
    }

    @Test func outbidChallengerBelowReserveLeavesReserveUnmet() {
        let h = Harness()
        h.open(Terms.english(start: 100, reserve: 5000), at: 0)
        h.bid("ann", 1000)
        #expect(h.bid("bob", 500).price == 550)
        #expect(h.kinds.first == .bidPlaced(price: 550, leader: "ann", bids: 2, closesAt: 60_000, reserveMet: false))
    }

    @Test func customIncrementLadderDecidesMinimumAndProxyPrice() {
        let h = Harness()
        let ladder = [IncrementStep(from: 0, step: 10), IncrementStep(from: 1000, step: 100)]
        h.open(Terms.english(start: 100, increments: ladder), at: 0)
        h.bid("ann", 1500)
        #expect(h.bid("bob", 109).minBid == 110)
        #expect(h.bid("bob", 995).price == 1005)  // min(1500, 995 + inc(995) = 10)
        #expect(h.bid("bob", 2000).price == 1600)  // min(2000, 1500 + inc(1500) = 100)
        #expect(h.english()?.leader == "bob")
    }

    @Test func everyAcceptedBidCountsAndRejectedBidsDoNot() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.bid("ann", 1000)
        h.bid("bob", 50)  // too low
        h.bid("bob", 500)  // accepted, outbid at once
        h.bid("ann", 1000)  // too low raise
        h.bid("ann", 1200)  // raise
        h.bid("carl", 5000)  // takes the lead
        let counts = h.log.compactMap { event -> Int64? in
            if case .bidPlaced(_, _, let bids, _, _) = event.kind { return bids }
            return nil
        }
        #expect(counts == [1, 2, 3, 4])
        #expect(h.english()?.bids == 4)
    }

    @Test func sellerCannotBid() {
        let h = Harness()
        h.open(seller: "sam", Terms.english(), at: 0)
        #expect(h.bid("sam", 1000).error == .sellerCannotBid)
        #expect(h.events.isEmpty)
        #expect(h.english()?.leader == nil)
    }

    @Test func priceStaysWithinLargestAmountsWithoutOverflow() {
        let h = Harness()
        h.open(Terms.english(start: 999_999_999_980_000), at: 0)
        h.bid("ann", 999_999_999_985_000)
        let r = h.bid("bob", Limits.maxAmount)
        #expect(r.ok)
        #expect(r.price == 999_999_999_995_000)  // M + inc(M), inc = 10000 in the top bracket
        #expect(h.bid("ann", Limits.maxAmount + 1).error == .invalidAmount)
    }
}

@Suite struct EnglishBuyNowTests {
    @Test func buyNowWithoutBidsClosesAtOnceAtBuyNowPrice() {
        let h = Harness()
        h.open(Terms.english(buyNow: 5000), at: 0)
        let r = h.buyNow("carl", at: 100)
        #expect(r.ok)
        #expect(r.price == 5000)
        #expect(h.kinds == [.closed(winner: "carl", price: 5000, reserveMet: true)])
        #expect(h.status() == .closed)
        #expect(h.bid("ann", 6000).error == .listingClosed)
        #expect(h.buyNow("dora").error == .listingClosed)
        h.advance(to: 60_000)
        #expect(h.events.isEmpty, "the close timer must not close it a second time")
    }

    @Test func buyNowEndsWithTheFirstBidWithoutReserve() {
        let h = Harness()
        h.open(Terms.english(buyNow: 5000), at: 0)
        h.bid("ann", 100)
        let r = h.buyNow("carl")
        #expect(r.error == .buyNowUnavailable)
        #expect(h.events.isEmpty)
        #expect(h.status() == .open)
    }

    @Test func buyNowStaysWhileReserveIsNotMet() {
        let h = Harness()
        h.open(Terms.english(reserve: 3000, buyNow: 5000), at: 0)
        h.bid("ann", 2999)
        let r = h.buyNow("carl")
        #expect(r.ok)
        #expect(h.kinds == [.closed(winner: "carl", price: 5000, reserveMet: true)])
    }

    @Test func buyNowEndsOnceReserveIsMet() {
        let h = Harness()
        h.open(Terms.english(reserve: 3000, buyNow: 5000), at: 0)
        h.bid("ann", 1000)
        h.bid("ann", 3000)  // the leader's raise meets the reserve
        #expect(h.buyNow("carl").error == .buyNowUnavailable)
    }

    @Test func buyNowWithoutBuyNowPriceIsUnavailable() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        #expect(h.buyNow("carl").error == .buyNowUnavailable)
        #expect(h.status() == .open)
    }

    @Test func sellerCannotBuyNow() {
        let h = Harness()
        h.open(seller: "sam", Terms.english(buyNow: 5000), at: 0)
        #expect(h.buyNow("sam").error == .sellerCannotBid)
        #expect(h.status() == .open)
    }

    @Test func buyNowBeforeOpensAtIsNotOpen() {
        let h = Harness()
        h.open(Terms.english(buyNow: 5000, opensAt: 1000), at: 0)
        #expect(h.buyNow("carl", at: 999).error == .notOpen)
        #expect(h.buyNow("carl", at: 1000).ok)
    }
}

@Suite struct EnglishSoftCloseTests {
    let soft = SoftClose(windowMs: 5000, extendMs: 10_000, maxClosesAt: nil)

    @Test func bidInsideWindowExtendsClose() {
        let h = Harness()
        h.open(Terms.english(closesAt: 60_000, softClose: soft), at: 0)
        h.bid("ann", 100, at: 56_000)
        #expect(
            h.kinds == [
                .bidPlaced(price: 100, leader: "ann", bids: 1, closesAt: 66_000, reserveMet: true),
                .extended(closesAt: 66_000),
            ])
        h.advance(to: 65_999)
        #expect(h.events.isEmpty)
        #expect(h.bid("bob", 125).ok)  // t=65999 is inside the new window: extends to 75999
        h.advance(to: 75_998)
        #expect(h.status() == .open)
        h.advance(to: 75_999)
        #expect(h.kinds == [.closed(winner: "bob", price: 125, reserveMet: true)])
    }

    @Test func bidExactlyAtWindowStartExtends() {
        let h = Harness()
        h.open(Terms.english(closesAt: 60_000, softClose: soft), at: 0)
        h.bid("ann", 100, at: 55_000)  // closes_at - t == window_ms
        #expect(h.kinds.last == .extended(closesAt: 65_000))
    }

    @Test func bidBeforeWindowDoesNotExtend() {
        let h = Harness()
        h.open(Terms.english(closesAt: 60_000, softClose: soft), at: 0)
        h.bid("ann", 100, at: 54_999)
        #expect(h.kinds == [.bidPlaced(price: 100, leader: "ann", bids: 1, closesAt: 60_000, reserveMet: true)])
        h.advance(to: 60_000)
        #expect(h.kinds == [.closed(winner: "ann", price: 100, reserveMet: true)])
    }

    @Test func extensionNeverMovesCloseEarlier() {
        let h = Harness()
        let short = SoftClose(windowMs: 5000, extendMs: 1000, maxClosesAt: nil)
        h.open(Terms.english(closesAt: 60_000, softClose: short), at: 0)
        h.bid("ann", 100, at: 56_000)  // max(60000, 57000) = 60000: no move, no event
        #expect(h.kinds == [.bidPlaced(price: 100, leader: "ann", bids: 1, closesAt: 60_000, reserveMet: true)])
        h.bid("bob", 125, at: 59_500)  // max(60000, 60500) = 60500
        #expect(h.kinds.last == .extended(closesAt: 60_500))
    }

    @Test func extensionIsCappedAtMaxClosesAt() {
        let h = Harness()
        let capped = SoftClose(windowMs: 5000, extendMs: 10_000, maxClosesAt: 62_000)
        h.open(Terms.english(closesAt: 60_000, softClose: capped), at: 0)
        h.bid("ann", 100, at: 58_000)
        #expect(h.kinds.last == .extended(closesAt: 62_000))
        h.bid("bob", 125, at: 61_000)
        #expect(
            h.kinds.allSatisfy { if case .extended = $0 { false } else { true } },
            "at the cap there is nothing to move")
        #expect(h.kinds.first == .bidPlaced(price: 125, leader: "bob", bids: 2, closesAt: 62_000, reserveMet: true))
        h.advance(to: 62_000)
        #expect(h.kinds == [.closed(winner: "bob", price: 125, reserveMet: true)])
    }

    @Test func capEqualToClosesAtNeverExtends() {
        let h = Harness()
        let capped = SoftClose(windowMs: 5000, extendMs: 10_000, maxClosesAt: 60_000)
        h.open(Terms.english(closesAt: 60_000, softClose: capped), at: 0)
        h.bid("ann", 100, at: 59_999)
        #expect(h.kinds.count == 1)
        h.advance(to: 60_000)
        #expect(h.status() == .closed)
    }

    @Test func rejectedBidDoesNotExtend() {
        let h = Harness()
        h.open(Terms.english(closesAt: 60_000, softClose: soft), at: 0)
        h.bid("ann", 1000, at: 1000)
        #expect(h.bid("bob", 101, at: 58_000).error == .bidTooLow)
        #expect(h.listing("L")?.closesAt == 60_000)
        h.advance(to: 60_000)
        #expect(h.status() == .closed)
    }

    @Test func leaderRaiseInsideWindowExtends() {
        let h = Harness()
        h.open(Terms.english(closesAt: 60_000, softClose: soft), at: 0)
        h.bid("ann", 1000, at: 1000)
        h.bid("ann", 2000, at: 57_000)
        #expect(h.kinds.last == .extended(closesAt: 67_000))
    }

    @Test func outbidChallengerInsideWindowExtends() {
        let h = Harness()
        h.open(Terms.english(closesAt: 60_000, softClose: soft), at: 0)
        h.bid("ann", 1000, at: 1000)
        h.bid("bob", 500, at: 57_000)
        #expect(
            h.kinds == [
                .bidPlaced(price: 550, leader: "ann", bids: 2, closesAt: 67_000, reserveMet: true),
                .outbid(bidder: "bob", price: 550),
                .extended(closesAt: 67_000),
            ])
    }

    @Test func extensionNearTheEndOfTimeDoesNotOverflow() {
        let h = Harness()
        let huge = SoftClose(windowMs: 5000, extendMs: Int64.max, maxClosesAt: nil)
        h.open(Terms.english(closesAt: 60_000, softClose: huge), at: 0)
        let r = h.bid("ann", 100, at: 58_000)
        #expect(r.ok)
        #expect(h.kinds.last == .extended(closesAt: Int64.max))
    }
}

@Suite struct EnglishCloseTests {
    @Test func closeWithLeaderAndNoReserveHasWinnerAtCurrentPrice() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.bid("ann", 1000)
        h.bid("bob", 500)
        h.advance(to: 60_000)
        #expect(h.kinds == [.closed(winner: "ann", price: 550, reserveMet: true)])
        #expect(h.events.first?.at == 60_000)
    }

    @Test func closeWithReserveNotMetHasNoWinner() {
        let h = Harness()
        h.open(Terms.english(reserve: 5000), at: 0)
        h.bid("ann", 4999)
        h.advance(to: 60_000)
        #expect(h.kinds == [.closed(winner: nil, price: nil, reserveMet: false)])
    }

    @Test func closeWithReserveMetHasWinnerAtPrice() {
        let h = Harness()
        h.open(Terms.english(reserve: 5000), at: 0)
        h.bid("ann", 4000)
        h.bid("bob", 6000)
        h.advance(to: 60_000)
        #expect(h.kinds == [.closed(winner: "bob", price: 5000, reserveMet: true)])
    }

    @Test func closeWithoutBidsHasNoWinner() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.advance(to: 70_000)
        #expect(h.kinds == [.closed(winner: nil, price: nil, reserveMet: true)])
        let reserved = Harness()
        reserved.open(Terms.english(reserve: 500), at: 0)
        reserved.advance(to: 70_000)
        #expect(reserved.kinds == [.closed(winner: nil, price: nil, reserveMet: false)])
    }

    @Test func closeFiresAtClosesAtAndNotBefore() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.advance(to: 59_999)
        #expect(h.events.isEmpty)
        #expect(h.bid("ann", 100, at: 59_999).ok)
        h.advance(to: 60_000)
        #expect(h.status() == .closed)
    }

    @Test func bidAtClosesAtArrivesAfterTheClose() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.bid("ann", 100)
        let r = h.bid("bob", 1000, at: 60_000)
        #expect(r.error == .listingClosed)
        #expect(h.fired.kinds == [.closed(winner: "ann", price: 100, reserveMet: true)])
    }

    @Test func closedListingClosesOnlyOnce() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.advance(to: 60_000)
        h.advance(to: 200_000)
        #expect(h.log.kinds.filter { if case .closed = $0 { true } else { false } }.count == 1)
    }
}
