import Testing

@testable import GavelCore

/// The sealed-bid rules. Listing `L` opens at 0 with `start` 100 and closes at 60000 unless a test says otherwise.
@Suite struct SealedRulesTests {
    private func closeEvents(_ h: Harness) -> [EventKind] {
        h.advance(to: 60_000)
        return h.kinds
    }

    @Test func bidBelowStartIsTooLowWithStartAsMinBid() {
        let h = Harness()
        h.open(Terms.sealed(start: 100), at: 0)
        let r = h.bid("ann", 99)
        #expect(r.error == .bidTooLow)
        #expect(r.minBid == 100)
        #expect(h.events.isEmpty)
        #expect(h.bid("ann", 100).ok)
    }

    @Test func acceptedBidRevealsOnlyTheCount() {
        let h = Harness()
        h.open(Terms.sealed(), at: 0)
        let r = h.bid("ann", 5000)
        #expect(r.ok)
        #expect(r.price == nil)
        #expect(r.leading == nil)
        #expect(h.kinds == [.sealedBidPlaced(bids: 1)])
        h.bid("bob", 200)
        #expect(h.kinds == [.sealedBidPlaced(bids: 2)], "no outbid notice or leader before the close")
    }

    @Test func replacementCountsAsABidAndReplacesTheAmount() {
        let h = Harness()
        h.open(Terms.sealed(), at: 0)
        h.bid("ann", 500)
        h.bid("bob", 400)
        h.bid("ann", 300)
        #expect(h.kinds == [.sealedBidPlaced(bids: 3)])
        #expect(closeEvents(h) == [.closed(winner: "bob", price: 400, reserveMet: true)])
    }

    @Test func replacementMayLowerAndTakesANewTimeForTies() {
        let h = Harness()
        h.open(Terms.sealed(), at: 0)
        h.bid("ann", 500, at: 1)
        h.bid("bob", 500, at: 2)
        h.bid("ann", 500, at: 3)  // same amount again: ann's bid is now the later one
        #expect(closeEvents(h) == [.closed(winner: "bob", price: 500, reserveMet: true)])
    }

    @Test func highestAmountWinsAndFirstPricePaysOwnAmount() {
        let h = Harness()
        h.open(Terms.sealed(.first), at: 0)
        h.bid("ann", 300)
        h.bid("bob", 900)
        h.bid("carl", 700)
        #expect(closeEvents(h) == [.closed(winner: "bob", price: 900, reserveMet: true)])
    }

    @Test func tieGoesToEarlierBid() {
        let h = Harness()
        h.open(Terms.sealed(.first), at: 0)
        h.bid("carl", 700, at: 1)
        h.bid("ann", 700, at: 2)
        h.bid("bob", 700, at: 3)
        #expect(closeEvents(h) == [.closed(winner: "carl", price: 700, reserveMet: true)])
    }

    @Test func tieIsDecidedByOrderEvenAtTheSameTime() {
        let h = Harness()
        h.open(Terms.sealed(.first), at: 0)
        h.bid("zed", 700, at: 5)
        h.bid("abe", 700, at: 5)
        #expect(closeEvents(h) == [.closed(winner: "zed", price: 700, reserveMet: true)])
    }

    @Test func secondPricePaysSecondHighestAmount() {
        let h = Harness()
        h.open(Terms.sealed(.second), at: 0)
        h.bid("ann", 300)
        h.bid("bob", 900)
        h.bid("carl", 700)
        #expect(closeEvents(h) == [.closed(winner: "bob", price: 700, reserveMet: true)])
    }

    @Test func secondPriceWithASingleBidPaysStart() {
        let h = Harness()
        h.open(Terms.sealed(.second, start: 150), at: 0)
        h.bid("ann", 900)
        #expect(closeEvents(h) == [.closed(winner: "ann", price: 150, reserveMet: true)])
    }

    @Test func secondPriceNeverGoesBelowReserve() {
        let h = Harness()
        h.open(Terms.sealed(.second, start: 100, reserve: 450), at: 0)
        h.bid("ann", 500)
        h.bid("bob", 300)
        #expect(closeEvents(h) == [.closed(winner: "ann", price: 450, reserveMet: true)])
    }

    @Test func secondPriceUsesSecondAmountAboveReserve() {
        let h = Harness()
        h.open(Terms.sealed(.second, start: 100, reserve: 450), at: 0)
        h.bid("ann", 500)
        h.bid("bob", 480)
        #expect(closeEvents(h) == [.closed(winner: "ann", price: 480, reserveMet: true)])
    }

    @Test func secondPriceTieAtTheTopPaysThatAmount() {
        let h = Harness()
        h.open(Terms.sealed(.second), at: 0)
        h.bid("ann", 500)
        h.bid("bob", 500)
        h.bid("carl", 200)
        #expect(closeEvents(h) == [.closed(winner: "ann", price: 500, reserveMet: true)])
    }

    @Test func secondPriceIgnoresTheWinnersReplacedBid() {
        let h = Harness()
        h.open(Terms.sealed(.second), at: 0)
        h.bid("ann", 800)
        h.bid("ann", 900)  // replaces 800; 800 is not a second bid
        h.bid("bob", 300)
        #expect(closeEvents(h) == [.closed(winner: "ann", price: 300, reserveMet: true)])
    }

    @Test func reserveNotMetMeansNoWinner() {
        let h = Harness()
        h.open(Terms.sealed(.first, reserve: 1000), at: 0)
        h.bid("ann", 999)
        #expect(closeEvents(h) == [.closed(winner: nil, price: nil, reserveMet: false)])
    }

    @Test func reserveMetExactlyWins() {
        let h = Harness()
        h.open(Terms.sealed(.first, reserve: 1000), at: 0)
        h.bid("ann", 1000)
        #expect(closeEvents(h) == [.closed(winner: "ann", price: 1000, reserveMet: true)])
    }

    @Test func noBidsMeansNoWinner() {
        let h = Harness()
        h.open(Terms.sealed(), at: 0)
        #expect(closeEvents(h) == [.closed(winner: nil, price: nil, reserveMet: true)])
    }

    @Test func sellerCannotBidSealed() {
        let h = Harness()
        h.open(seller: "sam", Terms.sealed(), at: 0)
        #expect(h.bid("sam", 500).error == .sellerCannotBid)
        #expect(h.events.isEmpty)
    }

    @Test func bidAfterCloseIsListingClosed() {
        let h = Harness()
        h.open(Terms.sealed(), at: 0)
        #expect(h.bid("ann", 500, at: 60_000).error == .listingClosed)
    }

    @Test func buyNowAndAcceptAreUnsupportedOnSealed() {
        let h = Harness()
        h.open(Terms.sealed(), at: 0)
        #expect(h.buyNow("ann").error == .unsupported)
        #expect(h.accept("ann").error == .unsupported)
    }
}
