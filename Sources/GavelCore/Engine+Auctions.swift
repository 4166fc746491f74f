extension Engine {
    // MARK: - English

    /// Safe arithmetic: `amount`, `start`, `reserve`, every ladder step, and so the price and the maximum (each one
    /// of those) are in 1...10^15 (0 for the maximum before the first bid), so a price or maximum plus one step is
    /// at most 2 * 10^15, far below `Int64.max` (about 9.2 * 10^18). A minimum bid above 10^15 simply cannot be met.
    func englishBid(_ listing: Listing, _ book: EnglishBook, bidder: String, amount: Money, _ events: inout [Event])
        -> CommandResult
    {
        var outbid: (bidder: String, price: Money)?
        if let leader = book.leader {
            if leader == bidder {
                guard amount > book.maximum else {
                    return .rejected(
                        .bidTooLow, "you lead with a maximum of \(book.maximum); a raise must exceed it",
                        minBid: book.maximum + 1)
                }
                book.maximum = amount
                if let reserve = book.reserve, amount >= reserve, book.price < reserve { book.price = reserve }
            } else {
                let minBid = book.price + IncrementLadder.increment(at: book.price, in: book.ladder)
                guard amount >= minBid else {
                    return .rejected(.bidTooLow, "the minimum bid is \(minBid)", minBid: minBid)
                }
                if amount > book.maximum {
                    var price = min(amount, book.maximum + IncrementLadder.increment(at: book.maximum, in: book.ladder))
                    if let reserve = book.reserve, amount >= reserve, price < reserve { price = reserve }
                    outbid = (leader, price)
                    // The former leader's maximum is at least every other bidder's: it is the runner-up now.
                    book.runnerUp = leader
                    book.runnerUpMaximum = book.maximum
                    book.leader = bidder
                    book.maximum = amount
                    book.price = price
                } else {
                    // The earlier maximum wins ties; the new bidder is outbid at once.
                    book.price = min(book.maximum, amount + IncrementLadder.increment(at: amount, in: book.ladder))
                    outbid = (bidder, book.price)
                    // The earlier of equal maximums stays the runner-up.
                    if amount > book.runnerUpMaximum {
                        book.runnerUp = bidder
                        book.runnerUpMaximum = amount
                    }
                }
            }
        } else {
            guard amount >= book.start else {
                return .rejected(.bidTooLow, "the minimum bid is the start price \(book.start)", minBid: book.start)
            }
            book.leader = bidder
            book.maximum = amount
            if let reserve = book.reserve, amount >= reserve { book.price = reserve } else { book.price = book.start }
        }
        book.bids += 1  // one per accepted command: 2^63 of them would take centuries at any rate
        let extendedTo = softCloseExtension(listing, book)
        let leader = book.leader ?? bidder
        emit(
            .bidPlaced(
                price: book.price, leader: leader, bids: book.bids, closesAt: listing.closesAt ?? 0,
                reserveMet: book.reserveMet), on: listing, events: &events)
        if let outbid { emit(.outbid(bidder: outbid.bidder, price: outbid.price), on: listing, events: &events) }
        if let extendedTo { emit(.extended(closesAt: extendedTo), on: listing, events: &events) }
        return CommandResult(error: nil, message: "", price: book.price, leading: leader == bidder)
    }

    /// Applies soft close to an accepted bid at the current time; returns the new close when it moved.
    private func softCloseExtension(_ listing: Listing, _ book: EnglishBook) -> Millis? {
        // An open listing closes after the clock (its close timer would have fired), and the clock is never negative,
        // so `closesAt - now` is in 1...Int64.max; checked anyway, as a restored state is only as good as its file.
        guard let soft = book.softClose, let closesAt = listing.closesAt,
            case (let left, false) = closesAt.subtractingReportingOverflow(now), left <= soft.windowMs
        else {
            return nil
        }
        let (extended, overflow) = now.addingReportingOverflow(soft.extendMs)  // extend_ms comes from the client
        var target = max(closesAt, overflow ? Millis.max : extended)
        if let cap = soft.maxClosesAt { target = min(cap, target) }
        guard target != closesAt else { return nil }
        listing.closesAt = target
        // The close it replaces fires first and is skipped (it is at most the soft-close window away).
        listing.closeTimer = timers.schedule(.close, listing: listing.id, at: target)
        return target
    }

    func buyNow(_ listing: Listing, _ book: EnglishBook, buyer: String, _ events: inout [Event]) -> CommandResult {
        guard let buyNow = book.buyNow else {
            return .rejected(.buyNowUnavailable, "listing \(listing.id) has no buy-now price")
        }
        if book.leader != nil && (book.reserve == nil || book.reserveMet) {
            return .rejected(
                .buyNowUnavailable, "buy-now on listing \(listing.id) ended with the first bid; place a bid instead")
        }
        if let problem = settlementLimitProblem(buyer) { return problem }
        listing.status = .closed
        noLongerOpen(listing)
        book.buyer = buyer
        // The runner-up of a buy-now is the highest maximum among the other bidders: a leader below the reserve
        // other than the buyer (the leader's maximum is the highest), else the runner-up behind the buyer.
        if let leader = book.leader, leader != buyer {
            book.runnerUp = leader
            book.runnerUpMaximum = book.maximum
        }
        emit(.closed(winner: buyer, price: buyNow, reserveMet: true), on: listing, events: &events)
        createSettlement(listing, buyer: buyer, seller: listing.seller, price: buyNow, quantity: 1, &events)
        return CommandResult(error: nil, message: "", price: buyNow)
    }

    // MARK: - Sealed

    func sealedBid(_ listing: Listing, _ book: SealedBook, bidder: String, amount: Money, _ events: inout [Event])
        -> CommandResult
    {
        guard amount >= book.start else {
            return .rejected(.bidTooLow, "the minimum bid is the start price \(book.start)", minBid: book.start)
        }
        book.bids[bidder] = SealedBid(amount: amount, order: book.nextOrder)
        book.nextOrder += 1  // both count accepted commands: 2^63 of them would take centuries
        book.count += 1
        emit(.sealedBidPlaced(bids: book.count), on: listing, events: &events)
        return .accepted
    }

    func closeSealed(_ listing: Listing, _ book: SealedBook, _ events: inout [Event]) {
        let outcome = book.outcome
        emit(
            .closed(winner: outcome.winner, price: outcome.price, reserveMet: outcome.reserveMet), on: listing,
            events: &events)
        if let winner = outcome.winner, let price = outcome.price {
            createSettlement(listing, buyer: winner, seller: listing.seller, price: price, quantity: 1, &events)
        }
    }

    // MARK: - Dutch

    func accept(_ listing: Listing, _ book: DutchBook, bidder: String, quantity: Int64, _ events: inout [Event])
        -> CommandResult
    {
        guard quantity <= book.remaining else {
            return .rejected(.invalidQuantity, "only \(book.remaining) remain on listing \(listing.id)")
        }
        if let problem = settlementLimitProblem(bidder) { return problem }
        let price = book.price(at: now, opensAt: listing.opensAt)
        book.remaining -= quantity  // quantity <= remaining, checked above
        emit(
            .filled(bidder: bidder, price: price, quantity: quantity, remaining: book.remaining), on: listing,
            events: &events)
        createSettlement(listing, buyer: bidder, seller: listing.seller, price: price, quantity: quantity, &events)
        if book.remaining == 0 {
            listing.status = .closed
            noLongerOpen(listing)
            stopDutchClock(book)
            emit(.dutchClosed(sold: book.quantity), on: listing, events: &events)
        }
        return CommandResult(error: nil, message: "", price: price, filled: quantity, remaining: book.remaining)
    }
}
