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
