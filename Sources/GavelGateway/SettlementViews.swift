import GavelCore
import GavelWire

/// The gateway's copy of every settlement and second-chance offer the engine holds, for `my_settlements` and
/// `get_settlement`: loaded from the recovered engine at start, then kept in step from the durable `settlement`
/// and `second_chance` events alone (never the engine). It drops what the engine drops: a listing's rows at its
/// `evicted` event, pruned settlements at `settlements_pruned`.
///
/// Every read costs O(log n + what it answers), whatever the user holds and whatever the filter: each user has
/// their settlements in creation order, all of them and those of each state apart, in ``SortedChunks``, and the
/// listing ids of their offers. A settlement costs four index entries (its buyer's and its seller's, in each one's
/// list of all and of its state) of a number and its id, which leave with it.
struct SettlementViews {
    /// A settlement and the number it was inserted as, its place in creation order.
    private struct Stored {
        var settlement: Settlement
        var inserted: UInt64
    }

    /// A settlement in a user's index: ordered by the number it was inserted as, unique to it.
    struct Key: Comparable {
        var inserted: UInt64
        var id: String

        static func < (a: Key, b: Key) -> Bool { a.inserted < b.inserted }
    }

    /// A user's settlements (as buyer or seller) in creation order: all of them, and those of each state.
    private struct UserIndex {
        var all = SortedChunks<Key>()
        var byState: [SettlementState: SortedChunks<Key>] = [:]
    }

    private var byID: [String: Stored] = [:]
    private var inserted: UInt64 = 0
    private var byUser: [String: UserIndex] = [:]
    /// The settlement numbers of each listing.
    private var byListing: [String: Set<Int64>] = [:]
    /// The second-chance offer of each listing that has one.
    private var offers: [String: SecondChanceOffer] = [:]
    /// The listings of the offers where each user is the seller or the runner-up.
    private var offersByUser: [String: SortedIDs] = [:]

    var count: Int { byID.count }

    /// The settlement `id`, when the views hold it.
    func settlement(_ id: String) -> Settlement? { byID[id]?.settlement }

    /// Starts from the recovered engine's settlements, in the order it created them
    /// (``Engine/settlementsInCreationOrder``, which a restore and a replay keep), and its offers. Settlements
    /// inserted later from events follow them, so the order is the engine's creation order live and after a restart.
    mutating func load(_ settlements: [Settlement], offers loaded: [SecondChanceOffer]) {
        for settlement in settlements { insert(settlement) }
        for offer in loaded { record(offer) }
    }

    /// The users a settlement is listed under: its buyer, and its seller when another.
    private static func users(of settlement: Settlement) -> [String] {
        settlement.seller == settlement.buyer ? [settlement.buyer] : [settlement.buyer, settlement.seller]
    }

    private mutating func insert(_ settlement: Settlement) {
        let id = settlement.id
        inserted += 1
        byID[id] = Stored(settlement: settlement, inserted: inserted)
        let key = Key(inserted: inserted, id: id)
        for user in Self.users(of: settlement) {
            byUser[user, default: UserIndex()].all.insert(key)
            byUser[user]!.byState[settlement.state, default: SortedChunks()].insert(key)
        }
        byListing[settlement.listing, default: []].insert(settlement.number)
    }

    /// Records a transition of the settlement `id`, moving it to its new state's list.
    private mutating func record(_ change: SettlementChange, of id: String) {
        guard let before = byID[id]?.settlement.state else { return }
        byID[id]!.settlement.record(change)
        let stored = byID[id]!
        let after = stored.settlement.state
        guard before != after else { return }
        let key = Key(inserted: stored.inserted, id: id)
        for user in Self.users(of: stored.settlement) {
            guard var index = byUser.removeValue(forKey: user) else { continue }
            index.byState[before]?.remove(key)
            if index.byState[before]?.isEmpty == true { index.byState[before] = nil }
            index.byState[after, default: SortedChunks()].insert(key)
            byUser[user] = index
        }
    }

    /// Drops the settlements `ids`, removing them from each user's lists a chunk at a time.
    private mutating func remove(_ ids: [String]) {
        var all: [String: [Key]] = [:]
        var byState: [String: [SettlementState: [Key]]] = [:]
        for id in ids {
            guard let stored = byID.removeValue(forKey: id) else { continue }
            let key = Key(inserted: stored.inserted, id: id)
            for user in Self.users(of: stored.settlement) {
                all[user, default: []].append(key)
                byState[user, default: [:]][stored.settlement.state, default: []].append(key)
            }
        }
        for (user, keys) in all {
            guard var index = byUser.removeValue(forKey: user) else { continue }
            index.all.remove(sorted: keys.sorted())
            for (state, keys) in byState[user] ?? [:] {
                index.byState[state]?.remove(sorted: keys.sorted())
                if index.byState[state]?.isEmpty == true { index.byState[state] = nil }
            }
            if !index.all.isEmpty { byUser[user] = index }
        }
    }

    /// Sets the offer of its listing, keeping each user's list of offers in step.
    private mutating func record(_ offer: SecondChanceOffer) {
        if let old = offers[offer.listing] { unindex(old) }
        offers[offer.listing] = offer
        for user in [offer.seller, offer.bidder] {
            offersByUser[user, default: SortedIDs()].insert(offer.listing)
        }
    }

    /// Takes `offer` out of its seller's and runner-up's lists of offers.
    private mutating func unindex(_ offer: SecondChanceOffer) {
        for user in [offer.seller, offer.bidder] {
            offersByUser[user]?.remove(offer.listing)
            if offersByUser[user]?.isEmpty == true { offersByUser[user] = nil }
        }
    }

    /// Folds a released event in: settlement transitions, offers, and the engine's drops.
    mutating func apply(_ event: Event) {
        switch event.kind {
        case .settlement(let change):
            let id = SettlementID.format(listing: event.listing, number: change.number)
            if byID[id] != nil {
                record(change, of: id)
            } else {
                insert(Settlement(listing: event.listing, creation: change))
            }
        case .secondChance(let offer):
            record(offer)
        case .settlementsPruned(let numbers):
            remove(numbers.map { SettlementID.format(listing: event.listing, number: $0) })
            if var kept = byListing.removeValue(forKey: event.listing) {
                kept.subtract(numbers)
                if !kept.isEmpty { byListing[event.listing] = kept }
            }
        case .evicted:
            let numbers = byListing.removeValue(forKey: event.listing) ?? []
            remove(numbers.map { SettlementID.format(listing: event.listing, number: $0) })
            if let offer = offers.removeValue(forKey: event.listing) { unindex(offer) }
        default:
            break
        }
    }

    /// Whether `kind` changes these views.
    static func concerns(_ kind: EventKind) -> Bool {
        switch kind {
        case .settlement, .secondChance, .settlementsPruned, .evicted: true
        default: false
        }
    }

    /// One page of `user`'s settlements (as buyer or seller) in creation order, those in `state` only when given,
    /// after the settlement `after`; `nil` when `after` is not one of the user's settlements. `next` is the last id
    /// of the page when more follow. O(log n + limit): `after` is found by its id, the page read from the user's
    /// list of that state (or of all).
    func page(user: String, state: SettlementState?, after: String?, limit: Int) -> (
        items: [Settlement], next: String?
    )? {
        var from: Key?
        if let after {
            guard let stored = byID[after], stored.settlement.buyer == user || stored.settlement.seller == user
            else { return nil }
            from = Key(inserted: stored.inserted, id: after)
        }
        guard let index = byUser[user] else { return ([], nil) }
        let list: SortedChunks<Key>? = if let state { index.byState[state] } else { index.all }
        let keys = list?.elements(after: from, limit: limit + 1) ?? []
        let items = keys.prefix(limit).compactMap { byID[$0.id]?.settlement }
        return (items, keys.count > limit ? items.last?.id : nil)
    }

    /// One page of the second-chance offers where `user` is the seller or the runner-up, by listing id: up to
    /// `limit` whose listing sorts after `after` (from the first when `nil`; it need not be one of them). `next` is
    /// the last listing of the page when more follow. O(log n + limit).
    func offers(of user: String, after: String?, limit: Int) -> (items: [SecondChanceOffer], next: String?) {
        guard let listings = offersByUser[user] else { return ([], nil) }
        let ids = listings.ids(after: after, limit: limit + 1)
        let items = ids.prefix(limit).compactMap { offers[$0] }
        return (items, ids.count > limit ? items.last?.listing : nil)
    }

    /// How many index entries the views hold: each user's settlements (all, and by state) and offers. Stays in
    /// proportion to the settlements and offers held, for tests.
    var indexEntries: Int {
        byUser.values.reduce(0) { total, index in
            total + index.all.count + index.byState.values.reduce(0) { $0 + $1.count }
        } + offersByUser.values.reduce(0) { $0 + $1.count }
    }
}

/// One page of a user's settlements and one of their offers, as `my_settlements` answers them: `next` and
/// `offersNext` are the last settlement id and the last offer's listing of their page when more follow.
struct SettlementPage: Equatable {
    var settlements: [Settlement]
    var next: String?
    var offers: [SecondChanceOffer]
    var offersNext: String?
}

/// The JSON of settlements and offers in query answers.
enum SettlementJSON {
    /// The `settlements` answer to `my_settlements` for `page`, its two lists cut short to keep the answer small:
    /// each holds its first item, and then only the items that keep the two lists together within `room` bytes. A
    /// list cut short gets, as its cursor, the last item it holds. So no answer is larger than `room` plus one
    /// settlement, one offer and the envelope, whatever the page (see ``largestSettlementBytes``).
    static func answer(id: String?, user: String, page: SettlementPage, room: Int, ts: Millis) -> [UInt8] {
        var left = room
        let settlements = array(page.settlements, within: &left, settlement)
        let offers = array(page.offers, within: &left, offer)
        let next = settlements.count < page.settlements.count ? page.settlements[settlements.count - 1].id : page.next
        let offersNext = offers.count < page.offers.count ? page.offers[offers.count - 1].listing : page.offersNext
        return MessageEncoder.settlements(
            id: id, user: user, settlements: settlements.json, offers: offers.json, next: next,
            offersNext: offersNext, ts: ts)
    }

    /// The JSON array of the first of `items` and then of as many more, in order, as fit in `room` (which they
    /// take from): the array and how many items it holds.
    private static func array<T>(_ items: [T], within room: inout Int, _ encode: (T) -> [UInt8]) -> (
        json: [UInt8], count: Int
    ) {
        var out: [UInt8] = [UInt8(ascii: "[")]
        var count = 0
        for item in items {
            let bytes = encode(item)
            if count > 0 && bytes.count + 1 > room { break }
            if count > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: bytes)
            room -= bytes.count + 1
            count += 1
        }
        out.append(UInt8(ascii: "]"))
        return (out, count)
    }

    /// The most bytes one settlement's JSON takes: 64-character identifiers and references, 19-digit numbers, the
    /// longest history (paid, shipped, delivered, disputed with a 500-byte reason that is all `"`, each written as
    /// two bytes, and resolved). A test builds that settlement and checks it.
    static let largestSettlementBytes = 2_700
    /// The most bytes one offer's JSON takes.
    static let largestOfferBytes = 320

    /// `{"settlement":ID,"listing":L,"buyer":B,"seller":V,"price":P,"quantity":Q,"state":S,"due_at":T|null,
    /// "payment_ref":R|null,"tracking":T|null,"history":[{"state":S,"at":T,"by":U|null,"role":R|null,...}]}`.
    static func settlement(_ s: Settlement) -> [UInt8] {
        var w = JSONObjectWriter(capacity: 256 + 96 * s.history.count)
        MessageEncoder.settlementFields(s, stepsKey: "history", into: &w)
        return w.finish()
    }

    /// `{"listing":L,"seller":V,"bidder":B,"price":P,"state":S,"due_at":T|null}`.
    static func offer(_ o: SecondChanceOffer) -> [UInt8] {
        var w = JSONObjectWriter()
        w.field("listing", o.listing)
        w.field("seller", o.seller)
        w.field("bidder", o.bidder)
        w.field("price", o.price)
        w.field("state", o.state.rawValue)
        w.field("due_at", o.dueAt)
        return w.finish()
    }
}
