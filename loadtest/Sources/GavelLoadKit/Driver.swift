import Foundation
import GavelCore
import NIOCore
import NIOPosix
import Synchronization

/// How the driver authenticates: a secret to sign one token per simulated user, or one token for every connection
/// (a `service` token, which may act for any user).
public enum Credentials: Sendable {
    case secret(String)
    case token(String)
    /// No token: every connection is an anonymous watcher (broadcast mode, against a relay that checks none).
    case anonymous
}

/// Runs one load scenario against a server and reports what it measured.
///
/// Open loop: command k is due at `start + k / rate`; the scheduler thread sends every due command at once, and
/// latency counts from the due time, so a stall in the server (or in the driver) shows as latency instead of
/// silently lowering the send rate (no coordinated omission).
public final class Driver: @unchecked Sendable {
    /// The configuration; with `existing`, `listings` becomes the number found on the server before any
    /// connection but the one that looks for them is made.
    public private(set) var configuration: LoadConfiguration
    let credentials: Credentials
    let group: MultiThreadedEventLoopGroup
    let runID: String
    /// Per listing, the intended send time of each bid in send order (for fan-out latency; english listings only).
    let sendLog: Mutex<[[UInt64]]>
    /// The listings of the run (see ``ListingSet``: set before the connections, read-only afterwards).
    private(set) var listings: ListingSet
    let setupResults = Mutex<[String: String]>([:])
    let recorder = Recorder()
    /// The monotonic time (ns) command 0 is due; 0 until the schedule starts.
    let scheduleStart = Atomic<UInt64>(0)
    /// Where to print the live progress line (nil: no progress line).
    let progress: ((String) -> Void)?
    /// Where to print each interval report as it ends (with `reportSeconds`).
    let intervalReport: ((SoakInterval) -> Void)?
    /// Says at once when the server refuses commands with `rate_limited` or closes a connection.
    let diagnostics: Diagnostics
    /// The seller's connection, once the server closed it: its close code and reason.
    let sellerClosed = Mutex<(code: Int, reason: String)?>(nil)

    public init(
        configuration: LoadConfiguration, credentials: Credentials, progress: ((String) -> Void)? = nil,
        intervalReport: ((SoakInterval) -> Void)? = nil, diagnostics: Diagnostics = Diagnostics()
    ) {
        self.configuration = configuration
        self.credentials = credentials
        self.progress = progress
        self.intervalReport = intervalReport
        self.diagnostics = diagnostics
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, System.coreCount))
        runID = String(UInt64(Date().timeIntervalSince1970 * 1000) % 46_656_000, radix: 36)
        sendLog = Mutex(Array(repeating: [], count: configuration.listings))
        let seed = configuration.seed
        let runID = runID
        listings = .opened(
            count: configuration.listings,
            formats: configuration.formats.draw(count: configuration.listings, seed: configuration.seed)
        ) { "ld\(seed)-\(runID)-\($0)" }
    }

    func listingID(_ index: Int) -> String { listings.ids[index] }

    func token(user: String, role: String) -> String? {
        switch credentials {
        case .secret(let secret):
            Token.mint(
                secret: secret, subject: user, role: role,
                expires: Date().addingTimeInterval(configuration.durationSeconds + 3_600))
        case .token(let token): token
        case .anonymous: nil
        }
    }

    func source(_ index: Int) -> String? {
        let addresses = configuration.effectiveSourceAddresses
        return addresses > 1 ? "127.0.0.\(1 + index % addresses)" : nil
    }

    public func run() async throws -> Report {
        do {
            let report = try await drive()
            try? await group.shutdownGracefully()
            return report
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private func drive() async throws -> Report {
        let fileLimit = raiseFileLimit()
        let needed = configuration.totalConnections
        if needed + 64 > fileLimit {
            throw LoadError.invalid(
                "--watchers and --connections need \(needed) sockets but this process may open \(fileLimit) files (ulimit -Hn); raise the hard limit or ask for fewer"
            )
        }
        let probe = MemoryProbe(configuration: configuration)
        let memoryBefore = try probe?.residentBytes()
        let connectStarted = monotonicNanos()

        // 1. The listings: found on the server, or opened by one seller connection (none in broadcast mode).
        let seller: LoadConnection?
        if configuration.existing {
            listings = try await findListings()
            configuration.listings = listings.count
            sendLog.withLock { [count = listings.count] in $0 = Array(repeating: [], count: count) }
            seller = nil
        } else {
            seller = try await openListings()
        }
        let c = configuration
        let total = c.warmupSeconds + c.durationSeconds
        if c.inFlight != nil {
            return try await closedLoop(
                seller: seller, memoryBefore: memoryBefore, probe: probe, connectStarted: connectStarted)
        }

        // 2. Watchers, then bidders (traders; in broadcast mode one anonymous publisher).
        let recorder = self.recorder
        let diagnostics = self.diagnostics
        let command = c.preset == .market ? "order" : "bid"
        let watchers = try await connectWatchers(recorder: recorder)
        var bidders: [LoadConnection] = []
        for b in 0..<(c.broadcast ? 1 : c.connections) {
            let bidder = LoadConnection(
                index: b,
                onMessage: { connection, text, received in
                    let utf8 = text.utf8
                    guard Scan.string("type", in: utf8) == "result", let id = Scan.string("id", in: utf8),
                        let intended = connection.pending.removeValue(forKey: id)
                    else { return }
                    let error = Scan.string("error", in: utf8).map(String.init)
                    if error == "rate_limited" {
                        diagnostics.rateLimited(
                            command: command, message: Scan.string("message", in: utf8).map(String.init))
                    }
                    recorder.result(intended: intended, received: received, error: error)
                },
                onClose: { code, reason in
                    recorder.closed(code: code)
                    diagnostics.closed(connection: "bidder connection \(b)", code: code, reason: reason)
                })
            _ = try await LoadConnection.connect(
                group: group, host: c.host, port: c.port, source: source(b + c.watchers + 1), path: c.path,
                token: c.broadcast ? nil : token(user: bidderName(b), role: "bidder"), handler: bidder)
            bidders.append(bidder)
        }
        let connectSeconds = Double(monotonicNanos() - connectStarted) / 1e9
        // Let subscriptions settle.
        try await Task.sleep(for: .milliseconds(c.watchers > 2_000 ? 1_000 : 300))
        let memoryConnected = try probe?.residentBytes()

        // 3. The open-loop schedule, on a thread of its own.
        let start = monotonicNanos()
        let end = start + UInt64(total * 1e9)
        recorder.measure(from: start + UInt64(c.warmupSeconds * 1e9))
        let schedule = Thread { [self, bidders] in send(bidders: bidders, start: start, end: end) }
        schedule.start()
        var trend = MemoryTrend()
        if let memoryConnected { trend.samples.append((0, memoryConnected)) }
        var lastSample = start
        var lastPrint = start
        var intervals: [SoakInterval] = []
        // Intervals count from the end of the warm-up: like every other figure, they measure the run, not its start.
        let measuredStart = start + UInt64(c.warmupSeconds * 1e9)
        var lastInterval = measuredStart
        var intervalsStarted = false
        _ = recorder.takeInterval()
        var lastDeliveries = -1
        while monotonicNanos() < end + UInt64(c.drainSeconds * 1e9) {
            try await Task.sleep(for: .milliseconds(250))
            let now = monotonicNanos()
            if let probe, now < end, now - lastSample >= UInt64(c.sampleSeconds * 1e9) {
                trend.samples.append((Double(now - start) / 1e9, try probe.residentBytes()))
                lastSample = now
            }
            if c.reportSeconds != nil, !intervalsStarted, now >= measuredStart {
                _ = recorder.takeInterval()
                lastInterval = now
                intervalsStarted = true
            }
            if let every = c.reportSeconds, intervalsStarted, now <= end, now - lastInterval >= UInt64(every * 1e9) {
                let figures = recorder.takeInterval()
                let interval = SoakInterval(
                    seconds: Double(now - start) / 1e9, residentBytes: try probe?.residentBytes(),
                    results: figures.results, errors: figures.errors, p50: figures.p50, p99: figures.p99)
                intervals.append(interval)
                intervalReport?(interval)
                lastInterval = now
            }
            if now >= end {
                let m = recorder.snapshot
                if c.broadcast {
                    // No results to wait for: stop once the deliveries stop coming.
                    if m.deliveries == lastDeliveries { break }
                    lastDeliveries = m.deliveries
                } else if m.results >= m.sent {
                    break
                }
            }
            if let progress, now - lastPrint >= 1_000_000_000 {
                let (count, p99, max) = recorder.takeWindow()
                let m = recorder.snapshot
                let errors = m.errors.values.reduce(0, +)
                progress(
                    String(
                        format: "t=%4.0fs  %6.0f results/s  p99 %8.3f ms  max %8.3f ms  errors %d  deliveries %d",
                        Double(now - start) / 1e9, Double(count) * 1e9 / Double(now - lastPrint),
                        Double(p99) / 1_000, Double(max) / 1_000, errors, m.deliveries))
                lastPrint = now
            }
        }
        if let probe {
            let now = monotonicNanos()
            trend.samples.append((Double(min(now, end) - start) / 1e9, try probe.residentBytes()))
        }
        let measurements = recorder.snapshot
        for connection in bidders + watchers + (seller.map { [$0] } ?? []) { connection.close() }
        try await Task.sleep(for: .milliseconds(100))
        var report = Report(
            configuration: c, measurements: measurements, measuredSeconds: c.durationSeconds,
            connectionsHeld: bidders.count + watchers.count + (seller == nil ? 0 : 1), connectSeconds: connectSeconds)
        report.memoryBefore = memoryBefore
        report.memoryConnected = memoryConnected
        report.memory = trend
        if c.reportSeconds != nil { report.soak = SoakSummary(intervals: intervals) }
        report.existingSkipped = listings.skipped
        return report
    }

    /// The closed loop (``ClosedLoop``): the bidder connections are opened and run on a thread of their own. Bids on
    /// a listing step by twice the ladder's largest step, so a bid that reaches the server just after the next one
    /// (sent on another connection) is still accepted.
    private func closedLoop(
        seller: LoadConnection?, memoryBefore: UInt64?, probe: MemoryProbe?, connectStarted: UInt64
    ) async throws -> Report {
        let c = configuration
        let plan = ClosedLoop.Plan(
            inFlight: c.inFlight ?? 1, warmupSeconds: c.warmupSeconds, durationSeconds: c.durationSeconds,
            drainSeconds: c.drainSeconds, listingIDs: listings.ids,
            firstAmount: listings.firstAmount, spacing: max(listings.spacing, ListingSet.existingSpacing), zipf: c.zipf,
            seed: c.seed,
            serverPID: c.serverPID, runID: runID, rate: c.paced ? c.rate : nil)
        let loop = ClosedLoop(plan: plan, diagnostics: diagnostics, progress: progress)
        let bidders = (0..<c.connections).map { (name: bidderName($0), source: source($0 + 1)) }
        let tokens = bidders.map { token(user: $0.name, role: "bidder") }
        let outcome: Result<(ClosedLoop.Outcome, Double, UInt64?), LoadError> = await withCheckedContinuation {
            continuation in
            let thread = Thread {
                do throws(LoadError) {
                    for (b, bidder) in bidders.enumerated() {
                        try loop.connect(
                            host: c.host, port: c.port, path: c.path, source: bidder.source, token: tokens[b],
                            bidder: bidder.name)
                    }
                    let connectSeconds = Double(monotonicNanos() - connectStarted) / 1e9
                    let memoryConnected = try probe?.residentBytes()
                    continuation.resume(returning: .success((loop.run(), connectSeconds, memoryConnected)))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
            thread.name = "gavel-load closed loop"
            thread.start()
        }
        seller?.close()
        let (result, connectSeconds, memoryConnected) = try outcome.get()
        var report = Report(
            configuration: c, measurements: result.measurements, measuredSeconds: result.measuredSeconds,
            connectionsHeld: c.connections + (seller == nil ? 0 : 1), connectSeconds: connectSeconds)
        report.memoryBefore = memoryBefore
        report.memoryConnected = memoryConnected
        report.existingSkipped = listings.skipped
        report.driverCPUSeconds = result.driverCPUSeconds
        report.serverCPUSeconds = result.serverCPUSeconds
        return report
    }

    /// Opens `listings` listings (each in its format from `--formats`, or market for the market preset) on one
    /// seller connection, retrying
    /// the opens the server refuses with `rate_limited` or `overloaded`.
    private func openListings() async throws -> LoadConnection? {
        let c = configuration
        guard !c.broadcast else { return nil }
        let total = c.warmupSeconds + c.durationSeconds
        let wallNow = Int64(Date().timeIntervalSince1970 * 1000)
        let sellerName = "load-seller-\(runID)"
        let seller = LoadConnection(
            index: -1,
            onMessage: { [self] _, text, _ in
                guard Scan.string("type", in: text.utf8) == "result", let id = Scan.string("id", in: text.utf8)
                else { return }
                let error = Scan.string("error", in: text.utf8).map(String.init) ?? ""
                if error == "rate_limited" {
                    diagnostics.rateLimited(
                        command: "open", message: Scan.string("message", in: text.utf8).map(String.init))
                }
                setupResults.withLock { $0[String(id)] = error }
            },
            onClose: { [self] code, reason in
                sellerClosed.withLock { $0 = (code, reason) }
                diagnostics.closed(
                    connection: "the seller's connection (opening the listings)", code: code, reason: reason)
            })
        _ = try await LoadConnection.connect(
            group: group, host: c.host, port: c.port, source: source(0), path: c.path,
            token: token(user: sellerName, role: "seller"), handler: seller)
        let closesAt = wallNow + Int64((total + c.drainSeconds + 600) * 1000)
        var toOpen = Array(0..<c.listings)
        var attempts = 0
        while !toOpen.isEmpty {
            attempts += 1
            if attempts > 50 {
                let refused = diagnostics.refusals("open")
                throw LoadError.server(
                    "could not open the listings: the server keeps refusing"
                        + (refused > 0 ? " (\(refused) open commands refused with rate_limited; see above)" : ""))
            }
            for chunk in stride(from: 0, to: toOpen.count, by: 100) {
                for index in toOpen[chunk..<min(chunk + 100, toOpen.count)] {
                    let terms: String
                    switch c.preset {
                    case .market: terms = #""format":"market""#
                    case .hot:
                        terms =
                            #""format":"english","start":100,"soft_close":{"window_ms":60000,"extend_ms":5000,"max_closes_at":\#(closesAt + 3_600_000)}"#
                    default:
                        switch listings.formats[index] {
                        case .english: terms = #""format":"english","start":100"#
                        case .sealed: terms = #""format":"sealed","pricing":"second","start":100"#
                        case .dutch:
                            // Enough units and a slow enough clock to stay open through the run.
                            terms =
                                #""format":"dutch","start":100000,"floor":1000,"step":1,"step_every_ms":60000,"quantity":1000000"#
                        }
                    }
                    let open =
                        #"{"type":"open","id":"open-\#(runID)-\#(index)-\#(attempts)","listing":"\#(listingID(index))","seller":"\#(sellerName)",\#(terms),"closes_at":\#(closesAt)}"#
                    seller.send(open, id: nil, intended: 0)
                }
                try await waitFor(count: min(chunk + 100, toOpen.count), attempt: attempts, timeout: 30)
            }
            let outcome = setupResults.withLock { results in
                defer { results.removeAll() }
                return results
            }
            var retry: [Int] = []
            for index in toOpen {
                let error = outcome["open-\(runID)-\(index)-\(attempts)"]
                switch error {
                case "": break
                case "rate_limited", "overloaded", nil: retry.append(index)
                case let code?: throw LoadError.server("opening \(listingID(index)) failed: \(code)")
                }
            }
            toOpen = retry
            if !toOpen.isEmpty { try await Task.sleep(for: .milliseconds(250)) }
        }
        return seller
    }

    /// `--existing`: pages through the server's open listings (`list`, 100 at a time, the most the server answers)
    /// on one connection and picks up to `listings` english ones (market ones for the market preset) that stay open through the run.
    private func findListings() async throws -> ListingSet {
        let c = configuration
        let answers = Mutex<[String: String]>([:])
        let lister = LoadConnection(
            index: -1,
            onMessage: { _, text, _ in
                let utf8 = text.utf8
                guard let type = Scan.string("type", in: utf8), type == "listings" || type == "result",
                    let id = Scan.string("id", in: utf8)
                else { return }
                answers.withLock { $0[String(id)] = String(text) }
            }, onClose: { _, _ in })
        _ = try await LoadConnection.connect(
            group: group, host: c.host, port: c.port, source: source(0), path: c.path,
            token: token(user: "load-lister-\(runID)", role: "bidder"), handler: lister)
        defer { lister.close() }
        let format = c.preset == .market ? "market" : "english"
        var selection: ListingSet.Selection?
        var after = ListingSet.Selection.firstAfter(prefix: c.existingPrefix)
        var request = 0
        var refusals = 0
        repeat {
            request += 1
            let id = "find-\(runID)-\(request)"
            let cursor = after.map { #","after":"\#($0)""# } ?? ""
            lister.send(#"{"type":"list","limit":100,"id":"\#(id)"\#(cursor)}"#, id: nil, intended: 0)
            let deadline = monotonicNanos() + 30_000_000_000
            var answer: String?
            while answer == nil {
                if monotonicNanos() > deadline {
                    throw LoadError.server("--existing: the server did not answer a list request within 30 s")
                }
                try await Task.sleep(for: .milliseconds(2))
                answer = answers.withLock { $0.removeValue(forKey: id) }
            }
            guard let data = answer?.data(using: .utf8),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            else { throw LoadError.server("--existing: the server's answer to list is not a JSON object") }
            if object["type"] as? String == "result" {
                let code = object["error"] as? String ?? "unknown"
                guard code == "rate_limited" || code == "overloaded", refusals < 50 else {
                    throw LoadError.server(
                        "--existing: the server refused to list its listings: \(code) \(object["message"] as? String ?? "")"
                    )
                }
                refusals += 1
                try await Task.sleep(for: .milliseconds(250))
                continue
            }
            refusals = 0  // a refusal (the server's read budget) only waits; 50 in a row give up
            let serverTime = (object["ts"] as? NSNumber)?.int64Value ?? Int64(Date().timeIntervalSince1970 * 1000)
            if selection == nil {
                // Listings must stay open through connecting, the warm-up, the run and the drain.
                let runMs = Int64((c.warmupSeconds + c.durationSeconds + c.drainSeconds + 60) * 1000)
                selection = ListingSet.Selection(
                    format: format, prefix: c.existingPrefix, serverTime: serverTime, openUntil: serverTime + runMs,
                    limit: c.listings)
            }
            selection?.take(object["listings"] as? [[String: Any]] ?? [])
            after = object["next"] as? String
        } while after != nil && selection?.done != true
        guard let selection, !selection.picked.isEmpty else {
            let which = c.existingPrefix.map { " whose id starts with \($0)" } ?? ""
            let skipped =
                selection.map { $0.skipped > 0 ? " (\($0.skipped) close or open within the run's time)" : "" } ?? ""
            throw LoadError.server(
                "--existing: the server has no open \(format) listings\(which) that stay open through the run\(skipped); open some, or drop --existing and the driver opens its own"
            )
        }
        return selection.listings()
    }

    /// Connects the watcher connections, up to 64 at a time, each subscribed to listing `w % listings`.
    private func connectWatchers(recorder: Recorder) async throws -> [LoadConnection] {
        let c = configuration
        let watchers = (0..<c.watchers).map { w in
            LoadConnection(
                index: w,
                onMessage: { [self] connection, text, received in
                    if c.preset == .market {
                        marketEvent(connection, text, received, recorder)
                    } else {
                        bidEvent(text, received, recorder)
                    }
                },
                onClose: { [diagnostics] code, reason in
                    recorder.closed(code: code)
                    diagnostics.closed(connection: "watcher connection \(w)", code: code, reason: reason)
                })
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (w, watcher) in watchers.enumerated() {
                if w >= 64 { try await group.next() }
                group.addTask { [self] in
                    _ = try await LoadConnection.connect(
                        group: self.group, host: c.host, port: c.port, source: source(w + 1), path: c.path,
                        token: nil, handler: watcher)
                    if !c.broadcast {
                        watcher.send(
                            #"{"type":"subscribe","listing":"\#(listingID(w % listings.count))"}"#, id: nil, intended: 0
                        )
                    }
                }
            }
            try await group.waitForAll()
        }
        return watchers
    }

    /// A watcher's `bid_placed` event on an english listing: fan-out latency from the intended send time of the
    /// listing's k-th bid.
    private func bidEvent(_ text: Substring, _ received: UInt64, _ recorder: Recorder) {
        let utf8 = text.utf8
        guard Scan.string("type", in: utf8) == "bid_placed", let listing = Scan.string("listing", in: utf8),
            let index = listings.index[listing], listings.formats[index] == .english,
            let bids = Scan.integer("bids", in: utf8)
        else { return }
        // The driver's k-th bid on the listing is its bid number base + k (when nobody else bids on it).
        let k = bids - listings.baseBids[index]
        let intended = sendLog.withLock { log in
            index < log.count && k >= 1 && k <= log[index].count ? log[index][k - 1] : nil
        }
        recorder.delivered(intended: intended, received: received)
    }

    /// A watcher's market event. A `trade` counts from its taker order (the later of the two order ids); a `book`
    /// from the last `order_placed` on that listing, since a command's events arrive together and in order. A
    /// `book` after an expiry (no order of this run's schedule behind it) is not counted.
    private func marketEvent(_ connection: LoadConnection, _ text: Substring, _ received: UInt64, _ recorder: Recorder)
    {
        let utf8 = text.utf8
        guard let type = Scan.string("type", in: utf8) else { return }
        switch type {
        case "order_placed":
            connection.lastOrder = Scan.string("order", in: utf8).flatMap { orderNumber($0) }
        case "order_cancelled" where Scan.string("reason", in: utf8) == "expired":
            connection.lastOrder = nil
        case "trade":
            let buy = Scan.string("buy_order", in: utf8).flatMap { orderNumber($0) } ?? 0
            let sell = Scan.string("sell_order", in: utf8).flatMap { orderNumber($0) } ?? 0
            recorder.delivered(intended: intendedTime(max(buy, sell)), received: received)
        case "book":
            recorder.delivered(intended: connection.lastOrder.flatMap { intendedTime($0) }, received: received)
        default:
            break
        }
    }

    /// `o<k>` → k.
    func orderNumber(_ id: Substring) -> UInt64? { id.first == "o" ? UInt64(id.dropFirst()) : nil }

    /// The intended send time of command k (set once the schedule starts).
    func intendedTime(_ k: UInt64) -> UInt64? {
        let start = scheduleStart.load(ordering: .acquiring)
        return start == 0 ? nil : start + UInt64(Double(k) * 1e9 / Double(configuration.rate))
    }

    /// The open-loop schedule: command k is due at `start + k / rate`.
    private func send(bidders: [LoadConnection], start: UInt64, end: UInt64) {
        let c = configuration
        scheduleStart.store(start, ordering: .releasing)
        let interval = 1e9 / Double(c.rate)
        let wallStart = Int64(Date().timeIntervalSince1970 * 1000)
        var rng = SplitMix64(seed: c.seed)
        let sampler = ZipfSampler(count: listings.count, exponent: c.zipf)
        var bidsOn = [Int](repeating: 0, count: listings.count)
        let filler = String(repeating: "x", count: 24)
        var k: UInt64 = 0
        while true {
            let intended = start + UInt64(Double(k) * interval)
            if intended >= end { break }
            let now = monotonicNanos()
            if intended > now + 50_000 {
                var pause = timespec(tv_sec: 0, tv_nsec: Int((intended - now) - 20_000))
                nanosleep(&pause, nil)
            }
            let listing = sampler.next(using: &rng)
            if c.preset == .market {
                // Buys and sells around a mid of 10,000 over the same band, so about half cross and the rest
                // rest; one in five is ioc, and resting orders expire after 10 s so the book stays bounded.
                let owner = Int(k % UInt64(bidders.count))
                let side = rng.next() & 1 == 0 ? "buy" : "sell"
                let price = 9_995 + Int(rng.next() % 11)
                let quantity = 1 + Int(rng.next() % 10)
                let tif = rng.next() % 5 == 0 ? "ioc" : "gtc"
                let expires = wallStart + Int64((intended - start) / 1_000_000) + 10_000
                let id = "o\(k)"
                let order =
                    #"{"type":"order","id":"\#(id)","listing":"\#(listingID(listing))","trader":"\#(bidderName(owner))","side":"\#(side)","price":\#(price),"quantity":\#(quantity),"tif":"\#(tif)","expires_at":\#(expires)}"#
                recorder.sent(intended: intended)
                bidders[owner].send(order, id: id, intended: intended)
                k += 1
                continue
            }
            let n = bidsOn[listing]
            bidsOn[listing] += 1
            if listings.formats[listing] == .english { sendLog.withLock { $0[listing].append(intended) } }
            if c.broadcast {
                // What gavel serve sends its watchers for the same bid, sent once to the relay.
                let at = wallStart + Int64((intended - start) / 1_000_000)
                let event =
                    #"{"type":"bid_placed","listing":"\#(listingID(listing))","seq":\#(n + 2),"at":\#(at),"price":\#(1_000 + n * 10_000),"leader":"load-bidder-\#(filler)","bids":\#(n + 1),"closes_at":\#(at + 600_000),"reserve_met":true,"ts":\#(at)}"#
                recorder.sent(intended: intended)
                bidders[0].send(event, id: nil, intended: intended)
                k += 1
                continue
            }
            // Two bidder connections take turns on a listing, so each bid outbids the last (see
            // `ListingSet.spacing`).
            let owner = (listing + n % 2) % bidders.count
            let id: String
            let command: String
            switch listings.formats[listing] {
            case .english:
                id = "b\(k)"
                let amount = listings.firstAmount[listing] + n * listings.spacing
                command =
                    #"{"type":"bid","id":"\#(id)","listing":"\#(listingID(listing))","bidder":"\#(bidderName(owner))","amount":\#(amount)}"#
            case .sealed:
                // At least the start price; a bidder's new bid replaces its old one, so every bid is accepted.
                id = "s\(k)"
                command =
                    #"{"type":"bid","id":"\#(id)","listing":"\#(listingID(listing))","bidder":"\#(bidderName(owner))","amount":\#(100 + n)}"#
            case .dutch:
                id = "a\(k)"
                command =
                    #"{"type":"accept","id":"\#(id)","listing":"\#(listingID(listing))","bidder":"\#(bidderName(owner))","quantity":1}"#
            }
            recorder.sent(intended: intended)
            bidders[owner].send(command, id: id, intended: intended)
            k += 1
        }
    }

    func bidderName(_ index: Int) -> String { "load-bidder-\(runID)-\(index)" }

    private func waitFor(count: Int, attempt: Int, timeout: Double) async throws {
        let deadline = monotonicNanos() + UInt64(timeout * 1e9)
        while setupResults.withLock({ $0.count }) < count {
            if let closed = sellerClosed.withLock({ $0 }) {
                throw LoadError.server(
                    "could not open the listings: the server closed the seller's connection with \(closed.code) (see above for what to change)"
                )
            }
            if monotonicNanos() > deadline {
                throw LoadError.server("the server did not answer the listings' open commands within \(Int(timeout)) s")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}
