import Testing

@testable import GavelCore

/// A random stream of market commands over a few listings, few traders and few ids, so that names collide (an id
/// that is also a trader's name, one id resting for two traders, an id reused once the idempotency window forgets
/// it) and every path of the book is taken: fills of the oldest, partial fills, self-trade cancels, cancels of any
/// order of a level, expiries (also of orders that already left), the caps, and books emptied by a cancelled or
/// closed listing.
private struct MarketStream {
    enum Step {
        case advance(Millis)
        case command(Command)
    }

    private var rng: SplitMix64
    /// How many prices orders use from 100 on: few make deep levels, more make many.
    private let prices: Int
    private var now: Millis = 0
    private var open: [String] = []
    private var nextListing = 0
    private var step = 0
    private let traders = ["t0", "t1", "t2", "t3"]
    private let ids = ["a", "b", "c", "d", "e", "t0", "t1", "s"]

    /// The caps the stream runs under: small, so that they are reached.
    static let configuration = EngineConfiguration(
        idempotencyWindowMs: 40, maxRequestIDsPerPrincipal: 4, maxRestingOrdersPerListing: 20,
        maxRestingOrdersPerTrader: 6, maxRestingOrdersPerTraderTotal: 12)

    init(seed: UInt64) {
        rng = SplitMix64(seed: seed)
        prices = 2 + Int(seed % 30)
    }

    private mutating func below(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }

    private mutating func openListing() -> Step {
        let id = "L\(nextListing)"
        nextListing += 1
        open.append(id)
        let closesAt: Millis? = below(3) == 0 ? now + Millis(200 + below(400)) : nil
        return .command(
            Command(id: "open\(id)", listing: id, body: .open(seller: "s", terms: .market(.init(closesAt: closesAt)))))
    }

    mutating func next() -> Step {
        step += 1
        if nextListing < 3 { return openListing() }
        let roll = below(100)
        if roll < 8 {
            now += Millis(below(25))
            return .advance(now)
        }
        if roll < 10 {
            if below(2) == 0, !open.isEmpty {
                let listing = open.remove(at: below(open.count))
                return .command(Command(id: "x\(step)", listing: listing, body: .cancelListing(seller: "s")))
            }
            if open.count < 5 { return openListing() }
        }
        let listing = open.isEmpty ? "L0" : open[below(open.count)]
        let trader = traders[below(traders.count)]
        let id = ids[below(ids.count)]
        if roll < 40 {
            return .command(Command(id: "c\(step)", listing: listing, body: .cancel(trader: trader, order: id)))
        }
        let side: Side = below(2) == 0 ? .buy : .sell
        let price = Money(100 + below(prices))
        let quantity = Int64(1 + below(4))
        let tif: TimeInForce = below(4) == 0 ? .ioc : .gtc
        let expiresAt: Millis? = below(3) == 0 ? now + Millis(below(60)) : nil
        return .command(
            Command(
                id: id, listing: listing,
                body: .order(
                    trader: trader, side: side, price: price, quantity: quantity, tif: tif, expiresAt: expiresAt)))
    }
}

@Suite struct MarketStreamStateHashTests {
    /// The state hashes of the streams below every 500 steps, recorded with the engine whose market book kept its
    /// orders in arrays per level and hash maps by key (before the 40-byte slots): the book's storage is not part of
    /// the state, so the same commands must reach the same states.
    static let recorded: [UInt64: [String]] = [
        1: [
            "9aed00a5e87dd9f975e005785e69e6d0d26e8991dc1603bce4f8907442e9cf82",
            "252aa7f4af3214e1f298a0b90166987b9bd9f1643d8e485604979b67778a502a",
            "3b287613f46d61636de0646fc41fd21d09323164b2ad2dcdb1acb1d8b98d915d",
            "0901c0ae297db6455d31938bbb07ba55bfeae252a730bf633661fbd44a4f546a",
            "06809e6f85fc1a2f87ac28f1c3df5822f9ff27a5839563acfb17901b9466ef4d",
            "ed3639b9b506347c6cd5f48c7dd9753a0f6d485f1fc257fd12a30e3272947934",
        ],
        2: [
            "f6485781c9f19dc2795ffb3b6d191f14f91792f624c38223d80a84190f0cec51",
            "7b53245839af6e87bdf88192ccbcc9c91059688f164b1ae5d706cf99328e13a1",
            "f7ae38ae29b06af211679fc53cededc189af571b477112102baa9aa1a739aa47",
            "c0a9fa7d22dd221572bfa38cc8783f4d8c96a0ca4e469254aab903e65784fb38",
            "08c447c74042ac24af356354dfbcc30f691d2b31cfb4097d4f66c15998a6bbde",
            "43d448b4b9c516602a48ed4bec8c56c8d554c2a31eff18645dd5377f85bb8d75",
        ],
        3: [
            "20c60f709b5b98afab4eb3f53163e2ae3195c17c2e6f69328e6e95a2733ab6de",
            "3f3260352fa27ba0478a5320f470efbc5b45e0014ce4e0f552d31120e091b2de",
            "1fae357eeccb9e5a5784a59cc34c8bd50ebd6d3f1b1325f843bbe187e975da0f",
            "d2f4298ae8d9d0ae34d1d3934d16f8c40c4f840db041e003b7b07b0da7b6b1d6",
            "d799cbc16f2af64ded90f8905a68ace6a764bf3615c3d02b31a38087099d145c",
            "8fa078e1c79ddb23b48172d5fb611c6b015967f55f5083f3b3c662507d0340a5",
        ],
    ]

    static let steps = 3_000

    /// Runs the stream of `seed`, restoring the engine from its encoded state every 250 steps and applying every later
    /// command to both the engine and its restored copy: the copy must answer and emit exactly as the engine does,
    /// and reach the recorded state hashes.
    @Test(arguments: [1, 2, 3] as [UInt64])
    func aMarketStreamReachesTheStatesOfTheBookBeforeSlotsAndARestoredBookContinuesAlike(seed: UInt64) throws {
        let configuration = MarketStream.configuration
        var stream = MarketStream(seed: seed)
        let engine = Engine(configuration: configuration)
        var copy: Engine?
        var hashes: [String] = []
        for step in 1...Self.steps {
            var events: [Event] = []
            var copyEvents: [Event] = []
            switch stream.next() {
            case .advance(let time):
                engine.advance(to: time, events: &events)
                copy?.advance(to: time, events: &copyEvents)
            case .command(let command):
                let result = engine.apply(command, events: &events)
                if let copy {
                    #expect(copy.apply(command, events: &copyEvents) == result, "step \(step): \(command)")
                }
            }
            if copy != nil { #expect(copyEvents == events, "step \(step)") }
            if step % 250 == 0 {
                copy = try Engine.restore(from: engine.encodeState(), defaults: configuration)
                #expect(copy?.stateHash() == engine.stateHash(), "step \(step)")
            }
            if step % 500 == 0 { hashes.append(engine.stateHash()) }
        }
        #expect(hashes == Self.recorded[seed])
    }
}
