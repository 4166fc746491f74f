import Testing

@testable import GavelCore

/// Drives a fresh ``Engine`` the way `gavel simulate` does: move the clock (firing timers), then apply a command.
///
/// `events` holds what the last command caused; `fired` what moving the clock before it fired; `log` everything.
/// Every convenience command gets a fresh request id unless one is given, so that tests that are not about
/// idempotency never collide with it.
final class Harness {
    let engine: Engine
    /// Events caused by the last `apply` (or fired by the last `advance`).
    private(set) var events: [Event] = []
    /// Timer events fired by moving the clock before the last `apply`.
    private(set) var fired: [Event] = []
    /// Every event so far, in order.
    private(set) var log: [Event] = []
    private var counter = 0

    init(window: Millis = 86_400_000) {
        engine = Engine(configuration: EngineConfiguration(idempotencyWindowMs: window))
    }

    /// Drives `engine` (a restored one, for example).
    init(engine: Engine) {
        self.engine = engine
    }

    /// The kinds of the events the last call caused, its `settlement` notices left out (``settlementEvents`` has
    /// them): the rules of each format are tested on the listing's own events.
    var kinds: [EventKind] { events.kinds }

    /// The settlement transitions the last call caused.
    var settlementEvents: [SettlementChange] {
        (fired + events).compactMap { if case .settlement(let change) = $0.kind { change } else { nil } }
    }

    /// Moves the clock, recording the timer events in `events` (and clearing `fired`).
    @discardableResult
    func advance(to time: Millis) -> Bool {
        events = []
        fired = []
        let ok = engine.advance(to: time, events: &events)
        log += events
        return ok
    }

    /// Applies `command`, first moving the clock to `time` when given.
    @discardableResult
    func apply(_ command: Command, at time: Millis? = nil, sourceLocation: SourceLocation = #_sourceLocation)
        -> CommandResult
    {
        fired = []
        if let time {
            let moved = engine.advance(to: time, events: &fired)
            #expect(moved, "the clock must not move backwards in a test", sourceLocation: sourceLocation)
            log += fired
        }
        events = []
        let result = engine.apply(command, events: &events)
        log += events
        return result
    }

    func nextID(_ prefix: String) -> String {
        counter += 1
        return "\(prefix)\(counter)"
    }

    // MARK: - Commands

    /// Opens listing `L` for `sam`.
    @discardableResult
    func open(_ terms: ListingTerms, at time: Millis? = nil, id: String? = nil) -> CommandResult {
        open("L", seller: "sam", terms, at: time, id: id)
    }

    @discardableResult
    func open(
        _ listing: String = "L", seller: String = "sam", _ terms: ListingTerms, at time: Millis? = nil,
        id: String? = nil
    ) -> CommandResult {
        apply(Command(id: id ?? nextID("o"), listing: listing, body: .open(seller: seller, terms: terms)), at: time)
    }

    @discardableResult
    func bid(_ bidder: String, _ amount: Money, on listing: String = "L", at time: Millis? = nil, id: String? = nil)
        -> CommandResult
    {
        apply(Command(id: id ?? nextID("b"), listing: listing, body: .bid(bidder: bidder, amount: amount)), at: time)
    }

    @discardableResult
    func buyNow(_ buyer: String, on listing: String = "L", at time: Millis? = nil, id: String? = nil) -> CommandResult {
        apply(Command(id: id ?? nextID("n"), listing: listing, body: .buyNow(buyer: buyer)), at: time)
    }

    @discardableResult
    func accept(
        _ bidder: String, _ quantity: Int64 = 1, on listing: String = "L", at time: Millis? = nil, id: String? = nil
    ) -> CommandResult {
        apply(
            Command(id: id ?? nextID("a"), listing: listing, body: .accept(bidder: bidder, quantity: quantity)),
            at: time)
    }

    @discardableResult
    func order(
        _ trader: String, _ side: Side, _ quantity: Int64, price: Money, tif: TimeInForce = .gtc,
        expiresAt: Millis? = nil, on listing: String = "M", at time: Millis? = nil, id: String? = nil
    ) -> CommandResult {
        apply(
            Command(
                id: id ?? nextID("q"), listing: listing,
                body: .order(
                    trader: trader, side: side, price: price, quantity: quantity, tif: tif, expiresAt: expiresAt)),
            at: time)
    }

    @discardableResult
    func cancel(_ trader: String, order: String, on listing: String = "M", at time: Millis? = nil, id: String? = nil)
        -> CommandResult
    {
        apply(Command(id: id ?? nextID("c"), listing: listing, body: .cancel(trader: trader, order: order)), at: time)
    }

    @discardableResult
    func cancelListing(_ seller: String, on listing: String = "L", at time: Millis? = nil, id: String? = nil)
        -> CommandResult
    {
        apply(Command(id: id ?? nextID("x"), listing: listing, body: .cancelListing(seller: seller)), at: time)
    }

    // MARK: - State

    func listing(_ id: String) -> Listing? { engine.listings[id] }

    func english(_ id: String = "L") -> EnglishBook? {
        guard case .english(let book)? = engine.listings[id]?.book else { return nil }
        return book
    }

    func dutch(_ id: String = "L") -> DutchBook? {
        guard case .dutch(let book)? = engine.listings[id]?.book else { return nil }
        return book
    }

    func market(_ id: String = "M") -> MarketBook? {
        guard case .market(let book)? = engine.listings[id]?.book else { return nil }
        return book
    }

    func status(_ id: String = "L") -> ListingStatus? { engine.listings[id]?.status }
}

/// Shorthand terms with the defaults most tests use.
enum Terms {
    static func english(
        start: Money = 100, reserve: Money? = nil, buyNow: Money? = nil, closesAt: Millis = 60_000,
        opensAt: Millis? = nil, increments: [IncrementStep]? = nil, softClose: SoftClose? = nil
    ) -> ListingTerms {
        .english(
            .init(
                start: start, reserve: reserve, buyNow: buyNow, closesAt: closesAt, opensAt: opensAt,
                increments: increments, softClose: softClose))
    }

    static func sealed(
        _ pricing: SealedPricing = .first, start: Money = 100, reserve: Money? = nil, closesAt: Millis = 60_000,
        opensAt: Millis? = nil
    ) -> ListingTerms {
        .sealed(.init(pricing: pricing, start: start, reserve: reserve, closesAt: closesAt, opensAt: opensAt))
    }

    static func dutch(
        start: Money = 1000, floor: Money = 400, step: Money = 100, stepEveryMs: Millis = 1000, quantity: Int64 = 5,
        closesAt: Millis = 100_000, opensAt: Millis? = nil
    ) -> ListingTerms {
        .dutch(
            .init(
                start: start, floor: floor, step: step, stepEveryMs: stepEveryMs, quantity: quantity,
                closesAt: closesAt, opensAt: opensAt))
    }

    static func market(closesAt: Millis? = nil, opensAt: Millis? = nil) -> ListingTerms {
        .market(.init(closesAt: closesAt, opensAt: opensAt))
    }
}

extension [Event] {
    var kinds: [EventKind] {
        compactMap {
            if case .settlement = $0.kind { return nil }
            return $0.kind
        }
    }

    /// The public events (those that carry a `seq`).
    var publicEvents: [Event] { filter { !$0.kind.isPrivate } }
}

extension EventKind {
    /// The `(bidder, price)` of an `outbid` notice.
    var outbidNotice: (bidder: String, price: Money)? {
        if case .outbid(let bidder, let price) = self { return (bidder, price) }
        return nil
    }

    var bidPlacedPrice: Money? {
        if case .bidPlaced(let price, _, _, _, _) = self { return price }
        return nil
    }

    var isBook: Bool {
        if case .book = self { return true }
        return false
    }
}
