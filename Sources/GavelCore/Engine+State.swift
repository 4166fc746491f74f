extension Engine {
    /// The version of ``encodeState()``'s format. A state with settlement data (any sale, given deadline, english
    /// runner-up or remembered settlement result) ends with the settlement section of ``encodeSettlements(into:pieceBytes:emit:)``;
    /// one without has none, so its bytes (and hash) are what they were before settlements existed. 2 added the closed-listing retention, the per-principal cap of
    /// remembered request ids and the caps of resting orders per market listing and per trader (after the
    /// idempotency window) and the `evict` timer; 3 the shortest dutch step and the longest listing duration (after
    /// the resting-order caps); 4 the open listings per seller and the resting orders per trader over all listings
    /// (after those); 5 the listings held per seller and the unfinished settlements per user (after those). A state
    /// whose engine has none of them (1 ms, `Int64.max`, `Int.max`: `gavel simulate`'s) is written as version 2,
    /// byte for byte what it was before they existed, so it keeps its hash; one with only the version 3 ones as
    /// version 3, one with only the version 3 and 4 ones as version 4. ``restore(from:defaults:)`` reads versions 1
    /// to 4 too.
    public static let stateVersion: UInt32 = 5

    /// Whether the state holds the shortest dutch step and the longest listing duration (version 3 and later), or
    /// neither is set and it is written as version 2.
    var writesOpenLimits: Bool {
        configuration.minDutchStepMs != 1 || configuration.maxListingDurationMs != .max || writesUserLimits
    }

    /// Whether the state holds the per-seller and per-trader-total caps (version 4 and later).
    var writesUserLimits: Bool {
        configuration.maxOpenListingsPerSeller != .max || configuration.maxRestingOrdersPerTraderTotal != .max
            || writesHeldLimits
    }

    /// Whether the state holds the caps of listings held per seller and unfinished settlements per user (version 5).
    var writesHeldLimits: Bool {
        configuration.maxListingsHeldPerSeller != .max || configuration.maxUnfinishedSettlementsPerUser != .max
    }

    /// The whole engine state in a canonical binary form: the same state gives the same bytes on every run and
    /// machine (listings are written in id order, timers in firing order, remembered ids in the order they were
    /// applied).
    public func encodeState() -> [UInt8] {
        var state: [UInt8] = []
        // One piece: the writer's own bytes, not copied.
        encodeState(pieceBytes: .max) { if state.isEmpty { state = $0 } else { state.append(contentsOf: $0) } }
        return state
    }

    /// ``encodeState()``'s bytes, handed to `emit` a piece at a time, each piece `pieceBytes` or a little more
    /// (pieces end between two values, the last is shorter): a state of any size is never held whole (a snapshot
    /// compresses each piece into its file). The array handed to `emit` is reused for the next piece.
    public func encodeState<E: Error>(pieceBytes: Int, emit: ([UInt8]) throws(E) -> Void) throws(E) {
        var w = BinaryWriter(capacity: min(pieceBytes, 1 << 22) + 4096)
        let openLimits = writesOpenLimits
        let userLimits = writesUserLimits
        let heldLimits = writesHeldLimits
        w.write(heldLimits ? Self.stateVersion : userLimits ? 4 : openLimits ? 3 : 2)
        w.write(now)
        w.write(configuration.idempotencyWindowMs)
        w.write(configuration.closedListingRetentionMs)
        w.write(UInt64(configuration.maxRequestIDsPerPrincipal))
        w.write(UInt64(configuration.maxRestingOrdersPerListing))
        w.write(UInt64(configuration.maxRestingOrdersPerTrader))
        if openLimits {
            w.write(configuration.minDutchStepMs)
            w.write(configuration.maxListingDurationMs)
        }
        if userLimits {
            w.write(UInt64(configuration.maxOpenListingsPerSeller))
            w.write(UInt64(configuration.maxRestingOrdersPerTraderTotal))
        }
        if heldLimits {
            w.write(UInt64(configuration.maxListingsHeldPerSeller))
            w.write(UInt64(configuration.maxUnfinishedSettlementsPerUser))
        }
        w.write(UInt64(listings.count))
        for id in listings.keys.sorted() {
            guard let listing = listings[id] else { continue }
            encode(listing, into: &w)
            try w.flush(over: pieceBytes, to: emit)
        }
        let timers = self.timers.ordered
        w.write(UInt64(timers.count))
        w.write(self.timers.nextSequence)
        for timer in timers {
            try w.flush(over: pieceBytes, to: emit)
            w.write(timer.time)
            w.write(timer.sequence)
            w.write(timer.listing)
            switch timer.action {
            case .close: w.write(UInt8(0))
            case .dutchStep: w.write(UInt8(1))
            case .expire(let trader, let order):
                w.write(UInt8(2))
                w.write(trader)
                w.write(order)
            case .evict: w.write(UInt8(3))
            case .settlementDue(let number):
                w.write(UInt8(4))
                w.write(number)
            case .offerDue: w.write(UInt8(5))
            case .prune: w.write(UInt8(6))
            }
        }
        // Remembered requests in the order they were applied (which a replay reproduces), so no sort is needed.
        w.write(UInt64(rememberedLive))
        for slot in liveRememberedSlots {
            let entry = rememberedSlots[slot]
            w.write(principals.name(of: entry.principalSlot))
            w.write(entry.id)
            w.write(entry.at)
            w.write(entry.fingerprint)
            entry.result.encode(into: &w)
            try w.flush(over: pieceBytes, to: emit)
        }
        try encodeSettlements(into: &w, pieceBytes: pieceBytes, emit: emit)
        try emit(w.bytes)
    }

    /// SHA-256 of ``encodeState()``, as lowercase hex.
    public func stateHash() -> String {
        SHA256Digest.hex(encodeState())
    }

    private func encode(_ listing: Listing, into w: inout BinaryWriter) {
        w.write(listing.id)
        w.write(listing.seller)
        listing.terms.encode(into: &w)
        w.write(listing.opensAt)
        w.write(listing.closesAt)
        w.write(listing.status.rawValue)
        w.write(listing.seq)
        switch listing.book {
        case .english(let b):
            w.write(b.price)
            w.write(b.leader)
            w.write(b.maximum)
            w.write(b.bids)
            w.write(b.buyer)
        case .sealed(let b):
            w.write(b.count)
            w.write(b.nextOrder)
            let bidders = b.bids.keys.sorted()
            w.write(UInt64(bidders.count))
            for bidder in bidders {
                guard let bid = b.bids[bidder] else { continue }
                w.write(bidder)
                w.write(bid.amount)
                w.write(bid.order)
            }
        case .dutch(let b):
            w.write(b.remaining)
            w.write(b.price)
            w.write(b.nextStepAt)
        case .market(let b):
            w.write(b.traded)
            for levels in [b.bids, b.asks] {
                w.write(UInt64(levels.count))
                for level in levels {
                    w.write(level.price)
                    w.write(level.total)
                    w.write(UInt64(level.count))
                    level.forEachOrder { order in
                        w.write(order.id)
                        w.write(order.trader)
                        w.write(order.remaining)
                        w.write(order.expiresAt)
                    }
                }
            }
        }
    }
}
