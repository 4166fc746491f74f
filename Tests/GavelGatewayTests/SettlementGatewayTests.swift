import CoreMetrics
import GavelCore
@_spi(Manual) import GavelEngine
import NIOEmbedded
import Testing

@testable import GavelGateway
@testable import GavelWire

/// What the gateway does with settlement commands before the engine, and its own copy of the settlements that
/// answers `my_settlements` and `get_settlement`.
struct SettlementAdmissionTests {
    /// The error code and message of a rejection, `nil` for a submission.
    private func refusal(_ verdict: CommandVerdict) -> (code: ErrorCode?, message: String)? {
        guard case .reject(_, let result) = verdict else { return nil }
        return (result.error, result.message)
    }

    private func verdict(_ json: String, _ name: String?, _ role: Role) throws -> CommandVerdict {
        let value = try JSONParser.parse(json)
        guard case .string(let type)? = value["type"], let kind = CommandKind(rawValue: type) else {
            throw JSONParseError(offset: 0, reason: "no command type")
        }
        var id: String?
        if case .string(let s)? = value["id"] { id = s }
        return CommandAdmission(principal: Principal(name: name, role: role)).admit(value, kind: kind, id: id)
    }

    @Test func aSettlementCommandActsAsTheConnectionsUserInItsTokensRoleWhateverTheMessageClaims() throws {
        let cases: [(Role, ActorRole)] = [
            (.bidder, .bidder), (.seller, .seller), (.service, .service), (.admin, .admin),
        ]
        for (role, actorRole) in cases {
            let json = #"{"type":"confirm_delivery","id":"c1","settlement":"L1:2","role":"admin"}"#
            let expected = Command(
                id: "c1", listing: "L1", body: .settle(number: 2, action: .confirmDelivery, by: "u", role: actorRole))
            #expect(try verdict(json, "u", role) == .submit(expected), "\(role)")
        }
    }

    @Test func aServiceActsAsItselfInSettlementCommandsNeverOnBehalfOfAnother() throws {
        let onBehalf = try verdict(
            #"{"type":"confirm_payment","id":"p1","settlement":"L1:1","payment_ref":"r1","on_behalf_of":"ann"}"#,
            "pay", .service)
        #expect(refusal(onBehalf)?.code == .badRequest)
        #expect(refusal(onBehalf)?.message.contains("on_behalf_of is not accepted for confirm_payment") == true)
        let other = try verdict(
            #"{"type":"mark_shipped","id":"s1","settlement":"L1:1","tracking":"T1","by":"sam"}"#, "ann", .seller)
        #expect(refusal(other)?.code == .notAuthorized)
    }

    @Test func aWatcherSendsNoSettlementCommandAndAnAdminNoTradingCommand() throws {
        let watcher = try verdict(#"{"type":"refund","id":"r1","settlement":"L1:1"}"#, nil, .watcher)
        #expect(refusal(watcher)?.code == .notAuthorized)
        for json in [
            #"{"type":"bid","id":"b1","listing":"L1","amount":5}"#, #"{"type":"buy_now","id":"b2","listing":"L1"}"#,
            #"{"type":"open","id":"o1","listing":"L1","format":"market"}"#,
        ] {
            let refused = refusal(try verdict(json, "desk", .admin))
            #expect(refused?.code == .notAuthorized, "\(json)")
            #expect(refused?.message.hasPrefix("an admin token may not") == true, "\(json)")
        }
        let cancel = try verdict(#"{"type":"cancel_listing","id":"x1","listing":"L1"}"#, "desk", .admin)
        #expect(cancel == .submit(Command(id: "x1", listing: "L1", body: .cancelListingAsAdmin(admin: "desk"))))
        // A seller cannot pass for an admin by writing the role into the message.
        let seller = try verdict(#"{"type":"cancel_listing","id":"x2","listing":"L1","role":"admin"}"#, "sam", .seller)
        #expect(seller == .submit(Command(id: "x2", listing: "L1", body: .cancelListing(seller: "sam"))))
    }
}

struct SettlementViewsTests {
    private func change(
        _ number: Int64, _ state: SettlementState, buyer: String = "ann", seller: String = "sam", at: Millis
    )
        -> Event
    {
        let step = SettlementStep(state: state, at: at)
        return Event(
            listing: "L1", seq: 0, at: at,
            kind: .settlement(
                SettlementChange(
                    number: number, buyer: buyer, seller: seller, price: 500, quantity: 1, dueAt: nil, step: step)))
    }

    @Test func viewsFollowEventsPageInCreationOrderAndDropWhatTheEngineDrops() {
        var views = SettlementViews()
        views.apply(change(1, .awaitingPayment, at: 10))
        views.apply(change(2, .awaitingPayment, buyer: "bob", at: 20))
        views.apply(change(3, .awaitingPayment, at: 30))
        views.apply(change(1, .paid, at: 40))
        #expect(views.settlement("L1:1")?.history.map(\.state) == [.awaitingPayment, .paid])
        #expect(views.page(user: "ann", state: nil, after: nil, limit: 10)?.items.map(\.id) == ["L1:1", "L1:3"])
        #expect(views.page(user: "sam", state: nil, after: nil, limit: 2)?.next == "L1:2")
        #expect(views.page(user: "sam", state: nil, after: "L1:2", limit: 2)?.items.map(\.id) == ["L1:3"])
        #expect(views.page(user: "sam", state: .paid, after: nil, limit: 5)?.items.map(\.id) == ["L1:1"])
        #expect(views.page(user: "carl", state: nil, after: nil, limit: 5)?.items.isEmpty == true)
        #expect(views.page(user: "ann", state: nil, after: "L1:2", limit: 5) == nil, "not one of ann's")
        views.apply(Event(listing: "L1", seq: 0, at: 50, kind: .settlementsPruned([1])))
        #expect(views.settlement("L1:1") == nil && views.count == 2)
        views.apply(Event(listing: "L1", seq: 0, at: 60, kind: .evicted))
        #expect(views.count == 0)
        #expect(views.page(user: "sam", state: nil, after: nil, limit: 5)?.items.isEmpty == true)
    }

    @Test func evictingListingsOfASellerKeepsEveryPageEqualToAModelAndAReusedIDAppearsOnce() {
        // A model: each user's current settlement ids in creation order, filtered from scratch every time.
        var views = SettlementViews()
        var model: [(id: String, buyer: String)] = []
        var rng = SplitMix64(seed: 7)
        func settlement(_ listing: String, buyer: String, at: Millis) -> Event {
            let step = SettlementStep(state: .awaitingPayment, at: at)
            return Event(
                listing: listing, seq: 0, at: at,
                kind: .settlement(
                    SettlementChange(
                        number: 1, buyer: buyer, seller: "sam", price: 500, quantity: 1, dueAt: nil, step: step)))
        }
        func check() {
            for user in ["sam", "ann", "bob"] {
                let expected = model.filter { user == "sam" || $0.buyer == user }.map(\.id)
                var seen: [String] = []
                var after: String?
                while let page = views.page(user: user, state: nil, after: after, limit: 7) {
                    seen += page.items.map(\.id)
                    guard let next = page.next else { break }
                    after = next
                }
                #expect(seen == expected, "\(user)")
            }
        }
        for round in 0..<600 {
            let listing = "L\(rng.next() % 40)"
            if let index = model.firstIndex(where: { $0.id == "\(listing):1" }) {
                views.apply(Event(listing: listing, seq: 0, at: Millis(round), kind: .evicted))
                model.remove(at: index)
            } else {
                let buyer = rng.next() % 2 == 0 ? "ann" : "bob"
                views.apply(settlement(listing, buyer: buyer, at: Millis(round)))
                model.append(("\(listing):1", buyer))
            }
            if round % 50 == 0 { check() }
        }
        check()
        #expect(views.count == model.count)
    }

    @Test func loadingKeepsTheOrderTheEngineGivesWhateverTheTimesAndListingIDs() {
        func settlement(_ listing: String, _ number: Int64, at: Millis) -> Settlement {
            Settlement(
                listing: listing, number: number, buyer: "ann", seller: "sam", price: 1, quantity: 1,
                state: .awaitingPayment, dueAt: nil, history: [SettlementStep(state: .awaitingPayment, at: at)])
        }
        var views = SettlementViews()
        views.load([settlement("B", 1, at: 30), settlement("A", 1, at: 10), settlement("B", 2, at: 30)], offers: [])
        #expect(views.page(user: "ann", state: nil, after: nil, limit: 10)?.items.map(\.id) == ["B:1", "A:1", "B:2"])
    }
}

struct SettlementMetricsTests {
    @Test func settlementCommandsAreCountedUnderTheirOwnType() {
        let metrics = GatewayMetrics()
        var cache: [Int: CoreMetrics.Counter] = [:]
        let open = Command(id: "o1", listing: "L1", body: .open(seller: "sam", terms: .market(.init())))
        let pay = Command(
            id: "p1", listing: "L1",
            body: .settle(number: 1, action: .confirmPayment(paymentRef: "r"), by: "pay", role: .service))
        metrics.countCommand(open.kind, .accepted, cache: &cache)
        metrics.countCommand(pay.kind, .accepted, cache: &cache)
        metrics.countCommand(pay.kind, .accepted, cache: &cache)
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(text.contains(#"gavel_commands_total{type="confirm_payment",result="ok"} 2"#), "\(text)")
        #expect(text.contains(#"gavel_commands_total{type="open",result="ok"} 1"#))
    }
}

/// The private feeds of users without a session are bounded, and a feed dropped and made again has a new epoch.
struct UserFeedBoundTests {
    @Test func feedsOfUsersWhoseSessionsEndedAreKeptForTheLastFewOnly() {
        let loop = EmbeddedEventLoop()
        let fanOut = FanOut(group: loop, historyLimit: 16, maxIdleFeeds: 2, metrics: GatewayMetrics())
        let writer = Writer(configuration: WriterConfiguration(), sink: InMemorySink(), clock: ManualClock(0))
        func session(_ user: String) -> WebSocketSession {
            WebSocketSession(
                principal: Principal(name: user, role: .bidder), configuration: GatewayConfiguration(),
                writer: writer, fanOut: fanOut, metrics: GatewayMetrics(), registry: SessionRegistry(),
                output: RawFrameWriter())
        }
        let staying = session("stays")
        fanOut.register(staying, user: "stays")
        var epochs: [String: String] = [:]
        for user in ["a", "b", "c", "d", "e"] {
            let s = session(user)
            fanOut.register(s, user: user)
            epochs[user] = fanOut.subscribeUser(user, since: nil, epoch: nil).epoch
            fanOut.unregister(s, user: user)
        }
        #expect(fanOut.feedCount == 3, "the user with a session and the last two who left")
        // One who comes back within the bound keeps its feed; one who comes back after it starts a new one.
        let back = session("e")
        fanOut.register(back, user: "e")
        #expect(fanOut.subscribeUser("e", since: 0, epoch: epochs["e"]).frames != nil)
        let again = session("a")
        fanOut.register(again, user: "a")
        let fresh = fanOut.subscribeUser("a", since: 0, epoch: epochs["a"])
        #expect(fresh.epoch != epochs["a"] && fresh.frames == nil)
        // Coming and going many times does not grow the idle list past its bound.
        for _ in 0..<1000 {
            fanOut.unregister(back, user: "e")
            fanOut.register(back, user: "e")
        }
        #expect(fanOut.feedCount == 4, "stays, e and a with sessions, d idle")
        #expect(fanOut.idleFeedEntries <= 2 * 2 + 64)
    }
}

/// A feed's epoch tells a user nothing about other users: it is random, not a count of the feeds made.
struct UserFeedEpochTests {
    @Test func epochsAreSixteenRandomHexDigitsAndDoNotCountTheFeedsMadeBetween() {
        let loop = EmbeddedEventLoop()
        let fanOut = FanOut(group: loop, historyLimit: 16, maxIdleFeeds: 8, metrics: GatewayMetrics())
        let writer = Writer(configuration: WriterConfiguration(), sink: InMemorySink(), clock: ManualClock(0))
        var epochs: [String] = []
        for user in ["eve", "a", "b", "c", "eve2"] {
            let session = WebSocketSession(
                principal: Principal(name: user, role: .bidder), configuration: GatewayConfiguration(),
                writer: writer, fanOut: fanOut, metrics: GatewayMetrics(), registry: SessionRegistry(),
                output: RawFrameWriter())
            fanOut.register(session, user: user)
            epochs.append(fanOut.subscribeUser(user, since: nil, epoch: nil).epoch)
        }
        let hex = Set("0123456789abcdef")
        for epoch in epochs {
            #expect(epoch.count == 16 && epoch.allSatisfy { hex.contains($0) }, "\(epoch)")
        }
        #expect(Set(epochs).count == epochs.count)
        // Nothing in eve's two epochs says three other users connected in between.
        #expect(!epochs[4].hasPrefix(String(epochs[0].prefix(8))))
    }
}

struct SettlementAnswerSizeTests {
    private static func name(_ c: Character) -> String { String(repeating: c, count: Limits.maxIdentifierLength) }

    /// The largest settlement there can be: every identifier and reference 64 characters, every number at its
    /// widest, the longest history, with a 500-byte reason of `"` (each written as `\"`).
    private static func largest(_ n: Int) -> Settlement {
        let by = name("u")
        let at = Int64.max
        let steps: [(SettlementState, SettlementDetail?)] = [
            (.awaitingPayment, nil), (.paid, .paymentRef(name("p"))), (.shipped, .tracking(name("t"))),
            (.delivered, nil), (.disputed, .reason(String(repeating: "\"", count: DisputeReason.maxBytes))),
            (.refunded, .outcome(.release)),
        ]
        let listing = String(name("L").dropLast(4)) + String(1000 + n)
        return Settlement(
            listing: listing, number: Int64.max, buyer: name("b"), seller: name("s"), price: Limits.maxAmount,
            quantity: Limits.maxAmount, state: .awaitingPayment, dueAt: at, paymentRef: name("p"),
            tracking: name("t"),
            history: steps.map { SettlementStep(state: $0.0, at: at, by: by, role: .service, detail: $0.1) })
    }

    private static func largestOffer(_ n: Int) -> SecondChanceOffer {
        SecondChanceOffer(
            listing: String(name("L").dropLast(4)) + String(1000 + n), seller: name("s"), bidder: name("b"),
            price: Limits.maxAmount, state: .declined, dueAt: Int64.max)
    }

    private static func page(_ count: Int) -> SettlementPage {
        SettlementPage(
            settlements: (0..<count).map(largest), next: "L:1", offers: (0..<count).map(largestOffer),
            offersNext: "L")
    }

    @Test func noSettlementOrOfferIsLargerThanTheBoundTheAnswersRelyOn() {
        #expect(SettlementJSON.settlement(Self.largest(0)).count <= SettlementJSON.largestSettlementBytes)
        #expect(SettlementJSON.offer(Self.largestOffer(0)).count <= SettlementJSON.largestOfferBytes)
    }

    @Test func aFullPageAtTheSmallestOutboundCapFitsInItAndCarriesBothCursors() throws {
        // --max-outbound-bytes at its smallest, 4096: a page of 200 of the largest settlements and offers holds one
        // of each, with the cursors of those, and the answer fits in the cap with the longest id echoed, every
        // character of it a control character written as six bytes.
        let page = Self.page(WebSocketSession.maxSettlementLimit)
        let id = String(repeating: "\u{1}", count: Limits.maxEchoedIDBytes)
        let json = SettlementJSON.answer(id: id, user: Self.name("b"), page: page, room: 4096 / 2, ts: 1)
        #expect(json.count <= 4096)
        let answer = try JSONParser.parse(String(decoding: json, as: UTF8.self))
        guard case .array(let settlements)? = answer["settlements"], case .array(let offers)? = answer["offers"] else {
            Issue.record("no lists")
            return
        }
        #expect(settlements.count == 1 && offers.count == 1)
        #expect(answer["next"] == .string(page.settlements[0].id))
        #expect(answer["offers_next"] == .string(page.offers[0].listing))
    }

    @Test func pagesCutToTheRoomListEveryItemOnceAndNoneIsLargerThanTheCap() throws {
        let all = Self.page(WebSocketSession.maxSettlementLimit)
        let cap = 64 * 1024
        var seen: [String] = []
        var seenOffers: [String] = []
        var settlementsFrom = 0
        var offersFrom = 0
        while settlementsFrom < all.settlements.count || offersFrom < all.offers.count {
            let page = SettlementPage(
                settlements: Array(all.settlements[settlementsFrom...]), next: nil,
                offers: Array(all.offers[offersFrom...]), offersNext: nil)
            let json = SettlementJSON.answer(id: "q", user: "ann", page: page, room: cap / 2, ts: 1)
            #expect(json.count <= cap)
            let answer = try JSONParser.parse(String(decoding: json, as: UTF8.self))
            guard case .array(let settlements)? = answer["settlements"], case .array(let offers)? = answer["offers"]
            else {
                Issue.record("no lists")
                return
            }
            for case .string(let id)? in settlements.map({ $0["settlement"] }) { seen.append(id) }
            for case .string(let listing)? in offers.map({ $0["listing"] }) { seenOffers.append(listing) }
            settlementsFrom += settlements.count
            offersFrom += offers.count
            #expect(answer["next"] == (settlementsFrom < all.settlements.count ? .string(seen.last!) : .null))
            #expect(answer["offers_next"] == (offersFrom < all.offers.count ? .string(seenOffers.last!) : .null))
        }
        #expect(seen == all.settlements.map(\.id))
        #expect(seenOffers == all.offers.map(\.listing))
        // At the default cap a page of the largest of both is whole.
        let whole = SettlementJSON.answer(
            id: "q", user: "ann", page: all, room: GatewayConfiguration().maxOutboundBytes / 2, ts: 1)
        #expect(whole.count <= GatewayConfiguration().maxOutboundBytes / 2)
        #expect(try JSONParser.parse(String(decoding: whole, as: UTF8.self))["next"] == .string("L:1"))
    }
}
