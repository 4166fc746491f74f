import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Reads the server's resident memory: from `/proc/<pid>/status` (VmRSS) for a local server, or from the
/// `process_resident_memory_bytes` line of its admin `/metrics`.
public struct MemoryProbe: Sendable {
    public let pid: Int32?
    public let admin: AdminURL?

    public init?(configuration: LoadConfiguration) {
        guard configuration.samplesMemory else { return nil }
        pid = configuration.serverPID
        admin = configuration.adminURL
    }

    /// Resident bytes now; the error says which source failed and what to give instead.
    public func residentBytes() throws(LoadError) -> UInt64 {
        if let pid {
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                let bytes = Self.residentBytes(status: status)
            else { throw .invalid("--server-pid \(pid): cannot read VmRSS from /proc/\(pid)/status (not running?)") }
            return bytes
        }
        guard let admin else { throw .invalid("no --server-pid or --admin-url to read the server's memory from") }
        guard let text = Self.get(admin) else {
            throw .invalid("--admin-url: nothing answered GET \(admin.path) on \(admin.host):\(admin.port)")
        }
        guard let bytes = Self.residentBytes(metrics: text) else {
            throw .invalid(
                "--admin-url: the server's \(admin.path) has no process_resident_memory_bytes; give --server-pid <pid> of a local server instead, e.g. $(pgrep -n -f \"gavel serve\")"
            )
        }
        return bytes
    }

    /// `VmRSS:   12345 kB` → bytes.
    public static func residentBytes(status: String) -> UInt64? {
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 3, let value = UInt64(fields[1]), fields[2] == "kB" else { return nil }
            return value * 1_024
        }
        return nil
    }

    /// The value of `process_resident_memory_bytes` in Prometheus text (an integer or a float like `3.2e+07`).
    public static func residentBytes(metrics: String) -> UInt64? {
        for line in metrics.split(separator: "\n") where line.hasPrefix("process_resident_memory_bytes") {
            let fields = line.split(separator: " ")
            guard fields.count >= 2, fields[0] == "process_resident_memory_bytes", let value = Double(fields[1]),
                value >= 0
            else { continue }
            return UInt64(value)
        }
        return nil
    }

    /// A blocking HTTP/1.0 GET on loopback (two seconds at most); the body, or nil.
    static func get(_ url: AdminURL) -> String? {
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(url.host, String(url.port), &hints, &result) == 0, let info = result else { return nil }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else { return nil }
        let request = Array("GET \(url.path) HTTP/1.0\r\nHost: \(url.host):\(url.port)\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == request.count else { return nil }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            response.append(contentsOf: buffer[0..<n])
        }
        let text = String(decoding: response, as: UTF8.self)
        guard text.hasPrefix("HTTP/1.") && text.contains(" 200 "), let split = text.range(of: "\r\n\r\n") else {
            return nil
        }
        return String(text[split.upperBound...])
    }
}

/// The server's memory over a run: samples at seconds since the start of the schedule.
public struct MemoryTrend: Sendable, Equatable {
    public var samples: [(seconds: Double, bytes: UInt64)] = []

    public init(samples: [(seconds: Double, bytes: UInt64)] = []) { self.samples = samples }

    public static func == (a: MemoryTrend, b: MemoryTrend) -> Bool {
        a.samples.map(\.seconds) == b.samples.map(\.seconds) && a.samples.map(\.bytes) == b.samples.map(\.bytes)
    }

    /// Last sample minus first, in bytes (negative when the server gave memory back).
    public var growth: Int64? {
        guard let first = samples.first, let last = samples.last, samples.count >= 2 else { return nil }
        return Int64(last.bytes) - Int64(first.bytes)
    }

    /// The least-squares slope of bytes over time, in bytes per minute (nil for fewer than two distinct times).
    public var slopePerMinute: Double? {
        guard samples.count >= 2 else { return nil }
        let n = Double(samples.count)
        let meanT = samples.reduce(0) { $0 + $1.seconds } / n
        let meanB = samples.reduce(0) { $0 + Double($1.bytes) } / n
        var covariance = 0.0
        var variance = 0.0
        for sample in samples {
            covariance += (sample.seconds - meanT) * (Double(sample.bytes) - meanB)
            variance += (sample.seconds - meanT) * (sample.seconds - meanT)
        }
        guard variance > 0 else { return nil }
        return covariance / variance * 60
    }
}

/// Raises this process's open-file limit to its hard limit; returns the limit in force.
@discardableResult
public func raiseFileLimit() -> Int {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1_024 }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
    return limit.rlim_cur > UInt64(Int.max) ? Int.max : Int(limit.rlim_cur)
}
