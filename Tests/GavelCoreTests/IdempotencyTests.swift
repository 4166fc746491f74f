import Testing

@testable import GavelCore

/// Request ids: unique per principal, remembered for a window of engine time, part of the state.
@Suite struct IdempotencyTests {
    private func bid(_ id: String, _ bidder: String, _ amount: Money, on listing: String = "L") -> Command {
        Command(id: id, listing: listing, body: .bid(bidder: bidder, amount: amount))
    }

    @Test func repeatedCommandReturnsTheOriginalResultMarkedDuplicate() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        let first = h.apply(bid("r1", "ann", 1000), at: 10)
        let hash = h.engine.stateHash()
        let again = h.apply(bid("r1", "ann", 1000))
        #expect(again.duplicate)
        #expect(!first.duplicate)
        var expected = first
        expected.duplicate = true
        #expect(again == expected)
        #expect(h.events.isEmpty, "a duplicate changes nothing")
        #expect(h.engine.stateHash() == hash)
        #expect(h.english()?.bids == 1)
    }

    @Test func aPrincipalsChainSlotTakenOverByAnotherPrincipalNeverAnswersForTheFirst() throws {
        // ann's only id is forgotten when the window passes, which frees her chain's slot; bob's first id takes it.
        // A remembered id names its principal through that slot, so the same id from ann must be new to her, and
        // bob's must still be his, in the engine and in a snapshot of it.
        let h = Harness(window: 1_000)
        h.open(Terms.english(closesAt: 10_000_000), at: 0)
        #expect(h.apply(bid("r1", "ann", 1000), at: 10).ok)
        #expect(h.engine.rememberedCount(of: "ann") == 1)
        #expect(h.apply(bid("r1", "bob", 2000), at: 5_000).ok)
        #expect(h.engine.rememberedCount(of: "ann") == 0)
        #expect(h.engine.rememberedCount(of: "bob") == 1)

        let restored = try Engine.restore(from: h.engine.encodeState())
        #expect(restored.stateHash() == h.engine.stateHash())
        for engine in [h.engine, restored] {
            var events: [Event] = []
            let bobsAgain = engine.apply(bid("r1", "bob", 2000), events: &events)
            #expect(bobsAgain.duplicate && bobsAgain.ok)
            let annsAgain = engine.apply(bid("r1", "ann", 3000), events: &events)
            #expect(!annsAgain.duplicate && annsAgain.error == nil, "ann's id is hers, not a repeat of bob's")
            #expect(engine.rememberedCount(of: "ann") == 1)
        }
    }

    /// A state that remembers one principal's request id twice (a damaged or forged snapshot) is refused on
    /// restore, naming the id, rather than loaded with two entries for one key.
    @Test func aStateRememberingOneRequestIDTwiceIsRefusedOnRestore() throws {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        #expect(h.apply(bid("dupXXXX1", "ann", 1000), at: 10).ok)
        #expect(h.apply(bid("dupXXXX2", "ann", 2000), at: 11).ok)
        let state = h.engine.encodeState()
        #expect(throws: Never.self) { _ = try Engine.restore(from: state) }
        // The second id's bytes become the first's: same length, so the encoding stays well formed.
        let second = Array("dupXXXX2".utf8)
        let starts = (0...(state.count - second.count)).filter { Array(state[$0..<$0 + second.count]) == second }
        #expect(starts.count == 1)
        var damaged = state
        damaged[starts[0] + second.count - 1] = UInt8(ascii: "1")
        #expect {
            _ = try Engine.restore(from: damaged)
        } throws: { error in
            "\(error)".contains("request id dupXXXX1 of ann is remembered twice")
        }
    }

    @Test func duplicateIgnoresTheTimeItArrivesAt() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.apply(bid("r1", "ann", 1000), at: 10)
        let again = h.apply(bid("r1", "ann", 1000), at: 30_000)
        #expect(again.duplicate)
        #expect(again.ok)
        #expect(h.english()?.bids == 1)
    }

    @Test func duplicateOfARejectionReturnsTheRejection() {
        let h = Harness()
        h.open(Terms.english(start: 100), at: 0)
        let first = h.apply(bid("r1", "ann", 50))
        #expect(first.error == .bidTooLow)
        let again = h.apply(bid("r1", "ann", 50))
        #expect(again.duplicate)
        #expect(again.error == .bidTooLow)
        #expect(again.minBid == 100)
    }

    @Test func duplicateReturnsTheOriginalEvenAfterTheListingChanged() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        let first = h.apply(bid("r1", "ann", 1000), at: 10)
        h.bid("bob", 5000)
        h.advance(to: 60_000)
        let again = h.apply(bid("r1", "ann", 1000))
        #expect(again.ok)
        #expect(again.price == first.price)
        #expect(again.leading == true)
        #expect(again.duplicate)
    }

    @Test func sameIdWithDifferentContentIsIdempotencyConflict() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.apply(bid("r1", "ann", 1000))
        let hash = h.engine.stateHash()
        let r = h.apply(bid("r1", "ann", 2000))
        #expect(r.error == .idempotencyConflict)
        #expect(!r.duplicate)
        #expect(h.events.isEmpty)
        #expect(h.engine.stateHash() == hash)
        #expect(h.english()?.maximum == 1000)
    }

    @Test func sameIdOnAnotherListingIsIdempotencyConflict() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.open("L2", Terms.english(), at: 0)
        h.apply(bid("r1", "ann", 1000))
        #expect(h.apply(bid("r1", "ann", 1000, on: "L2")).error == .idempotencyConflict)
    }

    @Test func sameIdWithAnotherCommandTypeIsIdempotencyConflict() {
        let h = Harness()
        h.open(Terms.english(buyNow: 5000), at: 0)
        h.apply(bid("r1", "ann", 100))
        let r = h.apply(Command(id: "r1", listing: "L", body: .buyNow(buyer: "ann")))
        #expect(r.error == .idempotencyConflict)
        #expect(h.status() == .open)
    }

    @Test func conflictIsNotRememberedSoTheOriginalStillRepeats() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.apply(bid("r1", "ann", 1000))
        h.apply(bid("r1", "ann", 2000))
        #expect(h.apply(bid("r1", "ann", 1000)).duplicate)
    }

    @Test func idsAreUniquePerPrincipalNotGlobally() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        let ann = h.apply(bid("r1", "ann", 1000))
        let bob = h.apply(bid("r1", "bob", 2000))
        #expect(ann.ok && !ann.duplicate)
        #expect(bob.ok && !bob.duplicate)
        #expect(h.english()?.leader == "bob")
    }

    @Test func sellerIdsAreTheirOwn() {
        let h = Harness()
        h.open("L1", seller: "sam", Terms.english(), at: 0, id: "r1")
        let other = h.open("L2", seller: "sue", Terms.english(), at: 0, id: "r1")
        #expect(other.ok && !other.duplicate)
        let conflict = h.open("L3", seller: "sam", Terms.english(), at: 0, id: "r1")
        #expect(conflict.error == .idempotencyConflict)
        #expect(h.listing("L3") == nil)
    }

    @Test func duplicateOrderDoesNotTradeTwice() {
        let h = Harness()
        h.open("M", Terms.market(), at: 0)
        h.order("sue", .sell, 10, price: 100, id: "s1")
        let first = h.order("bob", .buy, 4, price: 100, tif: .ioc, id: "b1")
        let again = h.order("bob", .buy, 4, price: 100, tif: .ioc, id: "b1")
        #expect(again.duplicate)
        #expect(again.filled == first.filled)
        #expect(h.events.isEmpty)
        #expect(h.market()?.asks.last?.total == 6)
    }

    @Test func duplicateAcceptDoesNotFillTwice() {
        let h = Harness()
        h.open(Terms.dutch(quantity: 5), at: 0)
        h.accept("ann", 2, id: "a1")
        #expect(h.accept("ann", 2, at: 3000, id: "a1").duplicate)
        #expect(h.dutch()?.remaining == 3)
    }

    @Test func duplicateOpenDoesNotReportListingExists() {
        let h = Harness()
        let first = h.open(Terms.english(), at: 0, id: "o1")
        let again = h.open(Terms.english(), at: 5, id: "o1")
        #expect(first.ok)
        #expect(again.ok && again.duplicate)
    }

    @Test func rulesBadRequestIsRememberedLikeAnyRuleResult() {
        let h = Harness()
        let terms = Terms.english(closesAt: 100, opensAt: 200)
        let first = h.open(terms, at: 0, id: "o1")
        #expect(first.error == .badRequest)
        let count = h.engine.rememberedCount
        let again = h.open(terms, at: 0, id: "o1")
        #expect(again.duplicate)
        #expect(again.error == .badRequest)
        #expect(h.engine.rememberedCount == count)
    }

    @Test func unreadableIdentifiersAreNotRemembered() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        let count = h.engine.rememberedCount
        #expect(h.apply(bid("r1", "not valid", 1000)).error == .badRequest)
        #expect(h.apply(bid("bad id", "ann", 1000)).error == .badRequest)
        #expect(h.engine.rememberedCount == count)
        #expect(!h.apply(bid("r1", "ann", 1000)).duplicate)
    }

    @Test func idsAreForgottenAfterTheWindow() {
        let h = Harness(window: 1000)
        h.open(Terms.sealed(closesAt: 100_000), at: 0)
        h.apply(bid("r1", "ann", 500), at: 10)
        #expect(h.apply(bid("r1", "ann", 500), at: 1009).duplicate, "still inside the window")
        let later = h.apply(bid("r1", "ann", 500), at: 1011)
        #expect(!later.duplicate)
        #expect(h.kinds == [.sealedBidPlaced(bids: 2)], "the forgotten id is a new command")
    }

    @Test func conflictingContentIsAcceptedOnceTheIdIsForgotten() {
        let h = Harness(window: 1000)
        h.open(Terms.english(), at: 0)
        h.apply(bid("r1", "ann", 500), at: 10)
        #expect(h.apply(bid("r1", "ann", 900), at: 500).error == .idempotencyConflict)
        #expect(h.apply(bid("r1", "ann", 900), at: 2000).ok)
    }

    @Test func forgettingShrinksTheTable() {
        let h = Harness(window: 1000)
        h.open(Terms.english(), at: 0)
        for i in 0..<10 { h.apply(bid("r\(i)", "ann", 1000 + Money(i)), at: Millis(i)) }
        #expect(h.engine.rememberedCount == 11)
        h.advance(to: 1005)
        #expect(h.engine.rememberedCount == 4)
        h.advance(to: 5000)
        #expect(h.engine.rememberedCount == 0)
    }

    @Test func rememberedIdsArePartOfTheStateHash() {
        let a = Harness()
        let b = Harness()
        a.open(Terms.english(), at: 0, id: "o1")
        b.open(Terms.english(), at: 0, id: "o1")
        #expect(a.engine.stateHash() == b.engine.stateHash())
        // A rejection changes no listing, but it is remembered.
        #expect(a.apply(bid("r1", "ann", 1, on: "nope")).error == .unknownListing)
        #expect(a.engine.stateHash() != b.engine.stateHash())
    }

    @Test func manyIdsOverALongRunStayBoundedByTheWindow() {
        let h = Harness(window: 100)
        h.open("M", Terms.market(), at: 0)
        for i in 0..<3000 {
            h.order("t\(i % 7)", .buy, 1, price: 100, tif: .ioc, at: Millis(i), id: "q\(i)")
        }
        #expect(h.engine.rememberedCount <= 101)
        #expect(h.order("t0", .buy, 1, price: 100, tif: .ioc, id: "q2996").duplicate)
    }
}
