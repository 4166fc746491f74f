import CGavelShims

/// Settings of the rules engine.
public struct EngineConfiguration: Sendable, Hashable {
    /// How long, in engine time, a request id is remembered for idempotency. Default: 24 hours.
    public var idempotencyWindowMs: Millis
    /// How many request ids to make room for up front. The table grows past it a little per insert, never all at
    /// once; room made up front spares that work. Not part of the state.
    public var expectedRequestIDs: Int
    /// How long, in engine time, a listing stays in memory after it closed, sold out or was cancelled; then it is
    /// evicted (its history stays in the journal). Default: 1 hour.
    public var closedListingRetentionMs: Millis
    /// The most request ids remembered per principal; past it the principal's oldest is forgotten first.
    /// Default: 100,000.
    public var maxRequestIDsPerPrincipal: Int
    /// The most orders resting on one market listing's book; past it a `gtc` order is refused. Default: 100,000.
    public var maxRestingOrdersPerListing: Int
    /// The most orders one trader has resting on one market listing's book; past it the trader's `gtc` order is
    /// refused. Default: 1,000.
    public var maxRestingOrdersPerTrader: Int
    /// The shortest `step_every_ms` a dutch `open` may give: each step is a journaled, fsynced tick and a `price`
    /// event to every subscriber, so a listing stepping every millisecond costs a thousand of each a second.
    /// Default: 1 ms (none); `gavel serve` and the journal tools: ``servedMinDutchStepMs``.
    public var minDutchStepMs: Millis
    /// How far after the engine time an `open`'s `closes_at` may be, every format: a listing holds memory and its
    /// timers (a dutch listing steps) until it closes. Default: `Int64.max` (none); `gavel serve` and the journal
    /// tools: ``servedMaxListingDurationMs``.
    public var maxListingDurationMs: Millis
    /// The most listings one seller has open at once (opened and not yet closed, sold out or cancelled); past it
    /// the seller's `open` is refused. Default: `Int.max` (none); `gavel serve`: ``servedMaxOpenListingsPerSeller``.
    public var maxOpenListingsPerSeller: Int
    /// The most orders one trader has resting over every market listing; past it the trader's `gtc` order is
    /// refused. Default: `Int.max` (none); `gavel serve`: ``servedMaxRestingOrdersPerTraderTotal``.
    public var maxRestingOrdersPerTraderTotal: Int
    /// The most listings of one seller the engine holds: open, or ended and still in memory (a settlement
    /// unfinished, a second-chance offer open, or the retention not over); past it the seller's `open` is refused.
    /// Default: `Int.max` (none); `gavel serve`: ``servedMaxListingsHeldPerSeller``.
    public var maxListingsHeldPerSeller: Int
    /// The most settlements not in a final state one user is the buyer or the seller of; past it the user's
    /// command that would make one at once (`buy_now`, a dutch `accept`, an `order` that would trade,
    /// `accept_offer`) is refused. Default: `Int.max` (none); `gavel serve`:
    /// ``servedMaxUnfinishedSettlementsPerUser``.
    public var maxUnfinishedSettlementsPerUser: Int

    /// `gavel serve`'s default shortest dutch step: 100 ms, ten journaled ticks a second at most per listing (a
    /// clock stepping faster than a bidder can react buys nothing; slower clocks are what auctions use).
    public static let servedMinDutchStepMs: Millis = 100
    /// `gavel serve`'s default longest listing duration: none (`Int64.max`), as before the setting existed: a
    /// listing's memory is bounded by the listing caps, and a far `closes_at` is a legitimate choice (a market without
    /// one is unbounded by design). An operator who wants a bound sets one.
    public static let servedMaxListingDurationMs: Millis = .max
    /// `gavel serve`'s default for open listings per seller: 10,000. Without one, a single seller opening at
    /// `--opens-per-minute` would grow memory and snapshots for as long as it kept going, and in days fill
    /// `--max-listing-queues` for every other seller.
    public static let servedMaxOpenListingsPerSeller = 10_000
    /// `gavel serve`'s default for resting orders per trader over all market listings: 10,000 (ten listings at the
    /// per-listing cap), so that a trader cannot multiply the per-listing cap by opening markets of its own.
    public static let servedMaxRestingOrdersPerTraderTotal = 10_000
    /// `gavel serve`'s default for listings one seller has held: 20,000 (2 % of the default `--max-listing-queues`).
    /// An ended listing stays while its settlements are unfinished or its second-chance offer is open, deadlines
    /// the seller picks up to a year; without this cap one seller selling to a bidder who never pays held a listing
    /// queue per sale with only one listing open at a time, and in days filled `--max-listing-queues`.
    public static let servedMaxListingsHeldPerSeller = 20_000
    /// `gavel serve`'s default for unfinished settlements per user: 10,000. Each lives until its payment deadline
    /// (up to a year) in memory and in every snapshot; without this cap two accounts trading one unit at a time
    /// made millions a day.
    public static let servedMaxUnfinishedSettlementsPerUser = 10_000

    /// The settings `gavel serve` starts a data directory with when none is given, which the journal tools replay
    /// with too.
    public static var served: EngineConfiguration {
        EngineConfiguration(
            minDutchStepMs: servedMinDutchStepMs, maxListingDurationMs: servedMaxListingDurationMs,
            maxOpenListingsPerSeller: servedMaxOpenListingsPerSeller,
            maxRestingOrdersPerTraderTotal: servedMaxRestingOrdersPerTraderTotal,
            maxListingsHeldPerSeller: servedMaxListingsHeldPerSeller,
            maxUnfinishedSettlementsPerUser: servedMaxUnfinishedSettlementsPerUser)
    }

    public init(
        idempotencyWindowMs: Millis = 86_400_000, expectedRequestIDs: Int = 0,
        closedListingRetentionMs: Millis = 3_600_000, maxRequestIDsPerPrincipal: Int = 100_000,
        maxRestingOrdersPerListing: Int = 100_000, maxRestingOrdersPerTrader: Int = 1_000,
        minDutchStepMs: Millis = 1, maxListingDurationMs: Millis = .max, maxOpenListingsPerSeller: Int = .max,
        maxRestingOrdersPerTraderTotal: Int = .max, maxListingsHeldPerSeller: Int = .max,
        maxUnfinishedSettlementsPerUser: Int = .max
    ) {
        self.maxListingsHeldPerSeller = maxListingsHeldPerSeller
        self.maxUnfinishedSettlementsPerUser = maxUnfinishedSettlementsPerUser
        self.maxOpenListingsPerSeller = maxOpenListingsPerSeller
        self.maxRestingOrdersPerTraderTotal = maxRestingOrdersPerTraderTotal
        self.minDutchStepMs = minDutchStepMs
        self.maxListingDurationMs = maxListingDurationMs
        self.idempotencyWindowMs = idempotencyWindowMs
        self.expectedRequestIDs = expectedRequestIDs
        self.closedListingRetentionMs = closedListingRetentionMs
        self.maxRequestIDsPerPrincipal = maxRequestIDsPerPrincipal
        self.maxRestingOrdersPerListing = maxRestingOrdersPerListing
        self.maxRestingOrdersPerTrader = maxRestingOrdersPerTrader
    }
}

/// The key of the idempotency table: a request id is unique per principal.
struct RequestKey: Hashable {
    var principal: String
    var id: String
}

/// A remembered result's place in the order of application: its slot, and the slot's generation when the result was
/// put there, which tells whether the slot still holds it (a forgotten result's slot is freed, its generation moves
/// on, and it may hold a later one). 8 bytes: the slot in 32 bits (the idempotency index tells no more positions
/// apart) and the generation in 32.
///
/// A stale reference is taken for a live one only if its slot was freed a multiple of 2^32 times while the reference
/// was in the order. A slot is freed once per result forgotten; a stale reference leaves the order when expiry or a
/// compaction pass reaches it, and a pass starts once the stale references outnumber half the live ones by the
/// slack and moves four references per result. So a stale reference sees fewer frees than a few times the results
/// remembered at once plus the slack: for 2^32 of them the engine would hold on the order of 10^9 ids (over 100 GB).
struct RememberedRef {
    var slot: Int32
    var generation: UInt32

    init(slot: Int, generation: UInt32) {
        self.slot = Int32(truncatingIfNeeded: slot)
        self.generation = generation
    }

    /// What a compaction leaves where it moved a reference from.
    static let moved = RememberedRef(slot: -1, generation: 0)
}

/// One principal's remembered results, a chain through `rememberedSlots` from the oldest to the newest.
struct PrincipalRequests {
    var oldest: Int
    var newest: Int
    var count = 0
}

/// The deterministic rules engine: every auction book, the timers and the idempotency table.
///
/// The engine is a pure function of its state and the commands applied to it: it does no I/O and reads no clock.
/// The caller moves the engine clock with ``advance(to:events:)``, which fires every timer due at or before the new
/// time, and then applies commands at that time with ``apply(_:events:)``. Events are appended to the caller's
/// buffer, so a caller that reuses one buffer pays no allocation for it per command.
///
/// - Note: Not thread-safe. One owner (the writer) applies every command.
public final class Engine {
    /// The engine clock: the time of the last command or timer, in milliseconds.
    public internal(set) var now: Millis = 0
    public let configuration: EngineConfiguration

    var listings: [String: Listing] = [:]
    /// Listings open (not yet closed, sold out or cancelled) by seller, for
    /// ``EngineConfiguration/maxOpenListingsPerSeller``. Not part of the state: a restore counts them again.
    var openListingsBySeller: [String: Int] = [:]
    /// Resting orders by trader over every market listing, shared by the market books.
    let restingTotals = RestingTotals()
    /// Listings in memory (open, or ended and not yet evicted) by seller, for
    /// ``EngineConfiguration/maxListingsHeldPerSeller``. Not part of the state: a restore counts them again.
    var heldListingsBySeller: [String: Int] = [:]
    /// Settlements not in a final state by user, buyer and seller each (once when they are the same user), for
    /// ``EngineConfiguration/maxUnfinishedSettlementsPerUser``. Not part of the state: a restore counts them again.
    var unfinishedSettlementsByUser: [String: Int] = [:]
    /// Settlements in memory (not pruned, their listing not evicted), for the `gavel_settlements` gauge. Not part
    /// of the state: a restore counts them again.
    public internal(set) var settlementCount = 0
    var timers = TimerQueue()
    /// Request key → the slot in `rememberedSlots` of its result; grows incrementally, so no insert stops the writer
    /// to rehash it.
    ///
    /// A `let`, reset in place (``RequestTable/reset(minimumCapacity:)``): a class reference in a `var` was retained
    /// and released around each lookup and insert, as the engine's methods may assign it.
    let requests: RequestTable
    /// The remembered results, each in a slot it keeps until it is forgotten (the index and the principals' chains
    /// point at slots, so nothing ever moves a result); a forgotten result's slot is reused by a later one. So this
    /// holds as many results as are remembered at once (at most the most ever remembered at once), whatever the
    /// window and the rate.
    var rememberedSlots = RememberedSlots()
    /// The first free slot in `rememberedSlots`, -1 for none; a free slot's `next` links to the next.
    var firstFreeSlot = -1
    /// The boxes of recently remembered results that are not inline, shared by equal ones.
    var resultBoxes = ResultBoxes()
    /// References to the remembered results in the order they were applied (engine time never decreases), for
    /// expiry and for the state. References before `rememberedOrderHead` have expired or are stale; one from it on
    /// is stale when its principal's cap forgot its result (the slot's generation then moved on) or a
    /// compaction moved it.
    var rememberedOrder = RememberedOrder()
    var rememberedOrderHead = 0
    /// The position of `rememberedOrder[0]`, which moves forward when the expired prefix is dropped.
    var rememberedOrderBase = 0
    /// Each principal's chain of live remembered results, for forgetting its oldest at the cap.
    var principals = PrincipalChains()
    /// The compaction of `rememberedOrder` under way (see Engine+Compaction.swift), or `nil`.
    var compaction: RememberedOrderCompaction?
    /// Stale references (to ids the per-principal cap forgot, still inside the window) the order may hold beyond
    /// half as many as it has live ones before a compaction starts.
    var compactionSlack = 4_096
    /// Passes of compaction so far.
    var compactionPasses = 0
    /// The results remembered now (the idempotency table holds as many, while it is kept).
    var rememberedLive = 0
    /// The creation number (``Settlement/created``) of the newest settlement made; back to 0 whenever the engine
    /// holds no settlement, so that it is 0 exactly when none is held (a state without settlements then needs no
    /// counter, and keeps the bytes it had before settlements were numbered).
    var lastSettlementCreated: UInt64 = 0
    /// Whether this engine holds settlements numbered from a state written before settlements were numbered in
    /// creation order (by their creation time, listing id and number), restored from such a state or from one
    /// written since with those numbers (settlement section format 3): their order may differ from the one a replay
    /// of the journal gives, and so may the state (`gavel verify` does not compare replays with it). False again
    /// once the engine holds no settlement.
    public internal(set) var settlementOrderDerived = false
    /// For tests: write the settlement section as a build from before settlements were numbered did (format 1).
    var writesUnnumberedSettlements = false
    /// Whether the idempotency table (`requests`) is kept. An engine that never looks an id up (the checkpointer's
    /// shadow, which takes every command's outcome from the journal) drops it with ``dropRequestIndex()``; the
    /// results, their order and their chains are kept either way, so the state is the same.
    public private(set) var indexesRequestIDs = true
    /// When set, the rules change the state exactly as otherwise (a listing's `seq`, its eviction timer) but append
    /// no event: recovery, verification and the checkpointer's shadow throw every event away, and building each one
    /// (its strings retained, a settlement's change boxed) and destroying it again was a share of their time. Only
    /// ever set on an engine whose events nobody reads.
    public var discardsEvents = false

    public init(configuration: EngineConfiguration = EngineConfiguration()) {
        self.configuration = configuration
        requests = RequestTable(minimumCapacity: configuration.expectedRequestIDs)
        if configuration.expectedRequestIDs > 0 {
            rememberedSlots.reserveCapacity(configuration.expectedRequestIDs)
            rememberedOrder.reserveCapacity(configuration.expectedRequestIDs)
        }
    }

    /// The number of listings, open or not.
    public var listingCount: Int { listings.count }

    /// The number of listings that are still open.
    public var openListingCount: Int { listings.values.reduce(0) { $0 + ($1.status == .open ? 1 : 0) } }

    /// The number of scheduled timers (stale ones included).
    public var timerCount: Int { timers.count }

    /// The time of the earliest scheduled timer (it may turn out stale when it fires).
    public var nextTimerTime: Millis? { timers.nextTime }

    /// The number of remembered request ids.
    public var rememberedCount: Int { rememberedLive }

    /// The idempotency index, read as a map from request key to slot in `rememberedSlots`.
    var remembered: RememberedIndex { RememberedIndex(engine: self) }

    /// Lets go of the idempotency table, for an engine that only ever applies commands whose outcome the journal
    /// gives (``apply(new:events:)``; duplicates and conflicts change nothing). Any lookup afterwards builds it again
    /// first (``rebuildRequestIndex()``), so an engine without it never takes a remembered id for a new one.
    public func dropRequestIndex() {
        requests.reset()
        indexesRequestIDs = false
    }

    /// Builds the idempotency table again from the remembered results.
    ///
    /// Each insert lands on a random slot of a table of megabytes, a cache miss; the slot of the result
    /// ``rebuildLookahead`` places ahead is prefetched before each insert, so the misses overlap (a replay that
    /// inserted as it went took them one at a time, between the rules' own work).
    public func rebuildRequestIndex() {
        guard !indexesRequestIDs else { return }
        requests.reset(minimumCapacity: max(2 * rememberedLive, configuration.expectedRequestIDs))
        let lookahead = Self.rebuildLookahead
        var pending = [Int](repeating: 0, count: lookahead)
        var queued = 0
        for slot in liveRememberedSlots {
            requests.prefetch(hash: rememberedSlots[slot].hash)
            if queued >= lookahead {
                let due = pending[queued % lookahead]
                requests.insert(hash: rememberedSlots[due].hash, position: due)
            }
            pending[queued % lookahead] = slot
            queued += 1
        }
        for n in max(0, queued - lookahead)..<queued {
            let due = pending[n % lookahead]
            requests.insert(hash: rememberedSlots[due].hash, position: due)
        }
        indexesRequestIDs = true
    }

    /// How many results ahead ``rebuildRequestIndex()`` prefetches: enough misses in flight to cover one's latency.
    static let rebuildLookahead = 16

    /// The slot in `rememberedSlots` of `key`'s result.
    @inline(__always)
    func rememberedPosition(of key: RequestKey, hash: UInt64) -> Int? {
        rememberedPosition(of: key.principal, id: StoredID(key.id), hash: hash)
    }

    /// The slot in `rememberedSlots` of the result of `principal`'s request `id`.
    @inline(__always)
    func rememberedPosition(of principal: String, id: StoredID, hash: UInt64) -> Int? {
        if !indexesRequestIDs { rebuildRequestIndex() }
        return requests.find(hash: hash) {
            rememberedSlots[$0].storedID == id && principals.name(of: rememberedSlots[$0].principalSlot) == principal
        }
    }

    /// Starts loading the idempotency index's slot of `digest`'s request into the cache, and changes nothing: a
    /// hint the writer gives a command ahead of applying it, so that the slot's cache miss (the largest single cost
    /// of applying a new request once the index outgrows the caches) overlaps the command before it.
    @inline(__always)
    public func prefetch(_ digest: CommandDigest) {
        if indexesRequestIDs { requests.prefetch(hash: digest.requestHash) }
    }

    /// The request key of the result remembered in `slot`.
    func rememberedKey(_ slot: Int) -> RequestKey {
        RequestKey(principal: principals.name(of: rememberedSlots[slot].principalSlot), id: rememberedSlots[slot].id)
    }

    /// The number of request ids remembered for `principal`.
    public func rememberedCount(of principal: String) -> Int {
        principals.slot(of: principal).map { principals[$0].count } ?? 0
    }

    /// The ids of the listings in memory, in no particular order.
    public var listingIDs: [String] { Array(listings.keys) }

    /// Whether a listing with this id is in memory (open, or closed within its retention).
    public func hasListing(_ id: String) -> Bool { listings[id] != nil }

    /// Moves the clock to `time`, first firing every timer due at or before it in time order.
    ///
    /// - Returns: `false` (and changes nothing) when `time` is earlier than the clock.
    @discardableResult
    public func advance(to time: Millis, events: inout [Event]) -> Bool {
        guard time >= now else { return false }
        while let timer = timers.popDue(atOrBefore: time) {
            now = max(now, timer.time)
            fire(timer, events: &events)
        }
        now = time
        forgetExpiredRequests()
        return true
    }

    /// Applies `command` at the current engine time, appending the events it causes to `events`.
    public func apply(_ command: Command, events: inout [Event]) -> CommandResult {
        apply(command, listing: nil, events: &events)
    }

    /// A handle on the listing `id` while it is in memory, or `nil` when it is not.
    public func handle(for id: String) -> ListingHandle? {
        listings[id].map { ListingHandle(listing: $0, owner: ObjectIdentifier(self)) }
    }

    /// Applies `command` as ``apply(_:events:)`` does; `handle`, taken earlier with ``handle(for:)``, spares the
    /// engine the lookup of the command's listing by id while it is current (the listing is still in memory and is
    /// the command's). A stale or foreign handle is ignored.
    public func apply(_ command: Command, listing handle: ListingHandle?, events: inout [Event]) -> CommandResult {
        apply(command, digest: CommandDigest(command), listing: handle, events: &events)
    }

    /// Applies `command` as ``apply(_:listing:events:)`` does, with its `digest` computed earlier (a producer thread
    /// computes it, so the writer does not).
    public func apply(
        _ command: Command, digest: CommandDigest, listing handle: ListingHandle?, events: inout [Event]
    ) -> CommandResult {
        apply(command, digest: digest, listing: handle, lookUp: true, events: &events)
    }

    /// Applies a journaled `command` whose request id the journal says was new when the writer applied it
    /// (``RequestOutcome/applied``) as ``apply(_:events:)`` did then, without looking the id up first: the same
    /// events, result and state, one probe of the idempotency table less. For recovery and the checkpointer's
    /// shadow, which replay every command the writer applied.
    public func apply(new command: Command, events: inout [Event]) -> CommandResult {
        apply(new: command, digest: CommandDigest(command), events: &events)
    }

    /// Applies a journaled `command` as ``apply(new:events:)`` does, with its `digest` computed earlier (recovery
    /// computes it on the thread that decodes the journal); `handle`, as in ``apply(_:listing:events:)``, spares the
    /// lookup of its listing by id while it is current and the command's.
    public func apply(
        new command: Command, digest: CommandDigest, listing handle: ListingHandle? = nil, events: inout [Event]
    ) -> CommandResult {
        apply(command, digest: digest, listing: handle, lookUp: false, events: &events)
    }

    /// Applies `command` as ``apply(_:digest:listing:events:)`` does, and returns its result as the idempotency table
    /// keeps it (``PackedResult``): for the writer, whose batch entries hold results this way.
    public func applyPacked(
        _ command: Command, digest: CommandDigest, listing handle: ListingHandle?, events: inout [Event]
    ) -> PackedResult {
        let (result, stored) = apply(command, digest: digest, listing: handle, lookUp: true, events: &events)
        guard let stored else { return PackedResult(result) }
        return PackedResult(stored: stored, duplicate: result.duplicate)
    }

    @inline(__always)
    private func apply(
        _ command: Command, digest: CommandDigest, listing handle: ListingHandle?, lookUp: Bool,
        events: inout [Event]
    ) -> CommandResult {
        apply(command, digest: digest, listing: handle, lookUp: lookUp, events: &events).result
    }

    /// The result of `command`, and the form the idempotency table keeps it in when it went in or came from it
    /// (`nil` for a refusal that is not remembered).
    @inline(__always)
    private func apply(
        _ command: Command, digest: CommandDigest, listing handle: ListingHandle?, lookUp: Bool,
        events: inout [Event]
    ) -> (result: CommandResult, stored: StoredResult?) {
        let principal = command.principal
        if !digest.identifiersValid, let problem = command.identifierProblem {
            return (.rejected(.badRequest, problem), nil)
        }
        let id = StoredID(command.id)
        let hash = digest.requestHash
        let fingerprint = digest.fingerprint
        if lookUp, let position = rememberedPosition(of: principal, id: id, hash: hash) {
            if rememberedSlots[position].fingerprint == fingerprint {
                var result = rememberedSlots[position].result
                result.duplicate = true
                return (result, rememberedSlots[position].storedResult)
            }
            return (Self.requestIDConflict(command), nil)
        }
        // The handle's listing is passed down borrowed from the caller's handle: copied into a local (`known`), it
        // was retained and released around the rules. A `switch`, not an `if let`: the compiler copies what an
        // `if let` binds, and borrows what a `case` binds.
        let result =
            switch handle {
            case .some(let handle)
            where handle.owner == ObjectIdentifier(self) && handle.listing.live
                && handle.listing.id == command.listing:
                rules(command, known: handle.listing, events: &events)
            default:
                rules(command, known: nil, events: &events)
            }
        let stored = resultBoxes.store(result)
        remember(
            RememberedResult(id: id, hash: hash, fingerprint: fingerprint, result: stored, at: now),
            principal: principal, principalHash: digest.principalHash)
        return (result, stored)
    }

    /// Applies a journaled `command` whose idempotency `outcome` the journal recorded, without the idempotency
    /// table: it neither looks the id up nor remembers it. The events are those the writer emitted, and so is the
    /// result but for a duplicate's, which is an accepted result marked `duplicate` (the remembered one is not kept).
    ///
    /// For a replay that wants only the events (the durable feed's). An engine fed this way no longer answers
    /// duplicates itself, so its state is not one to snapshot or serve from.
    public func apply(journaled command: Command, outcome: RequestOutcome, events: inout [Event]) -> CommandResult {
        switch outcome {
        case .duplicate:
            return CommandResult(error: nil, message: "", duplicate: true)
        case .conflict:
            return Self.requestIDConflict(command)
        case .applied:
            if let problem = command.identifierProblem { return .rejected(.badRequest, problem) }
            return rules(command, known: nil, events: &events)
        }
    }

    /// The refusal of `command`, whose request id its principal already used for a different command.
    private static func requestIDConflict(_ command: Command) -> CommandResult {
        var result = CommandResult.rejected(
            .idempotencyConflict,
            "request id \(command.id) was already used by \(command.principal) for a different command; use a new id")
        result.requestIDConflict = true
        return result
    }

    /// Remembers `entry` as `principal`'s newest; forgets the principal's oldest when that passes the cap.
    /// `principalHash` is ``RequestHash/of(principal:)`` of `principal`.
    func remember(_ entry: consuming RememberedResult, principal: String, principalHash: UInt64) {
        let position = firstFreeSlot >= 0 ? firstFreeSlot : rememberedSlots.count
        // Slots, links and references are 32-bit: 2^31 ids remembered at once would take over 200 GB.
        precondition(position < Int(Int32.max), "more remembered request ids than 32-bit slots name")
        let slot =
            principals.slot(of: principal, hash: principalHash)
            ?? principals.add(principal, hash: principalHash, PrincipalRequests(oldest: position, newest: position))
        if indexesRequestIDs { requests.insert(hash: entry.hash, position: position) }
        rememberedLive += 1
        var entry = entry
        entry.principalSlot = slot
        entry.next = -1
        if position == firstFreeSlot {
            firstFreeSlot = rememberedSlots[position].next
            entry.generation = rememberedSlots[position].generation
            rememberedSlots[position] = entry
        } else {
            entry.generation = 0
            rememberedSlots.append(entry)
        }
        rememberedOrder.append(RememberedRef(slot: position, generation: entry.generation))
        let (previous, count) = principals[slot].append(position)
        if let previous { rememberedSlots[previous].next = position }
        if count > configuration.maxRequestIDsPerPrincipal {
            forgetOldest(of: slot)
        }
        compactRememberedOrderIfNeeded()
    }

    /// Forgets the oldest result of the chain in `slot`: out of the index and the chain, its slot freed.
    private func forgetOldest(of slot: Int) {
        let oldest = principals[slot].oldest
        let next = rememberedSlots[oldest].next
        if indexesRequestIDs { requests.remove(hash: rememberedSlots[oldest].hash, position: oldest) }
        rememberedLive -= 1
        let generation = rememberedSlots[oldest].generation &+ 1
        rememberedSlots[oldest] = .free
        rememberedSlots[oldest].generation = generation
        rememberedSlots[oldest].next = firstFreeSlot
        firstFreeSlot = oldest
        principals[slot].count -= 1
        if principals[slot].count == 0 {
            principals.remove(slot: slot)
        } else {
            principals[slot].oldest = next
        }
    }

    /// Whether `reference` is to a result still remembered.
    @inline(__always)
    func isLive(_ reference: RememberedRef) -> Bool {
        reference.slot >= 0 && rememberedSlots[Int(reference.slot)].generation == reference.generation
    }

    /// The slots of the remembered results in the order they were applied.
    var liveRememberedSlots: some Sequence<Int> {
        rememberedOrder[rememberedOrderHead...].lazy.filter { self.isLive($0) }.map { Int($0.slot) }
    }

    private func forgetExpiredRequests() {
        let window = configuration.idempotencyWindowMs
        while rememberedOrderHead < rememberedOrder.count {
            let reference = rememberedOrder[rememberedOrderHead]
            if isLive(reference) {
                guard now - rememberedSlots[Int(reference.slot)].at >= window else { break }
                // Every result before it is gone, so it is its principal's oldest.
                forgetOldest(of: rememberedSlots[Int(reference.slot)].principalSlot)
            }
            // A stale reference (its result forgotten by the cap, or the reference moved by a compaction) is passed
            // whatever its time.
            rememberedOrderHead += 1
        }
        compaction?.passed(rememberedOrderBase + rememberedOrderHead)
        // Drop the expired prefix a chunk at a time, so the order follows the window, not all history.
        if rememberedOrderHead >= RememberedOrder.chunkSize {
            rememberedOrder.removeFirst(rememberedOrderHead)
            rememberedOrderBase += rememberedOrderHead
            rememberedOrderHead = 0
        }
    }

    // MARK: - Events

    @inline(__always)
    func emit(_ kind: EventKind, on listing: Listing, events: inout [Event]) {
        if kind.isPrivate {
            if !discardsEvents { events.append(Event(listing: listing.id, seq: 0, at: now, kind: kind)) }
        } else {
            listing.seq += 1
            if !discardsEvents { events.append(Event(listing: listing.id, seq: listing.seq, at: now, kind: kind)) }
            if kind.endsListing { scheduleEviction(of: listing) }
        }
    }

    /// Schedules the eviction of `listing`, which has just closed, sold out or been cancelled, once
    /// ``EngineConfiguration/closedListingRetentionMs`` has passed.
    func scheduleEviction(of listing: Listing) {
        let (at, overflow) = now.addingReportingOverflow(configuration.closedListingRetentionMs)
        // Past the end of the clock the retention never ends: the listing stays (a timer at the last ms would
        // evict it as soon as the clock reached it, its retention not over).
        guard !overflow else { return }
        timers.schedule(.evict, listing: listing.id, at: at)
    }

    /// Removes a listing whose retention is over. Its history stays in the journal, and its id may be opened again.
    /// The internal ``EventKind/evicted`` event tells the writer and the gateway to let go of it too.
    ///
    /// A listing ends once, so it has one eviction timer, and that timer is gone once it fired: an id opened again
    /// after its eviction is not evicted early (``fire(_:events:)`` evicts only a listing that has ended).
    func evict(_ listing: Listing, events: inout [Event]) {
        listings[listing.id] = nil
        heldListingsBySeller.countDown(listing.seller)
        // Only a listing with nothing settling is evicted (``mayEvict(_:)``): none of its settlements counts as
        // unfinished any more.
        assert(listing.openSettlements == 0, "listing \(listing.id) evicted with unfinished settlements")
        settlementsDropped(listing.settlements.count - listing.prunedSettlements)
        listing.live = false
        for handle in listing.pendingTimers { timers.cancel(handle) }
        if !discardsEvents { events.append(Event(listing: listing.id, seq: 0, at: now, kind: .evicted)) }
    }

    // MARK: - Rules

    /// Applies the rules of `command`; `known` is its listing when the caller has it already.
    private func rules(_ command: Command, known: Listing?, events: inout [Event]) -> CommandResult {
        switch command.body {
        case .open(let seller, let terms):
            return open(command.listing, seller: seller, terms: terms, events: &events)
        case .bid(let bidder, let amount):
            guard Limits.isValidAmount(amount) else { return Self.invalidBidAmount }
            return withListing(command.listing, known: known) { listing in
                if let refusal = tradingRefusal(listing, actor: bidder) { return refusal }
                switch listing.book {
                case .english(let book): return englishBid(listing, book, bidder: bidder, amount: amount, &events)
                case .sealed(let book): return sealedBid(listing, book, bidder: bidder, amount: amount, &events)
                case .dutch: return unsupported("bid", listing, hint: "use accept on a dutch listing")
                case .market: return unsupported("bid", listing, hint: "use order on a market listing")
                }
            }
        case .buyNow(let buyer):
            return withListing(command.listing, known: known) { listing in
                if let refusal = tradingRefusal(listing, actor: buyer) { return refusal }
                guard case .english(let book) = listing.book else {
                    return unsupported("buy_now", listing, hint: "buy_now is for english listings")
                }
                return buyNow(listing, book, buyer: buyer, &events)
            }
        case .accept(let bidder, let quantity):
            guard Limits.isValidAmount(quantity) else { return Self.invalidQuantity }
            return withListing(command.listing, known: known) { listing in
                if let refusal = tradingRefusal(listing, actor: bidder) { return refusal }
                guard case .dutch(let book) = listing.book else {
                    return unsupported("accept", listing, hint: "accept is for dutch listings")
                }
                return accept(listing, book, bidder: bidder, quantity: quantity, &events)
            }
        case .order(let trader, let side, let price, let quantity, let tif, let expiresAt):
            guard Limits.isValidAmount(price) else { return Self.invalidPrice }
            guard Limits.isValidAmount(quantity) else { return Self.invalidQuantity }
            if let expiresAt, expiresAt <= now { return Self.expiredOrder(expiresAt, now: now) }
            return withListing(command.listing, known: known) { listing in
                if let refusal = tradingRefusal(listing, actor: nil) { return refusal }
                guard case .market(let book) = listing.book else {
                    return unsupported("order", listing, hint: "order is for market listings")
                }
                let order = MarketOrder(
                    id: command.id, trader: trader, side: side, price: price, quantity: quantity, tif: tif,
                    expiresAt: expiresAt)
                return placeOrder(listing, book, order, &events)
            }
        case .cancel(let trader, let orderID):
            return withListing(command.listing, known: known) { listing in
                guard case .market(let book) = listing.book else {
                    return unsupported("cancel", listing, hint: "cancel is for market orders; use cancel_listing")
                }
                if listing.status != .open { return closedRejection(listing) }
                return cancelOrder(listing, book, trader: trader, orderID: orderID, &events)
            }
        case .cancelListing(let seller):
            return withListing(command.listing, known: known) { listing in
                cancelListing(listing, seller: seller, &events)
            }
        case .cancelListingAsAdmin(let admin):
            return withListing(command.listing, known: known) { listing in
                cancelListing(listing, seller: admin, asAdmin: true, &events)
            }
        case .settle(let number, let action, let by, let role):
            return settle(
                command.listing, number: number, action: action, by: by, role: role, known: known, events: &events)
        case .secondChance(let action, let by, let role):
            return secondChance(command.listing, action: action, by: by, role: role, known: known, events: &events)
        }
    }

    /// `body`'s answer for the listing `id`, which is `known` when the caller has it, or `unknown_listing` when no
    /// such listing is in memory. `known` is handed to `body` borrowed, not copied: a listing returned from a lookup
    /// (`known ?? listings[id]`) was retained for the rules and released after them; `switch`, as an `if let` would
    /// copy it.
    @inline(__always)
    private func withListing(
        _ id: String, known: Listing?, _ body: (_ listing: Listing) -> CommandResult
    ) -> CommandResult {
        switch known {
        case .some(let known): return body(known)
        case .none:
            guard let listing = listings[id] else { return unknownListing(id) }
            return body(listing)
        }
    }

    /// Why a trading command may not act on `listing`: it is not open, has not opened yet, or `actor` is its seller;
    /// `nil` when it may.
    @inline(__always)
    private func tradingRefusal(_ listing: Listing, actor: String?) -> CommandResult? {
        if listing.status != .open { return closedRejection(listing) }
        if now < listing.opensAt {
            return .rejected(
                .notOpen, "listing \(listing.id) opens at \(listing.opensAt); the engine time is \(now)")
        }
        if let actor, actor == listing.seller {
            return .rejected(
                .sellerCannotBid, "\(actor) is the seller of listing \(listing.id) and cannot bid on it")
        }
        return nil
    }

    private func unknownListing(_ id: String) -> CommandResult { Self.unknownListing(id) }

    static func unknownListing(_ id: String) -> CommandResult {
        .rejected(.unknownListing, "no listing \(id); check the listing id")
    }

    /// What the engine answers `command` when no listing with its id is in memory, `nil` for an `open` (which makes
    /// one): the checks that come before the listing's in the documented order (identifiers, amounts, quantities,
    /// an order's `expires_at` against `now`), then `unknown_listing`, or `unknown_settlement` for a settlement
    /// command. It reads nothing the engine holds, so the server can give a command for a listing it does not hold
    /// the engine's own answer without handing it to the writer. `now` stands for the engine time; an order whose
    /// `expires_at` passes between the two is refused either way.
    public static func answerWithoutListing(_ command: Command, now: Millis) -> CommandResult? {
        if let problem = command.identifierProblem { return .rejected(.badRequest, problem) }
        switch command.body {
        case .open:
            return nil
        case .bid(_, let amount):
            guard Limits.isValidAmount(amount) else { return invalidBidAmount }
        case .accept(_, let quantity):
            guard Limits.isValidAmount(quantity) else { return invalidQuantity }
        case .order(_, _, let price, let quantity, _, let expiresAt):
            guard Limits.isValidAmount(price) else { return invalidPrice }
            guard Limits.isValidAmount(quantity) else { return invalidQuantity }
            if let expiresAt, expiresAt <= now { return expiredOrder(expiresAt, now: now) }
        case .settle(let number, _, _, let role):
            return unknownSettlement(SettlementID.format(listing: command.listing, number: number), role: role)
        case .buyNow, .cancel, .cancelListing, .cancelListingAsAdmin, .secondChance:
            break
        }
        return unknownListing(command.listing)
    }

    static let invalidBidAmount = CommandResult.rejected(
        .invalidAmount, "amount must be a positive integer up to 10^15 (minor units)")
    static let invalidPrice = CommandResult.rejected(
        .invalidAmount, "price must be a positive integer up to 10^15 (minor units)")
    static let invalidQuantity = CommandResult.rejected(
        .invalidQuantity, "quantity must be a positive integer up to 10^15")

    static func expiredOrder(_ expiresAt: Millis, now: Millis) -> CommandResult {
        .rejected(.badRequest, "expires_at \(expiresAt) must be after the current engine time \(now)")
    }

    /// The answer to `role` about a settlement `id` that does not exist, or (to a bidder or seller) that is not
    /// theirs: the two are answered alike, so that a user learns nothing of another's settlement, not even that it
    /// exists (a listing's second sale tells that its winner did not pay).
    public static func unknownSettlement(_ id: String, role: ActorRole) -> CommandResult {
        unknownSettlement(id, readsAny: role == .service || role == .admin)
    }

    /// ``unknownSettlement(_:role:)`` for a caller that may (`readsAny`: a service or the dispute desk) or may not
    /// read every settlement.
    public static func unknownSettlement(_ id: String, readsAny: Bool) -> CommandResult {
        readsAny
            ? .rejected(.unknownSettlement, "no settlement \(id); check the settlement id")
            : .rejected(
                .unknownSettlement, "no settlement \(id) that you are the buyer or seller of; check the settlement id")
    }

    private func closedRejection(_ listing: Listing) -> CommandResult {
        let how = listing.status == .cancelled ? "was cancelled" : "has closed"
        return .rejected(.listingClosed, "listing \(listing.id) \(how)")
    }

    private func unsupported(_ type: String, _ listing: Listing, hint: String) -> CommandResult {
        .rejected(.unsupported, "\(type) is not supported by \(listing.format.rawValue) listing \(listing.id); \(hint)")
    }
}

extension PrincipalRequests {
    /// Adds `position` as the newest; returns the former newest (`nil` for none) and the new count.
    mutating func append(_ position: Int) -> (previous: Int?, count: Int) {
        let previous = count > 0 ? newest : nil
        newest = position
        count += 1
        return (previous, count)
    }
}

/// A read-only view of the idempotency index keyed by request key (tests and tools look entries up by key).
struct RememberedIndex {
    let engine: Engine

    subscript(key: RequestKey) -> Int? {
        engine.rememberedPosition(of: key, hash: RequestHash.of(principal: key.principal, id: key.id))
    }

    var count: Int { engine.rememberedLive }
}

/// A reference to a listing in an engine's memory, which a caller that applies many commands to one listing (the
/// writer, per listing queue) keeps to spare the engine a lookup by id per command. It stops being current when the
/// listing is evicted; an id opened again is a new listing with a new handle.
public struct ListingHandle {
    let listing: Listing
    /// The engine the listing belongs to.
    let owner: ObjectIdentifier
    /// Where the listing's object and its book's are, for prefetching (a listing's book is set once, when it opens).
    public let addresses: ListingAddresses

    init(listing: Listing, owner: ObjectIdentifier) {
        self.listing = listing
        self.owner = owner
        let book =
            switch listing.book {
            case .english(let book): Unmanaged.passUnretained(book).toOpaque()
            case .sealed(let book): Unmanaged.passUnretained(book).toOpaque()
            case .dutch(let book): Unmanaged.passUnretained(book).toOpaque()
            case .market(let book): Unmanaged.passUnretained(book).toOpaque()
            }
        addresses = ListingAddresses(listing: Unmanaged.passUnretained(listing).toOpaque(), book: book)
    }

    /// Whether the listing is still in its engine's memory.
    public var isCurrent: Bool { listing.live }

    /// Whether the listing is still in its engine's memory and its id is `id`: a handle an engine takes for a
    /// command on listing `id` (a cache of handles checks this before handing one out).
    @inline(__always)
    public func isCurrent(for id: String) -> Bool { listing.live && listing.id == id }

    /// A hash of a listing id, the same for the same id on any thread of this process: what a cache of handles is
    /// keyed by, computed where the id is decoded (recovery's reading thread) rather than where it is applied.
    public static func hash(of id: String) -> UInt64 { RequestHash.of(principal: id) }

    /// Starts loading the listing's object and its book's into the cache (see ``ListingAddresses/prefetch()``).
    @inline(__always)
    public func prefetch() { addresses.prefetch() }
}

/// Where a listing's object and its book's are in memory: two addresses and no reference, so that a caller keeps
/// them beside its ``ListingHandle`` and prefetches with no reference counting. Copying the handle itself retains
/// the listing, and that retain is a write to the very object the prefetch is meant to load ahead of time: it
/// waited for the cache miss the prefetch was to hide. Meaningful while the handle they came from is held (a
/// prefetch of any address is harmless, but names nothing useful once the listing is gone).
public struct ListingAddresses {
    let listing: UnsafeMutableRawPointer
    let book: UnsafeMutableRawPointer

    /// Starts loading the listing's object and its book's into the cache (an english listing's are 120 bytes each,
    /// 16-byte aligned, so each is in up to three cache lines, holding its bytes 0, 64 and 112: a bid reads and
    /// writes fields across all of them), and changes nothing (a hint, like ``Engine/prefetch(_:)``).
    @inline(__always)
    public func prefetch() {
        gavel_prefetch_for_write(listing)
        gavel_prefetch_for_write(listing + 64)
        gavel_prefetch_for_write(listing + 112)
        gavel_prefetch_for_write(book)
        gavel_prefetch_for_write(book + 64)
        gavel_prefetch_for_write(book + 112)
    }
}

/// What the engine computes from a command alone before it applies it: whether its identifiers are well-formed, its
/// idempotency key's and its principal's hashes and its ``Command/fingerprint``. A producer thread computes it (``Submission`` does), so the
/// writer does not; only ``init(_:)`` makes one, so a digest always belongs to the command it was made from.
public struct CommandDigest: Sendable {
    let identifiersValid: Bool
    let requestHash: UInt64
    /// ``RequestHash/of(principal:)``, the key of the principal's chain of remembered requests.
    let principalHash: UInt64
    let fingerprint: UInt64
    /// ``ListingHandle/hash(of:)`` of the command's listing id, the same for the same id on any thread of this
    /// process: what a table of listings keyed by id may use instead of hashing the id again.
    public let listingHash: UInt64

    /// - Note: `command` is borrowed: the digest is computed where a command is held (a journal batch's records,
    ///   a submission), and an owned argument was a copy of the command (its strings and its enum's cases) made and
    ///   destroyed for each digest.
    public init(_ command: borrowing Command) {
        if case .bid(let bidder, let amount) = command.body {
            self.init(bidID: command.id, listing: command.listing, bidder: bidder, amount: amount)
            return
        }
        let (request, principal) = RequestHash.both(principal: command.principal, id: command.id)
        self.init(
            identifiersValid: command.identifierProblem == nil, requestHash: request, principalHash: principal,
            fingerprint: command.fingerprint, listingHash: ListingHandle.hash(of: command.listing))
    }

    private init(
        identifiersValid: Bool, requestHash: UInt64, principalHash: UInt64, fingerprint: UInt64, listingHash: UInt64
    ) {
        self.identifiersValid = identifiersValid
        self.requestHash = requestHash
        self.principalHash = principalHash
        self.fingerprint = fingerprint
        self.listingHash = listingHash
    }

    /// A bid's digest (most commands are bids): each identifier's bytes are checked and folded into the fingerprint
    /// in one pass, where the general path reads them once for ``Command/identifierProblem`` and again for
    /// ``Command/fingerprint``; the same values (``CommandDigestTests``).
    @inline(__always)
    private init(bidID id: String, listing: String, bidder: String, amount: Money) {
        var f = Fingerprint()
        var valid = f.combineIdentifier(id)
        valid = f.combineIdentifier(listing) && valid
        f.combine(byte: 1)
        valid = f.combineIdentifier(bidder) && valid
        f.combine(amount)
        let (request, principal) = RequestHash.both(principal: bidder, id: id)
        self.init(
            identifiersValid: valid, requestHash: request, principalHash: principal, fingerprint: f.value,
            listingHash: ListingHandle.hash(of: listing))
    }
}

extension Command {
    /// Why an identifier of the command is malformed, or `nil` when every one is well-formed.
    var identifierProblem: String? {
        if !Identifier.isValid(id) { return "id must be 1-64 characters from [A-Za-z0-9_.:-]" }
        if !Identifier.isValid(listing) { return "listing must be 1-64 characters from [A-Za-z0-9_.:-]" }
        switch body {
        case .open(let seller, _), .cancelListing(let seller):
            if !Identifier.isValid(seller) { return "seller must be 1-64 characters from [A-Za-z0-9_.:-]" }
        case .bid(let bidder, _), .accept(let bidder, _):
            if !Identifier.isValid(bidder) { return "bidder must be 1-64 characters from [A-Za-z0-9_.:-]" }
        case .buyNow(let buyer):
            if !Identifier.isValid(buyer) { return "buyer must be 1-64 characters from [A-Za-z0-9_.:-]" }
        case .order(let trader, _, _, _, _, _):
            if !Identifier.isValid(trader) { return "trader must be 1-64 characters from [A-Za-z0-9_.:-]" }
        case .cancel(let trader, let order):
            if !Identifier.isValid(trader) { return "trader must be 1-64 characters from [A-Za-z0-9_.:-]" }
            if !Identifier.isValid(order) { return "order must be 1-64 characters from [A-Za-z0-9_.:-]" }
        case .cancelListingAsAdmin(let admin):
            if !Identifier.isValid(admin) { return "by must be 1-64 characters from [A-Za-z0-9_.:-]" }
        case .settle(let number, let action, let by, _):
            if !Identifier.isValid(by) { return "by must be 1-64 characters from [A-Za-z0-9_.:-]" }
            if number <= 0 { return "settlement must be <listing>:<n> with n a positive integer" }
            switch action {
            case .confirmPayment(let ref):
                if !Identifier.isValid(ref) { return "payment_ref must be 1-64 characters from [A-Za-z0-9_.:-]" }
            case .markShipped(let tracking):
                if !Identifier.isValid(tracking) { return "tracking must be 1-64 characters from [A-Za-z0-9_.:-]" }
            case .openDispute(let reason):
                if let problem = DisputeReason.problem(reason) { return problem }
            case .confirmDelivery, .resolveDispute, .refund:
                break
            }
        case .secondChance(_, let by, _):
            if !Identifier.isValid(by) { return "by must be 1-64 characters from [A-Za-z0-9_.:-]" }
        }
        return nil
    }
}
