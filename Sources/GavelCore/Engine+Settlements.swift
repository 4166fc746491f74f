extension Engine {
    // MARK: - Read API

    /// Every settlement in memory, as value copies, by listing id and then number.
    public var settlements: [Settlement] {
        listings.keys.sorted().flatMap { listings[$0]?.settlements ?? [] }
    }

    /// The settlements of `listing` in memory, by number; empty for an unknown listing.
    public func settlements(of listing: String) -> [Settlement] {
        listings[listing]?.settlements ?? []
    }

    /// The settlement with id `id` (`listing:n`), while it is in memory.
    public func settlement(_ id: String) -> Settlement? {
        guard let (listing, number) = SettlementID.parse(id), let l = listings[listing] else { return nil }
        return l.settlementIndex(number).map { l.settlements[$0] }
    }

    /// Every second-chance offer in memory, made and not yet over or over, by listing id.
    public var secondChanceOffers: [SecondChanceOffer] {
        listings.keys.sorted().compactMap { listings[$0]?.offer }
    }

    // MARK: - Rules

    /// Applies a settlement command to settlement `number` of `listingID`.
    func settle(
        _ listingID: String, number: Int64, action: SettlementAction, by: String, role: ActorRole, known: Listing?,
        events: inout [Event]
    ) -> CommandResult {
        let id = SettlementID.format(listing: listingID, number: number)
        guard let listing = known ?? listings[listingID], listing.settlementIndex(number) != nil else {
            return .rejected(.unknownSettlement, "no settlement \(id); check the settlement id")
        }
        return .rejected(.invalidTransition, "settlement \(id) cannot take \(action.typeName) yet")
    }

    /// Applies a second-chance command to `listingID`.
    func secondChance(
        _ listingID: String, action: OfferAction, by: String, role: ActorRole, known: Listing?, events: inout [Event]
    ) -> CommandResult {
        guard let listing = known ?? listings[listingID] else {
            return .rejected(.unknownListing, "no listing \(listingID); check the listing id")
        }
        return .rejected(
            .invalidTransition, "listing \(listing.id) has no sale whose payment expired; nothing to offer")
    }
}

extension Listing {
    /// The position in ``settlements`` of settlement `number`, if it is in memory.
    func settlementIndex(_ number: Int64) -> Int? {
        var low = 0
        var high = settlements.count
        while low < high {
            let mid = (low + high) / 2
            if settlements[mid].number < number { low = mid + 1 } else { high = mid }
        }
        return low < settlements.count && settlements[low].number == number ? low : nil
    }
}
