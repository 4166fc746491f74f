import GavelCore
import Testing

@testable import GavelGateway

/// The settlement views' per-user indexes answer exactly what a scan of every settlement would, and follow the
/// engine's drops so that they never hold more than the settlements and offers kept.
struct SettlementIndexTests {
    /// The views as a straightforward scan: every current settlement in creation order, filtered at each query.
    private struct ScanModel {
        var order: [String] = []
        var settlements: [String: Settlement] = [:]
        var offers: [String: SecondChanceOffer] = [:]

        func page(user: String, state: SettlementState?, after: String?, limit: Int) -> (
            items: [String], next: String?
        )? {
            let mine = order.filter { settlements[$0]!.buyer == user || settlements[$0]!.seller == user }
            var rest = mine[...]
            if let after {
                guard let index = mine.firstIndex(of: after) else { return nil }
                rest = mine[(index + 1)...]
            }
            let wanted = rest.filter { state == nil || settlements[$0]!.state == state }
            let items = Array(wanted.prefix(limit))
            return (items, wanted.count > limit ? items.last : nil)
        }

        func offers(of user: String, after: String?, limit: Int) -> (items: [SecondChanceOffer], next: String?) {
            let mine = offers.values.filter { ($0.seller == user || $0.bidder == user) && $0.listing > (after ?? "") }
                .sorted { $0.listing < $1.listing }
            let items = Array(mine.prefix(limit))
            return (items, mine.count > limit ? items.last?.listing : nil)
        }

        mutating func drop(_ id: String) {
            guard settlements.removeValue(forKey: id) != nil else { return }
            order.removeAll { $0 == id }
        }
    }

    private static let users = ["ann", "bob", "cat", "dan"]
    private static let listings = (0..<8).map { "L\($0)" }

    private func pick<T>(_ items: [T], _ rng: inout SplitMix) -> T { items[Int(rng.next() % UInt64(items.count))] }

    /// Random settlement events (creations, transitions to any state, prunes, evictions, offers) and random queries
    /// (every user, every filter, cursors that are the user's, another's, dropped or unknown, every limit): each
    /// page, `next` and offer list is the one the scan gives, and walking the pages with `next` lists every match once.
    @Test(arguments: [1, 2, 3, 4] as [UInt64])
    func indexedPagesAndOffersEqualAScanOverRandomEvents(seed: UInt64) {
        var rng = SplitMix(seed: seed)
        var views = SettlementViews()
        var model = ScanModel()
        var numbers: [String: Int64] = [:]
        var clock: Millis = 1000

        // Some settlements recovered at start, in the engine's creation order, which their times need not follow.
        var loaded: [Settlement] = []
        for _ in 0..<40 {
            let listing = pick(Self.listings, &rng)
            numbers[listing, default: 0] += 1
            let at = Millis(rng.next() % 900)
            let state = pick(SettlementState.allCases, &rng)
            loaded.append(
                Settlement(
                    listing: listing, number: numbers[listing]!, buyer: pick(Self.users, &rng),
                    seller: pick(Self.users, &rng), price: 1, quantity: 1, state: state, dueAt: nil,
                    history: [SettlementStep(state: .awaitingPayment, at: at), SettlementStep(state: state, at: 950)]))
        }
        let loadedOffers = [
            SecondChanceOffer(listing: "L3", seller: "ann", bidder: "bob", price: 5, state: .offered, dueAt: 9)
        ]
        views.load(loaded, offers: loadedOffers)
        for s in loaded {
            model.order.append(s.id)
            model.settlements[s.id] = s
        }
        for offer in loadedOffers { model.offers[offer.listing] = offer }

        func query() {
            let user = pick(Self.users + ["eve"], &rng)
            let state: SettlementState? = rng.next() % 3 == 0 ? nil : pick(SettlementState.allCases, &rng)
            let limit = 1 + Int(rng.next() % 6)
            var after: String?
            switch rng.next() % 4 {
            case 0: after = nil
            case 1: after = model.order.isEmpty ? nil : pick(model.order, &rng)
            case 2: after = "\(pick(Self.listings, &rng)):\(1 + rng.next() % 30)"
            default: after = "Z9:1"
            }
            let got = views.page(user: user, state: state, after: after, limit: limit)
            let want = model.page(user: user, state: state, after: after, limit: limit)
            #expect(got?.items.map(\.id) == want?.items, "\(user) \(String(describing: state)) after \(after ?? "-")")
            #expect(got?.next == want?.next, "\(user) \(String(describing: state)) after \(after ?? "-")")
            #expect((got == nil) == (want == nil))
            #expect(got?.items.map { $0 } == want?.items.map { model.settlements[$0]! })
            let offersAfter: String? = rng.next() % 2 == 0 ? nil : pick(Self.listings, &rng)
            let gotOffers = views.offers(of: user, after: offersAfter, limit: limit)
            let wantOffers = model.offers(of: user, after: offersAfter, limit: limit)
            #expect(gotOffers.items == wantOffers.items, "\(user) offers after \(offersAfter ?? "-")")
            #expect(gotOffers.next == wantOffers.next, "\(user) offers after \(offersAfter ?? "-")")
        }

        func walkEveryPage() {
            for user in Self.users {
                for state in [nil] + SettlementState.allCases.map(Optional.some) {
                    var seen: [String] = []
                    var after: String?
                    while let page = views.page(user: user, state: state, after: after, limit: 3) {
                        seen += page.items.map(\.id)
                        guard let next = page.next else { break }
                        after = next
                    }
                    #expect(seen == model.page(user: user, state: state, after: nil, limit: .max - 1)?.items)
                }
            }
        }

        for round in 0..<1500 {
            clock += 1
            let listing = pick(Self.listings, &rng)
            let current = model.order.filter { $0.hasPrefix(listing + ":") }
            switch rng.next() % 20 {
            case 0..<7:
                numbers[listing, default: 0] += 1
                let change = SettlementChange(
                    number: numbers[listing]!, buyer: pick(Self.users, &rng), seller: pick(Self.users, &rng),
                    price: 500, quantity: 1, dueAt: nil, step: SettlementStep(state: .awaitingPayment, at: clock))
                views.apply(Event(listing: listing, seq: 0, at: clock, kind: .settlement(change)))
                let settlement = Settlement(listing: listing, creation: change)
                model.order.append(settlement.id)
                model.settlements[settlement.id] = settlement
            case 7..<13:
                guard !current.isEmpty else { break }
                let id = pick(current, &rng)
                let old = model.settlements[id]!
                let state = pick(SettlementState.allCases, &rng)
                let change = SettlementChange(
                    number: old.number, buyer: old.buyer, seller: old.seller, price: old.price,
                    quantity: old.quantity, dueAt: nil, step: SettlementStep(state: state, at: clock))
                views.apply(Event(listing: listing, seq: 0, at: clock, kind: .settlement(change)))
                model.settlements[id]!.record(change)
            case 13..<16:
                let pruned = current.filter { _ in rng.next() % 2 == 0 }.map { SettlementID.parse($0)!.number }
                guard !pruned.isEmpty else { break }
                views.apply(Event(listing: listing, seq: 0, at: clock, kind: .settlementsPruned(pruned.sorted())))
                for number in pruned { model.drop(SettlementID.format(listing: listing, number: number)) }
            case 16:
                views.apply(Event(listing: listing, seq: 0, at: clock, kind: .evicted))
                for id in current { model.drop(id) }
                model.offers[listing] = nil
                numbers[listing] = 0
            default:
                let offer = SecondChanceOffer(
                    listing: listing, seller: pick(Self.users, &rng), bidder: pick(Self.users, &rng), price: 7,
                    state: pick(OfferState.allCases, &rng), dueAt: nil)
                views.apply(Event(listing: listing, seq: 0, at: clock, kind: .secondChance(offer)))
                model.offers[listing] = offer
            }
            for _ in 0..<3 { query() }
            if round % 100 == 0 { walkEveryPage() }
            #expect(views.count == model.settlements.count)
        }
        walkEveryPage()
        for id in model.order { #expect(views.settlement(id) == model.settlements[id]) }
    }

    /// Each settlement holds four index entries at most (its buyer's and seller's lists of all and of its state),
    /// each offer two; pruning and evicting take them out, so the indexes end empty with the settlements.
    @Test func indexesHoldAFewEntriesPerSettlementKeptAndEmptyWhenAllAreDropped() {
        var views = SettlementViews()
        let count: Int64 = 50_000
        for number in 1...count {
            let step = SettlementStep(state: .awaitingPayment, at: Millis(number))
            let change = SettlementChange(
                number: number, buyer: "ann", seller: "sam", price: 1, quantity: 1, dueAt: nil, step: step)
            views.apply(Event(listing: "D1", seq: 0, at: Millis(number), kind: .settlement(change)))
        }
        for number in stride(from: 1, through: count, by: 2) {
            let step = SettlementStep(state: .paid, at: 60_000)
            let change = SettlementChange(
                number: number, buyer: "ann", seller: "sam", price: 1, quantity: 1, dueAt: nil, step: step)
            views.apply(Event(listing: "D1", seq: 0, at: 60_000, kind: .settlement(change)))
        }
        let offer = SecondChanceOffer(listing: "D1", seller: "sam", bidder: "bob", price: 1, state: .offered, dueAt: 1)
        views.apply(Event(listing: "D1", seq: 0, at: 60_000, kind: .secondChance(offer)))
        #expect(views.indexEntries == 4 * Int(count) + 2)
        #expect(
            views.page(user: "ann", state: .refunded, after: "D1:49999", limit: 50).map { $0.items.isEmpty } == true)
        #expect(views.page(user: "ann", state: .paid, after: "D1:2", limit: 2)?.items.map(\.id) == ["D1:3", "D1:5"])

        views.apply(Event(listing: "D1", seq: 0, at: 70_000, kind: .settlementsPruned(Array(1...(count - 10)))))
        #expect(views.count == 10)
        #expect(views.indexEntries == 4 * 10 + 2)
        #expect(
            views.page(user: "sam", state: nil, after: nil, limit: 3)?.items.map(\.id) == [
                "D1:49991", "D1:49992", "D1:49993",
            ])
        views.apply(Event(listing: "D1", seq: 0, at: 80_000, kind: .evicted))
        #expect(views.count == 0 && views.indexEntries == 0)
        #expect(views.offers(of: "bob", after: nil, limit: 10).items.isEmpty)
    }
}

@Suite struct SortedChunksTests {
    /// Bulk and single removals keep the set equal to a reference, and chunks emptied by removals are merged, so
    /// the number of chunks follows the elements kept, not the most ever held.
    @Test func removalsMatchASetAndMergeChunksSoTheirNumberFollowsTheElementsKept() {
        var chunks = SortedChunks<Int>()
        var reference = Set<Int>()
        var rng = SplitMix(seed: 11)
        for i in 0..<100_000 {
            chunks.insert(i * 2)
            reference.insert(i * 2)
        }
        #expect(chunks.chunkCount > 190)
        // Remove all but about one in a hundred, some one at a time, most in sorted batches with absent ones mixed in.
        var batch: [Int] = []
        for i in 0..<100_000 where i % 100 != 0 {
            if rng.next() % 10 == 0 {
                let removed = chunks.remove(i * 2)
                #expect(removed)
            } else {
                batch.append(i * 2)
                batch.append(i * 2 + 1)
            }
            if batch.count > 3000 {
                #expect(chunks.remove(sorted: batch) == batch.count / 2)
                batch.removeAll()
            }
            reference.remove(i * 2)
        }
        #expect(chunks.remove(sorted: batch) == batch.count / 2)
        #expect(chunks.count == reference.count)
        #expect(chunks.elements(after: nil, limit: .max) == reference.sorted())
        #expect(chunks.chunkCount <= 8 * reference.count / SortedChunks<Int>.chunkCapacity + 2)
        #expect(chunks.elements(after: 999, limit: 2) == [1000, 1200])
    }
}
