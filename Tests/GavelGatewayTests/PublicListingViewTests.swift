import GavelCore
import GavelWire
import Testing

/// Drives an engine and keeps the views that its public events fold into.
struct ViewHarness {
    let engine = Engine()
    var events: [Event] = []
    var folded: [String: PublicListingView] = [:]

    mutating func at(_ time: Millis) {
        var out: [Event] = []
        engine.advance(to: time, events: &out)
        fold(out)
    }

    @discardableResult
    mutating func apply(_ id: String, _ listing: String, _ body: CommandBody) -> CommandResult {
        var out: [Event] = []
        let result = engine.apply(Command(id: id, listing: listing, body: body), events: &out)
        fold(out)
        return result
    }

    mutating func fold(_ out: [Event]) {
        for event in out {
            events.append(event)
            if let opened = PublicListingView(opened: event) {
                folded[event.listing] = opened
            } else if !event.kind.isPrivate {
                #expect(folded[event.listing]?.apply(event) == true, "\(event)")
            }
        }
    }

    /// The view folded from events equals the view read from the engine.
    func check(_ listing: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(folded[listing] != nil, sourceLocation: sourceLocation)
        #expect(folded[listing] == PublicListingView(engine, listing: listing), sourceLocation: sourceLocation)
    }
}

@Suite struct PublicListingViewTests {
    @Test func englishViewFromEventsMatchesEngine() {
        var h = ViewHarness()
        h.apply(
            "o1", "L1",
            .open(
                seller: "sam",
                terms: .english(
                    .init(
                        start: 100, reserve: 1500, closesAt: 60_000,
                        softClose: SoftClose(windowMs: 10_000, extendMs: 15_000, maxClosesAt: 90_000)))))
        h.check("L1")
        h.at(10)
        h.apply("b1", "L1", .bid(bidder: "ann", amount: 1000))
        h.check("L1")
        h.at(55_000)
        h.apply("b2", "L1", .bid(bidder: "bob", amount: 2000))
        h.check("L1")
        guard case .english(let price, let leader, let bids, let reserveMet)? = h.folded["L1"]?.book else {
            Issue.record("not english")
            return
        }
        #expect(price == 1500 && leader == "bob" && bids == 2 && reserveMet)
        #expect(h.folded["L1"]?.closesAt == 70_000)
        h.at(80_000)
        h.check("L1")
        #expect(h.folded["L1"]?.status == .closed)
        #expect(h.folded["L1"]?.outcome == .init(winner: "bob", price: 1500, reserveMet: true))
    }

    @Test func reserveAmountIsNeverShown() {
        var h = ViewHarness()
        h.apply(
            "o1", "L1", .open(seller: "sam", terms: .english(.init(start: 100, reserve: 987_654, closesAt: 60_000))))
        let text = String(decoding: MessageEncoder.listingState(h.folded["L1"]!), as: UTF8.self)
        #expect(text.contains(#""has_reserve":true"#))
        #expect(!text.contains("987654"))
    }

    @Test func sealedShowsNoAmountsOrLeaderBeforeClose() {
        var h = ViewHarness()
        h.apply("o1", "S1", .open(seller: "sam", terms: .sealed(.init(pricing: .second, start: 100, closesAt: 10_000))))
        h.apply("b1", "S1", .bid(bidder: "ann", amount: 7777))
        h.apply("b1", "S1", .bid(bidder: "bob", amount: 6666))
        h.check("S1")
        let open = String(decoding: MessageEncoder.listingState(h.folded["S1"]!), as: UTF8.self)
        #expect(!open.contains("7777") && !open.contains("6666") && !open.contains("ann") && !open.contains("bob"))
        #expect(open.contains(#""bids":2"#))
        h.at(10_000)
        h.check("S1")
        #expect(h.folded["S1"]?.outcome == .init(winner: "ann", price: 6666, reserveMet: true))
    }

    @Test func dutchViewFollowsTheClock() {
        var h = ViewHarness()
        h.apply(
            "o1", "D1",
            .open(
                seller: "sam",
                terms: .dutch(
                    .init(start: 1000, floor: 600, step: 100, stepEveryMs: 1000, quantity: 5, closesAt: 10_000))))
        h.at(2500)
        h.apply("a1", "D1", .accept(bidder: "ann", quantity: 2))
        h.check("D1")
        #expect(h.folded["D1"]?.book == .dutch(price: 800, remaining: 3))
        h.at(10_000)
        h.check("D1")
        #expect(h.folded["D1"]?.sold == 2)
    }

    @Test func marketViewShowsTheTopOfTheBook() {
        var h = ViewHarness()
        h.apply("o1", "M1", .open(seller: "x", terms: .market(.init(closesAt: 20_000))))
        h.apply("s1", "M1", .order(trader: "sue", side: .sell, price: 101, quantity: 5, tif: .gtc, expiresAt: nil))
        h.apply("b1", "M1", .order(trader: "bea", side: .buy, price: 99, quantity: 3, tif: .gtc, expiresAt: nil))
        h.check("M1")
        #expect(h.folded["M1"]?.book == .market(bestBid: 99, bestAsk: 101, bidQuantity: 3, askQuantity: 5))
        h.apply("b2", "M1", .order(trader: "bob", side: .buy, price: 101, quantity: 5, tif: .gtc, expiresAt: nil))
        h.check("M1")
        h.apply("c1", "M1", .cancelListing(seller: "x"))
        h.check("M1")
    }

    @Test func cancelledListingShowsItsStatus() {
        var h = ViewHarness()
        h.apply("o1", "L1", .open(seller: "sam", terms: .english(.init(start: 100, closesAt: 60_000))))
        h.apply("c1", "L1", .cancelListing(seller: "sam"))
        h.check("L1")
        #expect(h.folded["L1"]?.status == .cancelled)
    }

    @Test func aListingBoughtAtItsBuyNowPriceShowsTheBuyerAsWinnerAlsoAfterARestart() throws {
        var h = ViewHarness()
        h.apply(
            "o1", "L1",
            .open(seller: "sam", terms: .english(.init(start: 100, reserve: 5_000, buyNow: 9_000, closesAt: 60_000))))
        h.apply("b1", "L1", .bid(bidder: "ann", amount: 1_000))
        #expect(h.apply("n1", "L1", .buyNow(buyer: "bob")).ok)
        h.check("L1")
        #expect(h.folded["L1"]?.outcome == PublicListingView.Outcome(winner: "bob", price: 9_000, reserveMet: true))
        // After a restart the view is read from the restored engine: the buyer must still be the winner.
        let restored = try Engine.restore(from: h.engine.encodeState())
        #expect(PublicListingView(restored, listing: "L1") == h.folded["L1"])
        #expect(restored.stateHash() == h.engine.stateHash())
    }

    @Test func applyRefusesGapsDuplicatesAndOtherListings() {
        var h = ViewHarness()
        h.apply("o1", "L1", .open(seller: "sam", terms: .english(.init(start: 100, closesAt: 60_000))))
        h.apply("b1", "L1", .bid(bidder: "ann", amount: 1000))
        var view = h.folded["L1"]!
        let bid = h.events.last { $0.seq == 2 }!
        let duplicate = view.apply(bid)
        var gap = bid
        gap.seq = 4
        let gapped = view.apply(gap)
        var other = bid
        other.listing = "L2"
        other.seq = 3
        let foreign = view.apply(other)
        #expect(!duplicate && !gapped && !foreign)
        #expect(view == h.folded["L1"])
    }
}
