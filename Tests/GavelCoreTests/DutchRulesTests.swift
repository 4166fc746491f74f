import Testing

@testable import GavelCore

/// The Dutch rules. Listing `L` opens at 0 with start 1000, floor 400, step 100 every 1000 ms, 5 units, and closes at
/// 100000 unless a test says otherwise.
@Suite struct DutchRulesTests {
    private func prices(_ events: [Event]) -> [Money] {
        events.compactMap { if case .price(let p) = $0.kind { p } else { nil } }
    }

    @Test func priceFollowsTheClockFormulaAndEachStepEmitsPrice() {
        let h = Harness()
        h.open(Terms.dutch(), at: 0)
        h.advance(to: 999)
        #expect(h.events.isEmpty)
        h.advance(to: 1000)
        #expect(h.kinds == [.price(900)])
        #expect(h.events.first?.at == 1000)
        h.advance(to: 3500)
        #expect(h.kinds == [.price(800), .price(700)])
        #expect(h.events.map(\.at) == [2000, 3000])
    }

    @Test func aListingOpenedAfterItsOpensAtAnnouncesTheClocksPriceAtOnceInOnePriceEvent() {
        let h = Harness()
        h.advance(to: 5_000)
        #expect(h.open(Terms.dutch(start: 1_000, floor: 500, opensAt: 2_500), at: 5_000).ok)
        // Steps were due at 3500 (900) and 4500 (800): one `price` at the open's time, after `opened`.
        #expect(h.kinds.count == 2)
        #expect(h.kinds.last == .price(800))
        #expect(h.events.map(\.seq) == [1, 2])
        #expect(h.events.allSatisfy { $0.at == 5_000 })
        #expect(h.accept("ann", at: 5_000).price == 800)
        h.advance(to: 5_500)
        #expect(h.kinds == [.price(700)], "the clock goes on from there")
    }

    @Test func aListingOpenedBeforeItsFirstStepIsDueAnnouncesNoPrice() {
        let h = Harness()
        h.advance(to: 5_000)
        #expect(h.open(Terms.dutch(opensAt: 4_500), at: 5_000).ok)
        #expect(h.kinds.count == 1, "only opened: the first step is due at 5500")
        #expect(h.open("L2", Terms.dutch(opensAt: 9_000), at: 5_000).ok)
        #expect(h.kinds.count == 1, "only opened: the clock has not started")
    }

    @Test func priceStopsAtTheFloor() {
        let h = Harness()
        h.open(Terms.dutch(), at: 0)
        h.advance(to: 99_999)
        #expect(prices(h.events) == [900, 800, 700, 600, 500, 400])
        #expect(h.dutch()?.price == 400)
        #expect(h.accept("ann", at: 99_999).price == 400)
    }

    @Test func stepPastTheFloorLandsOnTheFloor() {
        let h = Harness()
        h.open(Terms.dutch(start: 1000, floor: 450, step: 100), at: 0)
        h.advance(to: 50_000)
        #expect(prices(h.events) == [900, 800, 700, 600, 500, 450])
    }

    @Test func startEqualToFloorNeverSteps() {
        let h = Harness()
        h.open(Terms.dutch(start: 500, floor: 500), at: 0)
        h.advance(to: 99_999)
        #expect(h.events.isEmpty)
        #expect(h.engine.timerCount == 1, "only the close is scheduled")
    }

    @Test func acceptFillsAtTheCurrentPrice() {
        let h = Harness()
        h.open(Terms.dutch(), at: 0)
        let r = h.accept("ann", 2, at: 2500)
        #expect(r.ok)
        #expect(r.price == 800)
        #expect(r.filled == 2)
        #expect(r.remaining == 3)
        #expect(h.kinds == [.filled(bidder: "ann", price: 800, quantity: 2, remaining: 3)])
    }

    @Test func acceptBeforeTheFirstStepPaysStart() {
        let h = Harness()
        h.open(Terms.dutch(), at: 0)
        #expect(h.accept("ann", at: 0).price == 1000)
        #expect(h.accept("bob", at: 999).price == 1000)
    }

    @Test func acceptAtAStepTimeGetsTheNewPrice() {
        let h = Harness()
        h.open(Terms.dutch(), at: 0)
        let r = h.accept("ann", at: 1000)
        #expect(h.fired.kinds == [.price(900)])
        #expect(r.price == 900)
    }

    @Test func acceptMoreThanRemainsIsInvalidQuantity() {
        let h = Harness()
        h.open(Terms.dutch(quantity: 5), at: 0)
        h.accept("ann", 3)
        let r = h.accept("bob", 3)
        #expect(r.error == .invalidQuantity)
        #expect(h.events.isEmpty)
        #expect(h.dutch()?.remaining == 2)
        #expect(h.accept("bob", 2).ok)
    }

    @Test func acceptOfNothingOrLessIsInvalidQuantity() {
        let h = Harness()
        h.open(Terms.dutch(), at: 0)
        #expect(h.accept("ann", 0).error == .invalidQuantity)
        #expect(h.accept("ann", -1).error == .invalidQuantity)
        #expect(h.dutch()?.remaining == 5)
    }

    @Test func sellingOutClosesTheListingAtOnce() {
        let h = Harness()
        h.open(Terms.dutch(quantity: 5), at: 0)
        h.accept("ann", 2, at: 1500)
        h.accept("bob", 3, at: 2500)
        #expect(
            h.kinds == [
                .filled(bidder: "bob", price: 800, quantity: 3, remaining: 0),
                .dutchClosed(sold: 5),
            ])
        #expect(h.status() == .closed)
        #expect(h.accept("carl", at: 2600).error == .listingClosed)
        h.advance(to: 200_000)
        #expect(h.events.isEmpty, "no price steps or second close after selling out")
    }

    @Test func closesAtClosesWithTheUnitsSold() {
        let h = Harness()
        h.open(Terms.dutch(floor: 400, closesAt: 3500), at: 0)
        h.accept("ann", 2, at: 1200)
        h.advance(to: 3500)
        #expect(h.kinds == [.price(800), .price(700), .dutchClosed(sold: 2)])
        #expect(h.accept("bob", at: 3500).error == .listingClosed)
    }

    @Test func stepDueAtClosesAtIsNotPublished() {
        let h = Harness()
        h.open(Terms.dutch(closesAt: 3000), at: 0)
        h.advance(to: 10_000)
        #expect(h.kinds == [.price(900), .price(800), .dutchClosed(sold: 0)])
    }

    @Test func clockStartsAtOpensAt() {
        let h = Harness()
        h.open(Terms.dutch(opensAt: 5000), at: 0)
        #expect(h.accept("ann", at: 4999).error == .notOpen)
        h.advance(to: 5999)
        #expect(h.events.isEmpty)
        #expect(h.accept("ann", at: 5999).price == 1000)
        h.advance(to: 7000)
        #expect(h.kinds == [.price(900), .price(800)])
        #expect(h.events.map(\.at) == [6000, 7000])
    }

    @Test func clockCountsFromOpensAtNotFromTheOpenCommand() {
        let h = Harness()
        h.open(Terms.dutch(), at: 0)
        h.advance(to: 500)
        // A listing opened at 500 steps at 1500, 2500, ...
        h.open("L2", Terms.dutch(), at: 500)
        h.advance(to: 1500)
        #expect(h.events.map(\.listing) == ["L", "L2"])
        #expect(h.events.map(\.at) == [1000, 1500])
    }

    @Test func soldPlusRemainingEqualsQuantityAfterEachFill() {
        let h = Harness()
        h.open(Terms.dutch(quantity: 10), at: 0)
        var sold: Int64 = 0
        for (i, q) in [1, 3, 2, 4].enumerated() {
            let r = h.accept("b\(i)", Int64(q), at: Millis(i * 700))
            sold += Int64(q)
            #expect(r.remaining == 10 - sold)
            #expect(h.dutch()?.remaining == 10 - sold)
        }
        #expect(h.kinds.last == .dutchClosed(sold: 10))
    }

    @Test func sellerCannotAccept() {
        let h = Harness()
        h.open(seller: "sam", Terms.dutch(), at: 0)
        #expect(h.accept("sam").error == .sellerCannotBid)
        #expect(h.dutch()?.remaining == 5)
    }

    @Test func bidAndBuyNowAreUnsupportedOnDutch() {
        let h = Harness()
        h.open(Terms.dutch(), at: 0)
        #expect(h.bid("ann", 1000).error == .unsupported)
        #expect(h.buyNow("ann").error == .unsupported)
    }

    @Test func hugeStepIntervalDoesNotOverflow() {
        let h = Harness()
        let r = h.open(
            Terms.dutch(stepEveryMs: Int64.max, closesAt: Int64.max, opensAt: 10), at: 0)
        #expect(r.ok)
        #expect(h.accept("ann", at: 1_000_000).price == 1000)
    }

    @Test func farPastOpensAtDoesNotOverflow() {
        let h = Harness()
        let r = h.open(Terms.dutch(closesAt: 100, opensAt: Int64.min), at: 0)
        #expect(r.ok)
        #expect(h.accept("ann", at: 5).price == 400, "the clock has long reached the floor")
    }
}
