import Testing

@testable import GavelCore

/// The values every command copies on its way (decoder, writer, journal, replay, fan-out, feed) stay small: a case
/// that carries a large payload is boxed (`indirect`) rather than making every value its size.
@Suite struct ValueSizeTests {
    @Test func commandsEventsAndResultsStayWithinTheirSizeBudgets() {
        // Today 89, 113, 93 and 72 bytes (a stride: slots sit in arrays). A budget a little above, so that a new case or field that doubles one
        // of them (as the 161 bytes of a listing's terms did) fails here, not in a profile.
        #expect(MemoryLayout<Command>.size <= 96, "box the large case of CommandBody (indirect case)")
        #expect(MemoryLayout<Event>.size <= 120, "box the large case of EventKind (indirect case)")
        #expect(MemoryLayout<CommandResult>.size <= 96, "keep CommandResult's stored properties packed")
        #expect(MemoryLayout<RememberedResult>.stride <= 72, "a remembered id's slot is kept per request id")
        // Neither the id nor the result takes a tag byte of its own (the spare bits of their last fields tell the
        // cases apart).
        #expect(MemoryLayout<StoredID>.size == 24 && MemoryLayout<StoredResult>.size == 16)
    }

    @Test func aListingKeepsItsSalesRecordOnlyOnceItSells() {
        let engine = Engine()
        var events: [Event] = []
        let open = Command(
            id: "o", listing: "L", body: .open(seller: "sam", terms: .english(.init(start: 100, closesAt: 1_000))))
        #expect(engine.apply(open, events: &events).ok)
        for n in 0..<10 {
            let bid = Command(
                id: "b\(n)", listing: "L", body: .bid(bidder: "u\(n % 3)", amount: Money(200 + 100 * n)))
            #expect(engine.apply(bid, events: &events).ok)
        }
        let listing = engine.listings["L"]!
        #expect(!listing.hasSalesRecord, "open with bids: no sale yet")
        #expect(listing.sales == 0 && listing.settlements.isEmpty && listing.offer == nil)
        engine.advance(to: 1_000, events: &events)
        #expect(listing.hasSalesRecord && listing.sales == 1 && listing.settlements.count == 1, "sold at the close")
    }

    @Test func aRestoredListingThatNeverSoldMakesNoSalesRecord() throws {
        let engine = Engine()
        var events: [Event] = []
        // Deadlines in its terms put the listing in the state's settlement section, with nothing sold.
        let terms = ListingTerms.english(
            .init(start: 100, closesAt: 1_000, deadlines: SettlementDeadlines(paymentDueMs: 60_000)))
        #expect(
            engine.apply(Command(id: "o", listing: "L", body: .open(seller: "sam", terms: terms)), events: &events).ok)
        let restored = try Engine.restore(from: engine.encodeState(), defaults: EngineConfiguration())
        #expect(restored.encodeState() == engine.encodeState())
        #expect(restored.listings["L"]?.hasSalesRecord == false)
    }
}
