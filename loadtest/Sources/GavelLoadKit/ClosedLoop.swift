import CLoadSystem
import Foundation
import GavelCore
import Histogram

#if canImport(Glibc)
    import Glibc
#endif

/// The closed loop (`--in-flight N`): every bidder connection keeps N english bids outstanding and sends its next
/// bid as each result arrives. The measured phase runs on one thread of its own over plain non-blocking sockets and
/// epoll: frames are built by ``FrameWriter`` and results read by ``ResultScanner``, so the driver spends well
/// under a microsecond of its own per bid. Setup (tokens, the seller's listings) is the NIO code the open loop uses.
///
/// Results of one connection can come back in another order than sent (listings go through different queues): a
/// request id `r<run>c<connection>-<n>` names slot `n % N` of the connection, where its send time is kept.
///
/// Paced (`--in-flight N --rate R`): the same connections and thread, but open loop. Bid `k` is due at `k / R`
/// seconds after the start and goes on connection `(k / b) % connections`, where `b` is the bids due in one pacing
/// step (at least 1: one send carries the bids one step makes due, not one send a bid). It is sent when due whatever
/// the results, unless that connection already has N bids outstanding; then it waits there, in order, for a result
/// to free a slot. Its latency counts from when it was due, not from when it could be sent, so a server that falls
/// behind shows it in the latencies (no coordinated omission). The thread sleeps at most ``pacingStepNanos`` between
/// sends.
final class ClosedLoop: @unchecked Sendable {
    struct Plan {
        var inFlight: Int
        var warmupSeconds: Double
        var durationSeconds: Double
        var drainSeconds: Double
        var listingIDs: [String]
        var firstAmount: [Int]
        var spacing: Int
        var zipf: Double
        var seed: UInt64
        var serverPID: Int32?
        var runID: String
        /// Bids a second over all connections, paced (open loop); nil: closed loop.
        var rate: Int? = nil
    }

    /// The longest the paced loop sleeps between two rounds of sends: a bid goes out at most this long after it is
    /// due (the kernel's timer slack, 50 µs, comes on top).
    static let pacingStepNanos: Int64 = 100_000

    /// What the measured phase saw.
    struct Outcome {
        var measurements = Measurements()
        /// CPU seconds (user + system) the driver process and the server (with `serverPID`) used in the measured
        /// window.
        var driverCPUSeconds = 0.0
        var serverCPUSeconds: Double?
        var measuredSeconds = 0.0
    }

    /// One bidder connection; used by the loop's thread only.
    final class Connection {
        let fd: Int32
        /// The bidder's name and the request id prefix `r<run>c<connection>-`, kept in `names`.
        let bidder: UnsafeRawBufferPointer
        let idPrefix: UnsafeRawBufferPointer
        private let names: ByteStrings
        var scanner: ResultScanner
        var writer: FrameWriter
        var out: [UInt8] = []
        var written = 0
        /// Per slot: the request number in flight there (-1: free) and its send time.
        var numbers: [Int]
        var sendTimes: [UInt64]
        var free: [Int]
        var next = 0
        var open = true
        var waitingToWrite = false
        /// Paced only: the due times of the bids waiting for a free slot, oldest first from `lateHead`.
        var late: [UInt64] = []
        var lateHead = 0

        var outstanding: Int { numbers.count - free.count }

        init(fd: Int32, bidder: String, idPrefix: String, scanner: ResultScanner, mask: UInt32, slots: Int) {
            self.fd = fd
            names = ByteStrings([bidder, idPrefix])
            self.bidder = names[0]
            self.idPrefix = names[1]
            self.scanner = scanner
            writer = FrameWriter(mask: mask)
            numbers = Array(repeating: -1, count: slots)
            sendTimes = Array(repeating: 0, count: slots)
            free = Array((0..<slots).reversed())
        }

        deinit {
            if open { close(fd) }
            scanner.deallocate()
        }
    }

    let plan: Plan
    let diagnostics: Diagnostics
    let progress: ((String) -> Void)?
    private var connections: [Connection] = []

    init(plan: Plan, diagnostics: Diagnostics, progress: ((String) -> Void)?) {
        self.plan = plan
        self.diagnostics = diagnostics
        self.progress = progress
    }

    /// Opens one connection (blocking): TCP to `host:port` (from `source` if given), the WebSocket upgrade written
    /// by hand with the token in the query, then non-blocking.
    func connect(host: String, port: Int, path: String, source: String?, token: String?, bidder: String)
        throws(LoadError)
    {
        let index = connections.count
        let fd = try Self.open(host: host, port: port, source: source)
        let uri = token.map { path + (path.contains("?") ? "&" : "?") + "token=" + $0 } ?? path
        var key = [UInt8](repeating: 0, count: 16)
        for i in key.indices { key[i] = UInt8.random(in: 0...255) }
        let request =
            "GET \(uri) HTTP/1.1\r\nHost: \(host):\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: \(Data(key).base64EncodedString())\r\nSec-WebSocket-Version: 13\r\n\r\n"
        let bytes = Array(request.utf8)
        guard bytes.withUnsafeBytes({ Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == bytes.count
        else {
            close(fd)
            throw .server(
                "could not send the WebSocket upgrade to \(host):\(port): \(String(cString: strerror(errno)))")
        }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4_096)
        var headerEnd: Int?
        while headerEnd == nil {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 {
                close(fd)
                throw .server(
                    "the server at \(host):\(port) closed the connection during the WebSocket upgrade (its --max-connections, --max-handshakes or --max-handshakes-per-address reached?)"
                )
            }
            response += chunk[..<count]
            headerEnd = response.withUnsafeBufferPointer { ResultScanner.find(Self.headerEnd, in: $0, from: 0) }
        }
        let head = String(decoding: response[..<headerEnd!], as: UTF8.self)
        let status = head.prefix { $0 != "\r" }
        guard status.split(separator: " ").dropFirst().first == "101" else {
            close(fd)
            throw .server(
                "the server at \(host):\(port)\(path) refused the WebSocket upgrade: \(status) (a bad token, or its --max-connections reached?)"
            )
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var scanner = ResultScanner()
        scanner.append(response[headerEnd!...])
        let slots = plan.inFlight
        connections.append(
            Connection(
                fd: fd, bidder: bidder, idPrefix: "r\(plan.runID)c\(index)-", scanner: scanner,
                mask: UInt32.random(in: 1...UInt32.max), slots: slots))
    }

    static let headerEnd: StaticString = "\r\n\r\n"

    /// A connected TCP socket with TCP_NODELAY.
    static func open(host: String, port: Int, source: String?) throws(LoadError) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var found: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &found) == 0, let address = found else {
            throw .invalid("cannot resolve \(host) (the closed loop speaks IPv4)")
        }
        defer { freeaddrinfo(found) }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw .server("socket(): \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        if let source {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_addr.s_addr = inet_addr(source)
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            if bound != 0 {
                close(fd)
                throw .server("cannot bind to source address \(source): \(String(cString: strerror(errno)))")
            }
        }
        guard Glibc.connect(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw .server("cannot connect to \(host):\(port): \(reason) (is gavel serve running there?)")
        }
        return fd
    }

    /// Runs warm-up, measured window and drain on the calling thread; closes every connection at the end.
    func run() -> Outcome {
        let p = plan
        var outcome = Outcome()
        var errors: [String: Int] = [:]
        var closed: [Int: Int] = [:]
        var ack = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
        var second = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .two)
        var sent = 0
        var results = 0
        var secondErrors = 0

        var rng = SplitMix64(seed: p.seed)
        let sampler = ZipfSampler(count: p.listingIDs.count, exponent: p.zipf)
        let listingCount = UInt64(p.listingIDs.count)
        let listingIDs = ByteStrings(p.listingIDs)
        var bidsOn = [Int](repeating: 0, count: p.listingIDs.count)

        let epoll = cload_epoll_create()
        defer { close(epoll) }
        for index in connections.indices {
            _ = cload_epoll_watch(epoll, connections[index].fd, 0, 0, UInt64(index))
        }
        var tokens = [UInt64](repeating: 0, count: 256)
        var flags = [UInt32](repeating: 0, count: 256)
        var openCount = connections.count
        // Paced: nanoseconds between two bids, and how many have been due so far.
        let interval = p.rate.map { 1e9 / Double($0) }
        let block = p.rate.map { max(1, Int(Double($0) * Double(Self.pacingStepNanos) / 1e9)) } ?? 1
        var due = 0

        let start = monotonicNanos()
        // When bid `k` is due (paced only).
        func dueTime(_ k: Int, every interval: Double) -> UInt64 { start + UInt64(Double(k) * interval) }
        let measureStart = start + UInt64(p.warmupSeconds * 1e9)
        let end = measureStart + UInt64(p.durationSeconds * 1e9)
        let drainEnd = end + UInt64(p.drainSeconds * 1e9)
        var driverCPUStart: Double?
        var serverCPUStart: Double?
        var lastPrint = start
        // Connections with free slots to fill: all of them at the start of a closed loop; a paced loop fills its
        // slots only with bids that are due.
        var refill: [Int] = interval == nil ? Array(connections.indices) : []

        func closeConnection(_ index: Int, code: Int, reason: String) {
            guard connections[index].open else { return }
            connections[index].open = false
            // Closing the socket takes it out of the epoll set.
            close(connections[index].fd)
            openCount -= 1
            closed[code, default: 0] += 1
            diagnostics.closed(connection: "bidder connection \(index)", code: code, reason: reason)
        }

        func flush(_ index: Int) {
            let c = connections[index]
            guard c.open, c.written < c.out.count else { return }
            let count = c.out.withUnsafeBytes {
                Glibc.send(c.fd, $0.baseAddress! + c.written, $0.count - c.written, Int32(MSG_NOSIGNAL))
            }
            if count < 0 && errno != EAGAIN && errno != EWOULDBLOCK {
                closeConnection(index, code: 1006, reason: "the connection failed: \(String(cString: strerror(errno)))")
                return
            }
            if count > 0 { c.written += count }
            if c.written == c.out.count {
                c.out.removeAll(keepingCapacity: true)
                c.written = 0
            }
            let pending = c.written < c.out.count
            if pending != c.waitingToWrite {
                c.waitingToWrite = pending
                _ = cload_epoll_watch(epoll, c.fd, 1, pending ? 1 : 0, UInt64(index))
            }
        }

        while true {
            let now = monotonicNanos()
            if driverCPUStart == nil && now >= measureStart {
                driverCPUStart = Self.ownCPUSeconds()
                serverCPUStart = p.serverPID.flatMap { Self.cpuSeconds(pid: $0) }
            }
            if now >= end && outcome.measuredSeconds == 0 {
                outcome.measuredSeconds = Double(now - measureStart) / 1e9
                outcome.driverCPUSeconds = Self.ownCPUSeconds() - (driverCPUStart ?? 0)
                if let serverCPUStart, let pid = p.serverPID, let cpu = Self.cpuSeconds(pid: pid) {
                    outcome.serverCPUSeconds = cpu - serverCPUStart
                }
            }
            let sending = now < end
            if !sending {
                let outstanding = connections.reduce(0) { $0 + ($1.open ? $1.outstanding : 0) }
                if outstanding == 0 || now >= drainEnd { break }
            }
            if openCount == 0 { break }
            // Send: top up every connection that had results (all of them at the start); paced, send the bids due by
            // now, on their connections, and the ones that waited for a slot.
            if sending {
                if let interval {
                    let dueNow = Int(Double(now - start) / interval) + 1
                    while due < dueNow {
                        let dueAt = dueTime(due, every: interval)
                        let index = (due / block) % connections.count
                        due += 1
                        guard connections[index].open else { continue }
                        connections[index].late.append(dueAt)
                        if dueAt >= measureStart && dueAt < end { sent += 1 }
                        refill.append(index)
                    }
                }
                for index in refill where connections[index].open {
                    let c = connections[index]
                    while interval == nil || c.lateHead < c.late.count, let slot = c.free.popLast() {
                        let number = c.next * p.inFlight + slot
                        c.next += 1
                        // Uniform (--zipf 0) takes one draw, not the sampler's search.
                        let listing = p.zipf == 0 ? Int(rng.next() % listingCount) : sampler.next(using: &rng)
                        let amount = p.firstAmount[listing] + bidsOn[listing] * p.spacing
                        bidsOn[listing] += 1
                        c.writer.appendBid(
                            to: &c.out, idPrefix: c.idPrefix, number: number, listing: listingIDs[listing],
                            bidder: c.bidder, amount: amount)
                        c.numbers[slot] = number
                        if interval != nil {
                            c.sendTimes[slot] = c.late[c.lateHead]
                            c.lateHead += 1
                        } else {
                            c.sendTimes[slot] = now
                            if now >= measureStart { sent += 1 }
                        }
                    }
                    if c.lateHead > 0 && c.lateHead == c.late.count {
                        c.late.removeAll(keepingCapacity: true)
                        c.lateHead = 0
                    }
                    flush(index)
                }
            }
            refill.removeAll(keepingCapacity: true)
            if let progress, now - lastPrint >= 1_000_000_000 {
                let p99 = second.totalCount > 0 ? second.valueAtPercentile(99) : 0
                let max = second.totalCount > 0 ? second.max : 0
                progress(
                    String(
                        format: "t=%4.0fs  %6.0f results/s  p99 %8.3f ms  max %8.3f ms  errors %d",
                        Double(now - start) / 1e9, Double(second.totalCount) * 1e9 / Double(now - lastPrint),
                        Double(p99) / 1_000, Double(max) / 1_000, secondErrors))
                second.reset()
                secondErrors = 0
                lastPrint = now
            }
            let wait = (sending ? min(end, measureStart > now ? measureStart : end) : drainEnd) - now
            let ready: Int32
            if let interval, sending {
                // Until the next bid is due, at most one pacing step.
                let nextDue = dueTime(due, every: interval)
                let nanos = nextDue > now ? Int64(nextDue - now) : 0
                ready = cload_epoll_wait_ns(
                    epoll, &tokens, &flags, Int32(tokens.count), min(nanos, Self.pacingStepNanos, Int64(wait)))
            } else {
                let timeout = Int32(min(100, max(1, wait / 1_000_000 + 1)))
                ready = cload_epoll_wait(epoll, &tokens, &flags, Int32(tokens.count), timeout)
            }
            guard ready >= 0 else {
                if errno == EINTR { continue }
                diagnostics.say("epoll_wait failed: \(String(cString: strerror(errno)))")
                break
            }
            let received = monotonicNanos()
            for e in 0..<Int(ready) {
                let index = Int(tokens[e])
                guard connections[index].open else { continue }
                if flags[e] & 2 != 0 { flush(index) }
                guard flags[e] & 1 != 0 else { continue }
                let c = connections[index]
                let space = c.scanner.writable()
                let count = recv(c.fd, space.baseAddress, space.count, 0)
                if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { continue }
                var closeFrame: (Int, String)?
                if count > 0 {
                    c.scanner.didRead(count)
                    c.scanner.scan { event in
                        switch event {
                        case .result(let number, let ok, let error, let message):
                            guard let number, case let slot = number % p.inFlight, c.numbers[slot] == number else {
                                return
                            }
                            c.numbers[slot] = -1
                            c.free.append(slot)
                            let sentAt = c.sendTimes[slot]
                            let micros = received > sentAt ? (received - sentAt) / 1_000 : 0
                            _ = second.record(micros)
                            if !ok { secondErrors += 1 }
                            if sentAt >= measureStart && sentAt < end {
                                results += 1
                                _ = ack.record(micros)
                                if let error, !ok { errors[error, default: 0] += 1 }
                            }
                            if error == "rate_limited" { diagnostics.rateLimited(command: "bid", message: message) }
                        case .close(let code, let reason):
                            closeFrame = (code, reason)
                        case .ping(let payload):
                            c.writer.appendFrame(opcode: 0xA, payload: payload, to: &c.out)
                        }
                    }
                }
                if let (code, reason) = closeFrame {
                    closeConnection(index, code: code, reason: reason)
                } else if count <= 0 {
                    closeConnection(
                        index, code: 1006,
                        reason: count == 0
                            ? "the server dropped the connection without a close frame"
                            : "the connection failed: \(String(cString: strerror(errno)))")
                } else if !c.free.isEmpty || c.written < c.out.count {
                    refill.append(index)
                    if !sending { flush(index) }
                }
            }
        }
        if outcome.measuredSeconds == 0 {
            // Every connection was closed before the window ended.
            let now = monotonicNanos()
            outcome.measuredSeconds = Double(max(now, measureStart) - measureStart) / 1e9
            outcome.driverCPUSeconds = Self.ownCPUSeconds() - (driverCPUStart ?? Self.ownCPUSeconds())
        }
        // A clean close of every connection still open.
        var closing: [UInt8] = []
        for index in connections.indices where connections[index].open {
            closing.removeAll(keepingCapacity: true)
            connections[index].writer.appendFrame(opcode: 0x8, payload: [0x03, 0xE8], to: &closing)
            _ = closing.withUnsafeBytes {
                Glibc.send(connections[index].fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            close(connections[index].fd)
            connections[index].open = false
        }
        outcome.measurements.ack = ack
        outcome.measurements.sent = sent
        outcome.measurements.results = results
        outcome.measurements.errors = errors
        outcome.measurements.closedByServer = closed
        return outcome
    }

    /// Byte strings in one allocation, each read as a buffer without reference counting; freed with the value.
    final class ByteStrings {
        private let storage: UnsafeMutableRawBufferPointer
        private let ranges: UnsafeMutableBufferPointer<(start: Int, count: Int)>

        init(_ strings: [String]) {
            let total = strings.reduce(0) { $0 + $1.utf8.count }
            storage = .allocate(byteCount: max(total, 1), alignment: 8)
            ranges = .allocate(capacity: max(strings.count, 1))
            var offset = 0
            for (index, string) in strings.enumerated() {
                let bytes = Array(string.utf8)
                UnsafeMutableRawBufferPointer(rebasing: storage[offset..<offset + bytes.count]).copyBytes(from: bytes)
                ranges[index] = (offset, bytes.count)
                offset += bytes.count
            }
        }

        subscript(index: Int) -> UnsafeRawBufferPointer {
            let range = ranges[index]
            return UnsafeRawBufferPointer(start: storage.baseAddress! + range.start, count: range.count)
        }

        deinit {
            storage.deallocate()
            ranges.deallocate()
        }
    }

    /// This process's CPU time (user + system), in seconds.
    static func ownCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
            + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    /// A process's CPU time, all its threads, in seconds, from the scheduler's run time of each thread
    /// (`/proc/<pid>/task/*/schedstat`, in ns; utime + stime of `/proc/<pid>/stat` are the same in clock ticks);
    /// nil if it cannot be read.
    static func cpuSeconds(pid: Int32) -> Double? {
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") else { return nil }
        var total: UInt64 = 0
        for task in tasks {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/schedstat", encoding: .utf8),
                let field = text.split(separator: " ").first, let nanos = UInt64(field)
            else { continue }
            total += nanos
        }
        return Double(total) / 1e9
    }
}
