import Testing

@testable import GavelCore

/// The settlement deadlines of the test listings: short, so that tests can move past them.
private let quick = SettlementDeadlines(
    paymentDueMs: 1_000, shipDueMs: 2_000, complaintWindowMs: 3_000, offerDueMs: 4_000)

/// Listing `L` of `sam` (english, closes at 60,000): ann's maximum 1,000 wins at 550 over bob's 500, and the close
/// creates settlement `L:1` (due at 61,000).
private func sold(runnerUp: Bool = true) -> Harness {
    let h = Harness()
    h.open(.english(.init(start: 100, closesAt: 60_000, deadlines: quick)), at: 0)
    h.bid("ann", 1_000, at: 10)
    if runnerUp { h.bid("bob", 500, at: 20) }
    h.advance(to: 60_000)
    return h
}

extension Harness {
    @discardableResult
    func settle(
        _ action: SettlementAction, by: String, _ role: ActorRole, number: Int64 = 1, on listing: String = "L",
        at time: Millis? = nil, id: String? = nil
    ) -> CommandResult {
        apply(
            Command(
                id: id ?? nextID("s"), listing: listing,
                body: .settle(number: number, action: action, by: by, role: role)),
            at: time)
    }

    @discardableResult
    func offer(_ action: OfferAction, by: String, _ role: ActorRole, on listing: String = "L", at time: Millis? = nil)
        -> CommandResult
    {
        apply(Command(id: nextID("c"), listing: listing, body: .secondChance(action, by: by, role: role)), at: time)
    }

    func settlement(_ id: String = "L:1") -> Settlement? { engine.settlement(id) }
}

/// Drives a sold listing's settlement `L:1` to `state` along the allowed path, at 60,000 (the close) plus a little.
private func reach(_ state: SettlementState) -> Harness {
    let h = sold()
    func go(_ action: SettlementAction, _ by: String, _ role: ActorRole) {
        #expect(h.settle(action, by: by, role).ok, "\(action) on the way to \(state)")
    }
    switch state {
    case .awaitingPayment: break
    case .paymentExpired: h.advance(to: 61_000)
    case .paid: go(.confirmPayment(paymentRef: "PAY"), "svc", .service)
    case .refunded:
        go(.confirmPayment(paymentRef: "PAY"), "svc", .service)
        go(.refund, "svc", .service)
    case .shipped, .delivered, .completed, .disputed, .released:
        go(.confirmPayment(paymentRef: "PAY"), "svc", .service)
        go(.markShipped(tracking: "TRK"), "sam", .seller)
        guard state != .shipped else { break }
        go(.confirmDelivery, "ann", .bidder)
        switch state {
        case .completed: h.advance(to: 64_000)
        case .disputed: go(.openDispute(reason: "scratched"), "ann", .bidder)
        case .released:
            go(.openDispute(reason: "scratched"), "ann", .bidder)
            go(.resolveDispute(.release), "ada", .admin)
        default: break
        }
    }
    #expect(h.settlement()?.state == state)
    return h
}

/// The protocol's table, written out: who may do what (`nil`: refused as not authorized).
private func authorized(_ action: SettlementAction, _ name: String, _ role: ActorRole) -> Bool {
    switch action {
    case .confirmPayment: role == .service
    case .refund: role == .service || role == .admin
    case .resolveDispute: role == .admin
    case .markShipped: role != .service && name == "sam"
    case .confirmDelivery: role == .service || name == "ann"
    case .openDispute: role != .service && name == "ann"
    }
}

/// The state each allowed (state, action) goes to.
private func allowed(_ state: SettlementState, _ action: SettlementAction) -> SettlementState? {
    switch (state, action) {
    case (.awaitingPayment, .confirmPayment): .paid
    case (.paid, .markShipped): .shipped
    case (.paid, .refund): .refunded
    case (.shipped, .confirmDelivery): .delivered
    case (.delivered, .openDispute): .disputed
    case (.disputed, .resolveDispute(.release)): .released
    case (.disputed, .resolveDispute(.refund)): .refunded
    default: nil
    }
}

@Suite struct SettlementRulesTests {
    static let actions: [SettlementAction] = [
        .confirmPayment(paymentRef: "PAY"), .markShipped(tracking: "TRK"), .confirmDelivery,
        .openDispute(reason: "it is broken"), .resolveDispute(.release), .resolveDispute(.refund), .refund,
    ]
    /// The buyer, the seller, a stranger, the payment backend and the dispute desk, in the roles they may claim.
    static let actors: [(String, ActorRole)] = [
        ("ann", .bidder), ("ann", .seller), ("sam", .seller), ("sam", .bidder), ("eve", .bidder), ("svc", .service),
        ("ann", .service), ("ada", .admin), ("sam", .admin),
    ]

    @Test(arguments: SettlementState.allCases)
    func everyCommandByEveryActorFromEveryStateIsDecidedByTheTable(state: SettlementState) {
        for action in Self.actions {
            for (name, role) in Self.actors {
                let h = reach(state)
                let before = h.settlement()
                let result = h.settle(action, by: name, role)
                let label = "\(action.typeName) by \(name) as \(role.rawValue) from \(state.rawValue)"
                if role == .bidder || role == .seller, name != "ann", name != "sam" {
                    // Neither its buyer nor its seller: answered as for no such settlement, word for word.
                    let none = h.settle(action, by: name, role, number: 9)
                    #expect(result == Engine.unknownSettlement("L:1", role: role), "\(label)")
                    #expect(none == Engine.unknownSettlement("L:9", role: role), "\(label)")
                    #expect(h.settlement() == before, "\(label): changes nothing")
                } else if !authorized(action, name, role) {
                    #expect(result.error == .notAuthorized, "\(label)")
                    #expect(!result.message.contains("ann") && !result.message.contains("sam"), "\(label): no names")
                } else if let next = allowed(state, action) {
                    #expect(result.ok, "\(label): \(result.message)")
                    #expect(result.settlement == "L:1" && result.settlementState == next, "\(label)")
                    #expect(h.settlement()?.state == next, "\(label)")
                    #expect(h.settlementEvents.map(\.state) == [next], "\(label): one event")
                    #expect(h.settlement()?.history.count == (before?.history.count ?? 0) + 1, "\(label)")
                } else if case .confirmPayment = action, before?.paymentRef == "PAY" {
                    #expect(result.ok && result.settlementState == state, "\(label): a repeat is answered ok")
                    #expect(h.settlementEvents.isEmpty, "\(label): a repeat changes nothing")
                } else {
                    #expect(result.error == .invalidTransition, "\(label): \(result.message)")
                    #expect(result.message.hasPrefix("settlement L:1 is \(state.rawValue); from \(state.rawValue): "))
                }
                if !result.ok || result.settlementState == state {
                    #expect(h.settlement() == before, "\(label): a refusal changes nothing")
                }
            }
        }
    }

    @Test func theInvalidTransitionMessageSaysWhatIsAllowed() {
        let h = reach(.shipped)
        #expect(
            h.settle(.refund, by: "svc", .service).message
                == "settlement L:1 is shipped; from shipped: confirm_delivery (buyer or service)")
    }

    @Test func aSecondPaymentReferenceIsAnIdempotencyConflictNamingTheFirst() {
        let h = reach(.shipped)
        let conflict = h.settle(.confirmPayment(paymentRef: "OTHER"), by: "svc", .service)
        #expect(conflict.error == .idempotencyConflict)
        #expect(conflict.message == "settlement L:1 was paid with reference PAY")
        let repeated = h.settle(.confirmPayment(paymentRef: "PAY"), by: "svc", .service, id: "again")
        #expect(repeated.ok && repeated.settlementState == .shipped && h.events.isEmpty)
        // The same request id again is the remembered result, as for every command.
        let duplicate = h.settle(.confirmPayment(paymentRef: "PAY"), by: "svc", .service, id: "again")
        #expect(duplicate.duplicate && duplicate.settlementState == .shipped)
    }

    @Test func unknownSettlementsAndListings() {
        let h = sold()
        #expect(h.settle(.refund, by: "svc", .service, number: 2).error == .unknownSettlement)
        #expect(h.settle(.refund, by: "svc", .service, on: "nope").error == .unknownSettlement)
        #expect(
            h.settle(.refund, by: "svc", .service, number: 2).message == "no settlement L:2; check the settlement id")
    }

    @Test func deadlinesFireAtTheirTimeAndNotBefore() {
        let h = sold()
        #expect(h.settlement()?.dueAt == 61_000)
        h.advance(to: 60_999)
        #expect(h.settlement()?.state == .awaitingPayment)
        h.advance(to: 61_000)
        #expect(h.settlement()?.state == .paymentExpired && h.settlement()?.dueAt == nil)
        let step = h.settlement()?.history.last
        #expect(step?.by == nil && step?.role == nil && step?.at == 61_000, "a timer's step has no actor")

        let paid = sold()
        paid.settle(.confirmPayment(paymentRef: "P"), by: "svc", .service, at: 60_500)
        #expect(paid.settlement()?.dueAt == 62_500, "ship_due_ms counts from the payment")
        paid.advance(to: 61_000)
        #expect(paid.settlement()?.state == .paid, "the payment deadline's timer is stale")
        paid.advance(to: 62_500)
        #expect(paid.settlement()?.state == .refunded, "the seller missed the shipping deadline")

        let delivered = reach(.delivered)
        #expect(delivered.settlement()?.dueAt == 63_000)
        delivered.advance(to: 62_999)
        #expect(delivered.settlement()?.state == .delivered)
        delivered.advance(to: 63_000)
        #expect(delivered.settlement()?.state == .completed)
        #expect(delivered.settlementEvents.map(\.state) == [.completed])
    }

    @Test func aDisputeMustBeOpenedWithinTheComplaintWindow() {
        let h = reach(.delivered)
        h.advance(to: 63_000)
        #expect(h.settle(.openDispute(reason: "late"), by: "ann", .bidder).error == .invalidTransition)
    }

    @Test func eachSaleKindCreatesItsSettlementInTheSameStep() {
        let english = sold()
        #expect(english.kinds == [.closed(winner: "ann", price: 550, reserveMet: true)])
        let created = english.settlementEvents
        #expect(created.count == 1)
        #expect(created.first?.buyer == "ann" && created.first?.seller == "sam" && created.first?.price == 550)
        #expect(created.first?.quantity == 1 && created.first?.state == .awaitingPayment)
        #expect(created.first?.step.by == nil && created.first?.dueAt == 61_000)

        let bought = Harness()
        bought.open(Terms.english(buyNow: 900), at: 0)
        bought.buyNow("cyd", at: 5)
        #expect(bought.settlementEvents.map { [$0.buyer, "\($0.price)"] } == [["cyd", "900"]])

        let sealed = Harness()
        sealed.open(Terms.sealed(.second), at: 0)
        sealed.bid("ann", 700)
        sealed.bid("bob", 400)
        sealed.advance(to: 60_000)
        #expect(sealed.settlementEvents.map { [$0.buyer, "\($0.price)"] } == [["ann", "400"]])

        let dutch = Harness()
        dutch.open(Terms.dutch(), at: 0)
        dutch.accept("ann", 2, at: 0)
        dutch.accept("bob", 3, at: 1_000)
        #expect(
            dutch.engine.settlements(of: "L").map { [$0.buyer, "\($0.price)", "\($0.quantity)"] } == [
                ["ann", "1000", "2"], ["bob", "900", "3"],
            ])

        let market = Harness()
        market.open("M", Terms.market(), at: 0)
        market.order("sue", .sell, 5, price: 100)
        market.order("bob", .buy, 3, price: 120)
        #expect(
            market.settlementEvents.map { [$0.buyer, $0.seller, "\($0.price)", "\($0.quantity)"] } == [
                ["bob", "sue", "100", "3"]
            ])
        #expect(market.engine.settlement("M:1")?.seller == "sue", "a trade's seller is its selling trader")

        let unsold = Harness()
        unsold.open(Terms.english(reserve: 5_000), at: 0)
        unsold.bid("ann", 1_000)
        unsold.advance(to: 60_000)
        #expect(unsold.settlementEvents.isEmpty && unsold.engine.settlements.isEmpty, "no sale, no settlement")
    }

    @Test func settlementEventsArePrivateForTheBuyerAndSeller() {
        let h = sold()
        let event = h.events.first { if case .settlement = $0.kind { true } else { false } }
        #expect(event?.seq == 0 && event?.kind.isPrivate == true)
    }

    /// Two deadlines due in the same millisecond fire in the order they were scheduled, also when one of them
    /// replaced a deadline of its settlement at that same millisecond (paid at 1,050 with 50 ms to ship: its refund
    /// is due at 1,100, where its payment was due), and also after a restore in between.
    @Test func deadlinesDueTogetherFireInTheOrderTheyWereScheduledAfterOneMovedOntoTheOthersTime() throws {
        func run(restoringAt restore: Bool) throws -> [String] {
            var h = Harness()
            let fast = SettlementDeadlines(
                paymentDueMs: 100, shipDueMs: 50, complaintWindowMs: 3_000, offerDueMs: 4_000)
            h.open("E1", .english(.init(start: 100, closesAt: 1_000, deadlines: fast)), at: 0)
            h.open("E2", .english(.init(start: 100, closesAt: 1_000, deadlines: fast)), at: 0)
            h.bid("ann", 100, on: "E1", at: 10)
            h.bid("bob", 100, on: "E2", at: 10)
            h.advance(to: 1_000)
            #expect(h.settle(.confirmPayment(paymentRef: "P1"), by: "pay", .service, on: "E1", at: 1_050).ok)
            if restore { h = Harness(engine: try Engine.restore(from: h.engine.encodeState())) }
            h.advance(to: 1_100)
            return h.settlementEvents.map { "\($0.number)-\($0.step.state.rawValue)" } + h.events.map(\.listing)
        }
        // E2's payment deadline was scheduled at its close (1,000), E1's refund at its payment (1,050).
        #expect(try run(restoringAt: false) == ["1-payment_expired", "1-refunded", "E2", "E1"])
        #expect(try run(restoringAt: true) == ["1-payment_expired", "1-refunded", "E2", "E1"])
    }

    // MARK: - Second-chance offers

    @Test func aServiceNamedLikeTheSellerOrRunnerUpMayNotActOnASecondChanceAndIsToldWhy() {
        let h = reach(.paymentExpired)
        let byService = h.offer(.offer, by: "sam", .service)
        #expect(byService.error == .notAuthorized)
        #expect(byService.message.hasPrefix("a service connection acts as itself, not as the seller"))
        #expect(h.offer(.offer, by: "sam", .seller).ok)
        let answer = h.offer(.accept, by: "bob", .service)
        #expect(answer.error == .notAuthorized)
        #expect(answer.message.hasPrefix("a service connection acts as itself, not as the runner-up"))
        #expect(h.offer(.accept, by: "eve", .bidder).message == "you have no second-chance offer on listing L")
    }

    @Test func theRunnerUpMayAcceptASecondChanceAtTheirOwnMaximum() {
        let h = reach(.paymentExpired)
        #expect(h.offer(.offer, by: "sam", .seller).ok)
        guard case .secondChance(let offer)? = h.events.first?.kind else {
            Issue.record("no second_chance event")
            return
        }
        #expect(offer.bidder == "bob" && offer.price == 500 && offer.state == .offered && offer.dueAt == 65_000)
        let accepted = h.offer(.accept, by: "bob", .bidder)
        #expect(accepted.ok && accepted.settlement == "L:2" && accepted.settlementState == .awaitingPayment)
        let second = h.settlement("L:2")
        #expect(second?.buyer == "bob" && second?.price == 500 && second?.quantity == 1)
        #expect(h.engine.secondChanceOffers.map(\.state) == [.accepted])
        #expect(h.offer(.decline, by: "bob", .bidder).error == .invalidTransition, "answered already")
    }

    @Test func aDeclinedOrExpiredOfferLeavesTheListingUnsold() {
        let declined = reach(.paymentExpired)
        declined.offer(.offer, by: "sam", .seller)
        #expect(declined.offer(.decline, by: "bob", .bidder).ok)
        #expect(declined.engine.settlements(of: "L").count == 1)
        #expect(declined.engine.secondChanceOffers.map(\.state) == [.declined])

        let expired = reach(.paymentExpired)
        expired.offer(.offer, by: "sam", .seller, at: 61_000)
        expired.advance(to: 64_999)
        #expect(expired.engine.secondChanceOffers.map(\.state) == [.offered])
        expired.advance(to: 65_000)
        #expect(expired.engine.secondChanceOffers.map(\.state) == [.expired])
        #expect(expired.offer(.accept, by: "bob", .bidder).error == .invalidTransition)
    }

    /// Whether a listing has an offer (so its winner did not pay), and whether the runner-up took it, is for its
    /// seller and runner-up: anyone else gets the same answers on a listing with an offer, an answered one, or none.
    @Test func aThirdPartyCannotTellWhetherAListingHasASecondChanceOfferOrSale() {
        func answers(_ h: Harness) -> [CommandResult] {
            [
                h.offer(.accept, by: "eve", .bidder), h.offer(.decline, by: "eve", .bidder),
                h.offer(.accept, by: "eve", .seller), h.settle(.confirmDelivery, by: "eve", .bidder, number: 2),
                h.settle(.markShipped(tracking: "T"), by: "eve", .seller, number: 2),
                h.settle(.openDispute(reason: "r"), by: "eve", .bidder, number: 2),
            ]
        }
        let none = reach(.paymentExpired)
        let offered = reach(.paymentExpired)
        #expect(offered.offer(.offer, by: "sam", .seller).ok)
        let bought = reach(.paymentExpired)
        #expect(bought.offer(.offer, by: "sam", .seller).ok)
        #expect(bought.offer(.accept, by: "bob", .bidder).ok)
        #expect(bought.engine.settlements.count == 2)
        let expected = answers(none)
        #expect(answers(offered) == expected)
        #expect(answers(bought) == expected)
        #expect(expected.allSatisfy { !$0.ok })
    }

    @Test func secondChanceRefusals() {
        let early = sold()
        #expect(early.offer(.offer, by: "sam", .seller).error == .invalidTransition, "payment not expired")
        let alone = Harness()
        alone.open(.english(.init(start: 100, closesAt: 60_000, deadlines: quick)), at: 0)
        alone.bid("ann", 1_000, at: 10)
        alone.advance(to: 61_000)
        #expect(
            alone.offer(.offer, by: "sam", .seller).message == "listing L has no runner-up to offer a second chance to")
        let h = reach(.paymentExpired)
        #expect(h.offer(.accept, by: "bob", .bidder).error == .invalidTransition, "nothing offered yet")
        #expect(h.offer(.offer, by: "bob", .bidder).error == .notAuthorized)
        #expect(h.offer(.offer, by: "sam", .service).error == .notAuthorized)
        #expect(h.offer(.offer, by: "sam", .seller).ok)
        #expect(h.offer(.offer, by: "sam", .seller).error == .invalidTransition, "one offer per listing")
        #expect(h.offer(.accept, by: "ann", .bidder).error == .invalidTransition, "only the runner-up answers")
        #expect(h.offer(.accept, by: "eve", .bidder).message == "you have no second-chance offer on listing L")
        let dutch = Harness()
        dutch.open(Terms.dutch(), at: 0)
        #expect(dutch.offer(.offer, by: "sam", .seller).error == .unsupported)
    }

    @Test func theRunnerUpIsTheOtherBidderWithTheHighestMaximumTheEarlierOnATie() {
        let h = Harness()
        h.open(.english(.init(start: 100, closesAt: 60_000, deadlines: quick)), at: 0)
        h.bid("bob", 700, at: 1)
        h.bid("cyd", 700, at: 2)  // ties bob: bob stays ahead of cyd
        h.bid("ann", 2_000, at: 3)  // leads: bob (700, earlier) is the runner-up
        h.bid("bob", 800, at: 4)  // bob raises his own maximum
        h.advance(to: 61_000)
        h.offer(.offer, by: "sam", .seller)
        #expect(h.engine.secondChanceOffers.map { "\($0.bidder) \($0.price)" } == ["bob 800"])
    }

    @Test func theAdminMayCancelAnyListingUnderTheSameRules() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        #expect(h.apply(Command(id: "x", listing: "L", body: .cancelListingAsAdmin(admin: "ada"))).ok)
        #expect(h.status() == .cancelled)
        let bid = Harness()
        bid.open(Terms.english(), at: 0)
        bid.bid("ann", 500)
        #expect(
            bid.apply(Command(id: "x", listing: "L", body: .cancelListingAsAdmin(admin: "ada"))).error
                == .listingHasBids)
    }

    // MARK: - Memory

    @Test func aListingWithALiveSettlementIsNotEvictedUntilItEndsAndTheRetentionPasses() {
        let e = Engine(configuration: EngineConfiguration(closedListingRetentionMs: 500))
        var events: [Event] = []
        _ = e.apply(
            Command(
                id: "o", listing: "L",
                body: .open(seller: "sam", terms: .english(.init(start: 100, closesAt: 100, deadlines: quick)))),
            events: &events)
        _ = e.apply(Command(id: "b", listing: "L", body: .bid(bidder: "ann", amount: 200)), events: &events)
        e.advance(to: 700, events: &events)
        #expect(e.hasListing("L"), "its settlement awaits payment")
        events = []
        e.advance(to: 1_100, events: &events)  // the payment expires at 1,100
        #expect(e.hasListing("L"))
        e.advance(to: 1_599, events: &events)
        #expect(e.hasListing("L"), "the retention counts from the settlement's end")
        e.advance(to: 1_600, events: &events)
        #expect(!e.hasListing("L"))
        #expect(events.last?.kind == .evicted)
    }

    /// A sold-out dutch listing keeps one sale shipped (no deadline) for as long as the buyer takes: the other
    /// sale, whose payment expired, is dropped the retention after it ended all the same, as on an open listing.
    @Test func anEndedListingStillSettlingDropsAFinalSettlementAfterTheRetention() {
        let e = Engine(configuration: EngineConfiguration(closedListingRetentionMs: 500))
        var events: [Event] = []
        let terms = ListingTerms.dutch(
            .init(start: 100, floor: 100, step: 1, stepEveryMs: 1_000, quantity: 2, closesAt: 10_000, deadlines: quick))
        #expect(e.apply(Command(id: "o", listing: "D", body: .open(seller: "sam", terms: terms)), events: &events).ok)
        #expect(e.apply(Command(id: "a1", listing: "D", body: .accept(bidder: "ann", quantity: 1)), events: &events).ok)
        #expect(e.apply(Command(id: "a2", listing: "D", body: .accept(bidder: "bob", quantity: 1)), events: &events).ok)
        for (id, action, by, role) in [
            ("p", SettlementAction.confirmPayment(paymentRef: "PAY"), "svc", ActorRole.service),
            ("s", .markShipped(tracking: "TRK"), "sam", .seller),
        ] {
            let command = Command(id: id, listing: "D", body: .settle(number: 2, action: action, by: by, role: role))
            #expect(e.apply(command, events: &events).ok)
        }
        e.advance(to: 1_000, events: &events)  // D:1's payment expires
        #expect(e.settlement("D:1")?.state == .paymentExpired)
        events = []
        e.advance(to: 1_499, events: &events)
        #expect(e.settlement("D:1") != nil)
        e.advance(to: 1_500, events: &events)
        #expect(e.settlement("D:1") == nil, "dropped the retention after it ended")
        #expect(events.map(\.kind) == [.settlementsPruned([1])])
        #expect(e.settlement("D:2")?.state == .shipped, "the shipped sale stays, and so does its listing")
        #expect(e.hasListing("D"))
    }

    /// The same when the listing was about to be evicted and a second-chance offer kept it: the expired sale goes
    /// at the eviction's time, the listing stays for the offer.
    @Test func aSecondChanceOfferKeepsTheListingButNotItsExpiredSalePastTheRetention() {
        let e = Engine(configuration: EngineConfiguration(closedListingRetentionMs: 500))
        var events: [Event] = []
        let terms = ListingTerms.english(.init(start: 100, closesAt: 100, deadlines: quick))
        #expect(e.apply(Command(id: "o", listing: "L", body: .open(seller: "sam", terms: terms)), events: &events).ok)
        #expect(e.apply(Command(id: "b1", listing: "L", body: .bid(bidder: "ann", amount: 150)), events: &events).ok)
        #expect(e.apply(Command(id: "b2", listing: "L", body: .bid(bidder: "bob", amount: 300)), events: &events).ok)
        e.advance(to: 1_100, events: &events)  // closes at 100, bob's payment expires at 1,100
        e.advance(to: 1_599, events: &events)
        let offer = Command(id: "f", listing: "L", body: .secondChance(.offer, by: "sam", role: .seller))
        #expect(e.apply(offer, events: &events).ok)
        events = []
        e.advance(to: 1_600, events: &events)
        #expect(e.settlement("L:1") == nil)
        #expect(events.map(\.kind) == [.settlementsPruned([1])])
        #expect(e.hasListing("L"), "the offer to ann is open")
    }

    @Test func anOpenMarketDropsItsFinalSettlementsAfterTheRetention() {
        let e = Engine(configuration: EngineConfiguration(closedListingRetentionMs: 500))
        var events: [Event] = []
        _ = e.apply(
            Command(id: "o", listing: "M", body: .open(seller: "sam", terms: .market(.init(deadlines: quick)))),
            events: &events)
        for (id, trader, side) in [("s", "sue", Side.sell), ("b", "bob", Side.buy)] {
            _ = e.apply(
                Command(
                    id: id, listing: "M",
                    body: .order(trader: trader, side: side, price: 100, quantity: 1, tif: .gtc, expiresAt: nil)),
                events: &events)
        }
        #expect(e.settlements(of: "M").count == 1)
        events = []
        e.advance(to: 1_000, events: &events)  // expired at 1,000
        e.advance(to: 1_499, events: &events)
        #expect(e.settlements(of: "M").count == 1)
        e.advance(to: 1_500, events: &events)
        #expect(e.settlements(of: "M").isEmpty)
        #expect(events.last?.kind == .settlementsPruned([1]) && events.last?.kind.isInternal == true)
        #expect(e.hasListing("M"))
        #expect(
            e.apply(
                Command(
                    id: "s2", listing: "M",
                    body: .order(trader: "sue", side: .sell, price: 100, quantity: 1, tif: .gtc, expiresAt: nil)),
                events: &events
            ).ok)
        #expect(
            e.apply(
                Command(
                    id: "b2", listing: "M",
                    body: .order(trader: "bob", side: .buy, price: 100, quantity: 1, tif: .gtc, expiresAt: nil)),
                events: &events
            ).ok)
        #expect(e.settlements(of: "M").map(\.number) == [2], "numbers keep counting")
    }

    /// A busy market ends thousands of settlements at different times: each is pruned once its retention is over,
    /// in the order they ended, the listing keeps only the ones inside it, and a restore in the middle (which
    /// rebuilds that order from the settlements' histories) goes on to the same state.
    @Test func aBusyMarketPrunesEachEndedSettlementAfterItsRetentionWithoutKeepingTheRest() throws {
        let e = Engine(configuration: EngineConfiguration(closedListingRetentionMs: 500))
        var events: [Event] = []
        let expiring = SettlementDeadlines(paymentDueMs: 7)
        _ = e.apply(
            Command(id: "o", listing: "M", body: .open(seller: "sam", terms: .market(.init(deadlines: expiring)))),
            events: &events)
        var restored: Engine?
        var restoredEvents: [Event] = []
        var pruned: [Int64] = []
        for n in 1...3_000 {
            e.advance(to: Millis(n), events: &events)
            restored?.advance(to: Millis(n), events: &restoredEvents)
            for (id, trader, side) in [("s\(n)", "sue", Side.sell), ("b\(n)", "bob", Side.buy)] {
                let order = Command(
                    id: id, listing: "M",
                    body: .order(trader: trader, side: side, price: 100, quantity: 1, tif: .gtc, expiresAt: nil))
                _ = e.apply(order, events: &events)
                _ = restored?.apply(order, events: &restoredEvents)
            }
            if n == 1_234 { restored = try Engine.restore(from: e.encodeState()) }
        }
        for case .settlementsPruned(let numbers) in events.map(\.kind) { pruned += numbers }
        // Sale n expires at n + 7 and is pruned at n + 507: by time 3,000 the sales up to 2,493 are gone.
        #expect(pruned == Array(1...2_493))
        #expect(e.settlements(of: "M").map(\.number) == Array(2_494...3_000))
        #expect(restored?.encodeState() == e.encodeState())
        e.advance(to: 10_000, events: &events)
        #expect(e.settlements(of: "M").isEmpty)
        #expect(try Engine.restore(from: e.encodeState()).encodeState() == e.encodeState())
    }

    // MARK: - State

    /// The settlement section of a state whose listings take few bytes each (english listings with a runner-up
    /// and no sale, short ids) restores: the size checks on its counts use the least an entry can take.
    @Test func aStateOfManySmallSettlementEntriesRestores() throws {
        let e = Engine()
        var events: [Event] = []
        for n in 1...50 {
            let listing = "E\(n)"
            _ = e.apply(
                Command(
                    id: "o\(n)", listing: listing,
                    body: .open(seller: "s", terms: .english(.init(start: 1, closesAt: 1_000_000)))),
                events: &events)
            for bidder in ["a", "b"] {
                _ = e.apply(
                    Command(id: "\(bidder)\(n)", listing: listing, body: .bid(bidder: bidder, amount: 5)),
                    events: &events)
            }
        }
        let state = e.encodeState()
        let restored = try Engine.restore(from: state)
        #expect(restored.encodeState() == state)
    }

    @Test func aSnapshotMidFlightRestoresToTheSameHashAndFiresTheSameDeadlines() throws {
        let h = reach(.paid)
        h.open("M", .market(.init(deadlines: quick)))
        h.order("sue", .sell, 2, price: 100)
        h.order("bob", .buy, 1, price: 100)
        h.settle(.confirmPayment(paymentRef: "PX"), by: "svc", .service, on: "M")
        let restored = try Engine.restore(from: h.engine.encodeState())
        #expect(restored.stateHash() == h.engine.stateHash())
        #expect(restored.settlements == h.engine.settlements)
        var a: [Event] = []
        var b: [Event] = []
        h.engine.advance(to: 70_000, events: &a)
        restored.advance(to: 70_000, events: &b)
        #expect(a == b && !a.isEmpty, "the same deadlines fire")
        #expect(restored.stateHash() == h.engine.stateHash())
    }

    @Test func aStateWithoutSalesKeepsItsBytes() {
        let h = Harness()
        h.open(Terms.english(), at: 0)
        h.bid("ann", 500)
        let bytes = h.engine.encodeState()
        // Nothing of settlements: no settlement section at all (the bytes end with the remembered results).
        let restored = try? Engine.restore(from: bytes)
        #expect(restored?.encodeState() == bytes)
        #expect(h.engine.settlements.isEmpty)
    }

    @Test func aDamagedSettlementSectionIsRefused() throws {
        let h = reach(.delivered)
        let bytes = h.engine.encodeState()
        var refused = 0
        for offset in stride(from: bytes.count - 120, to: bytes.count, by: 1) {
            var damaged = bytes
            damaged[offset] ^= 0xFF
            if (try? Engine.restore(from: damaged)) == nil { refused += 1 }
        }
        #expect(refused > 60, "most single-byte damage to the section is caught")
    }
}
