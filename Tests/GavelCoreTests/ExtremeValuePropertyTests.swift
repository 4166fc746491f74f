import PropertyBased
import Testing

@testable import GavelCore

// Property tests with extreme values: amounts and quantities at and around 10^15, thousands of orders at one price,
// clocks, closes and opens near the ends of Int64. Each stream runs on ``Twins``: no command may trap, every
// refused command must leave the state as it was (the twin that never saw it ends in the same state hash), and the
// final state must survive a snapshot restore with the same hash.

private let extremeInput = Gen.int(in: 0...Int(Int32.max)).array(of: 1...40)
private let extremeRuns = 40

/// Digits of a generated number: `digit(x, 4, after: 1)` is the digit of `x` in base 4 above the first digit.
private func digit(_ x: Int, _ base: Int, after divisor: Int = 1) -> Int { (x / divisor) % base }

/// Amounts and quantities at the edges of what commands may carry, and past them.
private let extremeAmounts: [Int64] = [
    1, 2, Limits.maxAmount - 1, Limits.maxAmount, Limits.maxAmount / 2 + 1, 372_036_854_775_807,
    Limits.maxAmount + 1, 0, -1, .max, .min,
]

/// Engine times to start a stream at: the start of time and just before its end.
private let startTimes: [Millis] = [0, .max - 100_000]

private let people = ["ann", "bob", "cyd", "dee", "eve"]

/// Checks that `twins` ends well: no refusal changed state, and a restore of the state hashes the same.
private func expectSoundEnd(_ twins: Twins, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(twins.statesAgree(), "a refused command changed state", sourceLocation: sourceLocation)
    let engine = twins.subject.engine
    do {
        let restored = try Engine.restore(from: engine.encodeState())
        #expect(restored.stateHash() == engine.stateHash(), sourceLocation: sourceLocation)
    } catch {
        Issue.record("restore refused a state the engine made: \(error)", sourceLocation: sourceLocation)
    }
}

/// Runs `body` on generated streams: twins that start at the start of time or near its end (picked by the first
/// number, which `body` gets too, with the rest), then checks that the stream ended well.
private func checkExtremeStreams(_ body: @escaping @Sendable (Twins, Int, ArraySlice<Int>) -> Void) async {
    await propertyCheck(count: extremeRuns, input: extremeInput) { values in
        let twins = Twins(at: startTimes[digit(values[0], 2)])
        body(twins, values[0], values.dropFirst())
        expectSoundEnd(twins)
    }
}

/// A market whose best bid level (price 1) holds 9,223 orders of 10^15, 3.7 * 10^17 short of `Int64.max`, and
/// whose asks at 10^15 hold 100 orders of 10^15; saved once, restored for every run.
private let crowdedMarket: [UInt8] = {
    let h = Harness(window: 1)
    h.open("M", Terms.market(closesAt: .max), at: 0)
    for n in 1...9_223 { h.order("t\(n % 50)", .buy, Limits.maxAmount, price: 1, id: "b\(n)") }
    for n in 1...100 { h.order("s\(n % 10)", .sell, Limits.maxAmount, price: Limits.maxAmount, id: "s\(n)") }
    return h.engine.encodeState()
}()

/// Every level's total is the sum of its orders (summed with overflow checks) and within `Int64`.
private func expectLevelTotalsAddUp(_ book: MarketBook, sourceLocation: SourceLocation = #_sourceLocation) {
    for level in Array(book.bids) + Array(book.asks) {
        var sum: Int64 = 0
        for order in level.orders {
            let (next, overflow) = sum.addingReportingOverflow(order.remaining)
            #expect(!overflow, "level \(level.price) overflows", sourceLocation: sourceLocation)
            #expect(order.remaining > 0 && order.remaining <= Limits.maxAmount, sourceLocation: sourceLocation)
            sum = next
        }
        #expect(sum == level.total, "level \(level.price) total", sourceLocation: sourceLocation)
    }
}

@Suite struct ExtremeValuePropertyTests {
    @Test func marketWithThousandsOfOrdersAtOnePriceNeverOverflowsAndRefusalsChangeNothing() async throws {
        let saved = crowdedMarket
        await propertyCheck(count: 10, input: extremeInput) { values in
            guard let subject = try? Engine.restore(from: saved), let twin = try? Engine.restore(from: saved) else {
                Issue.record("cannot restore the crowded market")
                return
            }
            let twins = Twins(subject: subject, twin: twin, at: subject.now + 1)
            var placed: [(trader: String, id: String)] = []
            for (n, x) in values.enumerated() {
                guard let book = twins.subject.market() else { return }
                let id = "x\(n)"
                let trader = people[digit(x, people.count)]
                switch digit(x, 4, after: 5) {
                case 0, 1:
                    let side: Side = digit(x, 2, after: 20) == 0 ? .buy : .sell
                    let prices: [Money] = [1, 2, Limits.maxAmount, Limits.maxAmount - 1, 0, Limits.maxAmount + 1]
                    let price = prices[digit(x, prices.count, after: 40)]
                    let quantity = extremeAmounts[digit(x, extremeAmounts.count, after: 240)]
                    let tif: TimeInForce = digit(x, 4, after: 2640) == 0 ? .ioc : .gtc
                    let valid = Limits.isValidAmount(price) && Limits.isValidAmount(quantity)
                    let overflows =
                        valid && tif == .gtc
                        && (book.levelTotal(side, at: price).map { $0.addingReportingOverflow(quantity).overflow }
                            ?? false)
                    let result = twins.apply(orderCommand(id, trader, side, quantity, price: price, tif: tif))
                    #expect((result.error == .limitExceeded) == overflows, "\(result)")
                    if result.ok { placed.append((trader, id)) }
                case 2:
                    let target: (trader: String, id: String) =
                        placed.isEmpty ? (trader, "b\(x % 9_223 + 1)") : placed[x % placed.count]
                    twins.apply(
                        Command(id: id, listing: "M", body: .cancel(trader: target.trader, order: target.id)))
                default:
                    // An order from the crowded level's own traders, at the crowded price.
                    twins.apply(orderCommand(id, "t\(x % 50)", .buy, Limits.maxAmount, price: 1))
                }
                if let book = twins.subject.market() { expectLevelTotalsAddUp(book) }
            }
            expectSoundEnd(twins)
        }
    }

    @Test func englishAtTheLimitsOfAmountsLaddersAndTimeNeverTraps() async {
        await checkExtremeStreams { twins, x0, values in
            let start = twins.time
            let amounts: [Money] = [1, Limits.maxAmount - 1, Limits.maxAmount]
            let ladders: [[IncrementStep]?] = [
                nil, [IncrementStep(from: 0, step: Limits.maxAmount)],
                [IncrementStep(from: 0, step: 1), IncrementStep(from: Limits.maxAmount, step: Limits.maxAmount)],
            ]
            let opening = amounts[digit(x0, 3, after: 2)]
            let softs: [SoftClose?] = [
                nil, SoftClose(windowMs: .max, extendMs: .max, maxClosesAt: nil),
                SoftClose(windowMs: 1, extendMs: .max, maxClosesAt: .max),
                SoftClose(windowMs: .max, extendMs: 1, maxClosesAt: nil),
            ]
            let terms = ListingTerms.english(
                .init(
                    start: opening, reserve: digit(x0, 2, after: 6) == 0 ? nil : Limits.maxAmount,
                    buyNow: digit(x0, 2, after: 12) == 0 ? nil : Limits.maxAmount,
                    closesAt: digit(x0, 2, after: 24) == 0 ? .max : start + 30, opensAt: nil,
                    increments: ladders[digit(x0, 3, after: 48)], softClose: softs[digit(x0, 4, after: 144)]))
            #expect(twins.apply(Command(id: "o", listing: "L", body: .open(seller: "sam", terms: terms))).ok)
            for (n, x) in values.enumerated() {
                let closesBefore = twins.subject.listing("L")?.closesAt
                let bidder = people[digit(x, people.count)]
                let command: Command
                if digit(x, 8, after: 5) == 0 {
                    command = Command(id: "n\(n)", listing: "L", body: .buyNow(buyer: bidder))
                } else {
                    let amount = extremeAmounts[digit(x, extremeAmounts.count, after: 40)]
                    command = Command(id: "b\(n)", listing: "L", body: .bid(bidder: bidder, amount: amount))
                }
                let result = twins.apply(command)
                if let price = result.price { #expect(price >= 1 && price <= Limits.maxAmount) }
                if let minBid = result.minBid { #expect(minBid >= 1 && minBid <= 2 * Limits.maxAmount) }
                if let book = twins.subject.english(), book.leader != nil {
                    #expect(book.price <= book.maximum && book.maximum <= Limits.maxAmount)
                }
                if let before = closesBefore, let after = twins.subject.listing("L")?.closesAt {
                    #expect(after >= before, "soft close only moves the close later")
                }
            }
        }
    }

    @Test func dutchWithHugeQuantitiesAndClocksNearTheEndsOfTimeNeverTraps() async {
        await checkExtremeStreams { twins, x0, values in
            let start = twins.time
            let opening = [Limits.maxAmount, 2, Limits.maxAmount - 1][digit(x0, 3, after: 2)]
            let floor = [1, opening][digit(x0, 2, after: 6)]
            let quantity = [Limits.maxAmount, 1, Limits.maxAmount - 1][digit(x0, 3, after: 12)]
            let every: [Millis] = [1, 2, .max]
            let opens: [Millis?] = [nil, .min, .min + 1, start - 1, .max - 2]
            let terms = ListingTerms.dutch(
                .init(
                    start: opening, floor: floor, step: [1, Limits.maxAmount][digit(x0, 2, after: 36)],
                    stepEveryMs: every[digit(x0, 3, after: 72)], quantity: quantity, closesAt: .max,
                    opensAt: opens[digit(x0, 5, after: 216)]))
            let opened = twins.apply(Command(id: "o", listing: "D", body: .open(seller: "sam", terms: terms)))
            #expect(opened.ok, "\(opened.message)")
            var sold: Int64 = 0
            for (n, x) in values.enumerated() {
                if digit(x, 3) == 0 {
                    twins.subject.advance(to: twins.time)
                    twins.twin.advance(to: twins.time)
                    continue
                }
                let amount = extremeAmounts[digit(x, extremeAmounts.count, after: 3)]
                let bidder = people[digit(x, people.count, after: 33)]
                let result = twins.apply(
                    Command(id: "a\(n)", listing: "D", body: .accept(bidder: bidder, quantity: amount)))
                if result.ok, let filled = result.filled {
                    let (total, overflow) = sold.addingReportingOverflow(filled)
                    #expect(!overflow)
                    sold = total
                    #expect(result.remaining == quantity - sold)
                    if let price = result.price { #expect(price >= floor && price <= opening) }
                }
                if let book = twins.subject.dutch("D") {
                    #expect(book.remaining >= 0 && book.remaining <= quantity)
                    #expect(book.price >= floor && book.price <= opening)
                }
            }
        }
    }

    @Test func sealedAndMarketOpensWithExtremeTermsAndTimesAreRefusedOrRunCleanly() async {
        await checkExtremeStreams { twins, x0, values in
            let start = twins.time
            let times: [Millis?] = [nil, .min, -1, 0, start, .max - 1, .max]
            for (n, x) in ([x0] + values).enumerated() {
                let amount = extremeAmounts[digit(x, extremeAmounts.count)]
                let closes = times[digit(x, times.count, after: 11)] ?? .max
                let opens = times[digit(x, times.count, after: 77)]
                let listing = "L\(n % 3)"
                let command: Command
                switch digit(x, 4, after: 539) {
                case 0:
                    let terms = ListingTerms.sealed(
                        .init(
                            pricing: digit(x, 2, after: 2156) == 0 ? .first : .second, start: amount,
                            reserve: nil, closesAt: closes, opensAt: opens))
                    command = Command(id: "o\(n)", listing: listing, body: .open(seller: "sam", terms: terms))
                case 1:
                    let terms = ListingTerms.market(.init(closesAt: opens == nil ? nil : closes, opensAt: opens))
                    command = Command(id: "o\(n)", listing: listing, body: .open(seller: "sam", terms: terms))
                case 2:
                    command = Command(
                        id: "b\(n)", listing: listing, body: .bid(bidder: people[n % people.count], amount: amount))
                default:
                    command = orderCommand(
                        "q\(n)", people[n % people.count], digit(x, 2, after: 2156) == 0 ? .buy : .sell, amount,
                        price: extremeAmounts[digit(x, extremeAmounts.count, after: 4312)])
                }
                twins.apply(Command(id: command.id, listing: listing, body: command.body))
            }
        }
    }
}
