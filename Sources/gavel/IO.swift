import GavelGateway
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Reads lines from a file descriptor with its own buffer, so the caller can tell whether more input is already
/// waiting (and group the work it does for it) before it blocks.
final class LineReader {
    private let fd: Int32
    private var buffer: [UInt8] = []
    private var start = 0
    private var atEnd = false

    init(fd: Int32) {
        self.fd = fd
        buffer.reserveCapacity(1 << 16)
    }

    /// Whether a complete line is buffered or input can be read without blocking.
    var hasInputReady: Bool {
        if buffer[start...].contains(0x0A) || atEnd { return true }
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&pfd, 1, 0) > 0
    }

    /// Waits up to `timeoutMs` for input; returns whether some is ready.
    func wait(timeoutMs: Int32) -> Bool {
        if hasInputReady { return true }
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&pfd, 1, timeoutMs) > 0
    }

    /// The next line without its newline, or `nil` at the end of input.
    func readLine() -> String? {
        while true {
            if let newline = buffer[start...].firstIndex(of: 0x0A) {
                var end = newline
                if end > start && buffer[end - 1] == 0x0D { end -= 1 }
                let line = String(decoding: buffer[start..<end], as: UTF8.self)
                start = newline + 1
                return line
            }
            if atEnd {
                guard start < buffer.count else { return nil }
                let line = String(decoding: buffer[start...], as: UTF8.self)
                start = buffer.count
                return line
            }
            if start > 0 {
                buffer.removeFirst(start)
                start = 0
            }
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                atEnd = true
                continue
            }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }
}

/// Buffers output lines and writes them to a file descriptor in large chunks; safe from any thread.
final class LineWriter: Sendable {
    private let fd: Int32
    private let buffer = Mutex<[UInt8]>([])

    init(fd: Int32 = 1) { self.fd = fd }

    func write(_ line: [UInt8]) {
        let full = buffer.withLock { buffer -> Bool in
            buffer.append(contentsOf: line)
            buffer.append(0x0A)
            return buffer.count >= 1 << 16
        }
        if full { flush() }
    }

    func write(_ text: String) { write(Array(text.utf8)) }

    func flush() {
        buffer.withLock { buffer in
            buffer.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { break }
                    offset += n
                }
            }
            buffer.removeAll(keepingCapacity: true)
        }
    }
}

/// Writes a message to standard error: as it is, or as a JSON log line at `level`, labelled `gavel`, when
/// `--log-format json` asked for it.
func printError(_ message: String, level: Logger.Level = .notice) {
    if errorLinesAsJSON.load(ordering: .relaxed) {
        let line = JSONLogHandler.line(
            time: JSONLogHandler.now(), level: level, label: "gavel", message: message, metadata: [:])
        line.withUnsafeBytes { _ = Glibc.write(2, $0.baseAddress, $0.count) }
        return
    }
    var text = message
    if !text.hasSuffix("\n") { text += "\n" }
    text.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
}

/// Writes one line to standard output at once (unbuffered, so that a reader sees each line as it comes).
func printLine(_ line: String) {
    var text = line
    text += "\n"
    text.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(1, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            offset += n
        }
    }
}
