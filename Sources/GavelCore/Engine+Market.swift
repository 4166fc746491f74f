/// A market order as it arrives.
struct MarketOrder {
    var id: String
    var trader: String
    var side: Side
    var price: Money
    var quantity: Int64
    var tif: TimeInForce
    var expiresAt: Millis?
}

extension Engine {
    func placeOrder(_ listing: Listing, _ book: MarketBook, _ order: MarketOrder, _ events: inout [Event])
        -> CommandResult
    {
        if book.isResting(trader: order.trader, id: order.id) {
            return .rejected(.badRequest, "order \(order.id) of \(order.trader) is still resting; use a new id")
        }
        if order.tif == .gtc {
            if let problem = restingLimitProblem(listing, book, order) { return problem }
            if let problem = levelLimitProblem(listing, book, order) { return problem }
        }
        if book.crosses(order.side, at: order.price), let problem = settlementLimitProblem(order.trader) {
            return problem
        }
        let before = book.top
        emit(
            .orderPlaced(
                order: order.id, trader: order.trader, side: order.side, price: order.price, quantity: order.quantity),
            on: listing, events: &events)
        var left = order.quantity
        let opposite: Side = order.side == .buy ? .sell : .buy
        while left > 0 {
            guard let levelPrice = book.bestPrice(opposite),
                order.side == .buy ? levelPrice <= order.price : levelPrice >= order.price
            else { break }
            let resting = book.first(opposite)
            if resting.trader == order.trader {
                // Self-trade prevention: cancel the trader's own resting order and keep matching.
                cancelExpiry(of: book.popBest(opposite))
                emit(
                    .orderCancelled(
                        order: resting.id, trader: resting.trader, reason: .selfTrade,
                        remaining: resting.remaining), on: listing, events: &events)
                continue
            }
            let quantity = min(left, resting.remaining)
            if quantity == resting.remaining {
                cancelExpiry(of: book.popBest(opposite))
            } else {
                book.reduceBest(opposite, by: quantity)
            }
            left -= quantity  // quantity = min(left, resting.remaining)
            book.traded = true
            let (buyer, seller, buyOrder, sellOrder) =
                order.side == .buy
                ? (order.trader, resting.trader, order.id, resting.id)
                : (resting.trader, order.trader, resting.id, order.id)
            emit(
                .trade(
                    buyer: buyer, seller: seller, price: levelPrice, quantity: quantity, buyOrder: buyOrder,
                    sellOrder: sellOrder), on: listing, events: &events)
            createSettlement(listing, buyer: buyer, seller: seller, price: levelPrice, quantity: quantity, &events)
        }
        let filled = order.quantity - left
        var rests: Int64 = 0
        if left > 0 {
            switch order.tif {
            case .ioc:
                emit(
                    .orderCancelled(order: order.id, trader: order.trader, reason: .ioc, remaining: left), on: listing,
                    events: &events)
            case .gtc:
                var resting = RestingOrder(
                    id: order.id, trader: order.trader, remaining: left, expiresAt: order.expiresAt)
                if let expiresAt = order.expiresAt {
                    resting.expiry = timers.schedule(
                        .expire(trader: order.trader, order: order.id), listing: listing.id, at: expiresAt)
                }
                book.rest(resting, side: order.side, price: order.price)
                rests = left
            }
        }
        emitBookIfChanged(listing, book, since: before, &events)
        return CommandResult(error: nil, message: "", price: order.price, filled: filled, remaining: rests)
    }

    /// The rejection of a `gtc` order that arrives while the book already holds the most resting orders it may, in
    /// all or for the order's trader, checked before anything changes.
    ///
    /// Exact and simple rather than cautious about matching: the order is refused even when it would fully match
    /// (and so not rest), because knowing that would take matching it first. An `ioc` order never rests and is not
    /// limited; a fill, cancel or expiry makes room again.
    private func restingLimitProblem(_ listing: Listing, _ book: MarketBook, _ order: MarketOrder) -> CommandResult? {
        let perListing = configuration.maxRestingOrdersPerListing
        if book.restingCount >= perListing {
            return .rejected(
                .limitExceeded,
                "listing \(listing.id) already holds \(book.restingCount) resting orders, the most a listing may "
                    + "(--max-resting-orders-per-listing \(perListing)): a gtc order is refused until orders fill, "
                    + "are cancelled or expire; use ioc or retry later")
        }
        let perTrader = configuration.maxRestingOrdersPerTrader
        let mine = book.restingCount(of: order.trader)
        if mine >= perTrader {
            return .rejected(
                .limitExceeded,
                "\(order.trader) already has \(mine) orders resting on listing \(listing.id), the most a trader may "
                    + "(--max-resting-orders-per-trader \(perTrader)): cancel one or wait for fills; ioc orders are "
                    + "not limited")
        }
        let total = restingTotals[order.trader]
        if total >= configuration.maxRestingOrdersPerTraderTotal {
            return .rejected(
                .limitExceeded,
                "\(order.trader) already has \(total) orders resting over all market listings, the most a trader may "
                    + "(--max-resting-orders-per-trader-total \(configuration.maxRestingOrdersPerTraderTotal)): cancel "
                    + "one or wait for fills; ioc orders are not limited")
        }
        return nil
    }

    /// The rejection of a `gtc` order whose remainder would take its price level's total past `Int64.max`, checked
    /// before anything changes.
    ///
    /// Exact, not cautious: when orders already rest at the order's price on its own side, the book is not crossed
    /// there (the best bid is below the best ask), so the order matches nothing and all of its quantity would rest.
    /// When no order rests there, the remainder starts a new level of at most 10^15.
    private func levelLimitProblem(_ listing: Listing, _ book: MarketBook, _ order: MarketOrder) -> CommandResult? {
        guard let total = book.levelTotal(order.side, at: order.price),
            total.addingReportingOverflow(order.quantity).overflow
        else { return nil }
        let room = Int64.max - total
        return .rejected(
            .limitExceeded,
            "the \(order.side.rawValue) orders resting at price \(order.price) on listing \(listing.id) total \(total); "
                + "a price level holds at most \(Int64.max) in all, so at most \(room) more fits there: "
                + "use a smaller quantity or another price")
    }

    func cancelOrder(_ listing: Listing, _ book: MarketBook, trader: String, orderID: String, _ events: inout [Event])
        -> CommandResult
    {
        let before = book.top
        guard let order = book.remove(OrderKey(trader: trader, id: orderID)).map(cancelExpiry) else {
            if book.hasResting(id: orderID) {
                return .rejected(.notOwner, "order \(orderID) on listing \(listing.id) is not yours")
            }
            return .rejected(
                .unknownOrder,
                "no resting order \(orderID) on listing \(listing.id) (filled, cancelled or never placed)")
        }
        emit(
            .orderCancelled(order: orderID, trader: trader, reason: .cancelled, remaining: order.remaining),
            on: listing, events: &events)
        emitBookIfChanged(listing, book, since: before, &events)
        return CommandResult(error: nil, message: "", remaining: order.remaining)
    }

    func expire(_ listing: Listing, _ book: MarketBook, key: OrderKey, at time: Millis, _ events: inout [Event]) {
        guard let order = book.order(key), order.expiresAt == time else { return }
        let before = book.top
        _ = book.remove(key)
        emit(
            .orderCancelled(order: key.id, trader: key.trader, reason: .expired, remaining: order.remaining),
            on: listing, events: &events)
        emitBookIfChanged(listing, book, since: before, &events)
    }

    func cancelAllResting(_ listing: Listing, _ book: MarketBook, reason: CancelReason, _ events: inout [Event]) {
        let before = book.top
        for (_, _, order) in book.allResting {
            cancelExpiry(of: order)
            emit(
                .orderCancelled(order: order.id, trader: order.trader, reason: reason, remaining: order.remaining),
                on: listing, events: &events)
        }
        book.removeAll()
        emitBookIfChanged(listing, book, since: before, &events)
    }

    /// Cancels the expiry timer of `order`, which left the book; returns the order.
    @discardableResult
    private func cancelExpiry(of order: RestingOrder) -> RestingOrder {
        timers.cancel(order.expiry)
        return order
    }

    private func emitBookIfChanged(
        _ listing: Listing, _ book: MarketBook, since before: MarketBook.Top, _ events: inout [Event]
    ) {
        let after = book.top
        guard after != before else { return }
        emit(
            .book(
                bestBid: after.bestBid, bestAsk: after.bestAsk, bidQuantity: after.bidQuantity,
                askQuantity: after.askQuantity), on: listing, events: &events)
    }
}
