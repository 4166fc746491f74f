import GavelCore

#if canImport(Glibc)
    import Glibc
#endif

/// `<data-dir>/engine-settings`: the engine settings that are part of the state (the idempotency window, the
/// closed-listing retention, the request ids kept per principal, the resting-order caps, the shortest dutch step,
/// the longest listing duration, the per-user caps), as the data directory's first start fixed them.
///
/// A snapshot holds them too, but until the first snapshot is written only this file does: without it, a restart
/// after a crash with other (or no) options would replay the journal under other rules, and a command the first
/// process acknowledged (a dutch `open` its step allowed, a bid on a listing its retention had evicted) could come
/// out refused. Recovery reads it before it replays a journal from its start, every tool that replays alike; a
/// writing process (`gavel serve`, `gavel simulate --data-dir`, an offline `gavel snapshot`) writes it once, after
/// its first recovery, with the settings that recovery ended with. Text, one `name value` per line.
public enum EngineSettingsFile {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// `<data-dir>/engine-settings`.
    public static func path(_ directory: DataDirectory) -> String { directory.path + "/engine-settings" }

    private static let names = [
        "idempotency_window_ms", "closed_listing_retention_ms", "max_request_ids_per_principal",
        "max_resting_orders_per_listing", "max_resting_orders_per_trader", "min_dutch_step_ms",
        "max_listing_duration_ms", "max_open_listings_per_seller", "max_resting_orders_per_trader_total",
        "max_listings_held_per_seller", "max_unfinished_settlements_per_user",
    ]
    /// The least value of each setting (the others: 0): what the engine needs, and what a snapshot holding the
    /// settings must hold to be read back; a file with less would have the engine write snapshots nothing reads.
    private static let minimum: [String: Int64] = [
        "idempotency_window_ms": 1, "max_request_ids_per_principal": 1, "max_resting_orders_per_listing": 1,
        "max_resting_orders_per_trader": 1, "min_dutch_step_ms": 1, "max_listing_duration_ms": 1,
        "max_open_listings_per_seller": 1, "max_resting_orders_per_trader_total": 1,
        "max_listings_held_per_seller": 1, "max_unfinished_settlements_per_user": 1,
    ]
    /// The settings a file written before they existed lacks: they take the value given at start.
    private static let later: Set<String> = ["max_open_listings_per_seller", "max_resting_orders_per_trader_total"]
    /// The settings a file written before they existed lacks and that are then no limit, whatever is given at start:
    /// the journal of such a directory holds commands accepted without them, and a replay must accept them again
    /// (a state of version 4 or earlier has none either).
    private static let unlimitedWhenMissing: Set<String> = [
        "max_listings_held_per_seller", "max_unfinished_settlements_per_user",
    ]

    private static func values(_ c: EngineConfiguration) -> [Int64] {
        [
            c.idempotencyWindowMs, c.closedListingRetentionMs, Int64(c.maxRequestIDsPerPrincipal),
            Int64(c.maxRestingOrdersPerListing), Int64(c.maxRestingOrdersPerTrader), c.minDutchStepMs,
            c.maxListingDurationMs, Int64(c.maxOpenListingsPerSeller), Int64(c.maxRestingOrdersPerTraderTotal),
            Int64(c.maxListingsHeldPerSeller), Int64(c.maxUnfinishedSettlementsPerUser),
        ]
    }

    /// The text of the file for `configuration`.
    static func encode(_ configuration: EngineConfiguration) -> [UInt8] {
        Array(zip(names, values(configuration)).map { "\($0) \($1)\n" }.joined().utf8)
    }

    /// `base` with the settings of `directory`'s file, or `nil` when it has none.
    ///
    /// - Throws: ``Failure`` naming the file and the line when it cannot be read or does not hold exactly the
    ///   settings above, each an integer in its range (``minimum``; `max_listing_duration_ms 0` is no limit): a
    ///   damaged file must not silently change the rules, nor make snapshots that cannot be read back.
    public static func load(_ directory: DataDirectory, into base: EngineConfiguration) throws(Failure)
        -> EngineConfiguration?
    {
        let file = path(directory)
        let bytes: [UInt8]
        do {
            // Only a regular file is read: a FIFO put there is refused at once.
            guard let read = try Files.readIfPresent(file) else { return nil }
            bytes = read
        } catch {
            switch error {
            case .danglingLink(let target): throw Failure(description: "\(file) \(danglingLink(to: target))")
            case .notRegular: throw Failure(description: "\(file) is not a regular file; restore the file or remove it")
            case .failed(let code):
                throw Failure(description: "cannot read \(file): \(String(cString: strerror(code)))")
            }
        }
        var found: [String: Int64] = [:]
        for (number, line) in String(decoding: bytes, as: UTF8.self).split(separator: "\n").enumerated() {
            let fields = line.split(separator: " ")
            guard fields.count == 2, names.contains(String(fields[0])), var value = Int64(fields[1]), value >= 0,
                found[String(fields[0])] == nil
            else {
                throw Failure(
                    description:
                        "\(file), line \(number + 1): \"\(line)\" is not one of the settings (\(names.joined(separator: ", "))) with a non-negative integer, given once; restore the file or remove it to take the options given at start"
                )
            }
            let name = String(fields[0])
            // 0 is "no limit", as for --max-listing-duration-ms.
            if name == "max_listing_duration_ms" && value == 0 { value = .max }
            guard value >= (minimum[name] ?? 0) else {
                throw Failure(
                    description:
                        "\(file), line \(number + 1): \(name) \(value) is out of range (at least \(minimum[name] ?? 0), as the engine and its snapshots need); restore the file or remove it to take the options given at start"
                )
            }
            found[name] = value
        }
        let missing = names.filter {
            found[$0] == nil && !later.contains($0) && !unlimitedWhenMissing.contains($0)
        }.joined(separator: ", ")
        guard missing.isEmpty else {
            throw Failure(description: "\(file) lacks \(missing); restore the file or remove it")
        }
        var c = base
        c.idempotencyWindowMs = found["idempotency_window_ms"]!
        c.closedListingRetentionMs = found["closed_listing_retention_ms"]!
        c.maxRequestIDsPerPrincipal = Int(found["max_request_ids_per_principal"]!)
        c.maxRestingOrdersPerListing = Int(found["max_resting_orders_per_listing"]!)
        c.maxRestingOrdersPerTrader = Int(found["max_resting_orders_per_trader"]!)
        c.minDutchStepMs = found["min_dutch_step_ms"]!
        c.maxListingDurationMs = found["max_listing_duration_ms"]!
        if let n = found["max_open_listings_per_seller"] { c.maxOpenListingsPerSeller = Int(n) }
        if let n = found["max_resting_orders_per_trader_total"] { c.maxRestingOrdersPerTraderTotal = Int(n) }
        c.maxListingsHeldPerSeller = found["max_listings_held_per_seller"].map { Int($0) } ?? .max
        c.maxUnfinishedSettlementsPerUser = found["max_unfinished_settlements_per_user"].map { Int($0) } ?? .max
        return c
    }

    /// Writes `configuration`'s settings to `directory`'s file, atomically, unless it has one already.
    ///
    /// - Throws: ``FileError`` when the file cannot be written, or is a symbolic link to nothing, which is never
    ///   replaced.
    public static func keep(_ configuration: EngineConfiguration, in directory: DataDirectory) throws(FileError) {
        let file = path(directory)
        if let target = Files.danglingLinkTarget(file) {
            throw FileError(path: file, operation: "write", code: ENOENT, reason: "it \(danglingLink(to: target))")
        }
        guard !Files.entryExists(file) else { return }
        try Files.writeAtomically(encode(configuration), to: file, directory: directory.path)
    }

    /// Why a symbolic link to nothing in the file's place is refused, and what to do.
    private static func danglingLink(to target: String) -> String {
        "is a symbolic link to \(target), which does not exist (a volume not mounted?); restore the file it points to, or remove the link to take the options given at start"
    }
}
