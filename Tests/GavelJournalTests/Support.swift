import Foundation
import GavelCore
import GavelJournal
import Testing

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - Randomness

extension SplitMix64 {
    /// True with a probability of `percent` in 100.
    mutating func chance(_ percent: Int) -> Bool { Int.random(in: 0..<100, using: &self) < percent }

    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }

    mutating func int64(_ range: ClosedRange<Int64>) -> Int64 { Int64.random(in: range, using: &self) }

    /// One element of a non-empty array.
    mutating func pick<T>(_ elements: [T]) -> T { elements[Int.random(in: elements.indices, using: &self)] }
}

/// A seed from the environment variable `name`, or `fallback`.
func seed(from name: String, default fallback: UInt64) -> UInt64 {
    ProcessInfo.processInfo.environment[name].flatMap { UInt64($0) } ?? fallback
}

// MARK: - Temporary directories

/// A fresh directory under /tmp, removed by ``remove()``.
struct TemporaryDirectory {
    let path: String

    init(_ label: String) throws {
        var template = Array("/tmp/gavel-journal-tests-\(label)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func sub(_ name: String) -> String { path + "/" + name }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// Copies the directory tree at `source` to `destination` (which must not exist).
func copyTree(_ source: String, to destination: String) throws {
    try FileManager.default.copyItem(atPath: source, toPath: destination)
}

func readBytes(_ path: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
}

func writeBytes(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

// MARK: - A workload over every format

/// A deterministic stream of commands over every listing format: opens first in each group, then bids, buy-nows,
/// accepts, orders and cancels on the listings opened recently (so some reach closed listings), with engine times
/// that never go backwards and request ids unique across the stream (`prefix` + a counter).
struct Workload {
    struct Open {
        var id: String
        var format: ListingFormat
        var seller: String
        var hasBuyNow: Bool
    }

    private(set) var rng: SplitMix64
    private(set) var time: Millis
    private var counter = 0
    private var listings: [Open] = []
    private var orders: [(listing: String, trader: String, id: String)] = []
    private var sinceOpen = Int.max
    let prefix: String
    /// Commands between two groups of opens.
    var groupSize = 40
    /// Largest step of the clock between two commands, in ms.
    var maxStep: Millis = 3
    /// Whether opens set short settlement deadlines (20-200 ms) and one command in five acts on a settlement or a
    /// second-chance offer, by a random actor in a random role.
    var settlements = false

    static let people = ["ann", "bob", "cyd", "dee", "eve", "fay"]

    init(seed: UInt64, prefix: String = "c", start: Millis = 0) {
        rng = SplitMix64(seed: seed)
        time = start
        self.prefix = prefix
    }

    private mutating func nextID() -> String {
        counter += 1
        return "\(prefix)\(counter)"
    }

    /// The next command and the engine time to apply it at.
    /// Applies the next `count` commands to `engine`, each at its time.
    mutating func apply(_ count: Int, to engine: Engine) {
        var events: [Event] = []
        for _ in 0..<count {
            let (command, at) = next()
            engine.advance(to: at, events: &events)
            _ = engine.apply(command, events: &events)
            events.removeAll(keepingCapacity: true)
        }
    }

    mutating func next() -> (command: Command, at: Millis) {
        time += rng.int64(0...maxStep)
        if sinceOpen >= groupSize {
            sinceOpen = -5
        }
        if sinceOpen < 0 {
            let kind = sinceOpen + 5
            sinceOpen += 1
            return (open(kind), time)
        }
        sinceOpen += 1
        let recent = listings.suffix(12)
        let listing = rng.pick(Array(recent))
        if settlements && rng.chance(20) { return (settlementCommand(on: listing), time) }
        let who = rng.pick(Self.people)
        let id = nextID()
        let body: CommandBody
        switch listing.format {
        case .english:
            if listing.hasBuyNow && rng.chance(4) {
                body = .buyNow(buyer: who)
            } else if rng.chance(2) {
                body = .cancelListing(seller: listing.seller)
            } else {
                body = .bid(bidder: who, amount: rng.int64(90...4000))
            }
        case .sealed:
            body = .bid(bidder: who, amount: rng.int64(5...2500))
        case .dutch:
            body = .accept(bidder: who, quantity: rng.int64(1...3))
        case .market:
            let mine = orders.filter { $0.listing == listing.id }
            if !mine.isEmpty && rng.chance(12) {
                let order = rng.pick(mine)
                body = .cancel(trader: rng.chance(80) ? order.trader : who, order: order.id)
            } else {
                let tif: TimeInForce = rng.chance(80) ? .gtc : .ioc
                let expires: Millis? = rng.chance(30) ? time + rng.int64(20...300) : nil
                body = .order(
                    trader: who, side: rng.chance(50) ? .buy : .sell, price: rng.int64(95...105),
                    quantity: rng.int64(1...6), tif: tif, expiresAt: expires)
                orders.append((listing.id, who, id))
                if orders.count > 200 { orders.removeFirst(100) }
            }
        }
        return (Command(id: id, listing: listing.id, body: body), time)
    }

    private mutating func settlementCommand(on listing: Open) -> Command {
        let id = nextID()
        let by = rng.pick(Self.people + [listing.seller, "pay", "ada"])
        let role = rng.pick(ActorRole.allCases)
        if listing.format == .english && rng.chance(15) {
            return Command(
                id: id, listing: listing.id, body: .secondChance(rng.pick(OfferAction.allCases), by: by, role: role))
        }
        let actions: [SettlementAction] = [
            .confirmPayment(paymentRef: rng.chance(80) ? "PAY" : "OTHER"), .markShipped(tracking: "TRK"),
            .confirmDelivery, .openDispute(reason: "not as described"),
            .resolveDispute(rng.chance(50) ? .release : .refund), .refund,
        ]
        return Command(
            id: id, listing: listing.id,
            body: .settle(number: rng.int64(1...3), action: rng.pick(actions), by: by, role: role))
    }

    private mutating func open(_ kind: Int) -> Command {
        let id = nextID()
        let listing = "L" + id
        let seller = rng.pick(["sam", "sue", "sid"])
        let closes = time + rng.int64(60...400)
        let terms: ListingTerms
        var hasBuyNow = false
        switch kind {
        case 0:
            hasBuyNow = rng.chance(50)
            terms = .english(
                .init(
                    start: 100, reserve: rng.chance(50) ? 1500 : nil, buyNow: hasBuyNow ? 5000 : nil, closesAt: closes,
                    softClose: SoftClose(windowMs: 40, extendMs: 30, maxClosesAt: rng.chance(50) ? closes + 200 : nil)))
        case 1:
            terms = .sealed(
                .init(pricing: rng.chance(50) ? .first : .second, start: 10, reserve: 300, closesAt: closes))
        case 2:
            terms = .dutch(
                .init(
                    start: 1000, floor: 400, step: 50, stepEveryMs: rng.int64(10...40), quantity: rng.int64(3...9),
                    closesAt: closes))
        case 3:
            terms = .market(.init(closesAt: rng.chance(70) ? closes + 300 : nil))
        default:
            terms = .english(
                .init(
                    start: 50, closesAt: closes,
                    increments: [IncrementStep(from: 0, step: 10), IncrementStep(from: 1000, step: 50)]))
        }
        listings.append(Open(id: listing, format: terms.format, seller: seller, hasBuyNow: hasBuyNow))
        var given = terms
        if settlements {
            given.deadlines = SettlementDeadlines(
                paymentDueMs: rng.int64(20...200), shipDueMs: rng.int64(20...200),
                complaintWindowMs: rng.int64(20...200), offerDueMs: rng.int64(20...200))
        }
        return Command(id: id, listing: listing, body: .open(seller: seller, terms: given))
    }
}

/// Writes `commands` as a journal from lsn 1, `perBatch` entries per frame, laid out as the journal writer lays
/// them out, every command an entry whatever the rules would say of it: as version 1 records (no outcome), as a
/// build before outcomes wrote them, or with `outcomes` (one per command) as version 2 records saying those.
/// Returns the chain after the last batch.
@discardableResult
func writeJournalRecords(
    _ commands: [(command: Command, at: Millis)], to directory: DataDirectory, perBatch: Int,
    outcomes: [RequestOutcome]? = nil
) throws -> [UInt8] {
    try directory.create()
    var file = SegmentHeader(firstLSN: 1, previousChain: Chain.genesis).encoded()
    var chain = Chain.genesis
    var scratch = BinaryWriter()
    var lsn: UInt64 = 0
    for start in stride(from: 0, to: commands.count, by: perBatch) {
        var records: [UInt8] = []
        let first = lsn + 1
        for (command, at) in commands[start..<min(start + perBatch, commands.count)] {
            lsn += 1
            JournalRecord.command(
                lsn: lsn, at: at, principal: command.principal, command: command, outcome: outcomes?[Int(lsn) - 1]
            )
            .encode(into: &records, scratch: &scratch)
        }
        chain = Chain.next(chain, records: records[...])
        JournalRecord.trailer(firstLSN: first, lastLSN: lsn, count: UInt32(lsn - first + 1), chain: chain)
            .encode(into: &records, scratch: &scratch)
        LZ4Frame.compress(records, appendingTo: &file)
    }
    try writeBytes(file, to: directory.journal + "/" + DataDirectory.segmentName(firstLSN: 1))
    return chain
}

// MARK: - Reading a journal

/// Every record of every segment of `directory`, in order, checking lsn continuity from the first segment on.
func journalRecords(_ directory: DataDirectory) throws -> [JournalRecord] {
    var records: [JournalRecord] = []
    for segment in directory.segments() {
        var reader = try SegmentReader(bytes: try readBytes(segment.path))
        while let batch = try reader.next() { records += batch.records }
    }
    return records
}

/// The result of replaying `records` on a fresh engine: advance to each record's time, then apply its command.
struct Replayed {
    var engine: Engine
    /// For each command record, in order: its lsn, command and result.
    var results: [(lsn: UInt64, command: Command, result: CommandResult)] = []
    /// The settlement states entered, by a command and by a deadline, over the whole replay.
    var settlementStates: Set<SettlementState> = []
    var deadlineStates: Set<SettlementState> = []
}

func replay(_ records: [JournalRecord], configuration: EngineConfiguration = EngineConfiguration()) -> Replayed {
    var out = Replayed(engine: Engine(configuration: configuration))
    var events: [Event] = []
    for record in records {
        switch record {
        case .command(let lsn, let at, _, let command, _):
            out.engine.advance(to: at, events: &events)
            out.results.append((lsn, command, out.engine.apply(command, events: &events)))
        case .tick(_, let at):
            out.engine.advance(to: at, events: &events)
        case .trailer:
            Issue.record("a trailer among the records of a batch")
        }
        for event in events {
            guard case .settlement(let change) = event.kind else { continue }
            out.settlementStates.insert(change.state)
            if change.step.by == nil && change.state != .awaitingPayment { out.deadlineStates.insert(change.state) }
        }
        events.removeAll(keepingCapacity: true)
    }
    return out
}

// MARK: - The gavel binary

/// The package root: three levels up from this file (Tests/GavelJournalTests/Support.swift).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// `.build/debug/gavel` under the package root.
let gavelPath = packageRoot.appendingPathComponent(".build/debug/gavel").path

/// The gavel binary, or a recorded failure that says how to build it.
func gavelBinary(sourceLocation: SourceLocation = #_sourceLocation) -> URL? {
    guard FileManager.default.isExecutableFile(atPath: gavelPath) else {
        Issue.record(
            "the gavel binary is missing at \(gavelPath): build it first with `swift build --build-tests` (or `swift build --product gavel`)",
            sourceLocation: sourceLocation)
        return nil
    }
    return URL(fileURLWithPath: gavelPath)
}

/// The outcome of running the binary to completion.
struct ToolRun {
    var status: Int32
    var stdout: String
    var stderr: String
    var lines: [String] { stdout.split(separator: "\n").map(String.init) }
}

/// Runs `gavel arguments...` to completion with `input` on standard input.
func runGavel(_ arguments: [String], input: String = "") throws -> ToolRun {
    guard let binary = gavelBinary() else { return ToolRun(status: -1, stdout: "", stderr: "no binary") }
    let process = Process()
    process.executableURL = binary
    process.arguments = arguments
    let stdin = Pipe()
    let stdout = Pipe()
    let stderr = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    process.standardError = stderr
    try process.run()
    // Read both pipes on other threads so that neither fills up.
    let errData = LockedData()
    let errThread = Thread { errData.set(stderr.fileHandleForReading.readDataToEndOfFile()) }
    errThread.start()
    if !input.isEmpty { stdin.fileHandleForWriting.write(Data(input.utf8)) }
    try stdin.fileHandleForWriting.close()
    let outData = stdout.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    while !errData.isSet { usleep(1000) }
    return ToolRun(
        status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
        stderr: String(decoding: errData.get(), as: UTF8.self))
}

final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data: Data?

    func set(_ value: Data) { lock.withLock { data = value } }
    var isSet: Bool { lock.withLock { data != nil } }
    func get() -> Data { lock.withLock { data ?? Data() } }
}
