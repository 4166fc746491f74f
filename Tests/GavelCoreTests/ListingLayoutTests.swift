import Testing

@testable import GavelCore

#if canImport(Glibc)
    import Glibc
#endif

/// An open listing keeps its terms once and small: an english listing's in its book, anything its book cannot give
/// back exactly kept whole, and the terms read back are the terms it was opened with, through a restore too.
@Suite struct ListingLayoutTests {
    /// English terms of every shape the book must give back: the plain case, each rare field alone, a ladder given
    /// that equals the standard one (which is not the same terms as no ladder), deadlines, and all at once.
    static let englishTerms: [ListingTerms.English] = [
        .init(start: 100, closesAt: 5_000),
        .init(start: 100, reserve: 500, closesAt: 5_000),
        .init(start: 100, buyNow: 900, closesAt: 5_000),
        .init(start: 100, closesAt: 5_000, increments: [IncrementStep(from: 0, step: 7)]),
        .init(start: 100, closesAt: 5_000, increments: IncrementLadder.standard),
        .init(start: 100, closesAt: 5_000, softClose: SoftClose(windowMs: 100, extendMs: 200, maxClosesAt: nil)),
        .init(start: 100, closesAt: 5_000, softClose: SoftClose(windowMs: 100, extendMs: 200, maxClosesAt: 9_000)),
        .init(start: 100, closesAt: 5_000, deadlines: SettlementDeadlines(offerDueMs: 60_000)),
        .init(start: 100, closesAt: 5_000, opensAt: 50),
        .init(
            start: 100, reserve: 500, buyNow: 900, closesAt: 5_000, opensAt: 20,
            increments: [IncrementStep(from: 0, step: 3), IncrementStep(from: 1_000, step: 30)],
            softClose: SoftClose(windowMs: 100, extendMs: 200, maxClosesAt: 9_000),
            deadlines: SettlementDeadlines(paymentDueMs: 1_000, shipDueMs: 2_000)),
    ]

    @Test(arguments: englishTerms)
    func anEnglishListingGivesBackTheTermsItWasOpenedWith(_ given: ListingTerms.English) throws {
        let engine = Engine()
        var events: [Event] = []
        engine.advance(to: 10, events: &events)
        let open = Command(id: "o", listing: "L", body: .open(seller: "sam", terms: .english(given)))
        #expect(engine.apply(open, events: &events).ok)
        guard case .opened(_, let published) = events.first?.kind else {
            Issue.record("no opened event")
            return
        }
        let listing = try #require(engine.listings["L"])
        #expect(listing.terms == published, "the terms kept are the terms published")
        var resolved = given
        resolved.opensAt = given.opensAt ?? 10
        #expect(listing.terms == .english(resolved))
        let restored = try Engine.restore(from: engine.encodeState(), defaults: EngineConfiguration())
        #expect(restored.listings["L"]?.terms == listing.terms)
        #expect(restored.encodeState() == engine.encodeState())
    }

    @Test func englishTermsWithoutDeadlinesAreKeptInTheBookAndOthersWhole() throws {
        let engine = Engine()
        var events: [Event] = []
        let opens: [(String, ListingTerms)] = [
            ("plain", .english(.init(start: 100, closesAt: 5_000))),
            ("rare", .english(.init(start: 100, reserve: 200, buyNow: 300, closesAt: 5_000))),
            ("deadlines", .english(.init(start: 100, closesAt: 5_000, deadlines: .init(paymentDueMs: 9)))),
            ("sealed", .sealed(.init(pricing: .second, start: 100, closesAt: 5_000))),
        ]
        for (id, terms) in opens {
            #expect(
                engine.apply(Command(id: id, listing: id, body: .open(seller: "s", terms: terms)), events: &events).ok)
        }
        func keptInBook(_ id: String) throws -> Bool {
            if case .english = try #require(engine.listings[id]).storedTerms { return true }
            return false
        }
        #expect(try keptInBook("plain"))
        #expect(try keptInBook("rare"))
        #expect(try !keptInBook("deadlines"), "deadlines are not in the book")
        #expect(try !keptInBook("sealed"))
        guard case .english(let plain) = try #require(engine.listings["plain"]).book,
            case .english(let rare) = try #require(engine.listings["rare"]).book
        else {
            Issue.record("english listings without english books")
            return
        }
        #expect(plain.extras == nil, "a listing that sets no rare rule keeps no box for them")
        #expect(rare.extras?.reserve == 200 && rare.extras?.buyNow == 300)
    }

    @Test func aRestoreThatSetsDeadlinesKeepsTheTermsWhole() throws {
        let listing = Listing(
            id: "L", seller: "s", terms: .english(.init(start: 100, closesAt: 5_000, opensAt: 0)), opensAt: 0)
        listing.terms.deadlines = SettlementDeadlines(shipDueMs: 7)
        #expect(listing.terms.deadlines.shipDueMs == 7)
        if case .english = listing.storedTerms { Issue.record("deadlines were dropped into the book") }
        listing.terms.deadlines = SettlementDeadlines()
        if case .whole = listing.storedTerms { Issue.record("terms the book gives back are kept whole") }
        #expect(listing.terms == .english(.init(start: 100, closesAt: 5_000, opensAt: 0)))
    }

    @Test func aTimerAndAnOpenEnglishListingStayWithinTheirSizes() {
        // Kept per listing: a close timer in the heap, the listing, its english book.
        #expect(MemoryLayout<ScheduledTimer>.stride <= 48, "box the large case of TimerAction (indirect case)")
        #if canImport(Glibc)
            let listing = Listing(id: "L", seller: "s", terms: .english(.init(start: 100, closesAt: 5_000)), opensAt: 0)
            // glibc's `malloc_usable_size`, which `Glibc` does not export (looked up at run time).
            typealias UsableSize = @convention(c) (UnsafeMutableRawPointer) -> Int
            guard let symbol = dlsym(nil, "malloc_usable_size") else { return }
            func usable(_ object: AnyObject) -> Int {
                unsafeBitCast(symbol, to: UsableSize.self)(Unmanaged.passUnretained(object).toOpaque())
            }
            // glibc's chunk of 128 bytes (120 usable): one more field would take the next size class.
            #expect(usable(listing) <= 120, "a listing's stored properties, packed")
            if case .english(let book) = listing.book { #expect(usable(book) <= 120, "an english book's fields") }
        #endif
    }
}
