import Testing

@testable import GavelCore

/// The market rules. Listing `M` is a market opened at 0 by `sam` without a close unless a test says otherwise.
@Suite struct MarketRulesTests {
    private func market(closesAt: Millis? = nil) -> Harness {
        let h = Harness()
        h.open("M", Terms.market(closesAt: closesAt), at: 0)
        return h
    }

    private func trades(_ events: [Event]) -> [EventKind] {
        events.kinds.filter { if case .trade = $0 { true } else { false } }
    }

    @Test func restingOrderEmitsPlacedAndBook() {
        let h = market()
        let r = h.order("sue", .sell, 10, price: 100, id: "s1")
        #expect(r.ok)
        #expect(r.filled == 0)
        #expect(r.remaining == 10)
        #expect(
            h.kinds == [
                .orderPlaced(order: "s1", trader: "sue", side: .sell, price: 100, quantity: 10),
                .book(bestBid: nil, bestAsk: 100, bidQuantity: nil, askQuantity: 10),
            ])
    }

    @Test func crossingOrderTradesAtTheRestingPrice() {
        let h = market()
        h.order("sue", .sell, 10, price: 100, id: "s1")
        let r = h.order("bob", .buy, 4, price: 120, id: "b1")
        #expect(r.filled == 4)
        #expect(r.remaining == 0)
        #expect(
            h.kinds == [
                .orderPlaced(order: "b1", trader: "bob", side: .buy, price: 120, quantity: 4),
                .trade(buyer: "bob", seller: "sue", price: 100, quantity: 4, buyOrder: "b1", sellOrder: "s1"),
                .book(bestBid: nil, bestAsk: 100, bidQuantity: nil, askQuantity: 6),
            ])
    }

    @Test func incomingSellTradesAtTheRestingBidPrice() {
        let h = market()
        h.order("bob", .buy, 5, price: 105, id: "b1")
        h.order("sue", .sell, 5, price: 100, id: "s1")
        #expect(
            trades(h.events) == [
                .trade(buyer: "bob", seller: "sue", price: 105, quantity: 5, buyOrder: "b1", sellOrder: "s1")
            ])
        #expect(h.kinds.last == .book(bestBid: nil, bestAsk: nil, bidQuantity: nil, askQuantity: nil))
    }

    @Test func betterPriceMatchesFirst() {
        let h = market()
        h.order("s1", .sell, 5, price: 105, id: "a")
        h.order("s2", .sell, 5, price: 100, id: "b")
        h.order("bob", .buy, 5, price: 110, id: "c")
        #expect(
            trades(h.events) == [
                .trade(buyer: "bob", seller: "s2", price: 100, quantity: 5, buyOrder: "c", sellOrder: "b")
            ])
        #expect(h.kinds.last == .book(bestBid: nil, bestAsk: 105, bidQuantity: nil, askQuantity: 5))
    }

    @Test func higherBidMatchesFirst() {
        let h = market()
        h.order("b1", .buy, 5, price: 95, id: "a")
        h.order("b2", .buy, 5, price: 99, id: "b")
        h.order("sue", .sell, 5, price: 90, id: "c")
        #expect(
            trades(h.events) == [
                .trade(buyer: "b2", seller: "sue", price: 99, quantity: 5, buyOrder: "b", sellOrder: "c")
            ])
    }

    @Test func earlierOrderAtTheSamePriceMatchesFirst() {
        let h = market()
        h.order("s1", .sell, 5, price: 100, id: "a")
        h.order("s2", .sell, 5, price: 100, id: "b")
        h.order("bob", .buy, 7, price: 100, id: "c")
        #expect(
            trades(h.events) == [
                .trade(buyer: "bob", seller: "s1", price: 100, quantity: 5, buyOrder: "c", sellOrder: "a"),
                .trade(buyer: "bob", seller: "s2", price: 100, quantity: 2, buyOrder: "c", sellOrder: "b"),
            ])
        #expect(h.market()?.asks.last?.orders.map(\.remaining) == [3])
    }

    @Test func partialFillWalksLevelsUpToTheLimit() {
        let h = market()
        h.order("s1", .sell, 3, price: 100, id: "a")
        h.order("s2", .sell, 3, price: 101, id: "b")
        h.order("s3", .sell, 3, price: 102, id: "c")
        let r = h.order("bob", .buy, 8, price: 101, tif: .gtc, id: "d")
        #expect(
            trades(h.events) == [
                .trade(buyer: "bob", seller: "s1", price: 100, quantity: 3, buyOrder: "d", sellOrder: "a"),
                .trade(buyer: "bob", seller: "s2", price: 101, quantity: 3, buyOrder: "d", sellOrder: "b"),
            ])
        #expect(r.filled == 6)
        #expect(r.remaining == 2)
        #expect(h.kinds.last == .book(bestBid: 101, bestAsk: 102, bidQuantity: 2, askQuantity: 3))
    }

    @Test func iocRemainderIsCancelled() {
        let h = market()
        h.order("sue", .sell, 4, price: 100, id: "s1")
        let r = h.order("bob", .buy, 10, price: 100, tif: .ioc, id: "b1")
        #expect(r.filled == 4)
        #expect(r.remaining == 0)
        #expect(
            h.kinds == [
                .orderPlaced(order: "b1", trader: "bob", side: .buy, price: 100, quantity: 10),
                .trade(buyer: "bob", seller: "sue", price: 100, quantity: 4, buyOrder: "b1", sellOrder: "s1"),
                .orderCancelled(order: "b1", trader: "bob", reason: .ioc, remaining: 6),
                .book(bestBid: nil, bestAsk: nil, bidQuantity: nil, askQuantity: nil),
            ])
        #expect(h.market()?.bids.isEmpty == true)
    }

    @Test func iocWithoutMatchIsCancelledWholeAndLeavesTheBook() {
        let h = market()
        h.order("sue", .sell, 4, price: 100, id: "s1")
        h.order("bob", .buy, 10, price: 99, tif: .ioc, id: "b1")
        #expect(
            h.kinds == [
                .orderPlaced(order: "b1", trader: "bob", side: .buy, price: 99, quantity: 10),
                .orderCancelled(order: "b1", trader: "bob", reason: .ioc, remaining: 10),
            ])
    }

    @Test func nonCrossingOrdersRestOnBothSides() {
        let h = market()
        h.order("bob", .buy, 2, price: 99, id: "b1")
        h.order("sue", .sell, 3, price: 100, id: "s1")
        #expect(trades(h.events).isEmpty)
        #expect(h.kinds.last == .book(bestBid: 99, bestAsk: 100, bidQuantity: 2, askQuantity: 3))
    }

    @Test func selfTradeCancelsOwnRestingOrderAndContinues() {
        let h = market()
        h.order("ann", .sell, 5, price: 100, id: "a1")
        h.order("bob", .sell, 5, price: 101, id: "b1")
        let r = h.order("ann", .buy, 5, price: 101, id: "a2")
        #expect(r.filled == 5)
        #expect(
            h.kinds == [
                .orderPlaced(order: "a2", trader: "ann", side: .buy, price: 101, quantity: 5),
                .orderCancelled(order: "a1", trader: "ann", reason: .selfTrade, remaining: 5),
                .trade(buyer: "ann", seller: "bob", price: 101, quantity: 5, buyOrder: "a2", sellOrder: "b1"),
                .book(bestBid: nil, bestAsk: nil, bidQuantity: nil, askQuantity: nil),
            ])
    }

    @Test func selfTradeBehindAnotherTradersOrderTradesFirst() {
        let h = market()
        h.order("bob", .sell, 2, price: 100, id: "b1")
        h.order("ann", .sell, 5, price: 100, id: "a1")
        h.order("ann", .buy, 4, price: 100, id: "a2")
        #expect(
            h.kinds == [
                .orderPlaced(order: "a2", trader: "ann", side: .buy, price: 100, quantity: 4),
                .trade(buyer: "ann", seller: "bob", price: 100, quantity: 2, buyOrder: "a2", sellOrder: "b1"),
                .orderCancelled(order: "a1", trader: "ann", reason: .selfTrade, remaining: 5),
                .book(bestBid: 100, bestAsk: nil, bidQuantity: 2, askQuantity: nil),
            ])
    }

    @Test func cancelByOwnerRemovesTheOrder() {
        let h = market()
        h.order("sue", .sell, 5, price: 100, id: "s1")
        h.order("sue", .sell, 5, price: 101, id: "s2")
        let r = h.cancel("sue", order: "s1")
        #expect(r.ok)
        #expect(r.remaining == 5)
        #expect(
            h.kinds == [
                .orderCancelled(order: "s1", trader: "sue", reason: .cancelled, remaining: 5),
                .book(bestBid: nil, bestAsk: 101, bidQuantity: nil, askQuantity: 5),
            ])
        #expect(h.cancel("sue", order: "s1").error == .unknownOrder)
    }

    @Test func cancelBehindTheBestEmitsNoBook() {
        let h = market()
        h.order("sue", .sell, 5, price: 100, id: "s1")
        h.order("sue", .sell, 5, price: 101, id: "s2")
        h.cancel("sue", order: "s2")
        #expect(h.kinds == [.orderCancelled(order: "s2", trader: "sue", reason: .cancelled, remaining: 5)])
    }

    @Test func cancelOfAnotherTradersOrderIsNotOwner() {
        let h = market()
        h.order("sue", .sell, 5, price: 100, id: "s1")
        let r = h.cancel("bob", order: "s1")
        #expect(r.error == .notOwner)
        #expect(h.events.isEmpty)
        #expect(h.market()?.asks.count == 1)
    }

    @Test func cancelOfAnIdNobodyHasIsUnknownOrder() {
        let h = market()
        #expect(h.cancel("bob", order: "nope").error == .unknownOrder)
    }

    @Test func cancelOfAFilledOrderIsUnknownOrder() {
        let h = market()
        h.order("sue", .sell, 5, price: 100, id: "s1")
        h.order("bob", .buy, 5, price: 100, id: "b1")
        #expect(h.cancel("sue", order: "s1").error == .unknownOrder)
    }

    @Test func cancelFindsTheCallersOrderWhenTwoTradersShareAnId() {
        let h = market()
        h.order("sue", .sell, 5, price: 100, id: "x")
        h.order("tom", .sell, 7, price: 101, id: "x")
        let r = h.cancel("tom", order: "x")
        #expect(r.remaining == 7)
        #expect(h.kinds.first == .orderCancelled(order: "x", trader: "tom", reason: .cancelled, remaining: 7))
        #expect(h.market()?.asks.map(\.price) == [100])
    }

    @Test func cancelOfAPartiallyFilledOrderCancelsTheRest() {
        let h = market()
        h.order("sue", .sell, 10, price: 100, id: "s1")
        h.order("bob", .buy, 4, price: 100, id: "b1")
        #expect(h.cancel("sue", order: "s1").remaining == 6)
    }

    @Test func orderExpiresAtExpiresAt() {
        let h = market()
        h.order("sue", .sell, 5, price: 100, expiresAt: 5000, id: "s1")
        h.advance(to: 4999)
        #expect(h.events.isEmpty)
        h.advance(to: 5000)
        #expect(
            h.kinds == [
                .orderCancelled(order: "s1", trader: "sue", reason: .expired, remaining: 5),
                .book(bestBid: nil, bestAsk: nil, bidQuantity: nil, askQuantity: nil),
            ])
        #expect(h.events.allSatisfy { $0.at == 5000 })
    }

    @Test func filledOrderDoesNotExpireLater() {
        let h = market()
        h.order("sue", .sell, 5, price: 100, expiresAt: 5000, id: "s1")
        h.order("bob", .buy, 5, price: 100, id: "b1")
        h.advance(to: 6000)
        #expect(h.events.isEmpty)
    }

    @Test func cancelledOrderDoesNotExpireItsSuccessorWithTheSameId() {
        let h = market()
        h.order("sue", .sell, 5, price: 100, expiresAt: 5000, id: "s1")
        h.cancel("sue", order: "s1")
        // Sue's expiry timer is now stale; it must not touch another trader's order with the same id.
        h.order("tom", .sell, 5, price: 100, id: "s1")
        h.advance(to: 6000)
        #expect(h.events.isEmpty)
        #expect(h.market()?.asks.last?.orders.map(\.trader) == ["tom"])
    }

    @Test func expiresAtNotInTheFutureIsBadRequest() {
        let h = market()
        h.advance(to: 1000)
        #expect(h.order("sue", .sell, 5, price: 100, expiresAt: 1000).error == .badRequest)
        #expect(h.order("sue", .sell, 5, price: 100, expiresAt: 999).error == .badRequest)
        #expect(h.market()?.asks.isEmpty == true)
    }

    @Test func iocWithExpiryLeavesNothingToExpire() {
        let h = market()
        h.order("sue", .sell, 5, price: 100, tif: .ioc, expiresAt: 5000, id: "s1")
        h.advance(to: 6000)
        #expect(h.events.isEmpty)
    }

    @Test func closesAtCancelsWhatRestsAndCloses() {
        let h = market(closesAt: 10_000)
        h.order("bob", .buy, 2, price: 99, id: "b1")
        h.order("sue", .sell, 3, price: 100, id: "s1")
        h.advance(to: 10_000)
        #expect(
            h.kinds == [
                .orderCancelled(order: "b1", trader: "bob", reason: .closed, remaining: 2),
                .orderCancelled(order: "s1", trader: "sue", reason: .closed, remaining: 3),
                .book(bestBid: nil, bestAsk: nil, bidQuantity: nil, askQuantity: nil),
                .marketClosed,
            ])
        #expect(h.order("bob", .buy, 1, price: 100, at: 10_001).error == .listingClosed)
        #expect(h.cancel("bob", order: "b1").error == .listingClosed)
    }

    @Test func emptyMarketClosesWithoutBook() {
        let h = market(closesAt: 10_000)
        h.advance(to: 10_000)
        #expect(h.kinds == [.marketClosed])
    }

    @Test func addingToTheBestLevelEmitsBookWithTheNewQuantity() {
        let h = market()
        h.order("sue", .sell, 3, price: 100)
        h.order("tom", .sell, 4, price: 100)
        #expect(h.kinds.last == .book(bestBid: nil, bestAsk: 100, bidQuantity: nil, askQuantity: 7))
    }

    @Test func orderBehindTheBestEmitsNoBook() {
        let h = market()
        h.order("sue", .sell, 3, price: 100)
        h.order("tom", .sell, 4, price: 105)
        #expect(!h.kinds.contains { $0.isBook })
        h.order("bob", .buy, 4, price: 90)
        #expect(h.kinds.last == .book(bestBid: 90, bestAsk: 100, bidQuantity: 4, askQuantity: 3))
        h.order("ben", .buy, 4, price: 80)
        #expect(!h.kinds.contains { $0.isBook })
    }

    @Test func invalidPriceIsInvalidAmountAndInvalidQuantityIsInvalidQuantity() {
        let h = market()
        #expect(h.order("sue", .sell, 3, price: 0).error == .invalidAmount)
        #expect(h.order("sue", .sell, 3, price: -5).error == .invalidAmount)
        #expect(h.order("sue", .sell, 3, price: Limits.maxAmount + 1).error == .invalidAmount)
        #expect(h.order("sue", .sell, 0, price: 100).error == .invalidQuantity)
        #expect(h.order("sue", .sell, Limits.maxAmount + 1, price: 100).error == .invalidQuantity)
        #expect(h.order("sue", .sell, Limits.maxAmount, price: Limits.maxAmount).ok)
    }

    @Test func orderBeforeOpensAtIsNotOpen() {
        let h = Harness()
        h.open("M", Terms.market(opensAt: 1000), at: 0)
        #expect(h.order("sue", .sell, 1, price: 100, at: 999).error == .notOpen)
        #expect(h.order("sue", .sell, 1, price: 100, at: 1000).ok)
    }

    @Test func bidAcceptAndBuyNowAreUnsupportedOnMarket() {
        let h = market()
        #expect(h.bid("ann", 100, on: "M").error == .unsupported)
        #expect(h.accept("ann", on: "M").error == .unsupported)
        #expect(h.buyNow("ann", on: "M").error == .unsupported)
    }

    @Test func orderAndCancelAreUnsupportedOnAuctions() {
        let h = Harness()
        h.open("E", Terms.english(), at: 0)
        #expect(h.order("sue", .sell, 1, price: 100, on: "E").error == .unsupported)
        #expect(h.cancel("sue", order: "x", on: "E").error == .unsupported)
    }

    @Test func restingLevelTotalsMatchTheirOrders() {
        let h = market()
        h.order("a", .sell, 3, price: 100)
        h.order("b", .sell, 4, price: 100)
        h.order("c", .sell, 5, price: 101)
        h.order("d", .buy, 5, price: 100)
        for level in Array(h.market()?.asks.map { $0 } ?? []) + (h.market()?.bids.map { $0 } ?? []) {
            #expect(level.total == level.orders.reduce(0) { $0 + $1.remaining })
        }
        #expect(h.market()?.asks.last?.total == 2)
    }
}
