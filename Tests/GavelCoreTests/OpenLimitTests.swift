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
        let restored = try Engine.restore(from: engine.encodeState(), defaults: .served)
        #expect(restored.configuration.minDutchStepMs == 250)
        #expect(restored.configuration.maxListingDurationMs == 60_000)
        #expect(restored.encodeState() == engine.encodeState())
        let other = Engine(configuration: EngineConfiguration(minDutchStepMs: 251, maxListingDurationMs: 60_000))
        #expect(other.stateHash() != engine.stateHash())
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
