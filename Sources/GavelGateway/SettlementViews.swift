import GavelCore
import GavelWire

/// The gateway's copy of every settlement and second-chance offer the engine holds, for `my_settlements` and
/// `get_settlement`: loaded from the recovered engine at start, then kept in step from the durable `settlement`
/// and `second_chance` events alone (never the engine). It drops what the engine drops: a listing's rows at its
/// `evicted` event, pruned settlements at `settlements_pruned`.
struct SettlementViews {
    /// A settlement and the number it was inserted as: a user's list entry is current only while they match.
    private struct Stored {
        var settlement: Settlement
        var inserted: UInt64
    }

    /// A user's settlements (as buyer or seller) in creation order. Dropped ones stay until they are half of the
    /// list, which is then compacted: dropping a listing costs O(1) per user amortised, not the user's whole list
    /// (a seller with 10,000 settlements whose listings are all evicted at once would cost 10^8 steps otherwise).
    private struct UserList {
        var entries: [(id: String, inserted: UInt64)] = []
        var stale = 0
    }

    private var byID: [String: Stored] = [:]
    private var inserted: UInt64 = 0
    private var byUser: [String: UserList] = [:]
    /// The settlement numbers of each listing.
    private var byListing: [String: [Int64]] = [:]
    /// The second-chance offer of each listing that has one.
    private var offers: [String: SecondChanceOffer] = [:]

    var count: Int { byID.count }

    /// The settlement `id`, when the views hold it.
    func settlement(_ id: String) -> Settlement? { byID[id]?.settlement }

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
        inserted += 1
        byID[id] = Stored(settlement: settlement, inserted: inserted)
        byUser[settlement.buyer, default: UserList()].entries.append((id, inserted))
        if settlement.seller != settlement.buyer {
            byUser[settlement.seller, default: UserList()].entries.append((id, inserted))
        }
        byListing[settlement.listing, default: []].append(settlement.number)
    }

    private func isCurrent(_ entry: (id: String, inserted: UInt64)) -> Bool {
        byID[entry.id]?.inserted == entry.inserted
    }

    /// Drops the settlements `ids`; each user's list is compacted once half of it is dropped ones.
    private mutating func remove(_ ids: [String]) {
        for id in ids {
            guard let stored = byID.removeValue(forKey: id) else { continue }
            let settlement = stored.settlement
            dropped(from: settlement.buyer)
            if settlement.seller != settlement.buyer { dropped(from: settlement.seller) }
        }
    }

    private mutating func dropped(from user: String) {
        guard var list = byUser.removeValue(forKey: user) else { return }
        list.stale += 1
        if list.stale * 2 >= list.entries.count {
            list.entries.removeAll { !isCurrent($0) }
            list.stale = 0
        }
        if !list.entries.isEmpty { byUser[user] = list }
    }

    /// Folds a released event in: settlement transitions, offers, and the engine's drops.
    mutating func apply(_ event: Event) {
        switch event.kind {
        case .settlement(let change):
            let id = SettlementID.format(listing: event.listing, number: change.number)
            if byID[id] != nil {
                byID[id]?.settlement.record(change)
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
        let entries = byUser[user]?.entries ?? []
        var start = 0
        if let after {
            guard let index = entries.firstIndex(where: { $0.id == after && isCurrent($0) }) else { return nil }
            start = index + 1
        }
        var items: [Settlement] = []
        var index = start
        while index < entries.count {
            if let stored = byID[entries[index].id], stored.inserted == entries[index].inserted,
                state == nil || stored.settlement.state == state
            {
                if items.count == limit { return (items, items.last?.id) }
                items.append(stored.settlement)
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
