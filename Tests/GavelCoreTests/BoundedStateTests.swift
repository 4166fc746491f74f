import Testing

@testable import GavelCore

/// Closed listings leave memory after their retention, and each principal's remembered request ids are capped:
/// deterministically, in the state encoding, identical after a restore.
@Suite struct BoundedStateTests {
    private func engine(retention: Millis = 1_000, cap: Int = 100_000, window: Millis = 86_400_000) -> Engine {
        Engine(
            configuration: EngineConfiguration(
                idempotencyWindowMs: window, closedListingRetentionMs: retention, maxRequestIDsPerPrincipal: cap))
    }

    private func open(
        _ listing: String, closesAt: Millis, buyNow: Money? = nil, id: String? = nil,
        deadlines: SettlementDeadlines = SettlementDeadlines()
    ) -> Command {
        Command(
            id: id ?? "open-\(listing)", listing: listing,
            body: .open(
                seller: "sam",
                terms: .english(.init(start: 100, buyNow: buyNow, closesAt: closesAt, deadlines: deadlines))))
    }

    private func bid(_ listing: String, _ bidder: String, _ amount: Money, id: String) -> Command {
        Command(id: id, listing: listing, body: .bid(bidder: bidder, amount: amount))
    }

    @Test func closedListingIsEvictedWhenItsRetentionEndsAndItsIdMayBeOpenedAgain() {
        let e = engine(retention: 1_000)
        var events: [Event] = []
        #expect(e.apply(open("L", closesAt: 100), events: &events).ok)
        e.advance(to: 100, events: &events)
        #expect(e.hasListing("L"), "closed, within its retention")
        events.removeAll()
        e.advance(to: 1_099, events: &events)
        #expect(e.hasListing("L"))
        #expect(events.isEmpty)
        e.advance(to: 1_100, events: &events)
        #expect(!e.hasListing("L"))
        #expect(events.map(\.kind) == [.evicted])
        #expect(events.first?.seq == 0, "internal: no public seq")
        #expect(e.apply(bid("L", "ann", 500, id: "late"), events: &events).error == .unknownListing)
        #expect(e.apply(open("L", closesAt: 5_000, id: "again"), events: &events).ok, "the id is free again")
    }

    @Test func cancelledAndBoughtListingsAreEvictedAfterTheRetentionFromTheirEnd() {
        let e = engine(retention: 500)
        var events: [Event] = []
        #expect(e.apply(open("C", closesAt: 10_000), events: &events).ok)
        // B's sale is settled (its payment expires) at once, so only the retention holds it.
        let quick = SettlementDeadlines(paymentDueMs: 1)
        #expect(e.apply(open("B", closesAt: 10_000, buyNow: 900, deadlines: quick), events: &events).ok)
        #expect(e.apply(open("O", closesAt: 10_000), events: &events).ok)
        e.advance(to: 200, events: &events)
        #expect(
            e.apply(Command(id: "c", listing: "C", body: .cancelListing(seller: "sam")), events: &events).ok)
        e.advance(to: 300, events: &events)
        #expect(e.apply(Command(id: "b", listing: "B", body: .buyNow(buyer: "ann")), events: &events).ok)
        e.advance(to: 699, events: &events)
        #expect(e.hasListing("C") && e.hasListing("B"))
        e.advance(to: 700, events: &events)
        #expect(!e.hasListing("C") && e.hasListing("B"))
        e.advance(to: 801, events: &events)
        #expect(!e.hasListing("B"))
        #expect(e.hasListing("O"), "an open listing is never evicted")
        #expect(e.listingCount == 1)
    }

    @Test func evictionTimersSurviveARestoreAndReplayToTheSameHash() throws {
        let live = engine(retention: 700)
        var events: [Event] = []
        for i in 0..<6 {
            #expect(live.apply(open("L\(i)", closesAt: Millis(100 + 150 * i)), events: &events).ok)
        }
        live.advance(to: 500, events: &events)
        let bytes = live.encodeState()
        let restored = try Engine.restore(from: bytes)
        #expect(restored.encodeState() == bytes)
        #expect(restored.configuration.closedListingRetentionMs == 700)
        for time in stride(from: Millis(550), through: 2_000, by: 50) {
            live.advance(to: time, events: &events)
            restored.advance(to: time, events: &events)
            #expect(restored.stateHash() == live.stateHash(), "at \(time)")
        }
        #expect(live.listingCount == 0)
        #expect(restored.listingCount == 0)
    }

    @Test func aPrincipalKeepsOnlyItsNewestRequestIdsOthersAreUntouched() {
        let e = engine(cap: 3)
        var events: [Event] = []
        for i in 0..<5 { _ = e.apply(bid("nowhere", "ann", 100, id: "a\(i)"), events: &events) }
        _ = e.apply(bid("nowhere", "bob", 100, id: "b0"), events: &events)
        #expect(e.rememberedCount(of: "ann") == 3)
        #expect(e.rememberedCount(of: "bob") == 1)
        #expect(e.rememberedCount == 4)
        #expect(e.apply(bid("nowhere", "ann", 100, id: "a4"), events: &events).duplicate, "newest: remembered")
        #expect(e.apply(bid("nowhere", "bob", 100, id: "b0"), events: &events).duplicate)
        // a0 and a1 were forgotten first; a0 is a new request again (which in turn pushes out a2).
        #expect(!e.apply(bid("nowhere", "ann", 100, id: "a0"), events: &events).duplicate)
        #expect(e.rememberedCount(of: "ann") == 3)
        #expect(!e.apply(bid("nowhere", "ann", 100, id: "a2"), events: &events).duplicate)
    }

    /// `gavel verify` compares a snapshot's remembered results with a replay's: ids the cap forgot are in neither, so
    /// they are no change.
    @Test func idsTheCapForgotAreNotReportedAsChangedOutcomes() {
        let e = engine(cap: 2)
        var events: [Event] = []
        for i in 0..<5 { _ = e.apply(bid("nowhere", "ann", 100, id: "a\(i)"), events: &events) }
        #expect(e.outcomeChanges(comparedTo: e).isEmpty)
    }

    @Test func anIdRememberedAgainAfterTheCapForgotItOutlivesItsOldEntry() throws {
        let e = engine(cap: 2, window: 1_000)
        var events: [Event] = []
        _ = e.apply(bid("x", "ann", 100, id: "r1"), events: &events)
        _ = e.apply(bid("x", "ann", 100, id: "r2"), events: &events)
        _ = e.apply(bid("x", "ann", 100, id: "r3"), events: &events)  // forgets r1
        e.advance(to: 500, events: &events)
        _ = e.apply(bid("x", "ann", 100, id: "r1"), events: &events)  // r1 again at 500, forgets r2
        let restored = try Engine.restore(from: e.encodeState())
        for engine in [e, restored] {
            engine.advance(to: 1_000, events: &events)  // the first r1, r2 and r3 leave the window
            #expect(engine.rememberedCount(of: "ann") == 1)
            #expect(engine.apply(bid("x", "ann", 100, id: "r1"), events: &events).duplicate, "the r1 of 500 stays")
            engine.advance(to: 1_500, events: &events)
            #expect(engine.rememberedCount == 0)
            #expect(engine.principals.isEmpty, "no chain is left behind")
        }
        #expect(restored.stateHash() == e.stateHash())
    }

    @Test func theCapAndTheRetentionArePartOfTheStateHash() {
        let a = engine(retention: 1_000, cap: 10)
        let b = engine(retention: 2_000, cap: 10)
        let c = engine(retention: 1_000, cap: 11)
        #expect(a.stateHash() != b.stateHash())
        #expect(a.stateHash() != c.stateHash())
    }

    @Test func aVersionOneStateLoadsAndItsEndedListingsGetEvictionTimersInIdOrder() throws {
        let old = engine()
        var events: [Event] = []
        #expect(old.apply(open("Z", closesAt: 100), events: &events).ok)
        #expect(old.apply(open("A", closesAt: 200), events: &events).ok)
        #expect(old.apply(open("M", closesAt: 9_000), events: &events).ok)
        old.advance(to: 300, events: &events)
        let v1 = versionOneState(of: old)
        #expect(v1.prefix(4) == [1, 0, 0, 0])
        let defaults = EngineConfiguration(closedListingRetentionMs: 2_000, maxRequestIDsPerPrincipal: 50)
        let first = try Engine.restore(from: v1, defaults: defaults)
        let second = try Engine.restore(from: v1, defaults: defaults)
        #expect(first.stateHash() == second.stateHash(), "deterministic")
        #expect(first.configuration.closedListingRetentionMs == 2_000)
        #expect(first.configuration.maxRequestIDsPerPrincipal == 50)
        let evictions = first.timers.ordered.filter { $0.action == .evict }
        #expect(evictions.map(\.listing) == ["A", "Z"])
        #expect(evictions.map(\.time) == [2_300, 2_300])
        #expect(first.encodeState().prefix(4) == [2, 0, 0, 0], "written back as version 2")
        first.advance(to: 2_300, events: &events)
        #expect(first.listingCount == 1)
        #expect(first.hasListing("M"))
    }

    @Test func aVersionOneStateAboveTheCapKeepsEachPrincipalsNewestIds() throws {
        let old = engine()
        var events: [Event] = []
        for i in 0..<5 { _ = old.apply(bid("x", "ann", 100, id: "a\(i)"), events: &events) }
        let restored = try Engine.restore(
            from: versionOneState(of: old), defaults: EngineConfiguration(maxRequestIDsPerPrincipal: 2))
        #expect(restored.rememberedCount(of: "ann") == 2)
        #expect(restored.apply(bid("x", "ann", 100, id: "a4"), events: &events).duplicate)
        #expect(!restored.apply(bid("x", "ann", 100, id: "a2"), events: &events).duplicate)
    }

    @Test func anUnknownStateVersionIsRefusedWithAClearMessage() {
        var bytes = engine().encodeState()
        bytes.replaceSubrange(0..<4, with: [9, 0, 0, 0])
        #expect {
            _ = try Engine.restore(from: bytes)
        } throws: { error in
            "\(error)".contains("unsupported state version 9")
        }
    }
}

/// A version 1 state, as the code before eviction wrote it: the version 2 encoding without the four settings after
/// the idempotency window (retention, request-id cap, resting-order caps), and without evict timers.
func versionOneState(of engine: Engine) -> [UInt8] {
    var timers = TimerQueue()
    let kept = engine.timers.ordered.filter { $0.action != .evict }
    for timer in kept { timers.restore(timer, nextSequence: engine.timers.nextSequence) }
    if kept.isEmpty { timers.restore(nextSequence: engine.timers.nextSequence) }
    engine.timers = timers
    var bytes = engine.encodeState()
    bytes.removeSubrange(20..<52)
    bytes.replaceSubrange(0..<4, with: [1, 0, 0, 0])
    return bytes
}

/// A version 2 state, as the code before the shortest dutch step and the longest listing duration wrote it: the
/// version 3 encoding without those two settings (after the resting-order caps). An engine with neither already
/// writes version 2.
func versionTwoState(of engine: Engine) -> [UInt8] {
    var bytes = engine.encodeState()
    guard bytes.prefix(4) == [3, 0, 0, 0] else { return bytes }
    bytes.removeSubrange(52..<68)
    bytes.replaceSubrange(0..<4, with: [2, 0, 0, 0])
    return bytes
}

/// Timers that stop applying are cancelled when they do, so that timers do not pile up for as long as their times are
/// away: a resting order's expiry when the order leaves the book, a listing's close when the listing is evicted.
@Suite struct CancelledTimerTests {
    private static let farFuture: Millis = 4_000_000_000_000

    private func gtc(_ trader: String, _ side: Side, _ quantity: Int64, price: Money, id: String) -> Command {
        Command(
            id: id, listing: "M",
            body: .order(
                trader: trader, side: side, price: price, quantity: quantity, tif: .gtc, expiresAt: Self.farFuture))
    }

    /// The expiry timers scheduled (trades also schedule their settlements' deadlines).
    private func expiryTimers(_ engine: Engine) -> Int {
        engine.timers.ordered.filter { if case .expire = $0.action { true } else { false } }.count
    }

    private func book(_ engine: Engine) -> MarketBook? {
        if case .market(let book) = engine.listings["M"]?.book { book } else { nil }
    }

    @Test func anOrderThatLeavesTheBookTakesItsExpiryTimerWithIt() {
        let engine = Engine()
        var events: [Event] = []
        func apply(_ command: Command) -> CommandResult { engine.apply(command, events: &events) }
        #expect(apply(Command(id: "open", listing: "M", body: .open(seller: "sam", terms: .market(.init())))).ok)
        // Cancelled: 1,000 orders placed and cancelled leave no timer.
        for n in 0..<1_000 {
            #expect(apply(gtc("ann", .sell, 1, price: 100, id: "s\(n)")).ok)
            #expect(apply(Command(id: "c\(n)", listing: "M", body: .cancel(trader: "ann", order: "s\(n)"))).ok)
        }
        #expect(engine.timerCount == 0)
        // Filled, partly (the timer stays) and then wholly (it goes).
        #expect(apply(gtc("ann", .sell, 5, price: 100, id: "s")).ok)
        #expect(apply(gtc("bob", .buy, 2, price: 100, id: "b1")).filled == 2)
        #expect(expiryTimers(engine) == 1)
        #expect(apply(gtc("bob", .buy, 3, price: 100, id: "b2")).filled == 3)
        #expect(expiryTimers(engine) == 0)
        // Cancelled by self-trade prevention: ann's own buy takes her resting sell off the book and rests itself.
        #expect(apply(gtc("ann", .sell, 1, price: 100, id: "s2")).ok)
        #expect(apply(gtc("ann", .buy, 1, price: 100, id: "b3")).remaining == 1)
        #expect(expiryTimers(engine) == 1, "only the resting buy's")
        // Expired: its timer fires once, and nothing is left.
        engine.advance(to: Self.farFuture, events: &events)
        #expect(expiryTimers(engine) == 0 && book(engine)?.isEmpty == true)
    }

    @Test func aCancelledOrClosedMarketTakesItsOrdersExpiryTimersWithIt() {
        for closes in [false, true] {
            let engine = Engine()
            var events: [Event] = []
            let terms = ListingTerms.market(.init(closesAt: closes ? 1_000 : nil))
            #expect(
                engine.apply(
                    Command(id: "open", listing: "M", body: .open(seller: "sam", terms: terms)), events: &events
                )
                .ok)
            for n in 0..<50 {
                #expect(engine.apply(gtc("t\(n % 5)", .buy, 1, price: Money(100 + n), id: "b\(n)"), events: &events).ok)
            }
            #expect(expiryTimers(engine) == 50)
            if closes {
                engine.advance(to: 1_000, events: &events)
            } else {
                #expect(
                    engine.apply(
                        Command(id: "cl", listing: "M", body: .cancelListing(seller: "sam")), events: &events
                    ).ok)
            }
            #expect(book(engine)?.isEmpty == true)
            #expect(expiryTimers(engine) == 0, closes ? "closed" : "cancelled")
        }
    }

    @Test func aListingCancelledLongBeforeItsCloseKeepsNoTimerOnceEvicted() {
        let engine = Engine(configuration: EngineConfiguration(closedListingRetentionMs: 1_000))
        var events: [Event] = []
        for n in 0..<100 {
            let listing = "L\(n)"
            let open = Command(
                id: "o\(n)", listing: listing,
                body: .open(seller: "sam", terms: .english(.init(start: 100, closesAt: Self.farFuture))))
            #expect(engine.apply(open, events: &events).ok)
            #expect(
                engine.apply(
                    Command(id: "c\(n)", listing: listing, body: .cancelListing(seller: "sam")), events: &events
                ).ok)
        }
        #expect(engine.timerCount == 200, "a close and an eviction for each")
        engine.advance(to: 1_000, events: &events)
        #expect(engine.listingCount == 0)
        #expect(engine.timerCount == 0, "the far closes went with their listings")
    }

    /// A dutch listing sold out between clock steps, and one cancelled, leave no step timer behind; an evicted
    /// listing leaves no timer at all: none fires later for a listing opened again under its id (two listings
    /// stepping in the same millisecond step in the order they were opened).
    @Test func anEvictedListingLeavesNoTimerToFireForALaterListingOfTheSameID() {
        let engine = Engine(configuration: EngineConfiguration(closedListingRetentionMs: 1_000))
        var events: [Event] = []
        func open(_ listing: String, id: String) {
            let terms = ListingTerms.dutch(
                .init(
                    start: 1_000, floor: 100, step: 100, stepEveryMs: 5_000, quantity: 1, closesAt: 20_000,
                    deadlines: SettlementDeadlines(paymentDueMs: 100)))
            #expect(
                engine.apply(
                    Command(id: id, listing: listing, body: .open(seller: "sam", terms: terms)), events: &events
                ).ok)
        }
        open("D1", id: "o1")
        #expect(
            engine.apply(Command(id: "a", listing: "D1", body: .accept(bidder: "ann", quantity: 1)), events: &events).ok
        )
        open("D3", id: "o3")
        #expect(engine.apply(Command(id: "c", listing: "D3", body: .cancelListing(seller: "sam")), events: &events).ok)
        open("D2", id: "o2")
        engine.advance(to: 1_100, events: &events)  // D3 is evicted at 1,000, D1 (its sale expired at 100) at 1,100
        #expect(!engine.hasListing("D1") && !engine.hasListing("D3"))
        #expect(engine.timerCount == 2, "D2's step and close only: \(engine.timerCount)")
        open("D1", id: "o1b")
        events = []
        engine.advance(to: 5_000, events: &events)
        #expect(events.map(\.listing) == ["D2"], "D1 (opened at 1,100) steps at 6,100")
        engine.advance(to: 6_100, events: &events)
        #expect(events.map(\.listing) == ["D2", "D1"])
    }

    @Test func aListingForgetsItsCloseTimerWhenItFiresAndKeepsTheLatestWhenSoftCloseMovesIt() {
        let engine = Engine()
        var events: [Event] = []
        let terms = ListingTerms.english(
            .init(start: 100, closesAt: 1_000, softClose: .init(windowMs: 100, extendMs: 200, maxClosesAt: nil)))
        #expect(
            engine.apply(Command(id: "o", listing: "L", body: .open(seller: "sam", terms: terms)), events: &events).ok)
        let opened = engine.listings["L"]!.closeTimer
        #expect(engine.timers.isScheduled(opened))
        engine.advance(to: 950, events: &events)
        #expect(
            engine.apply(Command(id: "b", listing: "L", body: .bid(bidder: "bob", amount: 100)), events: &events).ok)
        let extended = engine.listings["L"]!.closeTimer
        #expect(extended != opened && engine.timers.isScheduled(extended), "the close moved to 1,150")
        engine.advance(to: 1_150, events: &events)
        #expect(engine.listings["L"]?.status == .closed)
        #expect(engine.listings["L"]?.closeTimer == TimerHandle.none, "fired: nothing left to cancel")
    }

    @Test func aRestoredStateCancelsTheTimersItRestoredAndEncodesLikeTheEngineItCameFrom() throws {
        let engine = Engine()
        var events: [Event] = []
        _ = engine.apply(
            Command(id: "open", listing: "M", body: .open(seller: "sam", terms: .market(.init()))), events: &events)
        for n in 0..<20 {
            _ = engine.apply(gtc("t\(n % 3)", .sell, 1, price: Money(100 + n), id: "s\(n)"), events: &events)
        }
        let restored = try Engine.restore(from: engine.encodeState(), defaults: EngineConfiguration())
        #expect(restored.encodeState() == engine.encodeState())
        #expect(expiryTimers(restored) == 20)
        // The same commands on both: cancels and fills take the restored timers too.
        let more =
            (0..<10).map { n in
                Command(id: "c\(n)", listing: "M", body: .cancel(trader: "t\(n % 3)", order: "s\(n)"))
            } + [gtc("bob", .buy, 5, price: 200, id: "b")]
        for command in more {
            let a = engine.apply(command, events: &events)
            let b = restored.apply(command, events: &events)
            #expect(a == b)
        }
        #expect(expiryTimers(engine) == 5 && expiryTimers(restored) == 5)
        #expect(restored.encodeState() == engine.encodeState())
    }
}
