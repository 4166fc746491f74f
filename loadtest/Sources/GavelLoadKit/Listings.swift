import Foundation

/// The listings a run sends its commands to: opened by the driver, or found open on the server (`--existing`).
///
/// Written once before any connection is made and only read afterwards.
struct ListingSet: Sendable {
    /// Listing ids, by the driver's listing index.
    var ids: [String]
    /// Listing id → index, for the events the watchers receive.
    var index: [Substring: Int]
    /// Each listing's format (market listings: unused).
    var formats: [ListingFormat]
    /// The amount of the driver's first english bid on each listing.
    var firstAmount: [Int]
    /// The step between two of the driver's english bids on one listing. Two bidder connections take turns on a
    /// listing and each bid outbids the last; a step of at least twice the ladder's step keeps a bid valid even
    /// when it reaches the server after the next one, sent on the other connection.
    var spacing: Int
    /// Each listing's bid count before the run (0 for listings the driver opens), so the `bids` of a
    /// `bid_placed` event names the driver's k-th bid on it.
    var baseBids: [Int]
    /// Listings that matched but were left out because they close (or open) inside the run's time.
    var skipped = 0

    var count: Int { ids.count }

    init(ids: [String], formats: [ListingFormat], firstAmount: [Int], spacing: Int, baseBids: [Int]) {
        self.ids = ids
        self.formats = formats
        self.firstAmount = firstAmount
        self.spacing = spacing
        self.baseBids = baseBids
        index = Dictionary(uniqueKeysWithValues: ids.enumerated().map { (Substring($0.element), $0.offset) })
    }

    /// `count` listings the driver opens itself, named `id(index)`, in `formats`. Bids start at 1,000 and are
    /// 10,000 apart (the largest step of the default ladder, and the driver's bids alternate between two bidders).
    static func opened(count: Int, formats: [ListingFormat], id: (Int) -> String) -> ListingSet {
        ListingSet(
            ids: (0..<count).map(id), formats: formats, firstAmount: Array(repeating: 1_000, count: count),
            spacing: 10_000, baseBids: Array(repeating: 0, count: count))
    }

    /// The step between the driver's bids on existing listings: twice the largest step of the default increment
    /// ladder (10,000), so the turns of two bidders stay valid at any price of that ladder. A listing with a
    /// custom ladder whose steps are larger answers some bids with `bid_too_low`, counted by code in the report.
    static let existingSpacing = 20_000

    /// What `--existing` picks from the pages of a `list` answer: open listings of `format` whose id starts with
    /// `prefix`, already open at `serverTime` and still open at `openUntil` (ms, the server's clock), up to
    /// `limit`, in id order.
    struct Selection {
        var format: String
        var prefix: String?
        var serverTime: Int64
        var openUntil: Int64
        var limit: Int
        var picked: [(id: String, price: Int, bids: Int)] = []
        var skipped = 0
        /// Set once a page reached past every id with `prefix` (ids come in byte order), or `limit` is reached.
        var done = false

        init(format: String, prefix: String?, serverTime: Int64, openUntil: Int64, limit: Int) {
            self.format = format
            self.prefix = prefix
            self.serverTime = serverTime
            self.openUntil = openUntil
            self.limit = limit
        }

        /// Where the first page starts (`after`): before the first id that can start with `prefix` (ids come in
        /// byte order, and every id starting with `prefix` is greater than `prefix` without its last character).
        static func firstAfter(prefix: String?) -> String? {
            guard let prefix, prefix.count > 1 else { return nil }
            return String(prefix.dropLast())
        }

        /// Takes one page's `listings` items.
        mutating func take(_ items: [[String: Any]]) {
            for item in items where !done {
                guard let id = item["listing"] as? String else { continue }
                if let prefix, !id.hasPrefix(prefix) {
                    if id > prefix { done = true }
                    continue
                }
                guard item["format"] as? String == format, item["status"] as? String == "open" else { continue }
                let opensAt = (item["opens_at"] as? NSNumber)?.int64Value ?? 0
                let closesAt = (item["closes_at"] as? NSNumber)?.int64Value
                guard opensAt <= serverTime, closesAt.map({ $0 > openUntil }) ?? true else {
                    skipped += 1
                    continue
                }
                picked.append(
                    (id, (item["price"] as? NSNumber)?.intValue ?? 0, (item["bids"] as? NSNumber)?.intValue ?? 0))
                if picked.count >= limit { done = true }
            }
        }

        /// The listing set of what was picked, english bids starting one spacing above each listing's price.
        func listings() -> ListingSet {
            var set = ListingSet(
                ids: picked.map(\.id), formats: Array(repeating: .english, count: picked.count),
                firstAmount: picked.map { $0.price + ListingSet.existingSpacing }, spacing: ListingSet.existingSpacing,
                baseBids: picked.map(\.bids))
            set.skipped = skipped
            return set
        }
    }
}
