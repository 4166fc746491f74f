import Testing

@testable import GavelCore
@testable import GavelJournal

/// An engine that evicts a closed listing 5 ms after its close.
private func evictingEngine() -> Engine {
    Engine(configuration: EngineConfiguration(closedListingRetentionMs: 5))
}

/// Opens english listing `id` on `engine`, closing at `closesAt`.
private func open(_ id: String, on engine: Engine, closesAt: Millis = 1_000_000) {
    var events: [Event] = []
    let result = engine.apply(
        Command(
            id: "open-\(id)-\(engine.now)", listing: id,
            body: .open(seller: "sam", terms: .english(.init(start: 100, closesAt: closesAt)))),
        events: &events)
    #expect(result.error == nil)
}

/// The handle `listings` gives for `id`.
private func handle(_ id: String, _ listings: inout ReplayListings, _ engine: Engine) -> ListingHandle? {
    listings.handle(for: id, hash: ListingHandle.hash(of: id), in: engine)
}

@Suite struct ReplayListingsTests {
    @Test func handsOutTheEnginesListingAndKeepsItsHandle() {
        let engine = Engine()
        for n in 0..<100 { open("L\(n)", on: engine) }
        var listings = ReplayListings(capacity: 16)
        for n in 0..<100 {
            let id = "L\(n)"
            let first = handle(id, &listings, engine)
            #expect(first?.listing === engine.listings[id] && first?.isCurrent(for: id) == true)
            #expect(handle(id, &listings, engine)?.listing === engine.listings[id])
        }
        #expect(listings.held == 100)
        // Grown to stay at most half full.
        #expect(listings.capacity >= 200)
    }

    @Test func aListingTheEngineDoesNotHoldHasNoHandleAndTakesNoSlot() {
        let engine = Engine()
        open("L", on: engine)
        var listings = ReplayListings()
        #expect(handle("M", &listings, engine) == nil)
        #expect(listings.held == 0)
        #expect(handle("L", &listings, engine) != nil && listings.held == 1)
    }

    @Test func anEvictedListingsHandleIsReplacedByTheOneOpenedAgainUnderItsID() {
        let engine = evictingEngine()
        open("L", on: engine, closesAt: 10)
        var listings = ReplayListings()
        let before = handle("L", &listings, engine)
        #expect(before != nil)
        var events: [Event] = []
        engine.advance(to: 100, events: &events)
        #expect(engine.listings["L"] == nil)
        // Evicted, and not opened again: no handle, though the table still holds the old one.
        #expect(handle("L", &listings, engine) == nil)
        open("L", on: engine, closesAt: 1_000)
        let after = handle("L", &listings, engine)
        #expect(after?.listing === engine.listings["L"] && after?.listing !== before?.listing)
        #expect(listings.held == 1)
    }

    @Test func keepsNoHandleOnListingsEvictedBeforeItGrows() {
        let engine = evictingEngine()
        var listings = ReplayListings(capacity: 16)
        var events: [Event] = []
        // Rounds of listings that close and are evicted: the table holds the listings of about one round at a time,
        // not of every round.
        for round in 0..<20 {
            for n in 0..<50 {
                open("R\(round)-\(n)", on: engine, closesAt: engine.now + 10)
                #expect(handle("R\(round)-\(n)", &listings, engine) != nil)
            }
            engine.advance(to: engine.now + 100, events: &events)
            events.removeAll()
            #expect(engine.listingCount == 0)
        }
        #expect(listings.held <= 100 && listings.capacity <= 256)
    }
}
