import Testing

@testable import GavelCore

/// The engine's bounds on what an `open` asks of it over time: the shortest dutch step (each step is a journaled tick
/// and a `price` event) and the longest listing duration (how far after the engine time `closes_at` may be).
@Suite struct OpenLimitTests {
    private static let year: Millis = 31_536_000_000

    /// `gavel serve`'s defaults with a longest duration of a year, unless others are given.
    private func harness(
        _ configuration: EngineConfiguration = EngineConfiguration(
            minDutchStepMs: EngineConfiguration.servedMinDutchStepMs, maxListingDurationMs: year)
    ) -> Harness {
        Harness(engine: Engine(configuration: configuration))
    }

    @Test func servesDefaultsAreATenthOfASecondAndNoLongestDuration() {
        let c = EngineConfiguration.served
        #expect(c.minDutchStepMs == 100)
        #expect(c.maxListingDurationMs == .max)
        let h = Harness(engine: Engine(configuration: c))
        #expect(h.open("E", Terms.english(closesAt: .max), at: 0).ok, "a far closes_at is refused only when set")
    }

    @Test func aDutchStepShorterThanTheMinimumIsRefusedNamingTheMinimumAndChangesNothing() {
        let h = harness()
        let r = h.open(Terms.dutch(start: 1_000_000_000_000_000, floor: 1, step: 1, stepEveryMs: 1), at: 0)
        #expect(r.error == .badRequest)
        #expect(r.message == "step_every_ms 1 is below the minimum of 100 ms (--min-dutch-step-ms)")
        #expect(h.events.isEmpty)
        #expect(!h.engine.hasListing("L"))
        #expect(h.open("D2", Terms.dutch(stepEveryMs: 99), at: 0).error == .badRequest)
        #expect(h.open("D3", Terms.dutch(stepEveryMs: 100), at: 0).ok, "the minimum itself is allowed")
    }

    @Test func theMinimumDutchStepIsASetting() {
        let h = harness(EngineConfiguration(minDutchStepMs: 50, maxListingDurationMs: Self.year))
        #expect(h.open("D1", Terms.dutch(stepEveryMs: 49), at: 0).message.contains("minimum of 50 ms"))
        #expect(h.open("D2", Terms.dutch(stepEveryMs: 50), at: 0).ok)
    }

    @Test func aClosesAtBeyondTheLongestDurationFromTheEngineTimeIsRefusedInEveryFormat() {
        let h = harness()
        let now: Millis = 5_000
        let tooFar = now + Self.year + 1
        let refused = [
            h.open("E", Terms.english(closesAt: tooFar), at: now),
            h.open("S", Terms.sealed(closesAt: tooFar), at: now),
            h.open("D", Terms.dutch(closesAt: tooFar), at: now),
            h.open("M", Terms.market(closesAt: tooFar), at: now),
        ]
        for r in refused {
            #expect(r.error == .badRequest)
            #expect(
                r.message
                    == "closes_at \(tooFar) is more than the maximum listing duration of \(Self.year) ms (--max-listing-duration-ms) after the engine time \(now)"
            )
        }
        #expect(h.engine.listingCount == 0)
        #expect(h.open("E2", Terms.english(closesAt: now + Self.year), at: now).ok, "exactly the longest is allowed")
        #expect(h.open("M2", Terms.market(), at: now).ok, "a market without closes_at is not bounded")
    }

    @Test func theLongestDurationCountsFromTheEngineTimeNotFromOpensAt() {
        let h = harness(EngineConfiguration(maxListingDurationMs: 10_000))
        #expect(h.open("A", Terms.english(closesAt: 10_500, opensAt: 9_000), at: 1_000).ok)
        #expect(h.open("B", Terms.english(closesAt: 11_001, opensAt: 9_000), at: 1_000).error == .badRequest)
    }

    @Test func bothSettingsArePartOfTheStateAndRestoredFromIt() throws {
        let engine = Engine(configuration: EngineConfiguration(minDutchStepMs: 250, maxListingDurationMs: 60_000))
        let restored = try Engine.restore(from: engine.encodeState(), defaults: EngineConfiguration())
        #expect(restored.configuration.minDutchStepMs == 250)
        #expect(restored.configuration.maxListingDurationMs == 60_000)
        #expect(restored.encodeState() == engine.encodeState())
        #expect(engine.encodeState().first == 3, "version 3: the caps per seller and per trader are not set")
        let other = Engine(configuration: EngineConfiguration(minDutchStepMs: 251, maxListingDurationMs: 60_000))
        #expect(other.stateHash() != engine.stateHash())
        // A version 3 state takes the caps it lacks from the defaults, and keeps its own settings over theirs.
        let served = try Engine.restore(from: engine.encodeState(), defaults: .served)
        #expect(served.configuration.minDutchStepMs == 250)
        #expect(served.configuration.maxOpenListingsPerSeller == EngineConfiguration.servedMaxOpenListingsPerSeller)
    }

    /// A state written before the two settings existed: a listing opened then with a 1 ms step keeps its terms and
    /// keeps stepping; new opens follow the settings given at restore.
    @Test func aVersionTwoStateTakesBothSettingsFromTheDefaultsAndItsListingsKeepTheirTerms() throws {
        let old = Harness()
        #expect(old.open("D", Terms.dutch(start: 1_000, floor: 1, step: 1, stepEveryMs: 1, closesAt: 10_000), at: 0).ok)
        let v2 = versionTwoState(of: old.engine)
        #expect(v2.prefix(4) == [2, 0, 0, 0])
        let defaults = EngineConfiguration(minDutchStepMs: 2_000, maxListingDurationMs: Self.year)
        let restored = try Engine.restore(from: v2, defaults: defaults)
        #expect(restored.configuration.minDutchStepMs == 2_000)
        #expect(restored.configuration.maxListingDurationMs == Self.year)
        let again = try Engine.restore(from: v2, defaults: defaults)
        #expect(restored.stateHash() == again.stateHash(), "deterministic")
        let h = Harness(engine: restored)
        h.advance(to: 10)
        #expect(h.kinds.count == 10, "the old listing still steps every ms")
        #expect(h.open("D2", Terms.dutch(stepEveryMs: 1_000), at: 20, id: "new-1").error == .badRequest)
        #expect(h.open("D3", Terms.dutch(stepEveryMs: 2_000), at: 20, id: "new-2").ok)
        #expect(restored.encodeState().prefix(4) == [3, 0, 0, 0], "written back as version 3")
    }

    @Test func anEngineWithNeitherSettingWritesTheVersionTwoStateItWroteBefore() throws {
        let h = Harness()
        #expect(h.open("D", Terms.dutch(stepEveryMs: 1), at: 0).ok)
        let bytes = h.engine.encodeState()
        #expect(bytes.prefix(4) == [2, 0, 0, 0])
        let restored = try Engine.restore(from: bytes, defaults: EngineConfiguration())
        #expect(restored.encodeState() == bytes)
    }
}

/// One seller cannot hold more than its cap of open listings, nor one trader more than its cap of resting orders
/// over all market listings: a user cannot grow the state without bound by opening listings of its own.
@Suite struct PerUserLimitTests {
    private func engine(_ configuration: EngineConfiguration) -> (Engine, (Command) -> CommandResult) {
        let engine = Engine(configuration: configuration)
        var events: [Event] = []
        return (engine, { engine.apply($0, events: &events) })
    }

    private func openMarket(_ id: String, by seller: String, request: String? = nil) -> Command {
        Command(id: request ?? "o-\(id)", listing: id, body: .open(seller: seller, terms: .market(.init())))
    }

    @Test func aSellerAtItsCapOfOpenListingsIsRefusedUntilOneCloses() {
        let (engine, apply) = engine(EngineConfiguration(maxOpenListingsPerSeller: 3))
        for n in 0..<3 { #expect(apply(openMarket("M\(n)", by: "sam")).ok) }
        let refused = apply(openMarket("M3", by: "sam"))
        #expect(refused.error == .limitExceeded)
        #expect(
            refused.message
                == "sam already has 3 open listings, the most a seller may (--max-open-listings-per-seller 3): a listing counts until it closes, sells out or is cancelled"
        )
        #expect(apply(openMarket("X0", by: "sue")).ok, "another seller is not limited by sam's listings")
        #expect(apply(Command(id: "c", listing: "M0", body: .cancelListing(seller: "sam"))).ok)
        #expect(apply(openMarket("M3", by: "sam", request: "again")).ok, "a cancelled listing no longer counts")
        // The count is not in the state: a restore counts the open listings again.
        let restored = try! Engine.restore(from: engine.encodeState())
        var events: [Event] = []
        #expect(restored.apply(openMarket("M4", by: "sam"), events: &events).error == .limitExceeded)
    }

    @Test func aTraderAtItsCapOfRestingOrdersOverAllListingsIsRefusedUntilOneLeaves() {
        let (engine, apply) = engine(
            EngineConfiguration(maxRestingOrdersPerTrader: 2, maxRestingOrdersPerTraderTotal: 3))
        for n in 0..<3 { #expect(apply(openMarket("M\(n)", by: "sam")).ok) }
        func buy(_ id: String, on listing: String, tif: TimeInForce = .gtc) -> CommandResult {
            apply(
                Command(
                    id: id, listing: listing,
                    body: .order(trader: "ann", side: .buy, price: 10, quantity: 1, tif: tif, expiresAt: nil)))
        }
        #expect(buy("a", on: "M0").ok && buy("b", on: "M0").ok && buy("c", on: "M1").ok)
        let refused = buy("d", on: "M2")
        #expect(refused.error == .limitExceeded)
        #expect(refused.message.hasPrefix("ann already has 3 orders resting over all market listings"))
        #expect(buy("e", on: "M2", tif: .ioc).ok, "an ioc order never rests and is not limited")
        // Cancelling a listing cancels its resting orders, which then no longer count.
        #expect(apply(Command(id: "c0", listing: "M0", body: .cancelListing(seller: "sam"))).ok)
        #expect(buy("f", on: "M2").ok && buy("g", on: "M2").ok, "two made room: c on M1, f and g on M2")
        #expect(buy("h", on: "M1").error == .limitExceeded)
        #expect(apply(Command(id: "x", listing: "M1", body: .cancel(trader: "ann", order: "c"))).ok)
        #expect(buy("i", on: "M2").message.contains("on listing M2"), "the per-listing cap applies too")
        #expect(buy("j", on: "M1").ok, "a cancelled order made room")
        let restored = try! Engine.restore(from: engine.encodeState())
        var events: [Event] = []
        let again = restored.apply(
            Command(
                id: "k", listing: "M1",
                body: .order(trader: "ann", side: .buy, price: 10, quantity: 1, tif: .gtc, expiresAt: nil)),
            events: &events)
        #expect(again.error == .limitExceeded, "a restore counts the resting orders again")
    }
}

/// One seller cannot make the engine hold more than its cap of listings, open or ended and still in memory, nor one
/// user be the buyer or seller of more than its cap of unfinished settlements: a seller selling to a bidder who
/// never pays no longer holds a listing and a settlement per sale for as long as the payment deadline it picked.
@Suite struct HeldLimitTests {
    private static let due = SettlementDeadlines(paymentDueMs: 10_000)

    private func engine(_ configuration: EngineConfiguration) -> (Engine, (Command) -> CommandResult) {
        let engine = Engine(configuration: configuration)
        var events: [Event] = []
        return (engine, { engine.apply($0, events: &events) })
    }

    private func openEnglish(_ id: String, by seller: String = "sam", request: String? = nil) -> Command {
        Command(
            id: request ?? "o-\(id)", listing: id,
            body: .open(
                seller: seller,
                terms: .english(.init(start: 100, buyNow: 100, closesAt: 1_000_000, deadlines: Self.due))))
    }

    private func order(
        _ id: String, _ trader: String, _ side: Side, price: Money, quantity: Int64 = 1, tif: TimeInForce = .ioc
    ) -> Command {
        Command(
            id: id, listing: "M",
            body: .order(trader: trader, side: side, price: price, quantity: quantity, tif: tif, expiresAt: nil))
    }

    @Test func aSellerAtItsCapOfListingsHeldIsRefusedUntilAnEndedOneLeavesMemory() throws {
        let (engine, apply) = engine(EngineConfiguration(closedListingRetentionMs: 1_000, maxListingsHeldPerSeller: 2))
        #expect(apply(openEnglish("E0")).ok)
        #expect(apply(Command(id: "n0", listing: "E0", body: .buyNow(buyer: "ann"))).ok)
        #expect(apply(openEnglish("E1")).ok, "one listing open, one sold and awaiting payment")
        let message =
            "sam already has 2 listings in the engine, the most a seller may (--max-listings-held-per-seller 2): 2 of "
            + "your listings are open or ended and still held for their settlements or offers; an ended listing counts "
            + "until its settlements are final (paid and completed, or their deadline passed), its second-chance offer "
            + "is answered or expired, and the retention (--closed-listing-retention-ms) has passed"
        let refused = apply(openEnglish("E2"))
        #expect(refused.error == .limitExceeded)
        #expect(refused.message == message)
        #expect(apply(openEnglish("X0", by: "sue")).ok, "another seller is not limited by sam's listings")
        // The count is not in the state: a restore counts the listings again.
        let restored = try Engine.restore(from: engine.encodeState())
        var events: [Event] = []
        #expect(restored.apply(openEnglish("E2", request: "r1"), events: &events).message == message)
        // The payment expires at 10,000 (final); the listing is evicted once the retention has passed.
        _ = restored.advance(to: 10_999, events: &events)
        #expect(restored.apply(openEnglish("E2", request: "r2"), events: &events).error == .limitExceeded)
        _ = restored.advance(to: 11_000, events: &events)
        #expect(!restored.hasListing("E0"))
        #expect(restored.apply(openEnglish("E2", request: "r3"), events: &events).ok, "an evicted listing made room")
        #expect(restored.apply(openEnglish("E3", request: "r4"), events: &events).error == .limitExceeded)
    }

    @Test func aUserAtItsCapOfUnfinishedSettlementsIsRefusedUntilOneIsFinal() throws {
        let (engine, apply) = engine(EngineConfiguration(maxUnfinishedSettlementsPerUser: 2))
        #expect(
            apply(
                Command(id: "om", listing: "M", body: .open(seller: "sam", terms: .market(.init(deadlines: Self.due))))
            )
            .ok)
        #expect(apply(order("s", "sam", .sell, price: 10, quantity: 100, tif: .gtc)).ok)
        #expect(apply(order("b1", "ann", .buy, price: 10)).filled == 1)
        #expect(apply(order("b2", "ann", .buy, price: 10)).filled == 1)
        #expect(engine.settlementCount == 2)
        let message =
            "ann is already the buyer or seller of 2 unfinished settlements, the most a user may "
            + "(--max-unfinished-settlements-per-user 2): a settlement counts until it is final, payment_expired when "
            + "its payment deadline passes unpaid, or once paid completed, refunded or released; retry once some of "
            + "yours are"
        let refused = apply(order("b3", "ann", .buy, price: 10))
        #expect(refused.error == .limitExceeded)
        #expect(refused.message == message)
        #expect(apply(order("b4", "ann", .buy, price: 9, tif: .gtc)).ok, "an order that only rests is not refused")
        // buy_now, a dutch accept and accept_offer are refused alike.
        #expect(apply(openEnglish("E")).ok)
        #expect(apply(Command(id: "n", listing: "E", body: .buyNow(buyer: "ann"))).message == message)
        #expect(
            apply(
                Command(
                    id: "od", listing: "D",
                    body: .open(
                        seller: "sue",
                        terms: .dutch(
                            .init(
                                start: 50, floor: 10, step: 1, stepEveryMs: 1_000, quantity: 5, closesAt: 1_000_000))))
            )
            .ok)
        #expect(apply(Command(id: "a", listing: "D", body: .accept(bidder: "ann", quantity: 1))).message == message)
        // sam, the seller of both, is passive in them: his sale to bob is not refused, and makes his third.
        #expect(apply(order("c1", "bob", .buy, price: 10)).filled == 1)
        #expect(apply(order("s2", "sam", .buy, price: 1, tif: .gtc)).ok, "a resting order of sam is not refused")
        #expect(apply(order("s3", "sam", .sell, price: 9)).message.hasPrefix("sam is already the buyer or seller of 3"))
        // The count is not in the state: a restore counts the unfinished settlements again.
        let restored = try Engine.restore(from: engine.encodeState())
        #expect(restored.settlementCount == 3)
        var events: [Event] = []
        #expect(restored.apply(order("r1", "ann", .buy, price: 10), events: &events).message == message)
        // Paid is not final; the payment deadline of the unpaid one is.
        #expect(
            restored.apply(
                Command(
                    id: "p", listing: "M",
                    body: .settle(
                        number: 1, action: .confirmPayment(paymentRef: "pay-1"), by: "payments", role: .service)),
                events: &events
            ).ok)
        #expect(restored.apply(order("r2", "ann", .buy, price: 10), events: &events).error == .limitExceeded)
        _ = restored.advance(to: 10_000, events: &events)
        #expect(restored.settlement("M:2")?.state == .paymentExpired)
        #expect(restored.apply(order("r3", "ann", .buy, price: 10), events: &events).filled == 1)
        #expect(restored.apply(order("r4", "ann", .buy, price: 10), events: &events).error == .limitExceeded)
    }

    @Test func anEnglishCloseIsNeverRefusedAndTheRunnerUpAtItsCapIsRefusedItsOffer() throws {
        let (engine, apply) = engine(EngineConfiguration(maxUnfinishedSettlementsPerUser: 1))
        let quick = SettlementDeadlines(paymentDueMs: 1, offerDueMs: 10_000)
        #expect(
            apply(
                Command(
                    id: "oe", listing: "E",
                    body: .open(seller: "sam", terms: .english(.init(start: 100, closesAt: 1_000, deadlines: quick))))
            )
            .ok)
        #expect(apply(Command(id: "b1", listing: "E", body: .bid(bidder: "bob", amount: 100))).ok)
        #expect(apply(Command(id: "b2", listing: "E", body: .bid(bidder: "ann", amount: 200))).ok)
        #expect(apply(openEnglish("F")).ok && apply(openEnglish("G")).ok)
        #expect(apply(Command(id: "n1", listing: "F", body: .buyNow(buyer: "bob"))).ok, "bob's one settlement")
        #expect(apply(Command(id: "n2", listing: "G", body: .buyNow(buyer: "ann"))).ok, "ann's one settlement")
        var events: [Event] = []
        _ = engine.advance(to: 1_000, events: &events)
        #expect(engine.settlement("E:1")?.buyer == "ann", "the winner at the cap gets the settlement anyway")
        _ = engine.advance(to: 1_001, events: &events)
        #expect(engine.settlement("E:1")?.state == .paymentExpired)
        #expect(apply(Command(id: "sc", listing: "E", body: .secondChance(.offer, by: "sam", role: .seller))).ok)
        let refused = apply(Command(id: "ac", listing: "E", body: .secondChance(.accept, by: "bob", role: .bidder)))
        #expect(refused.error == .limitExceeded)
        #expect(refused.message.hasPrefix("bob is already the buyer or seller of 1 unfinished settlements"))
        #expect(engine.secondChanceOffers.first?.state == .offered, "a refused accept changes nothing")
    }

    /// A stream whose engine has neither cap keeps the state bytes, version and hash it had before they existed; a
    /// state that predates them (version 4 or earlier) has neither whatever the defaults say, since its journal holds
    /// commands accepted without them.
    @Test func theCapsArePartOfTheStateOnlyWhenSetAndAnOlderStateHasNone() throws {
        let older = Engine(configuration: EngineConfiguration(maxOpenListingsPerSeller: 3))
        var events: [Event] = []
        #expect(older.apply(openEnglish("E0"), events: &events).ok)
        #expect(older.apply(Command(id: "n", listing: "E0", body: .buyNow(buyer: "ann")), events: &events).ok)
        let bytes = older.encodeState()
        #expect(bytes.first == 4, "version 4: neither cap is set")
        let restored = try Engine.restore(from: bytes, defaults: .served)
        #expect(restored.configuration.maxListingsHeldPerSeller == .max)
        #expect(restored.configuration.maxUnfinishedSettlementsPerUser == .max)
        #expect(restored.configuration.maxOpenListingsPerSeller == 3)
        #expect(restored.encodeState() == bytes && restored.stateHash() == older.stateHash())
        let plain = Engine()
        #expect(plain.encodeState().first == 2, "gavel simulate's engine has none of the caps")
        let served = Engine(configuration: .served)
        #expect(served.configuration.maxListingsHeldPerSeller == 20_000)
        #expect(served.configuration.maxUnfinishedSettlementsPerUser == 10_000)
        let servedBytes = served.encodeState()
        #expect(servedBytes.first == 5)
        let back = try Engine.restore(from: servedBytes)
        #expect(back.configuration == EngineConfiguration.served && back.encodeState() == servedBytes)
        let other = Engine(configuration: EngineConfiguration(maxListingsHeldPerSeller: 20_001))
        #expect(
            other.stateHash()
                != Engine(configuration: EngineConfiguration(maxListingsHeldPerSeller: 20_000)).stateHash())
    }
}
