extension Engine {
    // MARK: - Read API

    /// Every settlement in memory, as value copies, by listing id and then number.
    public var settlements: [Settlement] {
        listings.keys.sorted().flatMap { listings[$0]?.settlementsInMemory ?? [] }
    }

    /// Every settlement in memory, as value copies, in the order the engine created them (the same after a restore
    /// or a replay as live; a state written before the order was kept gives its settlements the order of their
    /// creation time, listing id and number, see ``settlementOrderDerived``).
    public var settlementsInCreationOrder: [Settlement] {
        settlements.sorted { $0.created < $1.created }
    }

    /// The settlements of `listing` in memory, by number; empty for an unknown listing.
    public func settlements(of listing: String) -> [Settlement] {
        listings[listing]?.settlementsInMemory ?? []
    }

    /// The settlement with id `id` (`listing:n`), while it is in memory.
    public func settlement(_ id: String) -> Settlement? {
        guard let (listing, number) = SettlementID.parse(id), let l = listings[listing] else { return nil }
        return l.settlementIndex(number).map { l.settlements[$0] }
    }

    /// Every second-chance offer in memory (open or over), by listing id.
    public var secondChanceOffers: [SecondChanceOffer] {
        listings.keys.sorted().compactMap { listings[$0]?.offer }
    }

    // MARK: - Creation

    /// Creates the settlement of a sale on `listing`, in the same step as the sale, awaiting payment.
    func createSettlement(
        _ listing: Listing, buyer: String, seller: String, price: Money, quantity: Int64, _ events: inout [Event]
    ) {
        listing.sales += 1
        listing.openSettlements += 1
        settlementCount += 1
        countUnfinished(buyer: buyer, seller: seller, by: 1)
        lastSettlementCreated += 1
        let number = listing.sales
        let due = deadline(after: listing.terms.deadlines.effective.paymentDueMs)
        let step = SettlementStep(state: .awaitingPayment, at: now)
        var settlement = Settlement(
            listing: listing.id, number: number, buyer: buyer, seller: seller, price: price, quantity: quantity,
            state: .awaitingPayment, dueAt: due, history: [step])
        settlement.created = lastSettlementCreated
        listing.settlements.append(settlement)
        setDeadline(listing, number: number, at: due)
        emitSettlement(listing, listing.settlements.count - 1, &events)
    }

    /// Counts a settlement of `buyer` and `seller` (once when they are one user) as unfinished (`by` 1) or no
    /// longer (`by` -1), for ``EngineConfiguration/maxUnfinishedSettlementsPerUser``.
    func countUnfinished(buyer: String, seller: String, by delta: Int) {
        count(buyer, delta)
        if seller != buyer { count(seller, delta) }
        func count(_ user: String, _ delta: Int) {
            if delta > 0 {
                unfinishedSettlementsByUser[user, default: 0] += delta
            } else {
                unfinishedSettlementsByUser.countDown(user, by: -delta)
            }
        }
    }

    /// The refusal of a command by `user` that would make a settlement at once while `user` is already the buyer
    /// or seller of ``EngineConfiguration/maxUnfinishedSettlementsPerUser`` unfinished ones, checked before
    /// anything changes; `nil` when there is room.
    func settlementLimitProblem(_ user: String) -> CommandResult? {
        let cap = configuration.maxUnfinishedSettlementsPerUser
        let unfinished = unfinishedSettlementsByUser[user] ?? 0
        guard unfinished >= cap else { return nil }
        return .rejected(
            .limitExceeded,
            "\(user) is already the buyer or seller of \(unfinished) unfinished settlements, the most a user may "
                + "(--max-unfinished-settlements-per-user \(cap)): a settlement counts until it is final, "
                + "payment_expired when its payment deadline passes unpaid, or once paid completed, refunded or "
                + "released; retry once some of yours are")
    }

    /// Schedules settlement `number`'s deadline at `due` (none: `nil`), cancelling the one it had: a settlement has
    /// one live deadline timer, so two deadlines due in the same millisecond fire in the order they were scheduled
    /// (a stale timer of an earlier deadline at the same time would otherwise fire in its own, earlier, place).
    func setDeadline(_ listing: Listing, number: Int64, at due: Millis?) {
        if let old = listing.settlementTimers.removeValue(forKey: number) { timers.cancel(old) }
        if let due {
            listing.settlementTimers[number] = timers.schedule(
                .settlementDue(number: number), listing: listing.id, at: due)
        }
    }

    /// `now + duration`, `Millis.max` past the end of the clock.
    private func deadline(after duration: Millis) -> Millis {
        let (at, overflow) = now.addingReportingOverflow(duration)
        return overflow ? Millis.max : at
    }

    private func emitSettlement(_ listing: Listing, _ index: Int, _ events: inout [Event]) {
        guard !discardsEvents else { return }
        let s = listing.settlements[index]
        guard let step = s.history.last else { return }
        let change = SettlementChange(
            number: s.number, buyer: s.buyer, seller: s.seller, price: s.price, quantity: s.quantity, dueAt: s.dueAt,
            step: step)
        events.append(Event(listing: listing.id, seq: 0, at: now, kind: .settlement(change)))
    }

    // MARK: - Transitions

    /// Moves settlement `index` of `listing` to `state`, with its new deadline (scheduled), and emits the event.
    private func transition(
        _ listing: Listing, _ index: Int, to state: SettlementState, due duration: Millis?, by: String?,
        role: ActorRole?, detail: SettlementDetail?, _ events: inout [Event]
    ) {
        let due = duration.map(deadline(after:))
        let number = listing.settlements[index].number
        listing.settlements[index].record(
            SettlementChange(
                number: number, buyer: "", seller: "", price: 0, quantity: 0, dueAt: due,
                step: SettlementStep(state: state, at: now, by: by, role: role, detail: detail)))
        setDeadline(listing, number: number, at: due)
        emitSettlement(listing, index, &events)
        if state.isTerminal {
            listing.openSettlements -= 1
            let s = listing.settlements[index]
            countUnfinished(buyer: s.buyer, seller: s.seller, by: -1)
            listing.endedSettlements.append((number, now))
            ended(listing)
        }
    }

    /// Applies a settlement command to settlement `number` of `listingID`.
    func settle(
        _ listingID: String, number: Int64, action: SettlementAction, by: String, role: ActorRole, known: Listing?,
        events: inout [Event]
    ) -> CommandResult {
        let id = SettlementID.format(listing: listingID, number: number)
        guard let listing = known ?? listings[listingID], let index = listing.settlementIndex(number) else {
            return Self.unknownSettlement(id, role: role)
        }
        let s = listing.settlements[index]
        // A bidder or seller who is neither its buyer nor its seller gets the answer for no such settlement.
        if role == .bidder || role == .seller, by != s.buyer, by != s.seller {
            return Self.unknownSettlement(id, role: role)
        }
        if let refusal = Self.authorization(of: action, by: by, role: role, on: s) { return refusal }
        let deadlines = listing.terms.deadlines.effective
        var target: (state: SettlementState, due: Millis?, detail: SettlementDetail?)?
        switch (action, s.state) {
        case (.confirmPayment(let ref), .awaitingPayment):
            target = (.paid, deadlines.shipDueMs, .paymentRef(ref))
        case (.confirmPayment(let ref), _):
            if let paid = s.paymentRef {
                guard paid == ref else {
                    return .rejected(.idempotencyConflict, "settlement \(id) was paid with reference \(paid)")
                }
                return CommandResult(error: nil, message: "", settlement: id, settlementState: s.state)
            }
        case (.markShipped(let tracking), .paid): target = (.shipped, nil, .tracking(tracking))
        case (.refund, .paid): target = (.refunded, nil, nil)
        case (.confirmDelivery, .shipped): target = (.delivered, deadlines.complaintWindowMs, nil)
        case (.openDispute(let reason), .delivered): target = (.disputed, nil, .reason(reason))
        case (.resolveDispute(let outcome), .disputed):
            target = (outcome == .release ? .released : .refunded, nil, .outcome(outcome))
        default:
            break
        }
        guard let target else {
            return .rejected(
                .invalidTransition,
                "settlement \(id) is \(s.state.rawValue); from \(s.state.rawValue): \(Self.allowed(from: s.state))")
        }
        transition(
            listing, index, to: target.state, due: target.due, by: by, role: role, detail: target.detail, &events)
        return CommandResult(error: nil, message: "", settlement: id, settlementState: target.state)
    }

    /// Why `by` acting as `role` may not make `action` on `s`, or `nil` when they may. Never names another user.
    static func authorization(of action: SettlementAction, by: String, role: ActorRole, on s: Settlement)
        -> CommandResult?
    {
        let user = role != .service
        let id = s.id
        switch action {
        case .confirmPayment:
            if role != .service { return notAuthorized("confirm_payment", roles: "service") }
        case .refund:
            if role != .service && role != .admin { return notAuthorized("refund", roles: "service or admin") }
        case .resolveDispute:
            if role != .admin { return notAuthorized("resolve_dispute", roles: "admin") }
        case .markShipped:
            guard user else { return notAuthorized("mark_shipped", roles: "the seller (not service)") }
            if by != s.seller { return .rejected(.notAuthorized, "you are not the seller of settlement \(id)") }
        case .confirmDelivery:
            if user && by != s.buyer {
                return .rejected(
                    .notAuthorized,
                    "you are not the buyer of settlement \(id); confirm_delivery is for the buyer or service")
            }
        case .openDispute:
            guard user else { return notAuthorized("open_dispute", roles: "the buyer (not service)") }
            if by != s.buyer { return .rejected(.notAuthorized, "you are not the buyer of settlement \(id)") }
        }
        return nil
    }

    private static func notAuthorized(_ command: String, roles: String) -> CommandResult {
        .rejected(.notAuthorized, "\(command) may be made by \(roles) only")
    }

    /// What may be done from `state`, for an `invalid_transition` message.
    static func allowed(from state: SettlementState) -> String {
        switch state {
        case .awaitingPayment: "confirm_payment (service); payment_expired at the payment deadline"
        case .paid: "mark_shipped (seller), refund (service or admin); refunded at the shipping deadline"
        case .shipped: "confirm_delivery (buyer or service)"
        case .delivered: "open_dispute (buyer) within the complaint window; completed at its end"
        case .disputed: "resolve_dispute (admin)"
        case .completed, .paymentExpired, .refunded, .released: "nothing, it is final"
        }
    }

    /// A settlement deadline: the timer's state change, if the settlement is still due at this time.
    func settlementDeadline(
        _ listing: Listing, number: Int64, at time: Millis, timer: TimerHandle, _ events: inout [Event]
    ) {
        // Only the settlement's current deadline timer: a stale one restored from an older snapshot is not linked.
        guard listing.settlementTimers[number] == timer else { return }
        listing.settlementTimers[number] = nil
        guard let index = listing.settlementIndex(number), listing.settlements[index].dueAt == time else { return }
        let next: SettlementState
        switch listing.settlements[index].state {
        case .awaitingPayment: next = .paymentExpired
        case .paid: next = .refunded
        case .delivered: next = .completed
        default: return
        }
        transition(listing, index, to: next, due: nil, by: nil, role: nil, detail: nil, &events)
    }

    // MARK: - Second-chance offers

    /// Applies a second-chance command to `listingID`.
    func secondChance(
        _ listingID: String, action: OfferAction, by: String, role: ActorRole, known: Listing?, events: inout [Event]
    ) -> CommandResult {
        guard let listing = known ?? listings[listingID] else {
            return .rejected(.unknownListing, "no listing \(listingID); check the listing id")
        }
        guard case .english(let book) = listing.book else {
            return .rejected(
                .unsupported,
                "\(action.rawValue) is not supported by \(listing.format.rawValue) listing \(listing.id); second-chance offers are for english listings"
            )
        }
        /// The refusal of `by` where only `who` may act; a service acts as itself, never for them.
        func refusal(_ who: String, may what: String) -> CommandResult {
            .rejected(
                .notAuthorized,
                role == .service
                    ? "a service connection acts as itself, not as the \(who): only the \(who) of listing \(listing.id) may \(what)"
                    : "you are not the \(who) of listing \(listing.id)")
        }
        switch action {
        case .offer:
            guard role != .service, by == listing.seller else {
                return refusal("seller", may: "offer a second chance")
            }
            if let offer = listing.offer {
                return .rejected(
                    .invalidTransition,
                    "a second-chance offer was already made on listing \(listing.id) (it is \(offer.state.rawValue)); one per listing"
                )
            }
            guard let sale = listing.firstSettlement, sale.state == .paymentExpired else {
                let state =
                    listing.firstSettlement.map { "settlement \($0.id) is \($0.state.rawValue)" } ?? "it has no sale"
                return .rejected(
                    .invalidTransition,
                    "listing \(listing.id) cannot offer a second chance: \(state); only after the sale's payment expired"
                )
            }
            guard let runnerUp = book.runnerUp else {
                return .rejected(
                    .invalidTransition, "listing \(listing.id) has no runner-up to offer a second chance to")
            }
            let due = deadline(after: listing.terms.deadlines.effective.offerDueMs)
            listing.offer = SecondChanceOffer(
                listing: listing.id, seller: listing.seller, bidder: runnerUp, price: book.runnerUpMaximum,
                state: .offered, dueAt: due)
            listing.offerTimer = timers.schedule(.offerDue, listing: listing.id, at: due)
            emitOffer(listing, &events)
            return .accepted
        case .accept, .decline:
            guard role != .service else { return refusal("runner-up", may: "answer its second-chance offer") }
            // Anyone but the runner-up it was made to gets the answer for no offer: whether a listing has one (so
            // its winner did not pay) is for its seller and runner-up only.
            guard let offer = listing.offer, by == offer.bidder else {
                return .rejected(.invalidTransition, "you have no second-chance offer on listing \(listing.id)")
            }
            guard offer.state == .offered else {
                return .rejected(
                    .invalidTransition,
                    "the second-chance offer on listing \(listing.id) is \(offer.state.rawValue); it can no longer be answered"
                )
            }
            if action == .accept, let problem = settlementLimitProblem(by) { return problem }
            endOffer(listing, action == .accept ? .accepted : .declined, &events)
            guard action == .accept else { return .accepted }
            createSettlement(
                listing, buyer: offer.bidder, seller: listing.seller, price: offer.price, quantity: 1, &events)
            return CommandResult(
                error: nil, message: "",
                settlement: SettlementID.format(listing: listing.id, number: listing.sales),
                settlementState: .awaitingPayment)
        }
    }

    private func emitOffer(_ listing: Listing, _ events: inout [Event]) {
        guard !discardsEvents, let offer = listing.offer else { return }
        events.append(Event(listing: listing.id, seq: 0, at: now, kind: .secondChance(offer)))
    }

    private func endOffer(_ listing: Listing, _ state: OfferState, _ events: inout [Event]) {
        timers.cancel(listing.offerTimer)  // nothing when it is the timer firing now: it left the queue
        listing.offerTimer = .none
        listing.offer?.state = state
        listing.offer?.dueAt = nil
        emitOffer(listing, &events)
        ended(listing)
    }

    /// The offer's deadline: it expires if still offered.
    func offerDeadline(_ listing: Listing, at time: Millis, _ events: inout [Event]) {
        guard let offer = listing.offer, offer.state == .offered, offer.dueAt == time else { return }
        endOffer(listing, .expired, &events)
    }

    // MARK: - Memory

    /// `count` settlements left memory (pruned, or evicted with their listing): when none is left, the creation
    /// numbers start again from 1.
    func settlementsDropped(_ count: Int) {
        settlementCount -= count
        if settlementCount == 0 {
            lastSettlementCreated = 0
            // The numbers derived from an older state are gone with the last settlement that had one.
            settlementOrderDerived = false
        }
    }

    /// Whether a settlement of `listing` is not final or its second-chance offer is open.
    func isSettling(_ listing: Listing) -> Bool {
        listing.offer?.state == .offered || listing.openSettlements > 0
    }

    /// A settlement or the offer of `listing` just ended: an ended listing is evicted once nothing is settling and
    /// the retention has passed; one still open, or ended but still settling (a sale shipped or disputed), drops the
    /// settlement after the retention.
    private func ended(_ listing: Listing) {
        listing.settledAt = now
        if listing.status != .open && !isSettling(listing) {
            scheduleEviction(of: listing)
        } else {
            let (at, overflow) = now.addingReportingOverflow(configuration.closedListingRetentionMs)
            listing.addPruneTimer(timers.schedule(.prune, listing: listing.id, at: overflow ? Millis.max : at))
        }
    }

    /// Whether the ended `listing` may leave memory now: nothing settling, the retention over since it settled.
    func mayEvict(_ listing: Listing) -> Bool {
        if isSettling(listing) { return false }
        guard let settledAt = listing.settledAt else { return true }
        let (at, overflow) = settledAt.addingReportingOverflow(configuration.closedListingRetentionMs)
        return !overflow && now >= at
    }

    /// Drops the final settlements of `listing` whose retention is over since they ended: the front of the order
    /// they ended in, so the cost is the settlements dropped, not all the listing holds.
    func prune(_ listing: Listing, _ events: inout [Event]) {
        let retention = configuration.closedListingRetentionMs
        var dropped: [Int64] = []
        while listing.endedHead < listing.endedSettlements.count {
            let (number, end) = listing.endedSettlements[listing.endedHead]
            let (at, overflow) = end.addingReportingOverflow(retention)
            guard !overflow && now >= at else { break }
            listing.endedHead += 1
            guard let index = listing.settlementIndex(number) else { continue }
            listing.settlements[index].pruned = true
            listing.prunedSettlements += 1
            dropped.append(number)
        }
        if listing.endedHead >= 64 && listing.endedHead * 2 >= listing.endedSettlements.count {
            listing.endedSettlements.removeFirst(listing.endedHead)
            listing.endedHead = 0
        }
        if listing.prunedSettlements * 2 > listing.settlements.count {
            listing.settlements.removeAll { $0.pruned }
            listing.prunedSettlements = 0
        }
        settlementsDropped(dropped.count)
        if !dropped.isEmpty && !discardsEvents {
            dropped.sort()
            events.append(Event(listing: listing.id, seq: 0, at: now, kind: .settlementsPruned(dropped)))
        }
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
        return low < settlements.count && settlements[low].number == number && !settlements[low].pruned ? low : nil
    }

    /// The settlements in memory, by number (the pruned ones left out).
    var settlementsInMemory: [Settlement] {
        prunedSettlements == 0 ? settlements : settlements.filter { !$0.pruned }
    }

    /// The first settlement in memory.
    var firstSettlement: Settlement? { settlements.first { !$0.pruned } }

    /// Counts the open settlements and orders the final ones by when they ended (then by number), after a restore.
    func indexSettlements() {
        openSettlements = settlements.count { !$0.state.isTerminal }
        endedSettlements = settlements.filter { $0.state.isTerminal }
            .map { (number: $0.number, at: $0.history.last?.at ?? 0) }
            .sorted { ($0.at, $0.number) < ($1.at, $1.number) }
        endedHead = 0
    }
}
