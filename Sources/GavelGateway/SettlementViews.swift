import GavelCore
import GavelWire

/// The gateway's copy of every settlement and second-chance offer the engine holds, for `my_settlements` and
/// `get_settlement`: loaded from the recovered engine at start, then kept in step from the durable `settlement`
/// and `second_chance` events alone (never the engine). It drops what the engine drops: a listing's rows at its
/// `evicted` event, pruned settlements at `settlements_pruned`.
struct SettlementViews {
    private(set) var byID: [String: Settlement] = [:]
    /// The settlement ids of each user (buyer or seller), in creation order.
    private var byUser: [String: [String]] = [:]
    /// The settlement numbers of each listing.
    private var byListing: [String: [Int64]] = [:]
    /// The second-chance offer of each listing that has one.
    private var offers: [String: SecondChanceOffer] = [:]

    var count: Int { byID.count }

    /// Starts from the recovered engine's settlements and offers; settlements are taken in creation order (the time
    /// of their first step, then listing, then number).
    mutating func load(_ settlements: [Settlement], offers loaded: [SecondChanceOffer]) {
        let ordered = settlements.sorted { a, b in
            let at = (a.history.first?.at ?? 0, b.history.first?.at ?? 0)
            if at.0 != at.1 { return at.0 < at.1 }
            if a.listing != b.listing { return a.listing < b.listing }
            return a.number < b.number
        }
        for settlement in ordered { insert(settlement) }
        for offer in loaded { offers[offer.listing] = offer }
    }

    private mutating func insert(_ settlement: Settlement) {
        let id = settlement.id
        byID[id] = settlement
        byUser[settlement.buyer, default: []].append(id)
        if settlement.seller != settlement.buyer { byUser[settlement.seller, default: []].append(id) }
        byListing[settlement.listing, default: []].append(settlement.number)
    }

    /// Drops the settlements `ids` (of one listing): each user's list is filtered once, however many go.
    private mutating func remove(_ ids: [String]) {
        var users: Set<String> = []
        var gone: Set<String> = []
        for id in ids {
            guard let settlement = byID.removeValue(forKey: id) else { continue }
            gone.insert(id)
            users.insert(settlement.buyer)
            users.insert(settlement.seller)
        }
        for user in users {
            byUser[user]?.removeAll { gone.contains($0) }
            if byUser[user]?.isEmpty == true { byUser[user] = nil }
        }
    }

    /// Folds a released event in: settlement transitions, offers, and the engine's drops.
    mutating func apply(_ event: Event) {
        switch event.kind {
        case .settlement(let change):
            let id = SettlementID.format(listing: event.listing, number: change.number)
            if byID[id] != nil {
                byID[id]?.record(change)
            } else {
                insert(Settlement(listing: event.listing, creation: change))
            }
        case .secondChance(let offer):
            offers[event.listing] = offer
        case .settlementsPruned(let numbers):
            remove(numbers.map { SettlementID.format(listing: event.listing, number: $0) })
            let dropped = Set(numbers)
            byListing[event.listing]?.removeAll { dropped.contains($0) }
            if byListing[event.listing]?.isEmpty == true { byListing[event.listing] = nil }
        case .evicted:
            let numbers = byListing.removeValue(forKey: event.listing) ?? []
            remove(numbers.map { SettlementID.format(listing: event.listing, number: $0) })
            offers[event.listing] = nil
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
    /// of the page when more follow.
    func page(user: String, state: SettlementState?, after: String?, limit: Int) -> (
        items: [Settlement], next: String?
    )? {
        let ids = byUser[user] ?? []
        var start = 0
        if let after {
            guard let index = ids.firstIndex(of: after) else { return nil }
            start = index + 1
        }
        var items: [Settlement] = []
        var index = start
        while index < ids.count {
            if let settlement = byID[ids[index]], state == nil || settlement.state == state {
                if items.count == limit { return (items, items.last?.id) }
                items.append(settlement)
            }
            index += 1
        }
        return (items, nil)
    }

    /// The second-chance offers where `user` is the seller or the runner-up, by listing id.
    func offers(of user: String) -> [SecondChanceOffer] {
        offers.values.filter { $0.seller == user || $0.bidder == user }.sorted { $0.listing < $1.listing }
    }
}

/// The JSON of settlements and offers in query answers.
enum SettlementJSON {
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

    /// A JSON array of `items`, each encoded by `encode`.
    static func array<T>(_ items: [T], _ encode: (T) -> [UInt8]) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "[")]
        for (i, item) in items.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: encode(item))
        }
        out.append(UInt8(ascii: "]"))
        return out
    }
}
