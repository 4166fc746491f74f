extension Engine {
    /// Whether `listing` holds anything of settlements for the state: a sale, given deadlines, a runner-up, an
    /// offer or a settled time.
    private func hasSettlementState(_ listing: Listing) -> Bool {
        if listing.sales > 0 || !listing.terms.deadlines.isEmpty || listing.offer != nil || listing.settledAt != nil {
            return true
        }
        if case .english(let book) = listing.book, book.runnerUp != nil { return true }
        return false
    }

    /// Appends the settlement section of the state: the listings with settlement state in id order, then the
    /// remembered results that carry a settlement, by their position among the remembered ones. Nothing at all when
    /// both are empty.
    ///
    /// The section's first byte is its format. 1: as written before settlements were numbered in creation order,
    /// and still written when the engine holds no settlement (its creation counter is then 0), so such a state
    /// keeps its bytes and hash. 2, when it holds some: the counter (``lastSettlementCreated``) follows the byte, and
    /// each settlement's creation number its own number. 3: format 2 whose numbers were derived from a format 1
    /// state (``settlementOrderDerived``).
    func encodeSettlements<E: Error>(
        into w: inout BinaryWriter, pieceBytes: Int, emit: ([UInt8]) throws(E) -> Void
    ) throws(E) {
        let ids = listings.keys.sorted().filter { listings[$0].map(hasSettlementState) ?? false }
        var results: [(index: Int, settlement: String, state: SettlementState)] = []
        var index = 0
        for slot in liveRememberedSlots {
            let result = rememberedSlots[slot].result
            if let settlement = result.settlement, let state = result.settlementState {
                results.append((index, settlement, state))
            }
            index += 1
        }
        guard !ids.isEmpty || !results.isEmpty else { return }
        let numbered = lastSettlementCreated > 0 && !writesUnnumberedSettlements
        // 3: format 2 whose numbers were derived from an older state's times (``settlementOrderDerived``), which a
        // replay of the journal from lsn 1 may number otherwise: kept until the engine holds no settlement.
        w.write(numbered ? (settlementOrderDerived ? UInt8(3) : UInt8(2)) : UInt8(1))
        if numbered { w.write(lastSettlementCreated) }
        w.write(UInt64(ids.count))
        for id in ids {
            guard let listing = listings[id] else { continue }
            w.write(id)
            listing.terms.deadlines.encode(into: &w)
            w.write(listing.sales)
            w.write(listing.settledAt)
            if case .english(let book) = listing.book {
                w.write(book.runnerUp)
                w.write(book.runnerUpMaximum)
            }
            if let offer = listing.offer {
                w.write(UInt8(1))
                w.write(offer.bidder)
                w.write(offer.price)
                w.write(offer.state.code)
                w.write(offer.dueAt)
            } else {
                w.write(UInt8(0))
            }
            let settlements = listing.settlementsInMemory
            w.write(UInt64(settlements.count))
            for s in settlements { encode(s, numbered: numbered, into: &w) }
            try w.flush(over: pieceBytes, to: emit)
        }
        w.write(UInt64(results.count))
        for result in results {
            w.write(UInt64(result.index))
            w.write(result.settlement)
            w.write(result.state.code)
            try w.flush(over: pieceBytes, to: emit)
        }
    }

    private func encode(_ s: Settlement, numbered: Bool, into w: inout BinaryWriter) {
        w.write(s.number)
        if numbered { w.write(s.created) }
        w.write(s.buyer)
        w.write(s.seller)
        w.write(s.price)
        w.write(s.quantity)
        w.write(s.state.code)
        w.write(s.dueAt)
        w.write(s.paymentRef)
        w.write(s.tracking)
        w.write(UInt64(s.history.count))
        for step in s.history {
            w.write(step.state.code)
            w.write(step.at)
            w.write(step.by)
            w.write(step.role?.code ?? 0xFF)
            switch step.detail {
            case nil: w.write(UInt8(0))
            case .paymentRef(let ref):
                w.write(UInt8(1))
                w.write(ref)
            case .tracking(let tracking):
                w.write(UInt8(2))
                w.write(tracking)
            case .reason(let reason):
                w.write(UInt8(3))
                w.write(reason)
            case .outcome(let outcome):
                w.write(UInt8(4))
                w.write(outcome == .release ? UInt8(0) : UInt8(1))
            }
        }
    }

    /// Reads the settlement section written by ``encodeSettlements(into:pieceBytes:emit:)``, checking every value against the bounds
    /// the rules keep.
    ///
    /// A section of format 1 that holds settlements (written before they were numbered in creation order) numbers
    /// them in the order of their creation time, listing id and number, which the gateway used to rebuild, and sets
    /// ``settlementOrderDerived``; so does format 3, a state written since with those derived numbers.
    func restoreSettlements(_ r: inout BinaryReader, rememberedCount: Int) throws(DecodingError) {
        let format = try r.readByte()
        guard (1...3).contains(format) else { throw r.fail("unknown state section") }
        let numbered = format >= 2
        if format == 3 { settlementOrderDerived = true }
        let counter = numbered ? try r.read(1...Int64.max, "the settlement creation counter") : 0
        // The least a listing's entry takes: a one-byte id (4 + 1), four absent deadlines (4), the sales (8), no
        // settled time (1), no offer (1) and no settlements (8). A count is refused only when even that many
        // entries cannot fit in what is left; a bound above the true minimum refused valid states.
        let count = try r.readCount(minimumSize: 27)
        var previous: String?
        for _ in 0..<count {
            let id = try r.readIdentifier()
            guard let listing = listings[id], previous.map({ $0 < id }) ?? true else {
                throw r.fail("settlements of listing \(id), which is not in the state or out of order")
            }
            previous = id
            let deadlines = try SettlementDeadlines.decode(from: &r)
            if let problem = deadlines.problem { throw r.fail("listing \(id): \(problem)") }
            listing.terms.deadlines = deadlines
            // Written only when there is something to keep: a listing makes its sales record on first write.
            let sales = try r.read(0...Int64.max, "a sale count")
            if sales != 0 { listing.sales = sales }
            if let settledAt = try r.readOptionalInt64() { listing.settledAt = settledAt }
            if case .english(let book) = listing.book {
                book.runnerUp = try r.readOptionalString()
                book.runnerUpMaximum = try r.read(0...Limits.maxAmount, "a runner-up maximum")
            }
            switch try r.readByte() {
            case 0: break
            case 1:
                let bidder = try r.readIdentifier()
                let price = try r.read(1...Limits.maxAmount, "an offer price")
                guard let state = OfferState(code: try r.readByte()) else { throw r.fail("unknown offer state") }
                listing.offer = SecondChanceOffer(
                    listing: id, seller: listing.seller, bidder: bidder, price: price, state: state,
                    dueAt: try r.readOptionalInt64())
            default: throw r.fail("unknown offer marker")
            }
            // One-byte buyer and seller, no deadline, reference or tracking, and the one step of its creation.
            let settlements = try r.readCount(minimumSize: numbered ? 66 : 58)
            for _ in 0..<settlements {
                let s = try decodeSettlement(&r, listing: listing, counter: numbered ? counter : nil)
                guard s.number <= listing.sales, listing.settlements.last.map({ $0.number < s.number }) ?? true else {
                    throw r.fail("settlement \(s.id) is out of order or beyond the listing's \(listing.sales) sales")
                }
                // A listing's settlements were made in the order of their numbers.
                if numbered, let last = listing.settlements.last, last.created >= s.created {
                    throw r.fail("settlement \(s.id) was created before settlement \(last.id) of the same listing")
                }
                listing.settlements.append(s)
            }
            if settlements > 0 {
                listing.indexSettlements()
                // The counts the caps and the gauge read, which the state does not hold.
                settlementCount += settlements
                for s in listing.settlements where !s.state.isTerminal {
                    countUnfinished(buyer: s.buyer, seller: s.seller, by: 1)
                }
            }
        }
        if numbered {
            guard settlementCount > 0 else { throw r.fail("a settlement creation counter without settlements") }
            lastSettlementCreated = UInt64(counter)
        } else if settlementCount > 0 {
            numberSettlementsByTime()
        }
        let results = try r.readCount(minimumSize: 10)
        let slots = results > 0 ? Array(liveRememberedSlots) : []
        for _ in 0..<results {
            let index = try r.read(0...Int64(max(0, rememberedCount - 1)), "a remembered result's position")
            let settlement = try r.readString()
            guard SettlementID.parse(settlement) != nil else { throw r.fail("malformed settlement id \(settlement)") }
            let state = try Self.readState(&r)
            guard Int(index) < slots.count else {
                throw r.fail("a remembered result's position \(index) is past the results")
            }
            rememberedSlots[slots[Int(index)]].result.settlement = settlement
            rememberedSlots[slots[Int(index)]].result.settlementState = state
        }
    }

    private static func readState(_ r: inout BinaryReader) throws(DecodingError) -> SettlementState {
        guard let state = SettlementState(code: try r.readByte()) else { throw r.fail("unknown settlement state") }
        return state
    }

    /// Numbers the settlements of a state written before they were numbered: in the order of their creation time,
    /// then listing id, then number.
    private func numberSettlementsByTime() {
        var order: [(at: Millis, listing: Listing, index: Int)] = []
        order.reserveCapacity(settlementCount)
        for id in listings.keys.sorted() {
            guard let listing = listings[id] else { continue }
            for (index, s) in listing.settlements.enumerated() {
                order.append((s.history.first?.at ?? 0, listing, index))
            }
        }
        // Stable: of one time, listing id order and then number order, as gathered.
        let sorted = order.enumerated().sorted { ($0.element.at, $0.offset) < ($1.element.at, $1.offset) }
        for (created, entry) in sorted.enumerated() {
            entry.element.listing.settlements[entry.element.index].created = UInt64(created + 1)
        }
        lastSettlementCreated = UInt64(sorted.count)
        settlementOrderDerived = true
    }

    private func decodeSettlement(_ r: inout BinaryReader, listing: Listing, counter: Int64?) throws(DecodingError)
        -> Settlement
    {
        let number = try r.read(1...Int64.max, "a settlement number")
        var created: UInt64 = 0
        if let counter { created = UInt64(try r.read(1...counter, "a settlement creation number")) }
        let buyer = try r.readString()
        let seller = try r.readString()
        let price = try r.read(1...Limits.maxAmount, "a settlement price")
        let quantity = try r.read(1...Limits.maxAmount, "a settlement quantity")
        let state = try Self.readState(&r)
        let dueAt = try r.readOptionalInt64()
        let paymentRef = try r.readOptionalString()
        let tracking = try r.readOptionalString()
        let steps = try r.readCount(minimumSize: 12)
        var history: [SettlementStep] = []
        history.reserveCapacity(steps)
        for _ in 0..<steps {
            let stepState = try Self.readState(&r)
            let at = try r.read(0...now, "a settlement step's time")
            let by = try r.readOptionalString()
            let roleCode = try r.readByte()
            let role = ActorRole(code: roleCode)
            guard role != nil || roleCode == 0xFF else { throw r.fail("unknown role") }
            let detail: SettlementDetail?
            switch try r.readByte() {
            case 0: detail = nil
            case 1: detail = .paymentRef(try r.readString())
            case 2: detail = .tracking(try r.readString())
            case 3: detail = .reason(try r.readString())
            case 4: detail = .outcome(try r.readByte() == 0 ? .release : .refund)
            default: throw r.fail("unknown settlement detail")
            }
            guard history.last.map({ $0.at <= at }) ?? true else { throw r.fail("settlement steps out of time order") }
            history.append(SettlementStep(state: stepState, at: at, by: by, role: role, detail: detail))
        }
        guard history.first?.state == .awaitingPayment, history.last?.state == state else {
            throw r.fail("settlement \(listing.id):\(number) has a history that does not lead to its state")
        }
        guard (dueAt == nil) == ([.awaitingPayment, .paid, .delivered].contains(state) == false) else {
            throw r.fail("settlement \(listing.id):\(number) is \(state.rawValue) with the wrong deadline")
        }
        var settlement = Settlement(
            listing: listing.id, number: number, buyer: buyer, seller: seller, price: price, quantity: quantity,
            state: state, dueAt: dueAt, paymentRef: paymentRef, tracking: tracking, history: history)
        settlement.created = created
        return settlement
    }
}
