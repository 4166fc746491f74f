import PropertyBased
import Testing

@testable import GavelCore

// Property-based tests: invariants over random command streams. Each stream is built deterministically from a
// generated array of numbers, one number per command, so a failing case is reported (and shrunk) as that array.

/// The generated input: the first number picks the listing's terms, each further number one step of the stream.
private let streamInput = Gen.int(in: 0...Int(Int32.max)).array(of: 1...80)

private let runs = 200

/// Digits of a generated number: `pick(x, 4, after: 1)` is the digit of `x` in base 4 above the first digit.
private func pick(_ x: Int, _ base: Int, after divisor: Int = 1) -> Int { (x / divisor) % base }

// MARK: - English: an independent reference model written from the spec text

/// English proxy bidding straight from the spec: price `P`, leader `L` with maximum `M`, optional reserve, ladder,
/// soft close. It shares nothing with the engine but the value types.
private struct EnglishReference {
    let start: Money
    let reserve: Money?
    let ladder: [IncrementStep]
    let soft: SoftClose?
    var closesAt: Millis
    var price: Money
    var leader: String?
    var maximum: Money = 0
    var bids: Int64 = 0

    enum Outcome: Equatable {
        case tooLow(minBid: Money)
        case accepted(outbid: Outbid?, extendedTo: Millis?)
    }

    struct Outbid: Equatable {
        var bidder: String
        var price: Money
    }

    init(start: Money, reserve: Money?, ladder: [IncrementStep]?, soft: SoftClose?, closesAt: Millis) {
        self.start = start
        self.reserve = reserve
        self.ladder = ladder ?? IncrementLadder.standard
        self.soft = soft
        self.closesAt = closesAt
        self.price = start
    }

    /// "`inc(x)` is the step of the ladder bracket holding `x`."
    func inc(_ x: Money) -> Money {
        var step = ladder[0].step
        for bracket in ladder where bracket.from <= x { step = bracket.step }
        return step
    }

    var reserveMet: Bool {
        guard let reserve else { return true }
        return leader != nil && maximum >= reserve
    }

    /// The lowest amount `bidder` may bid now.
    func minimum(for bidder: String) -> Money {
        guard let leader else { return start }
        return leader == bidder ? maximum + 1 : price + inc(price)
    }

    mutating func bid(_ bidder: String, _ amount: Money, at time: Millis) -> Outcome {
        var outbid: Outbid?
        if let leader {
            if bidder == leader {
                guard amount > maximum else { return .tooLow(minBid: maximum + 1) }
                maximum = amount
                if let reserve, amount >= reserve, price < reserve { price = reserve }
            } else {
                guard amount >= price + inc(price) else { return .tooLow(minBid: price + inc(price)) }
                if amount > maximum {
                    var newPrice = min(amount, maximum + inc(maximum))
                    if let reserve, amount >= reserve { newPrice = max(newPrice, reserve) }
                    outbid = Outbid(bidder: leader, price: newPrice)
                    self.leader = bidder
                    maximum = amount
                    price = newPrice
                } else {
                    price = min(maximum, amount + inc(amount))
                    outbid = Outbid(bidder: bidder, price: price)
                }
            }
        } else {
            guard amount >= start else { return .tooLow(minBid: start) }
            leader = bidder
            maximum = amount
            if let reserve, amount >= reserve { price = reserve } else { price = start }
        }
        bids += 1
        var extendedTo: Millis?
        if let soft, closesAt - time <= soft.windowMs {
            let target = min(soft.maxClosesAt ?? .max, max(closesAt, time + soft.extendMs))
            if target != closesAt {
                closesAt = target
                extendedTo = target
            }
        }
        return .accepted(outbid: outbid, extendedTo: extendedTo)
    }

    /// "At `closes_at`: a winner exists when there is a leader and no reserve or `M >= reserve`; the price is `P`."
    var closedEvent: EventKind {
        if let leader, reserveMet { return .closed(winner: leader, price: price, reserveMet: true) }
        return .closed(winner: nil, price: nil, reserveMet: reserveMet)
    }
}

@Suite struct EnglishPropertyTests {
    private static let bidders = ["ann", "bob", "cyd", "dee"]

    private static func reference(from config: Int) -> EnglishReference {
        let start = [1, 50, 100, 480, 2400][pick(config, 5)]
        let reserve: Money? = [nil, start, start + 300, start + 2000, nil][pick(config, 5, after: 5)].map(Money.init)
        let ladder: [IncrementStep]? =
            pick(config, 2, after: 25) == 0
            ? nil
            : [
                IncrementStep(from: 0, step: 7), IncrementStep(from: 200, step: 30),
                IncrementStep(from: 1000, step: 120),
            ]
        let soft: SoftClose? =
            pick(config, 2, after: 50) == 0
            ? nil
            : SoftClose(windowMs: 3000, extendMs: 2000, maxClosesAt: pick(config, 2, after: 100) == 0 ? nil : 70_000)
        return EnglishReference(
            start: Money(start), reserve: reserve, ladder: ladder, soft: soft, closesAt: 60_000)
    }

    /// An amount near an interesting edge: the minimum bid, the leader's maximum, or anywhere.
    private static func amount(_ x: Int, _ model: EnglishReference, bidder: String) -> Money {
        let wiggle = Money(pick(x, 21, after: 16)) - 10
        let amount: Money
        switch pick(x, 4, after: 4) {
        case 0: amount = model.minimum(for: bidder) + wiggle
        case 1: amount = model.maximum + wiggle
        case 2: amount = Money(pick(x, 5000, after: 16)) + 1
        default: amount = Money(pick(x, 100_000, after: 16)) + 1
        }
        return max(1, amount)
    }

    /// Replays a random english stream against the engine and the reference, comparing after every bid.
    private static func check(_ values: [Int]) {
        var model = reference(from: values[0])
        let h = Harness()
        let terms = Terms.english(
            start: model.start, reserve: model.reserve, closesAt: model.closesAt,
            increments: model.ladder == IncrementLadder.standard ? nil : model.ladder, softClose: model.soft)
        #expect(h.open(terms, at: 0).ok)
        var time: Millis = 0
        var closed = false
        var lastPrice = model.price
        // The highest accepted amount so far, and who reached it first.
        var best: (amount: Money, bidder: String)?
        for x in values.dropFirst() {
            let bidder = bidders[pick(x, 4)]
            let amount = amount(x, model, bidder: bidder)
            time += Millis(pick(x, 2500, after: 64 * 21))
            let result = h.bid(bidder, amount, at: time)
            if !closed && time >= model.closesAt {
                closed = true
                #expect(h.fired.kinds == [model.closedEvent], "close at \(model.closesAt)")
            }
            if closed {
                #expect(result.error == .listingClosed)
                continue
            }
            let before = model
            switch model.bid(bidder, amount, at: time) {
            case .tooLow(let minBid):
                #expect(result.error == .bidTooLow, "\(bidder) \(amount) vs \(before)")
                #expect(result.minBid == minBid)
                #expect(h.events.isEmpty)
            case .accepted(let outbid, let extendedTo):
                #expect(result.ok, "\(bidder) \(amount) vs \(before): \(result)")
                #expect(result.price == model.price)
                #expect(result.leading == (model.leader == bidder))
                var expected: [EventKind] = [
                    .bidPlaced(
                        price: model.price, leader: model.leader ?? "", bids: model.bids, closesAt: model.closesAt,
                        reserveMet: model.reserveMet)
                ]
                if let outbid { expected.append(.outbid(bidder: outbid.bidder, price: outbid.price)) }
                if let extendedTo { expected.append(.extended(closesAt: extendedTo)) }
                #expect(h.kinds == expected, "\(bidder) \(amount) vs \(before)")
                if amount > best?.amount ?? 0 { best = (amount, bidder) }
            }
            guard let book = h.english() else {
                Issue.record("no english book")
                return
            }
            // The engine agrees with the reference...
            #expect(book.price == model.price)
            #expect(book.leader == model.leader)
            #expect(book.maximum == model.maximum)
            #expect(h.listing("L")?.closesAt == model.closesAt)
            // ...and the invariants hold on the engine itself.
            #expect(book.price >= lastPrice, "the price never decreases")
            if book.leader != nil {
                #expect(book.price <= book.maximum, "the price never exceeds the leader's maximum")
                #expect(book.leader == best?.bidder, "the leader holds the highest maximum, earliest on a tie")
                #expect(book.maximum == best?.amount)
            }
            lastPrice = book.price
        }
        if !closed {
            h.advance(to: 1_000_000)
            #expect(h.kinds == [model.closedEvent])
        }
        if case .closed(let winner?, _, _) = h.log.last?.kind {
            #expect(winner == best?.bidder, "the winner holds the highest maximum")
        }
    }

    @Test func englishEngineAgreesWithTheReferenceModelAfterEveryBid() async {
        await propertyCheck(count: runs, input: streamInput) { values in
            Self.check(values)
        }
    }

    @Test func referenceModelCoversTheInterestingCases() {
        // The generator must reach ties, reserve jumps, extensions and both kinds of outbid; check it on a fixed
        // family of streams so the property above is not vacuous.
        var ties = 0
        var outbidAtOnce = 0
        var takeovers = 0
        var extensions = 0
        for seed in 0..<300 {
            var model = Self.reference(from: seed * 7919 + 50)
            var x = seed &* 2_654_435_761
            var time: Millis = 0
            for _ in 0..<60 {
                x = (x &* 1_103_515_245 &+ 12345) & 0x7fff_ffff
                let bidder = Self.bidders[pick(x, 4)]
                let amount = Self.amount(x, model, bidder: bidder)
                time += Millis(pick(x, 2500, after: 64 * 21))
                if time >= model.closesAt { break }
                let leaderBefore = model.leader
                let maximumBefore = model.maximum
                if case .accepted(let outbid, let extended) = model.bid(bidder, amount, at: time) {
                    if extended != nil { extensions += 1 }
                    if outbid?.bidder == bidder {
                        outbidAtOnce += 1
                        if amount == maximumBefore { ties += 1 }
                    } else if leaderBefore != nil && leaderBefore != bidder {
                        takeovers += 1
                    }
                }
            }
        }
        #expect(ties > 10)
        #expect(outbidAtOnce > 100)
        #expect(takeovers > 100)
        #expect(extensions > 10)
    }
}

// MARK: - Market

@Suite struct MarketPropertyTests {
    private static let traders = ["ann", "bob", "cyd"]

    private struct Placed {
        var side: Side
        var price: Money
        var quantity: Int64
        var traded: Int64 = 0
        var cancelled: Int64 = 0
    }

    private static func restingRemaining(_ book: MarketBook) -> [OrderKey: Int64] {
        var all: [OrderKey: Int64] = [:]
        for (_, _, order) in book.allResting { all[OrderKey(trader: order.trader, id: order.id)] = order.remaining }
        return all
    }

    private static func check(_ values: [Int]) {
        let h = Harness()
        let closesAt: Millis? = pick(values[0], 2) == 0 ? nil : 40_000
        #expect(h.open("M", Terms.market(closesAt: closesAt), at: 0).ok)
        var placed: [OrderKey: Placed] = [:]
        var ids: [String] = []
        var shownTop = MarketBook.Top()  // what the book events have said so far
        for (i, x) in values.dropFirst().enumerated() {
            guard let book = h.market() else { return }
            let restingBefore = Self.restingRemaining(book)
            let trader = traders[pick(x, 3, after: 10)]
            switch pick(x, 10) {
            case 0...6:
                let id = "q\(i)"
                let side: Side = pick(x, 2, after: 30) == 0 ? .buy : .sell
                let price = Money(95 + pick(x, 11, after: 60))
                let quantity = Int64(1 + pick(x, 10, after: 660))
                let tif: TimeInForce = pick(x, 4, after: 6600) == 0 ? .ioc : .gtc
                let expiresAt: Millis? =
                    pick(x, 3, after: 26400) == 0 ? h.engine.now + 1 + Millis(pick(x, 5000, after: 79200)) : nil
                let r = h.order(trader, side, quantity, price: price, tif: tif, expiresAt: expiresAt, id: id)
                if h.status("M") != .open {
                    #expect(r.error == .listingClosed)
                    continue
                }
                #expect(r.ok, "\(r)")
                ids.append(id)
                let key = OrderKey(trader: trader, id: id)
                placed[key] = Placed(side: side, price: price, quantity: quantity)
                let resting = Self.restingRemaining(book)[key] ?? 0
                #expect(r.remaining == resting)
                #expect(tif == .gtc || resting == 0, "an ioc remainder never rests")
                var tradePrices: [Money] = []
                for case .trade(let buyer, let seller, let p, _, let buyOrder, let sellOrder) in h.kinds {
                    #expect(buyer != seller, "self-trade prevention")
                    let restingOrder =
                        side == .buy
                        ? OrderKey(trader: seller, id: sellOrder)
                        : OrderKey(trader: buyer, id: buyOrder)
                    #expect(p == placed[restingOrder]?.price, "a trade is at the resting order's price")
                    tradePrices.append(p)
                }
                let sortedPrices = side == .buy ? tradePrices.sorted() : tradePrices.sorted(by: >)
                #expect(tradePrices == sortedPrices, "best prices match first")
                #expect(tradePrices.allSatisfy { side == .buy ? $0 <= price : $0 >= price })
            case 7, 8:
                let order = ids.isEmpty ? "none" : ids[pick(x, ids.count, after: 30)]
                let r = h.cancel(trader, order: order)
                if h.status("M") != .open {
                    #expect(r.error == .listingClosed)
                    continue
                }
                if let remaining = restingBefore[OrderKey(trader: trader, id: order)] {
                    #expect(r.ok)
                    #expect(r.remaining == remaining)
                } else if restingBefore.keys.contains(where: { $0.id == order }) {
                    #expect(r.error == .notOwner)
                } else {
                    #expect(r.error == .unknownOrder)
                }
            default:
                h.advance(to: h.engine.now + Millis(pick(x, 3000, after: 10)))
            }
            // Account for everything the step caused.
            for event in h.fired + h.events {
                switch event.kind {
                case .trade(let buyer, let seller, _, let quantity, let buyOrder, let sellOrder):
                    placed[OrderKey(trader: buyer, id: buyOrder)]?.traded += quantity
                    placed[OrderKey(trader: seller, id: sellOrder)]?.traded += quantity
                case .orderCancelled(let order, let trader, _, let remaining):
                    placed[OrderKey(trader: trader, id: order)]?.cancelled += remaining
                case .book(let bestBid, let bestAsk, let bidQuantity, let askQuantity):
                    shownTop = MarketBook.Top(
                        bestBid: bestBid, bestAsk: bestAsk, bidQuantity: bidQuantity, askQuantity: askQuantity)
                default:
                    break
                }
            }
            let top = book.top
            if let bid = top.bestBid, let ask = top.bestAsk {
                #expect(bid < ask, "the book is never crossed after a command")
            }
            #expect(shownTop == top, "every change to the best bid or ask was published in a book event")
            // Conservation, per order: placed = traded + cancelled + resting.
            let resting = Self.restingRemaining(book)
            for (key, order) in placed {
                #expect(
                    order.quantity == order.traded + order.cancelled + (resting[key] ?? 0),
                    "order \(key.trader)/\(key.id)")
            }
            #expect(Set(resting.keys).isSubset(of: Set(placed.keys)))
            for level in Array(book.bids) + Array(book.asks) {
                #expect(level.total == level.orders.reduce(0) { $0 + $1.remaining })
                #expect(!level.orders.isEmpty)
            }
            #expect(book.bids.map(\.price) == book.bids.map(\.price).sorted(), "bids: best last")
            #expect(book.asks.map(\.price) == book.asks.map(\.price).sorted(by: >), "asks: best last")
        }
    }

    @Test func marketBookIsNeverCrossedAndQuantitiesAreConserved() async {
        await propertyCheck(count: runs, input: streamInput) { values in
            Self.check(values)
        }
    }
}

// MARK: - Dutch

@Suite struct DutchPropertyTests {
    private static func check(_ values: [Int]) {
        let config = values[0]
        let start = Money(1000 + pick(config, 500))
        let floor = max(1, start - Money(pick(config, 1200, after: 500)))
        let step = Money(1 + pick(config, 150, after: 7))
        let every = Millis(100 + pick(config, 900, after: 13))
        let quantity = Int64(1 + pick(config, 20, after: 17))
        let h = Harness()
        #expect(
            h.open(
                Terms.dutch(
                    start: start, floor: floor, step: step, stepEveryMs: every, quantity: quantity, closesAt: 50_000),
                at: 0
            ).ok)
        func expectedPrice(_ t: Millis) -> Money { max(floor, start - step * (t / every)) }
        var sold: Int64 = 0
        var lastPrice = start
        for x in values.dropFirst() {
            if pick(x, 3) == 0 {
                h.advance(to: h.engine.now + Millis(pick(x, 2000, after: 3)))
            } else {
                let q = Int64(1 + pick(x, 4, after: 3))
                let r = h.accept("b\(pick(x, 5, after: 12))", q, at: h.engine.now + Millis(pick(x, 300, after: 60)))
                if h.status() == .open || h.kinds.contains(.dutchClosed(sold: quantity)) {
                    if q > quantity - sold {
                        #expect(r.error == .invalidQuantity)
                    } else {
                        #expect(r.ok)
                        #expect(r.price == expectedPrice(h.engine.now), "fills at the current clock price")
                        #expect(r.filled == q)
                        sold += q
                        #expect(r.remaining == quantity - sold)
                    }
                } else {
                    #expect(r.error == .listingClosed)
                }
            }
            for event in h.fired + h.events {
                switch event.kind {
                case .price(let p):
                    #expect(p == expectedPrice(event.at), "price at \(event.at)")
                    #expect(p < lastPrice && p >= floor, "the clock only descends, never below the floor")
                    #expect(event.at % every == 0)
                    lastPrice = p
                case .dutchClosed(let s):
                    #expect(s == sold)
                default:
                    break
                }
            }
            if let book = h.dutch() {
                #expect(sold + book.remaining == quantity, "sold + remaining = quantity")
            }
        }
        h.advance(to: 60_000)
        let closes = h.log.filter { if case .dutchClosed = $0.kind { true } else { false } }
        #expect(closes.count == 1, "a Dutch listing closes exactly once")
        #expect(closes.first?.kind == .dutchClosed(sold: sold))
        if sold < quantity { #expect(closes.first?.at == 50_000) }
    }

    @Test func dutchSoldPlusRemainingIsQuantityAndPriceFollowsTheClock() async {
        await propertyCheck(count: runs, input: streamInput) { values in
            Self.check(values)
        }
    }
}

// MARK: - Mixed streams: seq, determinism, duplicates

/// One step of a mixed stream.
private enum Step {
    case advance(Millis)
    case command(Command, at: Millis)
}

/// A stream over four listings of every format, with retries of earlier commands mixed in.
private func mixedStream(_ values: [Int]) -> [Step] {
    var steps: [Step] = []
    var commands: [Command] = []
    var time: Millis = 0
    let soft = SoftClose(windowMs: 5000, extendMs: 3000, maxClosesAt: 70_000)
    let opens: [(String, ListingTerms)] = [
        ("E", Terms.english(start: 100, reserve: 400, buyNow: 900, closesAt: 60_000, softClose: soft)),
        ("S", Terms.sealed(pick(values[0], 2) == 0 ? .first : .second, start: 50, reserve: 200, closesAt: 45_000)),
        ("D", Terms.dutch(start: 1000, floor: 300, step: 50, stepEveryMs: 700, quantity: 6, closesAt: 50_000)),
        ("M", Terms.market(closesAt: 55_000)),
    ]
    for (listing, terms) in opens {
        let command = Command(id: "open-\(listing)", listing: listing, body: .open(seller: "sam", terms: terms))
        commands.append(command)
        steps.append(.command(command, at: 0))
    }
    let people = ["ann", "bob", "cyd", "sam"]
    for (i, x) in values.dropFirst().enumerated() {
        time += Millis(pick(x, 1500, after: 4000))
        let who = people[pick(x, 4, after: 10)]
        let id = "r\(i)"
        let body: (String, CommandBody)?
        switch pick(x, 10) {
        case 0, 1: body = ("E", .bid(bidder: who, amount: Money(50 + pick(x, 1000, after: 40))))
        case 2: body = ("S", .bid(bidder: who, amount: Money(10 + pick(x, 500, after: 40))))
        case 3: body = ("D", .accept(bidder: who, quantity: Int64(1 + pick(x, 3, after: 40))))
        case 4, 5:
            body = (
                "M",
                .order(
                    trader: who, side: pick(x, 2, after: 40) == 0 ? .buy : .sell,
                    price: Money(98 + pick(x, 5, after: 80)), quantity: Int64(1 + pick(x, 5, after: 400)),
                    tif: pick(x, 3, after: 2000) == 0 ? .ioc : .gtc,
                    expiresAt: pick(x, 2, after: 6000) == 0 ? time + 2000 : nil)
            )
        case 6:
            let order = commands.last(where: { $0.listing == "M" })?.id ?? "none"
            body = ("M", .cancel(trader: who, order: order))
        case 7: body = (["E", "S", "D", "M"][pick(x, 4, after: 40)], .cancelListing(seller: who))
        case 8: body = ("E", .buyNow(buyer: who))
        default: body = nil
        }
        if let (listing, body) = body {
            let command = Command(id: id, listing: listing, body: body)
            commands.append(command)
            steps.append(.command(command, at: time))
        } else if pick(x, 2, after: 10) == 0, !commands.isEmpty {
            // A retry of an earlier command, with the same content, later.
            steps.append(.command(commands[pick(x, commands.count, after: 20)], at: time))
        } else {
            steps.append(.advance(time))
        }
    }
    steps.append(.advance(time + 100_000))
    return steps
}

private struct Outcome: Equatable {
    var results: [CommandResult] = []
    var events: [Event] = []
    var hash = ""
}

private func run(_ steps: [Step]) -> Outcome {
    let engine = Engine()
    var outcome = Outcome()
    var seen: [String: CommandResult] = [:]
    for step in steps {
        var events: [Event] = []
        switch step {
        case .advance(let time):
            #expect(engine.advance(to: time, events: &events))
        case .command(let command, let time):
            #expect(engine.advance(to: time, events: &events))
            outcome.events += events
            events = []
            let key = "\(command.principal)/\(command.id)"
            let before = engine.stateHash()
            let result = engine.apply(command, events: &events)
            if let original = seen[key] {
                var expected = original
                expected.duplicate = true
                #expect(result == expected, "a retry returns the original result, marked duplicate")
                #expect(events.isEmpty, "a retry changes nothing")
                #expect(engine.stateHash() == before)
            } else {
                #expect(!result.duplicate)
                seen[key] = result
            }
            outcome.results.append(result)
        }
        outcome.events += events
    }
    outcome.hash = engine.stateHash()
    return outcome
}

@Suite struct MixedStreamPropertyTests {
    @Test func seqCountsEveryListingsPublicEventsWithoutGaps() async {
        await propertyCheck(count: runs, input: streamInput) { values in
            let outcome = run(mixedStream(values))
            var last: [String: UInt64] = [:]
            for event in outcome.events {
                if event.kind.isPrivate {
                    #expect(event.seq == 0)
                } else {
                    #expect(event.seq == (last[event.listing] ?? 0) + 1, "\(event)")
                    last[event.listing] = event.seq
                }
            }
            #expect(last.keys.sorted() == ["D", "E", "M", "S"])
            #expect(outcome.events.map(\.at) == outcome.events.map(\.at).sorted(), "events come in time order")
        }
    }

    @Test func sameStreamGivesTheSameResultsEventsAndStateHash() async {
        await propertyCheck(count: runs, input: streamInput) { values in
            let steps = mixedStream(values)
            let first = run(steps)
            let second = run(steps)
            #expect(first == second)
            #expect(first.hash.count == 64)
        }
    }

    @Test func differentStreamsUsuallyGiveDifferentHashes() async {
        var hashes = Set<String>()
        for seed in 1...50 {
            let values = (0..<6).map { (seed * 2_654_435_761 &+ $0 &* 40_503) & 0x7fff_ffff }
            hashes.insert(run(mixedStream(values)).hash)
        }
        #expect(hashes.count > 25, "the hash reflects the state, not a constant")
    }
}
