import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// A swift-log handler writing one JSON object per line to standard error, for a log shipper:
/// `{"time":"2026-11-29T20:35:28.123Z","level":"info","label":"gavel.serve","message":"...", ...metadata}`.
///
/// `time` is RFC 3339 in UTC with milliseconds; the metadata (the handler's, then the call's) follows as more keys,
/// sorted, so that a line's shape does not depend on dictionary order. A metadata key that would hide one of the
/// four fixed keys is written with a `metadata.` prefix. Each line is written with one `write(2)`.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    let label: String
    let fd: Int32

    public init(label: String, fd: Int32 = 2) {
        self.label = label
        self.fd = fd
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let line = Self.line(
            time: Self.now(), level: event.level, label: label, message: "\(event.message)", metadata: merged)
        line.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                offset += n
            }
        }
    }

    /// Milliseconds since the epoch, from the real-time clock.
    public static func now() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }

    static let fixedKeys: Set<String> = ["time", "level", "label", "message"]

    /// One log line, newline included.
    public static func line(
        time: Int64, level: Logger.Level, label: String, message: String, metadata: Logger.Metadata
    ) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128 + message.utf8.count)
        out += Array("{\"time\":\"".utf8) + rfc3339(millis: time) + Array("\",\"level\":".utf8)
        appendString(level.rawValue, to: &out)
        out += Array(",\"label\":".utf8)
        appendString(label, to: &out)
        out += Array(",\"message\":".utf8)
        appendString(message, to: &out)
        for key in metadata.keys.sorted() {
            out.append(UInt8(ascii: ","))
            appendString(fixedKeys.contains(key) ? "metadata." + key : key, to: &out)
            out.append(UInt8(ascii: ":"))
            appendValue(metadata[key]!, to: &out)
        }
        out += Array("}\n".utf8)
        return out
    }

    static func appendValue(_ value: Logger.Metadata.Value, to out: inout [UInt8]) {
        switch value {
        case .string(let text): appendString(text, to: &out)
        case .stringConvertible(let item): appendString(item.description, to: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                appendValue(item, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .dictionary(let entries):
            out.append(UInt8(ascii: "{"))
            for (i, key) in entries.keys.sorted().enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                appendString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                appendValue(entries[key]!, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// A JSON string: quotes, backslashes and control characters escaped, the rest as UTF-8.
    static func appendString(_ text: String, to out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 0x0A: out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0x0D: out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case 0x09: out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0..<0x20:
                out += Array("\\u00".utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// `millis` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    static func rfc3339(millis: Int64) -> [UInt8] {
        var seconds = time_t(millis >= 0 ? millis / 1000 : (millis - 999) / 1000)
        let ms = Int((millis % 1000 + 1000) % 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func digits(_ value: Int, _ width: Int) -> [UInt8] {
            var text = Array(String(value).utf8)
            while text.count < width { text.insert(UInt8(ascii: "0"), at: 0) }
            return text
        }
        return digits(Int(parts.tm_year) + 1900, 4) + [UInt8(ascii: "-")] + digits(Int(parts.tm_mon) + 1, 2)
            + [UInt8(ascii: "-")] + digits(Int(parts.tm_mday), 2) + [UInt8(ascii: "T")]
            + digits(Int(parts.tm_hour), 2) + [UInt8(ascii: ":")] + digits(Int(parts.tm_min), 2)
            + [UInt8(ascii: ":")] + digits(Int(parts.tm_sec), 2) + [UInt8(ascii: ".")] + digits(ms, 3)
            + [UInt8(ascii: "Z")]
    }
}
