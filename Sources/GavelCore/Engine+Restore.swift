extension Engine {
    /// Rebuilds an engine from bytes written by ``encodeState()``. The result encodes to the same bytes.
    ///
    /// A state of version 1 (written before listings were evicted, the request ids per principal capped and the
    /// resting orders capped) takes the retention and the caps from `defaults`; every listing in it that has already
    /// ended gets its eviction timer at the state's clock plus the retention, in listing id order, a principal above
    /// the cap keeps its newest ids, and a book holding more resting orders than a cap keeps them (only new `gtc`
    /// orders are refused until it is below). That is deterministic, so every restore of the same bytes gives the
    /// same engine. A state of version 1 or 2 (written before the shortest dutch step and the longest listing duration
    /// were settings) takes both from `defaults`; they apply to `open`s from then on, and listings already open keep
    /// their terms. A state of version 3 or earlier takes the caps of open listings per seller and of resting orders
    /// per trader over all listings from `defaults` too: they refuse new `open`s and `gtc` orders from then on, and
    /// what is already open or resting stays. A state of version 4 or earlier has no cap of listings held per seller
    /// nor of unfinished settlements per user, whatever `defaults` says: the data directory it comes from started
    /// before they existed, and its journal, replayed after the state, holds commands accepted without them.
    ///
    /// - Parameter defaults: ``EngineConfiguration/expectedRequestIDs`` (room to make in the idempotency table up
    ///   front, beyond the ids the state remembers; not part of the state), and the settings a version 1 state lacks.
    /// - Throws: ``DecodingError`` naming the offset of the first problem; the bytes are never trusted.
    public static func restore(from bytes: [UInt8], defaults: EngineConfiguration = EngineConfiguration())
        throws(DecodingError) -> Engine
    {
        var r = BinaryReader(bytes)
        // Names shared from one mention to the next (a cache made at the first name too long to be inline).
        r.identifierSlotsWhenNeeded = IdentifierCache.defaultSlotCount
        let version = try r.readUInt32()
        guard (1...stateVersion).contains(version) else {
            throw r.fail(
                "unsupported state version \(version) (this build reads 1 to \(stateVersion)); use a newer gavel")
        }
        // The clock starts at 0 and never goes back, so a live engine's clock is never negative: `closes_at - now`
        // and `now - at` rely on it.
        let now = try r.read(0...Int64.max, "the engine clock")
        var configuration = defaults
        configuration.idempotencyWindowMs = try r.readInt64()
        if version >= 2 {
            configuration.closedListingRetentionMs = try r.readInt64()
            let cap = try r.readUInt64()
            guard configuration.closedListingRetentionMs >= 0, cap >= 1, cap <= UInt64(Int.max) else {
                throw r.fail(
                    "closed-listing retention \(configuration.closedListingRetentionMs) or request-id cap \(cap) out of range"
                )
            }
            configuration.maxRequestIDsPerPrincipal = Int(cap)
            let perListing = try r.readUInt64()
            let perTrader = try r.readUInt64()
            guard perListing >= 1, perListing <= UInt64(Int.max), perTrader >= 1, perTrader <= UInt64(Int.max) else {
                throw r.fail("resting-order caps \(perListing) per listing or \(perTrader) per trader out of range")
            }
            configuration.maxRestingOrdersPerListing = Int(perListing)
            configuration.maxRestingOrdersPerTrader = Int(perTrader)
        }
        if version >= 3 {
            configuration.minDutchStepMs = try r.read(1...Int64.max, "the shortest dutch step")
            configuration.maxListingDurationMs = try r.read(1...Int64.max, "the longest listing duration")
        }
        if version >= 4 {
            let perSeller = try r.readUInt64()
            let perTrader = try r.readUInt64()
            guard perSeller >= 1, perSeller <= UInt64(Int.max), perTrader >= 1, perTrader <= UInt64(Int.max) else {
                throw r.fail(
                    "caps \(perSeller) open listings per seller or \(perTrader) resting orders per trader out of range")
            }
            configuration.maxOpenListingsPerSeller = Int(perSeller)
            configuration.maxRestingOrdersPerTraderTotal = Int(perTrader)
        }
        if version >= 5 {
            let perSeller = try r.readUInt64()
            let perUser = try r.readUInt64()
            guard perSeller >= 1, perSeller <= UInt64(Int.max), perUser >= 1, perUser <= UInt64(Int.max) else {
                throw r.fail(
                    "caps \(perSeller) listings held per seller or \(perUser) unfinished settlements per user out of range"
                )
            }
            configuration.maxListingsHeldPerSeller = Int(perSeller)
            configuration.maxUnfinishedSettlementsPerUser = Int(perUser)
        } else {
            configuration.maxListingsHeldPerSeller = .max
            configuration.maxUnfinishedSettlementsPerUser = .max
        }
        let expectedRequestIDs = defaults.expectedRequestIDs
        let engine = Engine(configuration: configuration)
        engine.now = now
        let listingCount = try r.readCount(minimumSize: 16)
        // Sized once (the count is bounded by the bytes left): grown by doubling, the table was rebuilt 14 times
        // for 10,000 listings.
        engine.listings.reserveCapacity(listingCount)
        for _ in 0..<listingCount {
            let listing = try decodeListing(&r)
            engine.listings[listing.id] = listing
            // The counts the caps read, which the state does not hold.
            if listing.status == .open { engine.openListingsBySeller[listing.seller, default: 0] += 1 }
            engine.heldListingsBySeller[listing.seller, default: 0] += 1
            if case .market(let book) = listing.book {
                for (trader, n) in book.restingPerTrader { engine.restingTotals.add(trader, n) }
                book.totals = engine.restingTotals
            }
        }
        let timerCount = try r.readCount(minimumSize: 21)
        let nextSequence = try r.readUInt64()
        engine.timers.reserveCapacity(timerCount)
        // Settlement and offer deadlines and prunes are linked once the settlements are back (they come last in the
        // state).
        var deadlines: [(handle: TimerHandle, number: Int64, time: Millis, listing: String)] = []
        var offers: [(handle: TimerHandle, time: Millis, listing: String)] = []
        var prunes: [(time: Millis, sequence: UInt64, handle: TimerHandle, listing: String)] = []
        for _ in 0..<timerCount {
            let time = try r.readInt64()
            let sequence = try r.readUInt64()
            let listing = try r.readIdentifier()
            let action: TimerAction
            switch try r.readByte() {
            case 0: action = .close
            case 1: action = .dutchStep
            case 2: action = .expire(trader: try r.readIdentifier(), order: try r.readString())
            case 3 where version >= 2: action = .evict
            case 4 where version >= 2: action = .settlementDue(number: try r.read(1...Int64.max, "a settlement number"))
            case 5 where version >= 2: action = .offerDue
            case 6 where version >= 2: action = .prune
            default: throw r.fail("unknown timer action")
            }
            let handle = engine.timers.restore(
                ScheduledTimer(time: time, sequence: sequence, listing: listing, action: action),
                nextSequence: nextSequence)
            engine.link(handle, action: action, at: time, listing: listing)
            switch action {
            case .settlementDue(let number): deadlines.append((handle, number, time, listing))
            case .offerDue: offers.append((handle, time, listing))
            case .prune: prunes.append((time, sequence, handle, listing))
            default: break
            }
        }
        if timerCount == 0 { engine.timers.restore(nextSequence: nextSequence) }
        if version == 1 {
            for id in engine.listings.keys.sorted() {
                guard let listing = engine.listings[id], listing.status != .open else { continue }
                engine.scheduleEviction(of: listing)
            }
        }
        let rememberedCount = try r.readCount(minimumSize: 16)
        // The remembered ids and as many again, at least `expectedRequestIDs`: the table has room to spare right after
        // a restart.
        engine.requests.reset(minimumCapacity: max(2 * rememberedCount, expectedRequestIDs))
        engine.rememberedSlots.reserveCapacity(max(rememberedCount, expectedRequestIDs))
        engine.rememberedOrder.reserveCapacity(max(2 * rememberedCount, expectedRequestIDs))
        for _ in 0..<rememberedCount {
            let key = RequestKey(principal: try r.readIdentifier(), id: try r.readString())
            let at = try r.read(0...now, "the time a request was remembered")
            let fingerprint = try r.readUInt64()
            let result = try CommandResult.decode(from: &r)
            // The key's hash once, for the check and the insert (which then probes slots already in cache), and the
            // principal's from the same pass over its bytes.
            let (hash, principalHash) = RequestHash.both(principal: key.principal, id: key.id)
            guard engine.rememberedPosition(of: key, hash: hash) == nil else {
                throw r.fail("request id \(key.id) of \(key.principal) is remembered twice")
            }
            engine.remember(
                RememberedResult(
                    id: StoredID(key.id), hash: hash, fingerprint: fingerprint,
                    result: engine.resultBoxes.store(result), at: at),
                principal: key.principal, principalHash: principalHash)
        }
        if !r.isAtEnd { try engine.restoreSettlements(&r, rememberedCount: rememberedCount) }
        // In firing order: of two due at the same time for one settlement (an older build kept stale timers), the
        // later scheduled is its current deadline.
        for d in deadlines {
            guard let listing = engine.listings[d.listing], let index = listing.settlementIndex(d.number),
                listing.settlements[index].dueAt == d.time
            else { continue }
            listing.settlementTimers[d.number] = d.handle
        }
        for o in offers {
            guard let listing = engine.listings[o.listing], let offer = listing.offer, offer.state == .offered,
                offer.dueAt == o.time
            else { continue }
            listing.offerTimer = o.handle
        }
        // In the order they fire, as they were scheduled.
        for p in prunes.sorted(by: { ($0.time, $0.sequence) < ($1.time, $1.sequence) }) {
            engine.listings[p.listing]?.addPruneTimer(p.handle)
        }
        guard r.isAtEnd else { throw r.fail("\(r.remaining) unexpected bytes after the state") }
        return engine
    }

    /// Links a restored timer to what cancels it: a resting order's expiry to the order, a listing's close to the
    /// listing, when they still apply (a stale one, from a state written before timers were cancelled, is kept and
    /// skipped when it fires).
    private func link(_ handle: TimerHandle, action: TimerAction, at time: Millis, listing id: String) {
        guard let listing = listings[id] else { return }
        switch action {
        case .expire(let trader, let order):
            let key = OrderKey(trader: trader, id: order)
            if case .market(let book) = listing.book, book.order(key)?.expiresAt == time {
                book.setExpiry(handle, of: key)
            }
        case .close:
            if listing.closesAt == time { listing.closeTimer = handle }
        case .dutchStep:
            if case .dutch(let book) = listing.book, book.nextStepAt == time { book.stepTimer = handle }
        default:
            break
        }
    }

    private static func decodeListing(_ r: inout BinaryReader) throws(DecodingError) -> Listing {
        let id = try r.readIdentifier()
        let seller = try r.readIdentifier()
        let terms = try ListingTerms.decode(from: &r)
        if let problem = validate(terms) { throw r.fail("listing \(id): \(problem.message)") }
        let opensAt = try r.readInt64()
        let listing = Listing(id: id, seller: seller, terms: terms, opensAt: opensAt)
        listing.closesAt = try r.readOptionalInt64()
        guard let status = ListingStatus(rawValue: try r.readByte()) else { throw r.fail("unknown listing status") }
        listing.status = status
        listing.seq = try r.readUInt64()
        switch listing.book {
        case .english(let b):
            b.price = try r.read(0...Limits.maxAmount, "an english price")
            b.leader = try r.readOptionalString()
            b.maximum = try r.read(0...Limits.maxAmount, "an english maximum")
            b.bids = try r.read(0...Int64.max, "a bid count")
            b.buyer = try r.readOptionalString()
        case .sealed(let b):
            b.count = try r.read(0...Int64.max, "a bid count")
            b.nextOrder = try r.readUInt64()
            let bidders = try r.readCount(minimumSize: 20)
            for _ in 0..<bidders {
                let bidder = try r.readIdentifier()
                let amount = try r.read(1...Limits.maxAmount, "a sealed amount")
                b.bids[bidder] = SealedBid(amount: amount, order: try r.readUInt64())
            }
        case .dutch(let b):
            b.remaining = try r.read(0...b.quantity, "a dutch remaining quantity")
            b.price = try r.read(b.floor...b.start, "a dutch price")
            b.nextStepAt = try r.readOptionalInt64()
        case .market(let b):
            b.traded = try r.readBool()
            for side in [Side.buy, Side.sell] {
                let levels = try r.readCount(minimumSize: 24)
                for _ in 0..<levels {
                    let price = try r.read(1...Limits.maxAmount, "a market price")
                    _ = try r.readInt64()  // total: recomputed from the orders
                    let orders = try r.readCount(minimumSize: 17)
                    for _ in 0..<orders {
                        let id = try r.readString()
                        let trader = try r.readIdentifier()
                        let remaining = try r.read(1...Limits.maxAmount, "a resting quantity")
                        // An order expires after the time it was placed at, which is never negative.
                        let expiresAt = try r.readOptionalInt64()
                        if let expiresAt, expiresAt < 0 { throw r.fail("order \(id) expires at \(expiresAt)") }
                        let order = RestingOrder(id: id, trader: trader, remaining: remaining, expiresAt: expiresAt)
                        guard b.hasRoom(for: order.remaining, side, at: price) else {
                            throw r.fail("the orders resting at price \(price) total more than \(Int64.max)")
                        }
                        b.rest(order, side: side, price: price)
                    }
                }
            }
        }
        return listing
    }
}

extension BinaryReader {
    /// Reads an `Int64` that must be in `range`: restored state is checked against the bounds the rules keep, so
    /// that arithmetic proven safe for live state stays safe for restored state.
    mutating func read(_ range: ClosedRange<Int64>, _ what: String) throws(DecodingError) -> Int64 {
        let value = try readInt64()
        guard range.contains(value) else { throw fail("\(what) \(value) is outside \(range)") }
        return value
    }
}
