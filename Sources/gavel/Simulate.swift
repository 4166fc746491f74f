import ArgumentParser
import GavelCore
import GavelWire

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply JSON-line commands to a fresh in-memory engine and print results and events.",
        discussion: """
            Reads one JSON command per line from FILE (or standard input) and writes JSON lines to standard \
            output: exactly one {"type":"result",...} line per command, and the events it causes. A command may \
            carry "at" (engine time in ms); {"type":"advance","at":T} only moves the clock, firing due timers. \
            See docs/PROTOCOL.md.

            Example:
              echo '{"type":"open","id":"o1","listing":"L1","seller":"sam","format":"english","start":100,"closes_at":60000,"at":0}' | gavel simulate
            """
    )

    @Argument(help: "A file of JSON lines; standard input when omitted.")
    var file: String?

    @Flag(name: .long, help: "End with a {\"type\":\"state_hash\",\"hash\":...} line: a digest of the whole engine state.")
    var hash = false

    @Option(name: .long, help: "How long request ids are remembered for idempotency, in engine-time ms.")
    var idempotencyWindowMs: Int64 = 86_400_000

    func validate() throws {
        guard idempotencyWindowMs > 0 else {
            throw ValidationError("--idempotency-window-ms must be positive")
        }
    }

    func run() throws {
        let input: UnsafeMutablePointer<FILE>
        if let file {
            guard let handle = fopen(file, "r") else {
                throw ValidationError("cannot open \(file): \(String(cString: strerror(errno)))")
            }
            input = handle
        } else {
            input = fdopen(0, "r")
        }
        defer { if file != nil { fclose(input) } }
        let simulator = Simulator(engine: Engine(configuration: EngineConfiguration(idempotencyWindowMs: idempotencyWindowMs)))
        let out = LineWriter()
        var lineNumber = 0
        while let line = readLine(from: input) {
            lineNumber += 1
            simulator.process(line: line) { out.write($0) }
        }
        if hash { out.write(simulator.stateHashLine()) }
        out.flush()
    }
}

/// Reads one line (without its newline) from `file`, or `nil` at the end.
func readLine(from file: UnsafeMutablePointer<FILE>) -> String? {
    var buffer: UnsafeMutablePointer<CChar>?
    var capacity = 0
    defer { free(buffer) }
    let count = getline(&buffer, &capacity, file)
    guard count >= 0, let buffer else { return nil }
    var length = count
    while length > 0 && (buffer[length - 1] == 0x0A || buffer[length - 1] == 0x0D) { length -= 1 }
    return buffer.withMemoryRebound(to: UInt8.self, capacity: length) {
        String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self)
    }
}

/// Buffers output lines and writes them to standard output in large chunks.
final class LineWriter {
    private var buffer: [UInt8] = []

    init() { buffer.reserveCapacity(1 << 16) }

    func write(_ line: [UInt8]) {
        buffer.append(contentsOf: line)
        buffer.append(0x0A)
        if buffer.count >= 1 << 16 { flush() }
    }

    func flush() {
        buffer.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(1, raw.baseAddress! + offset, raw.count - offset)
                if n <= 0 { break }
                offset += n
            }
        }
        buffer.removeAll(keepingCapacity: true)
    }
}
