#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A market order resting on the book, as the book hands it out. The book itself keeps each order in an
/// ``MarketBook/OrderSlot``, which names the order's id and trader by number.
struct RestingOrder: Hashable {
    var id: String
    var trader: String
    var remaining: Int64
    /// When it expires, if it does.
    var expiresAt: Millis?
    /// Its expiry's timer, cancelled when the order leaves the book some other way. Not part of the state.
    var expiry = TimerHandle.none

    init(id: String, trader: String, remaining: Int64, expiresAt: Millis?, expiry: TimerHandle = .none) {
        self.id = id
        self.trader = trader
        self.remaining = remaining
        self.expiresAt = expiresAt
        self.expiry = expiry
    }
}

/// Identifies a resting order: its trader and its id.
struct OrderKey: Hashable {
    var trader: String
    var id: String
}

/// All resting orders at one price: how many, their total, and the ends of the list they form in the book's slots,
/// oldest first (each slot links to the order before and after it at its price). 32 bytes: inserting a price moves
/// the levels after it in its chunk.
struct PriceLevel {
    var price: Money
    var total: Int64
    /// The slot of the oldest order (the next to match).
    var oldest: UInt32
    /// The slot of the newest order (the last to match).
    var newest: UInt32
    private var storedCount: UInt32

    init(price: Money, first slot: UInt32, quantity: Int64) {
        self.price = price
        total = quantity
        oldest = slot
        newest = slot
        storedCount = 1
    }

    /// The orders resting here. The book removes a level once it is empty.
    var count: Int {
        get { Int(storedCount) }
        set { storedCount = UInt32(newValue) }
    }
}

/// One side's price levels, sorted so that the best is last (bids ascending by price, asks descending), in chunks of
/// at most ``chunkCapacity``: a new or emptied price moves the levels of its chunk and the chunks' array, never every
/// level. (One sorted array moved them all: 18 µs an order at 100,000 prices, a thousand times that at the
/// 10,000,000 resting orders `--max-resting-orders-per-listing` allows.)
struct PriceLevels: Sequence {
    /// Where a level is, or would go: its chunk and its index in the chunk.
    struct Place {
        fileprivate var chunk: Int
        fileprivate var index: Int
    }

    private var chunks: [[PriceLevel]] = []
    /// The number of levels.
    private(set) var count = 0
    /// Whether higher prices are better (bids).
    let bestIsHigh: Bool

    /// The most levels in a chunk: a full one splits in two.
    static let chunkCapacity = 128

    init(bestIsHigh: Bool) { self.bestIsHigh = bestIsHigh }

    var isEmpty: Bool { count == 0 }

    /// The best level.
    var last: PriceLevel? { chunks.last?.last }

    /// The best level, to change in place. The caller checks that there is one.
    var best: PriceLevel {
        get { chunks[chunks.count - 1][chunks[chunks.count - 1].count - 1] }
        _modify {
            let c = chunks.count - 1
            yield &chunks[c][chunks[c].count - 1]
        }
    }

    /// Where the best level is, if there is one.
    var bestPlace: Place? {
        chunks.isEmpty ? nil : Place(chunk: chunks.count - 1, index: chunks[chunks.count - 1].count - 1)
    }

    /// Whether `a` sorts before `b` (is the worse price).
    @inline(__always)
    private func before(_ a: Money, _ b: Money) -> Bool { bestIsHigh ? a < b : a > b }

    /// Where `price` is when `found`; otherwise where a level at `price` goes (``insert(_:at:)``).
    func locate(_ price: Money) -> (place: Place, found: Bool) {
        // The first chunk whose last level does not sort before `price`.
        var low = 0
        var high = chunks.count
        while low < high {
            let mid = (low + high) / 2
            if before(chunks[mid][chunks[mid].count - 1].price, price) { low = mid + 1 } else { high = mid }
        }
        // Past every chunk: the new best level goes at the end of the last chunk.
        if low == chunks.count {
            return chunks.isEmpty
                ? (Place(chunk: 0, index: 0), false) : (Place(chunk: low - 1, index: chunks[low - 1].count), false)
        }
        let chunk = chunks[low]
        var first = 0
        var end = chunk.count
        while first < end {
            let mid = (first + end) / 2
            if before(chunk[mid].price, price) { first = mid + 1 } else { end = mid }
        }
        return (Place(chunk: low, index: first), chunk[first].price == price)
    }

    /// Where the level at `price` is, if there is one.
    func place(of price: Money) -> Place? {
        let (place, found) = locate(price)
        return found ? place : nil
    }

    /// The level at `place`, to read or change in place.
    subscript(place: Place) -> PriceLevel {
        get { chunks[place.chunk][place.index] }
        _modify { yield &chunks[place.chunk][place.index] }
    }

    /// The level at `price`, if there is one.
    func level(at price: Money) -> PriceLevel? { place(of: price).map { self[$0] } }

    /// Adds `level` at `place`, where ``locate(_:)`` found no level at its price.
    mutating func insert(_ level: PriceLevel, at place: Place) {
        count += 1
        if chunks.isEmpty {
            chunks.append([level])
            return
        }
        let chunk = place.chunk
        chunks[chunk].insert(level, at: place.index)
        if chunks[chunk].count > Self.chunkCapacity {
            let upper = Array(chunks[chunk][(Self.chunkCapacity / 2)...])
            chunks[chunk].removeLast(chunks[chunk].count - Self.chunkCapacity / 2)
            chunks.insert(upper, at: chunk + 1)
        }
    }

    /// Removes the level at `place`.
    mutating func remove(at place: Place) {
        chunks[place.chunk].remove(at: place.index)
        if chunks[place.chunk].isEmpty { chunks.remove(at: place.chunk) }
        count -= 1
    }

    mutating func removeAll() {
        chunks.removeAll()
        count = 0
    }

    func makeIterator() -> FlattenSequence<[[PriceLevel]]>.Iterator { chunks.joined().makeIterator() }
}

/// An open-addressing index from a 32-bit hash to a number (a slot or a name of a ``MarketBook``): 8 bytes a slot,
/// the hash and the number, in a table that doubles past three quarters full. The key itself is where the number
/// points; the caller compares it when the hashes are equal. Linear probing with backward-shift removal: a removed
/// entry leaves no marker, so probe paths stay as short as the live entries make them however many orders come
/// and go.
///
/// Growth re-places every entry (from the hashes it holds; no key is read), a pass over the index as a
/// `Dictionary`'s growth is, at 8 bytes an entry instead of a `Dictionary`'s key and value. A table of 64 KB or more
/// is mapped from the system (as ``RequestTable``'s are) and unmapped when it is replaced, so the tables a growing
/// book leaves behind go back to the system instead of staying in the allocator's heap.
///
/// - Note: Not thread-safe; one owner (its book).
final class BookIndex {
    /// `(number + 1) << 32 | hash`; 0 is an empty slot. `nil` until the first insert.
    private var base: UnsafeMutablePointer<UInt64>?
    private var capacity = 0
    private var mask = 0
    /// Whether `base` is mapped from the system rather than allocated.
    private var mapped = false
    /// The numbers in the index.
    private(set) var count = 0

    static let minimumCapacity = 16
    /// The smallest table mapped from the system rather than allocated: 64 KB.
    static let mappedFrom = 64 * 1024 / MemoryLayout<UInt64>.stride

    deinit { release() }

    @inline(__always)
    private static func entry(_ hash: UInt64, _ number: UInt32) -> UInt64 {
        UInt64(number + 1) << 32 | (hash & 0xFFFF_FFFF)
    }

    @inline(__always)
    private func home(_ entry: UInt64) -> Int { Int(truncatingIfNeeded: entry) & mask }

    /// The number under `hash` for which `matches` holds, if any.
    @inline(__always)
    func find(hash: UInt64, where matches: (UInt32) -> Bool) -> UInt32? {
        guard let base else { return nil }
        let low = hash & 0xFFFF_FFFF
        var index = Int(truncatingIfNeeded: low) & mask
        while true {
            let entry = base[index]
            if entry == 0 { return nil }
            if entry & 0xFFFF_FFFF == low {
                let number = UInt32(truncatingIfNeeded: entry >> 32) - 1
                if matches(number) { return number }
            }
            index = (index + 1) & mask
        }
    }

    /// Adds `number` under `hash`. The caller guarantees it is not in the index.
    func insert(hash: UInt64, number: UInt32) {
        if (count + 1) * 4 > capacity * 3 { resize(to: max(Self.minimumCapacity, capacity * 2)) }
        place(Self.entry(hash, number), in: base!)
        count += 1
    }

    @inline(__always)
    private func place(_ entry: UInt64, in base: UnsafeMutablePointer<UInt64>) {
        var index = home(entry)
        while base[index] != 0 { index = (index + 1) & mask }
        base[index] = entry
    }

    /// Removes `number`, added under `hash`.
    func remove(hash: UInt64, number: UInt32) {
        guard let base else { return }
        let entry = Self.entry(hash, number)
        var hole = home(entry)
        while base[hole] != entry {
            if base[hole] == 0 { return }
            hole = (hole + 1) & mask
        }
        // Moves back each later entry of the run that may fill the hole: one whose home is not cyclically in
        // (hole, index], where a lookup would no longer pass the hole to reach it.
        var index = hole
        while true {
            index = (index + 1) & mask
            let moving = base[index]
            if moving == 0 { break }
            let home = home(moving)
            let stays = hole <= index ? (hole < home && home <= index) : (hole < home || home <= index)
            if !stays {
                base[hole] = moving
                hole = index
            }
        }
        base[hole] = 0
        count -= 1
    }

    /// Empties the index and gives its table back.
    func removeAll() {
        release()
        base = nil
        capacity = 0
        mask = 0
        count = 0
    }

    private func resize(to newCapacity: Int) {
        let (old, oldCapacity, oldMapped) = (base, capacity, mapped)
        let table = Self.table(newCapacity)
        (base, capacity, mask, mapped) = (table.base, newCapacity, newCapacity - 1, table.mapped)
        if let old {
            for index in 0..<oldCapacity where old[index] != 0 { place(old[index], in: table.base) }
            Self.free(old, oldCapacity, mapped: oldMapped)
        }
    }

    private func release() {
        if let base { Self.free(base, capacity, mapped: mapped) }
    }

    /// A zeroed table of `capacity` slots: mapped (`MAP_NORESERVE`, zero pages until touched) from
    /// ``mappedFrom`` on, allocated below.
    private static func table(_ capacity: Int) -> (base: UnsafeMutablePointer<UInt64>, mapped: Bool) {
        precondition(capacity & (capacity - 1) == 0 && capacity <= 1 << 32, "a power of two the hash can index")
        guard capacity >= mappedFrom else {
            let base = UnsafeMutablePointer<UInt64>.allocate(capacity: capacity)
            base.initialize(repeating: 0, count: capacity)
            return (base, false)
        }
        let bytes = capacity * MemoryLayout<UInt64>.stride
        let memory = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let memory, memory != MAP_FAILED else {
            fatalError("out of memory: cannot map \(bytes) bytes for a market book's index")
        }
        // Huge pages where the system gives them on request, as for the idempotency table: probes land anywhere.
        if bytes >= RequestTable.Storage.hugePage { _ = madvise(memory, bytes, MADV_HUGEPAGE) }
        return (memory.bindMemory(to: UInt64.self, capacity: capacity), true)
    }

    private static func free(_ base: UnsafeMutablePointer<UInt64>, _ capacity: Int, mapped: Bool) {
        if mapped {
            munmap(UnsafeMutableRawPointer(base), capacity * MemoryLayout<UInt64>.stride)
        } else {
            base.deallocate()
        }
    }
}

/// The strings a market book's orders carry, their ids and their traders, each kept once by number with how many
/// resting orders carry it as an id and as a trader; a name no order carries is dropped and its number reused. The
/// per-trader counts are what ``EngineConfiguration/maxRestingOrdersPerTrader`` checks; the per-id counts tell a
/// cancel of someone else's order (`not_owner`) from one of an order that does not rest (`unknown_order`).
///
/// - Important: Never copy one: its ``BookIndex`` is a class, so a copy would share the index with the original and a
///   change through either would leave the other's names and index out of step. Its one owner is its book.
struct BookNames {
    struct Name {
        var text: String
        /// Resting orders with this id; for a free number, the next free one.
        var asID: UInt32
        /// Resting orders of this trader.
        var asTrader: UInt32
    }

    private var names = ChunkedArray<Name>()
    private var firstFree = UInt32.max
    private let index = BookIndex()

    /// The most names: an order slot keeps its trader's number in 31 bits.
    static let maxCount = 1 << 31

    /// The hash of `text` in ``index``.
    @inline(__always)
    static func hash(_ text: String) -> UInt64 { RequestHash.of(principal: text) }

    /// The number of `text`, if a resting order carries it.
    @inline(__always)
    func number(of text: String) -> UInt32? {
        index.find(hash: Self.hash(text)) { names[Int($0)].text == text }
    }

    /// The name numbered `number`.
    @inline(__always)
    subscript(number: UInt32) -> Name { names[Int(number)] }

    /// Counts one more resting order carrying `text`, as its trader or as its id; returns the number of `text`,
    /// added when no order carried it yet.
    mutating func retain(_ text: String, asTrader: Bool) -> UInt32 {
        let hash = Self.hash(text)
        if let number = index.find(hash: hash, where: { names[Int($0)].text == text }) {
            if asTrader { names[Int(number)].asTrader += 1 } else { names[Int(number)].asID += 1 }
            return number
        }
        let name = Name(text: text, asID: asTrader ? 0 : 1, asTrader: asTrader ? 1 : 0)
        let number: UInt32
        if firstFree != .max {
            number = firstFree
            firstFree = names[Int(number)].asID
            names[Int(number)] = name
        } else {
            precondition(names.count < Self.maxCount, "a market book holds at most 2^31 names")
            number = UInt32(names.count)
            names.append(name)
        }
        index.insert(hash: hash, number: number)
        return number
    }

    /// Counts one resting order less carrying the name `number`, as its trader or as its id; drops the name when no
    /// order carries it any more.
    mutating func release(_ number: UInt32, asTrader: Bool) {
        var name = names[Int(number)]
        if asTrader { name.asTrader -= 1 } else { name.asID -= 1 }
        if name.asID == 0 && name.asTrader == 0 {
            index.remove(hash: Self.hash(name.text), number: number)
            names[Int(number)] = Name(text: "", asID: firstFree, asTrader: 0)
            firstFree = number
        } else {
            names[Int(number)] = name
        }
    }

    /// The names kept, carried or free (a free number is reused before a new one is added).
    var storedCount: Int { names.count }

    /// Forgets every name.
    mutating func removeAll() {
        names = ChunkedArray()
        firstFree = .max
        index.removeAll()
    }

    /// Calls `body` with each trader that has resting orders and how many.
    func forEachTrader(_ body: (String, Int) -> Void) {
        for name in names where name.asTrader > 0 { body(name.text, Int(name.asTrader)) }
    }
}

/// The state of a continuous market book.
///
/// Each order rests in a slot of ``OrderSlot``s (40 bytes; a freed slot is reused), which names its id and trader
/// by number in ``BookNames`` and links to the orders before and after it at its price. Each side's levels
/// (``PriceLevels``) are sorted so that the best level is last (bids ascending by price, asks descending); a level
/// holds its count, its total and its oldest and newest slot. A ``BookIndex`` finds an order's slot by its trader's
/// and id's numbers. So an order costs its slot, its share of the index and, when its id is its own, the id's name
/// (24 bytes and its share of the names' index). Taking the oldest order of the best level (a fill) costs a few
/// links; taking any other (a cancel, an expiry) the level's lookup (O(log n)) and a few links, never a pass over
/// the level.
final class MarketBook {
    /// A resting order as the book keeps it.
    struct OrderSlot {
        var remaining: Int64
        var price: Money
        /// The number of its id in the book's names.
        var id: UInt32
        /// The number of its trader in the book's names, the top bit set for a sell.
        private var traderAndSide: UInt32
        /// The slot of the order before it at its price (older), ``MarketBook/noSlot`` for none.
        var older: UInt32
        /// The slot of the order after it at its price (newer), ``MarketBook/noSlot`` for none; in a free slot, the
        /// next free one.
        var newer: UInt32
        /// Its place in the book's ``Expiry`` records, ``MarketBook/noSlot`` for an order that does not expire.
        var expiry: UInt32

        init(remaining: Int64, price: Money, id: UInt32, trader: UInt32, side: Side, expiry: UInt32) {
            self.remaining = remaining
            self.price = price
            self.id = id
            traderAndSide = trader | (side == .sell ? 1 << 31 : 0)
            older = MarketBook.noSlot
            newer = MarketBook.noSlot
            self.expiry = expiry
        }

        var trader: UInt32 { traderAndSide & 0x7FFF_FFFF }
        var side: Side { traderAndSide >> 31 == 0 ? .buy : .sell }
    }

    /// When an order expires (part of the state) and the handle of the timer that expires it (not), kept apart from
    /// the slots for the orders that expire: a slot holding them would be 48 bytes, not 40, for every order; an order
    /// that expires takes 16 bytes more.
    struct Expiry {
        /// The time; in a free record, the next free one.
        var at: Millis
        var timer: TimerHandle
    }

    /// No slot: the end of a level's list, of the free list.
    static let noSlot = UInt32.max

    private var bidLevels = PriceLevels(bestIsHigh: true)
    private var askLevels = PriceLevels(bestIsHigh: false)
    private var slots = ChunkedArray<OrderSlot>()
    /// The first free slot (``noSlot`` for none); each links to the next through `newer`.
    private var firstFreeSlot = MarketBook.noSlot
    private var expiries = ChunkedArray<Expiry>()
    /// The first free expiry record (``noSlot`` for none); each links to the next through `at`.
    private var firstFreeExpiry = MarketBook.noSlot
    /// The slot of each resting order, by its trader's and id's numbers (``keyHash(_:_:)``).
    private let index = BookIndex()
    private var names = BookNames()
    /// The resting orders.
    private(set) var restingCount = 0
    /// The engine's count over every market listing, kept with the book's per-trader counts (`nil` for a book not in
    /// an engine yet: a restore attaches it once the book is whole).
    var totals: RestingTotals?
    var traded: Bool = false

    /// The seed of ``keyHash(_:_:)``, drawn once per process: names are numbered in the order orders bring them, so
    /// without it a client choosing that order could choose colliding keys.
    private static let keySeed: UInt64 = {
        var generator = SystemRandomNumberGenerator()
        return generator.next()
    }()

    /// The hash of a resting order's key, its trader's and id's numbers.
    @inline(__always)
    private static func keyHash(_ trader: UInt32, _ id: UInt32) -> UInt64 {
        let product = ((UInt64(trader) << 32 | UInt64(id)) ^ keySeed).multipliedFullWidth(by: 0x9E37_79B9_7F4A_7C15)
        return product.high ^ product.low
    }

    struct Top: Equatable {
        var bestBid: Money?
        var bestAsk: Money?
        var bidQuantity: Int64?
        var askQuantity: Int64?
    }

    var top: Top {
        let (bid, ask) = (bidLevels.last, askLevels.last)
        return Top(bestBid: bid?.price, bestAsk: ask?.price, bidQuantity: bid?.total, askQuantity: ask?.total)
    }

    /// Whether no order rests.
    var isEmpty: Bool { restingCount == 0 }

    /// The order slots, expiry records and names the book keeps, in use or free: what it holds however many orders
    /// came and went, since a freed one is reused before a new one is added.
    var stored: (slots: Int, expiries: Int, names: Int) { (slots.count, expiries.count, names.storedCount) }

    /// Adds `order` at the back of its price level.
    ///
    /// - Note: The caller checks ``hasRoom(for:_:at:)`` first.
    func rest(_ order: RestingOrder, side: Side, price: Money) {
        let trader = names.retain(order.trader, asTrader: true)
        let id = names.retain(order.id, asTrader: false)
        let expiry = order.expiresAt.map { allocate(Expiry(at: $0, timer: order.expiry)) } ?? Self.noSlot
        let slot = allocate(
            OrderSlot(remaining: order.remaining, price: price, id: id, trader: trader, side: side, expiry: expiry))
        index.insert(hash: Self.keyHash(trader, id), number: slot)
        restingCount += 1
        totals?.add(order.trader)
        if side == .buy {
            Self.append(slot, order.remaining, at: price, to: &bidLevels, &slots)
        } else {
            Self.append(slot, order.remaining, at: price, to: &askLevels, &slots)
        }
    }

    /// Links `slot`, of `quantity`, at the back of the level at `price`, which it starts when there is none.
    private static func append(
        _ slot: UInt32, _ quantity: Int64, at price: Money, to levels: inout PriceLevels,
        _ slots: inout ChunkedArray<OrderSlot>
    ) {
        let (place, found) = levels.locate(price)
        guard found else {
            levels.insert(PriceLevel(price: price, first: slot, quantity: quantity), at: place)
            return
        }
        let newest = levels[place].newest
        slots[Int(newest)].newer = slot
        slots[Int(slot)].older = newest
        levels[place].newest = slot
        levels[place].count += 1
        // Cannot overflow: every caller checks `hasRoom` first (placeOrder refuses with `limit_exceeded`, restore
        // refuses the state).
        levels[place].total += quantity
    }

    /// A free slot holding `order`.
    private func allocate(_ order: OrderSlot) -> UInt32 {
        if firstFreeSlot != Self.noSlot {
            let slot = firstFreeSlot
            firstFreeSlot = slots[Int(slot)].newer
            slots[Int(slot)] = order
            return slot
        }
        precondition(slots.count < Int(Self.noSlot), "a market book holds fewer than 2^32 - 1 orders")
        slots.append(order)
        return UInt32(slots.count - 1)
    }

    /// A free expiry record holding `expiry`.
    private func allocate(_ expiry: Expiry) -> UInt32 {
        if firstFreeExpiry != Self.noSlot {
            let record = firstFreeExpiry
            firstFreeExpiry = UInt32(expiries[Int(record)].at)
            expiries[Int(record)] = expiry
            return record
        }
        precondition(expiries.count < Int(Self.noSlot), "a market book holds fewer than 2^32 - 1 orders")
        expiries.append(expiry)
        return UInt32(expiries.count - 1)
    }

    /// Whether an order on `side` at `price` meets the best order of the other side, so that it would trade at once
    /// (unless that order is its own trader's, which self-trade prevention cancels instead).
    func crosses(_ side: Side, at price: Money) -> Bool {
        guard let best = bestPrice(side == .buy ? .sell : .buy) else { return false }
        return side == .buy ? best <= price : best >= price
    }

    /// The best price on `side`, `nil` when no order rests there.
    func bestPrice(_ side: Side) -> Money? { side == .buy ? bidLevels.last?.price : askLevels.last?.price }

    /// The oldest order at the best price of `side` (the next to match). The caller checks that there is one.
    func first(_ side: Side) -> RestingOrder {
        order(in: side == .buy ? bidLevels.best.oldest : askLevels.best.oldest)
    }

    /// The total quantity resting at `price` on `side`, or `nil` when no order rests there.
    func levelTotal(_ side: Side, at price: Money) -> Int64? {
        (side == .buy ? bidLevels : askLevels).level(at: price)?.total
    }

    /// Whether `quantity` more can rest at `price` on `side` without the level's total passing `Int64.max`.
    func hasRoom(for quantity: Int64, _ side: Side, at price: Money) -> Bool {
        guard let total = levelTotal(side, at: price) else { return true }
        return !total.addingReportingOverflow(quantity).overflow
    }

    /// The slot of the order `id` of `trader`, if it rests.
    private func slot(trader: String, id: String) -> UInt32? {
        guard let t = names.number(of: trader), let i = names.number(of: id) else { return nil }
        return index.find(hash: Self.keyHash(t, i)) { slots[Int($0)].id == i && slots[Int($0)].trader == t }
    }

    /// The order in `slot`.
    private func order(in slot: UInt32) -> RestingOrder {
        let stored = slots[Int(slot)]
        let expiry = stored.expiry == Self.noSlot ? nil : expiries[Int(stored.expiry)]
        return RestingOrder(
            id: names[stored.id].text, trader: names[stored.trader].text, remaining: stored.remaining,
            expiresAt: expiry?.at, expiry: expiry?.timer ?? .none)
    }

    /// Whether the order `id` of `trader` rests.
    func isResting(trader: String, id: String) -> Bool { slot(trader: trader, id: id) != nil }

    /// Whether an order with `id` rests, whoever's it is.
    func hasResting(id: String) -> Bool { names.number(of: id).map { names[$0].asID > 0 } ?? false }

    /// How many orders `trader` has resting, for ``EngineConfiguration/maxRestingOrdersPerTrader``.
    func restingCount(of trader: String) -> Int { names.number(of: trader).map { Int(names[$0].asTrader) } ?? 0 }

    /// How many orders each trader has resting (a restore adds them to the engine's ``RestingTotals``).
    var restingPerTrader: [String: Int] {
        var counts: [String: Int] = [:]
        names.forEachTrader { counts[$0] = $1 }
        return counts
    }

    /// The resting order of `key`, if it rests.
    func order(_ key: OrderKey) -> RestingOrder? { slot(trader: key.trader, id: key.id).map(order(in:)) }

    /// Sets the expiry timer of the resting order of `key`.
    func setExpiry(_ handle: TimerHandle, of key: OrderKey) {
        guard let slot = slot(trader: key.trader, id: key.id) else { return }
        let record = slots[Int(slot)].expiry
        if record != Self.noSlot { expiries[Int(record)].timer = handle }
    }

    /// Removes a resting order and returns it, or `nil` when it does not rest.
    func remove(_ key: OrderKey) -> RestingOrder? {
        guard let slot = slot(trader: key.trader, id: key.id) else { return nil }
        return take(slot, oldestOfBest: false)
    }

    /// Takes the order in `slot` off the book and returns it. `oldestOfBest`: it is the oldest order of its side's
    /// best level (a fill), whose level needs no lookup.
    private func take(_ slot: UInt32, oldestOfBest: Bool) -> RestingOrder {
        let order = self.order(in: slot)
        let stored = slots[Int(slot)]
        if stored.side == .buy {
            Self.unlink(stored, oldestOfBest: oldestOfBest, from: &bidLevels, &slots)
        } else {
            Self.unlink(stored, oldestOfBest: oldestOfBest, from: &askLevels, &slots)
        }
        release(slot, stored)
        return order
    }

    /// Unlinks `order` from its level, and removes the level once it is empty.
    private static func unlink(
        _ order: OrderSlot, oldestOfBest: Bool, from levels: inout PriceLevels, _ slots: inout ChunkedArray<OrderSlot>
    ) {
        guard let place = oldestOfBest ? levels.bestPlace : levels.place(of: order.price) else {
            preconditionFailure("a resting order has its level")
        }
        if levels[place].count == 1 {
            levels.remove(at: place)
            return
        }
        if order.older == noSlot {
            levels[place].oldest = order.newer
        } else {
            slots[Int(order.older)].newer = order.newer
        }
        if order.newer == noSlot {
            levels[place].newest = order.older
        } else {
            slots[Int(order.newer)].older = order.older
        }
        levels[place].count -= 1
        levels[place].total -= order.remaining
    }

    /// Forgets the order in `slot`, `stored`, once it is out of its level: its key, its names and counts; frees the
    /// slot.
    private func release(_ slot: UInt32, _ stored: OrderSlot) {
        index.remove(hash: Self.keyHash(stored.trader, stored.id), number: slot)
        totals?.remove(names[stored.trader].text)
        names.release(stored.trader, asTrader: true)
        names.release(stored.id, asTrader: false)
        restingCount -= 1
        if stored.expiry != Self.noSlot {
            expiries[Int(stored.expiry)] = Expiry(at: Millis(firstFreeExpiry), timer: .none)
            firstFreeExpiry = stored.expiry
        }
        slots[Int(slot)].newer = firstFreeSlot
        firstFreeSlot = slot
    }

    /// Forgets every resting order.
    func removeAll() {
        if let totals { names.forEachTrader { totals.remove($0, $1) } }
        bidLevels.removeAll()
        askLevels.removeAll()
        slots = ChunkedArray()
        firstFreeSlot = Self.noSlot
        expiries = ChunkedArray()
        firstFreeExpiry = Self.noSlot
        index.removeAll()
        names.removeAll()
        restingCount = 0
    }

    /// Removes the first order of the best level of `side` (the next order to match against).
    @discardableResult
    func popBest(_ side: Side) -> RestingOrder {
        take(side == .buy ? bidLevels.best.oldest : askLevels.best.oldest, oldestOfBest: true)
    }

    /// Reduces the first order of the best level of `side` by `quantity` (a partial fill).
    func reduceBest(_ side: Side, by quantity: Int64) {
        if side == .buy {
            slots[Int(bidLevels.best.oldest)].remaining -= quantity
            bidLevels.best.total -= quantity
        } else {
            slots[Int(askLevels.best.oldest)].remaining -= quantity
            askLevels.best.total -= quantity
        }
    }

    /// Calls `body` with each order of `level`, oldest first.
    func forEachOrder(in level: PriceLevel, _ body: (RestingOrder) -> Void) {
        var slot = level.oldest
        while slot != Self.noSlot {
            body(order(in: slot))
            slot = slots[Int(slot)].newer
        }
    }

    /// Every resting order, bids best first then asks best first, each level in time order.
    var allResting: [(side: Side, price: Money, order: RestingOrder)] {
        var all: [(side: Side, price: Money, order: RestingOrder)] = []
        all.reserveCapacity(restingCount)
        for level in bidLevels.reversed() { forEachOrder(in: level) { all.append((.buy, level.price, $0)) } }
        for level in askLevels.reversed() { forEachOrder(in: level) { all.append((.sell, level.price, $0)) } }
        return all
    }

    /// The bids' levels, worst first (best last), with their orders: how the state encoding reads them.
    var bids: Levels { Levels(levels: bidLevels, book: self) }

    /// The asks' levels, worst first (best last), with their orders.
    var asks: Levels { Levels(levels: askLevels, book: self) }

    /// One side's levels, each with its orders.
    struct Levels: Sequence {
        fileprivate let levels: PriceLevels
        fileprivate let book: MarketBook

        var count: Int { levels.count }
        var isEmpty: Bool { levels.isEmpty }
        /// The best level.
        var last: Level? { levels.last.map { Level(level: $0, book: book) } }

        func makeIterator() -> LazyMapSequence<PriceLevels, Level>.Iterator {
            let book = book
            return levels.lazy.map { Level(level: $0, book: book) }.makeIterator()
        }
    }

    /// A level with its orders.
    struct Level {
        fileprivate let level: PriceLevel
        fileprivate let book: MarketBook

        var price: Money { level.price }
        var total: Int64 { level.total }
        var count: Int { level.count }
        /// The orders, oldest first.
        var orders: [RestingOrder] {
            var all: [RestingOrder] = []
            book.forEachOrder(in: level) { all.append($0) }
            return all
        }
        /// Calls `body` with each order, oldest first.
        func forEachOrder(_ body: (RestingOrder) -> Void) { book.forEachOrder(in: level, body) }
    }
}
