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
}

/// Runs one load scenario against a server and reports what it measured.
///
/// Open loop: command k is due at `start + k / rate`; the scheduler thread sends every due command at once, and
/// latency counts from the due time, so a stall in the server (or in the driver) shows as latency instead of
/// silently lowering the send rate (no coordinated omission).
public final class Driver: @unchecked Sendable {
    public let configuration: LoadConfiguration
    let credentials: Credentials
    let group: MultiThreadedEventLoopGroup
    let runID: String
    /// Per listing, the intended send time of each bid in send order (for fan-out latency).
    let sendLog: Mutex<[[UInt64]]>
    let setupResults = Mutex<[String: String]>([:])
    /// Where to print the live progress line (nil: no progress line).
    let progress: ((String) -> Void)?

    public init(
        configuration: LoadConfiguration, credentials: Credentials, progress: ((String) -> Void)? = nil
    ) {
        self.configuration = configuration
        self.credentials = credentials
        self.progress = progress
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, System.coreCount))
        runID = String(UInt64(Date().timeIntervalSince1970 * 1000) % 46_656_000, radix: 36)
        sendLog = Mutex(Array(repeating: [], count: configuration.listings))
    }

    func listingID(_ index: Int) -> String { "ld\(configuration.seed)-\(runID)-\(index)" }

    func listingIndex(_ id: Substring) -> Int? {
        guard let dash = id.lastIndex(of: "-") else { return nil }
        return Int(id[id.index(after: dash)...])
    }

    func token(user: String, role: String) -> String? {
        switch credentials {
        case .secret(let secret):
            Token.mint(
                secret: secret, subject: user, role: role,
                expires: Date().addingTimeInterval(configuration.durationSeconds + 3_600))
        case .token(let token): token
        }
    }

    func source(_ index: Int) -> String? {
        configuration.sourceAddresses > 1 ? "127.0.0.\(1 + index % configuration.sourceAddresses)" : nil
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
        let c = configuration
        let total = c.warmupSeconds + c.durationSeconds
        let wallNow = Int64(Date().timeIntervalSince1970 * 1000)
        let connectStarted = monotonicNanos()

        // 1. The listings, opened by one seller connection.
        let sellerName = "load-seller-\(runID)"
        let seller = LoadConnection(
            index: -1,
            onMessage: { [self] _, text, _ in
                guard Scan.string("type", in: text.utf8) == "result", let id = Scan.string("id", in: text.utf8)
                else { return }
                let error = Scan.string("error", in: text.utf8).map(String.init) ?? ""
                setupResults.withLock { $0[String(id)] = error }
            }, onClose: { _ in })
        _ = try await LoadConnection.connect(
            group: group, host: c.host, port: c.port, source: source(0), path: c.path,
            token: token(user: sellerName, role: "seller"), handler: seller)
        let closesAt = wallNow + Int64((total + c.drainSeconds + 600) * 1000)
        var toOpen = Array(0..<c.listings)
        var attempts = 0
        while !toOpen.isEmpty {
            attempts += 1
            if attempts > 50 { throw LoadError.server("could not open the listings: the server keeps refusing") }
            for chunk in stride(from: 0, to: toOpen.count, by: 100) {
                for index in toOpen[chunk..<min(chunk + 100, toOpen.count)] {
                    let soft =
                        c.preset == .hot
                        ? #","soft_close":{"window_ms":60000,"extend_ms":5000,"max_closes_at":\#(closesAt + 3_600_000)}"#
                        : ""
                    let open =
                        #"{"type":"open","id":"open-\#(runID)-\#(index)-\#(attempts)","listing":"\#(listingID(index))","seller":"\#(sellerName)","format":"english","start":100,"closes_at":\#(closesAt)\#(soft)}"#
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

        // 2. Watchers and bidders.
        let recorder = Recorder()
        let onClose: @Sendable (Int) -> Void = { code in recorder.closed(code: code) }
        var watchers: [LoadConnection] = []
        for w in 0..<c.watchers {
            let watcher = LoadConnection(
                index: w,
                onMessage: { [self] _, text, received in
                    let utf8 = text.utf8
                    guard Scan.string("type", in: utf8) == "bid_placed", let listing = Scan.string("listing", in: utf8),
                        let index = listingIndex(listing), let bids = Scan.integer("bids", in: utf8)
                    else { return }
                    let intended = sendLog.withLock { log in
                        index < log.count && bids >= 1 && bids <= log[index].count ? log[index][bids - 1] : nil
                    }
                    recorder.delivered(intended: intended, received: received)
                }, onClose: onClose)
            _ = try await LoadConnection.connect(
                group: group, host: c.host, port: c.port, source: source(w + 1), path: c.path, token: nil,
                handler: watcher)
            watcher.send(#"{"type":"subscribe","listing":"\#(listingID(w % c.listings))"}"#, id: nil, intended: 0)
            watchers.append(watcher)
        }
        var bidders: [LoadConnection] = []
        for b in 0..<c.connections {
            let bidder = LoadConnection(
                index: b,
                onMessage: { connection, text, received in
                    let utf8 = text.utf8
                    guard Scan.string("type", in: utf8) == "result", let id = Scan.string("id", in: utf8),
                        let intended = connection.pending.removeValue(forKey: id)
                    else { return }
                    recorder.result(
                        intended: intended, received: received,
                        error: Scan.string("error", in: utf8).map(String.init))
                }, onClose: onClose)
            _ = try await LoadConnection.connect(
                group: group, host: c.host, port: c.port, source: source(b + c.watchers + 1), path: c.path,
                token: token(user: bidderName(b), role: "bidder"), handler: bidder)
            bidders.append(bidder)
        }
        let connectSeconds = Double(monotonicNanos() - connectStarted) / 1e9
        // Let subscriptions settle.
        try await Task.sleep(for: .milliseconds(300))

        // 3. The open-loop schedule, on a thread of its own.
        let start = monotonicNanos()
        let end = start + UInt64(total * 1e9)
        recorder.measure(from: start + UInt64(c.warmupSeconds * 1e9))
        let interval = 1e9 / Double(c.rate)
        let bidderConnections = bidders
        let schedule = Thread { [self, bidders = bidderConnections] in
            var rng = SplitMix64(seed: c.seed)
            let sampler = ZipfSampler(count: c.listings, exponent: c.zipf)
            var bidsOn = [Int](repeating: 0, count: c.listings)
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
                let n = bidsOn[listing]
                bidsOn[listing] += 1
                // Two bidder connections take turns on a listing, so each bid outbids the last. Maxima 10,000
                // apart (the largest step of the default ladder) keep a bid valid even when it reaches the server
                // after the next one, sent on the other connection.
                let owner = (listing + n % 2) % bidders.count
                let id = "b\(k)"
                let bid =
                    #"{"type":"bid","id":"\#(id)","listing":"\#(listingID(listing))","bidder":"\#(bidderName(owner))","amount":\#(1_000 + n * 10_000)}"#
                sendLog.withLock { $0[listing].append(intended) }
                recorder.sent(intended: intended)
                bidders[owner].send(bid, id: id, intended: intended)
                k += 1
            }
        }
        schedule.start()
        var lastPrint = start
        while monotonicNanos() < end + UInt64(c.drainSeconds * 1e9) {
            try await Task.sleep(for: .milliseconds(250))
            let now = monotonicNanos()
            if now >= end {
                let m = recorder.snapshot
                if m.results >= m.sent { break }
            }
            if let progress, now - lastPrint >= 1_000_000_000 {
                let (count, p99) = recorder.takeWindow()
                let m = recorder.snapshot
                let errors = m.errors.values.reduce(0, +)
                progress(
                    String(
                        format: "t=%4.0fs  %6.0f results/s  p99 %8.3f ms  errors %d  deliveries %d",
                        Double(now - start) / 1e9, Double(count) * 1e9 / Double(now - lastPrint),
                        Double(p99) / 1_000, errors, m.deliveries))
                lastPrint = now
            }
        }
        let measurements = recorder.snapshot
        for connection in bidders + watchers + [seller] { connection.close() }
        try await Task.sleep(for: .milliseconds(100))
        return Report(
            configuration: c, measurements: measurements, measuredSeconds: c.durationSeconds,
            connectionsHeld: bidders.count + watchers.count + 1, connectSeconds: connectSeconds)
    }

    func bidderName(_ index: Int) -> String { "load-bidder-\(runID)-\(index)" }

    private func waitFor(count: Int, attempt: Int, timeout: Double) async throws {
        let deadline = monotonicNanos() + UInt64(timeout * 1e9)
        while setupResults.withLock({ $0.count }) < count {
            if monotonicNanos() > deadline {
                throw LoadError.server("the server did not answer the listings' open commands within \(Int(timeout)) s")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}
