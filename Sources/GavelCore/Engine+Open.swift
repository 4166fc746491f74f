extension Engine {
    func open(_ id: String, seller: String, terms: ListingTerms, events: inout [Event]) -> CommandResult {
        if listings[id] != nil {
            return .rejected(.listingExists, "listing \(id) already exists; choose another listing id")
        }
        if let rejection = Self.validate(terms) { return rejection }
        if let problem = terms.deadlines.problem { return .rejected(.badRequest, problem) }
        // Settings of the engine, not of the terms: ``validate(_:)`` also checks saved terms at restore, and a
        // listing opened under other settings keeps its terms.
        // Checked at open only, not by ``validate(_:)``: a listing saved before this rule keeps its terms at restore.
        if case .english(let t) = terms, let buyNow = t.buyNow, let reserve = t.reserve, buyNow < reserve {
            return .rejected(
                .badRequest,
                "buy_now \(buyNow) must be at least reserve \(reserve): a buy-now sale below the reserve would sell for less "
                    + "than the seller's own minimum")
        }
        if case .dutch(let t) = terms, t.stepEveryMs < configuration.minDutchStepMs {
            return .rejected(
                .badRequest,
                "step_every_ms \(t.stepEveryMs) is below the minimum of \(configuration.minDutchStepMs) ms (--min-dutch-step-ms)"
            )
        }
        let opensAt: Millis
        let closesAt: Millis?
        switch terms {
        case .english(let t): (opensAt, closesAt) = (t.opensAt ?? now, t.closesAt)
        case .sealed(let t): (opensAt, closesAt) = (t.opensAt ?? now, t.closesAt)
        case .dutch(let t): (opensAt, closesAt) = (t.opensAt ?? now, t.closesAt)
        case .market(let t): (opensAt, closesAt) = (t.opensAt ?? now, t.closesAt)
        }
        if let closesAt {
            if closesAt <= opensAt {
                return .rejected(.badRequest, "closes_at \(closesAt) must be after opens_at \(opensAt)")
            }
            if closesAt <= now {
                return .rejected(.badRequest, "closes_at \(closesAt) must be after the current engine time \(now)")
            }
            // `closesAt > now >= 0`: the difference cannot overflow.
            if closesAt - now > configuration.maxListingDurationMs {
                return .rejected(
                    .badRequest,
                    "closes_at \(closesAt) is more than the maximum listing duration of \(configuration.maxListingDurationMs) ms (--max-listing-duration-ms) after the engine time \(now)"
                )
            }
        }
        let open = openListingsBySeller[seller] ?? 0
        if open >= configuration.maxOpenListingsPerSeller {
            return .rejected(
                .limitExceeded,
                "\(seller) already has \(open) open listings, the most a seller may (--max-open-listings-per-seller "
                    + "\(configuration.maxOpenListingsPerSeller)): a listing counts until it closes, sells out or is "
                    + "cancelled")
        }
        let held = heldListingsBySeller[seller] ?? 0
        if held >= configuration.maxListingsHeldPerSeller {
            return .rejected(
                .limitExceeded,
                "\(seller) already has \(held) listings in the engine, the most a seller may "
                    + "(--max-listings-held-per-seller \(configuration.maxListingsHeldPerSeller)): \(held) of your "
                    + "listings are open or ended and still held for their settlements or offers; an ended listing "
                    + "counts until its settlements are final (paid and completed, or their deadline passed), its "
                    + "second-chance offer is answered or expired, and the retention (--closed-listing-retention-ms) "
                    + "has passed")
        }
        var resolved = terms
        resolved.modifyShared { given, _ in given = opensAt }
        let listing = Listing(id: id, seller: seller, terms: resolved, opensAt: opensAt)
        listings[id] = listing
        openListingsBySeller[seller] = open + 1
        heldListingsBySeller[seller] = held + 1
        if case .market(let book) = listing.book { book.totals = restingTotals }
        emit(.opened(seller: seller, terms: resolved), on: listing, events: &events)
        if let closesAt { listing.closeTimer = timers.schedule(.close, listing: id, at: closesAt) }
        if case .dutch(let book) = listing.book {
            book.price = book.price(at: now, opensAt: opensAt)
            // Opened with `opens_at` in the past: the steps already due are one `price` event now, so that a
            // subscriber (whose view shows `start` from `opened`) sees the clock's price before anyone accepts at it.
            if case .dutch(let t) = resolved, book.price != t.start {
                emit(.price(book.price), on: listing, events: &events)
            }
            scheduleDutchStep(listing, book, after: now)
        }
        return .accepted
    }

    /// The rejection of terms that break a rule `open` checks before the clock (amounts, ladders, soft close), or
    /// `nil`. Restore checks saved terms with it too.
    static func validate(_ terms: ListingTerms) -> CommandResult? {
        func amount(_ name: String, _ value: Money?) -> CommandResult? {
            guard let value, !Limits.isValidAmount(value) else { return nil }
            return .rejected(.invalidAmount, "\(name) must be a positive integer up to 10^15 (minor units)")
        }
        switch terms {
        case .english(let t):
            if let r = amount("start", t.start) ?? amount("reserve", t.reserve) ?? amount("buy_now", t.buyNow) {
                return r
            }
            if let reserve = t.reserve, reserve < t.start {
                return .rejected(.badRequest, "reserve \(reserve) must be at least start \(t.start)")
            }
            if let buyNow = t.buyNow, buyNow < t.start {
                return .rejected(.badRequest, "buy_now \(buyNow) must be at least start \(t.start)")
            }
            if let ladder = t.increments, let problem = IncrementLadder.problem(with: ladder) {
                return .rejected(.badRequest, problem)
            }
            if let soft = t.softClose {
                if soft.windowMs <= 0 || soft.extendMs <= 0 {
                    return .rejected(.badRequest, "soft_close window_ms and extend_ms must be positive")
                }
                if let cap = soft.maxClosesAt, cap < t.closesAt {
                    return .rejected(
                        .badRequest, "soft_close max_closes_at \(cap) must not be before closes_at \(t.closesAt)")
                }
            }
        case .sealed(let t):
            if let r = amount("start", t.start) ?? amount("reserve", t.reserve) { return r }
            if let reserve = t.reserve, reserve < t.start {
                return .rejected(.badRequest, "reserve \(reserve) must be at least start \(t.start)")
            }
        case .dutch(let t):
            if let r = amount("start", t.start) ?? amount("floor", t.floor) ?? amount("step", t.step) { return r }
            if t.floor > t.start {
                return .rejected(.badRequest, "floor \(t.floor) must not be above start \(t.start)")
            }
            if t.stepEveryMs <= 0 { return .rejected(.badRequest, "step_every_ms must be a positive integer") }
            if !Limits.isValidAmount(t.quantity) {
                return .rejected(.invalidQuantity, "quantity must be a positive integer up to 10^15")
            }
        case .market:
            break
        }
        return nil
    }

    func cancelListing(_ listing: Listing, seller: String, asAdmin: Bool = false, _ events: inout [Event])
        -> CommandResult
    {
        if !asAdmin && seller != listing.seller {
            return .rejected(.notOwner, "only the seller of listing \(listing.id) can cancel it")
        }
        if listing.status != .open {
            let how = listing.status == .cancelled ? "was already cancelled" : "has closed"
            return .rejected(.listingClosed, "listing \(listing.id) \(how)")
        }
        if listing.hasActivity {
            return .rejected(.listingHasBids, "listing \(listing.id) has bids or fills and can no longer be cancelled")
        }
        if case .market(let book) = listing.book {
            cancelAllResting(listing, book, reason: .closed, &events)
        }
        listing.status = .cancelled
        noLongerOpen(listing)
        emit(.listingCancelled, on: listing, events: &events)
        return .accepted
    }

    // MARK: - Timers

    func fire(_ timer: ScheduledTimer, events: inout [Event]) {
        guard let listing = listings[timer.listing] else { return }
        if listing.closeTimer == TimerHandle(timer) { listing.closeTimer = .none }  // fired: nothing to cancel
        switch timer.action {
        case .settlementDue(let number):
            return settlementDeadline(listing, number: number, at: timer.time, timer: TimerHandle(timer), &events)
        case .offerDue:
            return offerDeadline(listing, at: timer.time, &events)
        case .prune:
            listing.prunePassed(TimerHandle(timer))
            return prune(listing, &events)
        case .close, .dutchStep, .expire, .evict:
            break
        }
        guard listing.status == .open else {
            // One still settling (an offer made since) stays, but drops the settlements whose retention is over.
            if case .evict = timer.action {
                mayEvict(listing) ? evict(listing, events: &events) : prune(listing, &events)
            }
            return
        }
        switch timer.action {
        case .close:
            guard listing.closesAt == timer.time else { return }  // moved by soft close
            close(listing, &events)
        case .dutchStep:
            guard case .dutch(let book) = listing.book, book.nextStepAt == timer.time else { return }
            if book.stepTimer == TimerHandle(timer) { book.stepTimer = .none }  // fired: nothing to cancel
            let price = book.price(at: timer.time, opensAt: listing.opensAt)
            if price != book.price {
                book.price = price
                emit(.price(price), on: listing, events: &events)
            }
            scheduleDutchStep(listing, book, after: timer.time)
        case .expire(let trader, let orderID):
            guard case .market(let book) = listing.book else { return }
            expire(listing, book, key: OrderKey(trader: trader, id: orderID), at: timer.time, &events)
        case .evict:
            return  // the id was opened again after an eviction: that listing is not evicted before it ends
        case .settlementDue, .offerDue, .prune:
            return  // handled above
        }
    }

    func scheduleDutchStep(_ listing: Listing, _ book: DutchBook, after time: Millis) {
        book.nextStepAt = nil
        guard book.price > book.floor else { return }
        let next = book.nextStep(after: time, opensAt: listing.opensAt)
        if let closesAt = listing.closesAt, next >= closesAt { return }
        book.nextStepAt = next
        book.stepTimer = timers.schedule(.dutchStep, listing: listing.id, at: next)
    }

    /// Stops the dutch clock of `book`: no step is due any more, and its timer is cancelled.
    func stopDutchClock(_ book: DutchBook) {
        book.nextStepAt = nil
        timers.cancel(book.stepTimer)
        book.stepTimer = .none
    }

    /// Counts `listing`, which has just closed, sold out or been cancelled, as no longer open for its seller.
    func noLongerOpen(_ listing: Listing) { openListingsBySeller.countDown(listing.seller) }

    /// Closes `listing` at its closing time.
    func close(_ listing: Listing, _ events: inout [Event]) {
        listing.status = .closed
        noLongerOpen(listing)
        switch listing.book {
        case .english(let book):
            if let leader = book.leader, book.reserveMet {
                emit(.closed(winner: leader, price: book.price, reserveMet: true), on: listing, events: &events)
                createSettlement(
                    listing, buyer: leader, seller: listing.seller, price: book.price, quantity: 1, &events)
            } else {
                emit(.closed(winner: nil, price: nil, reserveMet: book.reserveMet), on: listing, events: &events)
            }
        case .sealed(let book):
            closeSealed(listing, book, &events)
        case .dutch(let book):
            stopDutchClock(book)
            emit(.dutchClosed(sold: book.quantity - book.remaining), on: listing, events: &events)
        case .market(let book):
            cancelAllResting(listing, book, reason: .closed, &events)
            emit(.marketClosed, on: listing, events: &events)
        }
    }
}
