import Benchmark
import GavelCore
import GavelWire

/// How many iterations each benchmark may run, and how many commands one iteration applies. Commands are prepared
/// in advance, one per applied command (request ids must be unique, or the engine would answer from its
/// idempotency table), so these bounds size the fixtures.
enum Plan {
    /// Commands per measured iteration: every benchmark here uses `scalingFactor: .kilo`.
    static let commandsPerIteration = 1_000
    static let warmupIterations = 1
    static let maxIterations = 500
    /// Commands a fixture prepares: enough for the warm-up and every measured iteration.
    static let commandCount = (warmupIterations + maxIterations) * commandsPerIteration

    /// Open english listings in the bid benchmarks.
    static let listingCount = 10_000
    /// Bidders rotate per round, so consecutive bids on one listing always come from different bidders.
    static let bidders = (0..<7).map { "bidder-\($0)" }
    /// Far in the future: nothing closes while a benchmark runs.
    static let closesAt: Millis = 1_000_000_000_000
}

/// An engine with ``Plan/listingCount`` open english listings (no reserve, no soft close, default ladder).
func engineWithEnglishListings() -> Engine {
    let engine = Engine()
    var events: [Event] = []
    for index in 0..<Plan.listingCount {
        let open = Command(
            id: "open-\(index)", listing: listingID(index),
            body: .open(seller: "seller", terms: .english(.init(start: 100, closesAt: Plan.closesAt))))
        let result = engine.apply(open, events: &events)
        precondition(result.ok, "opening \(listingID(index)) failed: \(result.message)")
        events.removeAll(keepingCapacity: true)
    }
    return engine
}

func listingID(_ index: Int) -> String { "L\(index)" }

/// The `k`-th bid of the english stream: listings round-robin, one round of bids per pass over all listings,
/// each round by the next bidder with a maximum 20,000 above the last round's, so every bid is accepted and
/// outbids the previous leader (the largest increment of the default ladder is 10,000).
func englishBid(_ k: Int) -> (id: String, listing: String, bidder: String, amount: Money) {
    let round = k / Plan.listingCount
    return (
        "b\(k)", listingID(k % Plan.listingCount), Plan.bidders[round % Plan.bidders.count],
        Money(1_000 + round * 20_000)
    )
}

/// ``Plan/commandCount`` bid commands for ``engineWithEnglishListings()``.
func englishBidCommands() -> [Command] {
    (0..<Plan.commandCount).map { k in
        let bid = englishBid(k)
        return Command(id: bid.id, listing: bid.listing, body: .bid(bidder: bid.bidder, amount: bid.amount))
    }
}

/// The same stream as ``englishBidCommands()``, as protocol lines.
func englishBidLines() -> [String] {
    (0..<Plan.commandCount).map { k in
        let bid = englishBid(k)
        return
            #"{"type":"bid","id":"\#(bid.id)","listing":"\#(bid.listing)","bidder":"\#(bid.bidder)","amount":\#(bid.amount)}"#
    }
}

/// The market listing of the matching benchmark.
let marketListing = "M1"

/// A market listing with 50 resting buy levels (500–549) and 50 resting sell levels (2000–2049), 100 units each,
/// so that the benchmark's orders meet a book with depth but never trade with it.
func engineWithMarketBook() -> Engine {
    let engine = Engine()
    var events: [Event] = []
    func apply(_ command: Command) {
        let result = engine.apply(command, events: &events)
        precondition(result.ok, "setting up the market book failed on \(command.id): \(result.message)")
        events.removeAll(keepingCapacity: true)
    }
    apply(Command(id: "open", listing: marketListing, body: .open(seller: "exchange", terms: .market(.init()))))
    for level in 0..<50 {
        apply(
            Command(
                id: "depth-buy-\(level)", listing: marketListing,
                body: .order(
                    trader: "depth", side: .buy, price: Money(500 + level), quantity: 100, tif: .gtc, expiresAt: nil)))
        apply(
            Command(
                id: "depth-sell-\(level)", listing: marketListing,
                body: .order(
                    trader: "depth", side: .sell, price: Money(2_000 + level), quantity: 100, tif: .gtc, expiresAt: nil)
            ))
    }
    return engine
}

/// ``Plan/commandCount`` market orders in maker/taker pairs: a maker rests a sell of 10 at 1000 (the new best
/// ask), then a taker sends an immediate-or-cancel buy of 15 at 1000, which trades 10 at the maker's price and has
/// its remaining 5 cancelled. Each pair changes the best ask twice and leaves the book as it found it.
func marketOrderCommands() -> [Command] {
    let makers = (0..<4).map { "maker-\($0)" }
    let takers = (0..<4).map { "taker-\($0)" }
    return (0..<Plan.commandCount).map { k in
        let pair = k / 2
        if k % 2 == 0 {
            return Command(
                id: "s\(pair)", listing: marketListing,
                body: .order(
                    trader: makers[pair % makers.count], side: .sell, price: 1_000, quantity: 10, tif: .gtc,
                    expiresAt: nil))
        } else {
            return Command(
                id: "t\(pair)", listing: marketListing,
                body: .order(
                    trader: takers[pair % takers.count], side: .buy, price: 1_000, quantity: 15, tif: .ioc,
                    expiresAt: nil))
        }
    }
}

/// A position in a fixture's prepared commands, shared by a benchmark's setup and its measured closure.
///
/// - Note: `@unchecked Sendable` because package-benchmark runs setup and every iteration of one benchmark on one
///   thread at a time; nothing here is touched concurrently.
final class Fixture<Input>: @unchecked Sendable {
    var engine = Engine()
    /// For the benchmarks that drive the engine through ``Simulator``.
    var simulator: Simulator?
    var inputs: [Input] = []
    var next = 0
    /// The event buffer the engine appends to, reused across commands as a writer would.
    var events: [Event] = []
    var rejected = 0

    /// Takes the inputs and the event buffer out of the fixture so that the measured loop owns them uniquely
    /// (no copy-on-write), and puts them back afterwards.
    func withOwned<R>(_ body: (Engine, inout [Input], inout Int, inout [Event], inout Int) -> R) -> R {
        var inputs = self.inputs
        var events = self.events
        self.inputs = []
        self.events = []
        defer {
            self.inputs = inputs
            self.events = events
        }
        return body(engine, &inputs, &next, &events, &rejected)
    }
}

extension Fixture where Input == Command {
    /// Applies the next `count` prepared commands, as a writer would, and reports any the engine rejected: every
    /// prepared command must take the accepted path, or the benchmark measured the wrong one.
    func applyCommands(_ count: Int, to benchmark: Benchmark, what: String) {
        withOwned { engine, commands, next, events, rejected in
            for _ in 0..<count {
                events.removeAll(keepingCapacity: true)
                let result = engine.apply(commands[next], events: &events)
                next += 1
                if !result.ok { rejected += 1 }
                blackHole(result)
            }
        }
        if rejected > 0 {
            benchmark.error("\(rejected) prepared \(what) were rejected; the benchmark measured the wrong path")
        }
    }
}
