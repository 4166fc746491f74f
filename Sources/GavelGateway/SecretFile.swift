import GavelJournal

#if canImport(Glibc)
    import Glibc
#endif

/// The HS256 key of a data directory: `<data-dir>/jwt-secret`, created on first use with 32 random bytes written
/// as 64 hex digits, readable by its owner only (mode 0600). The key is the file's text without surrounding
/// whitespace, so `--jwt-secret "$(cat D/jwt-secret)"` names the same key.
public enum SecretFile {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// `count` bytes from the system's random source (getrandom), as `2 * count` lowercase hex digits.
    public static func randomHex(count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        let hex = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(2 * count)
        for _ in 0..<count {
            let byte = UInt8.random(in: 0...255, using: &generator)
            text.append(hex[Int(byte >> 4)])
            text.append(hex[Int(byte & 0xF)])
        }
        return text
    }

    /// The key in `path`, creating the file when it does not exist.
    public static func loadOrCreate(_ path: String) throws -> [UInt8] {
        if let key = try load(path) { return key }
        let text = randomHex(count: 32)
        let fd: Int32
        do {
            fd = try Files.openPrivate(path, O_WRONLY | O_CREAT | O_EXCL)
        } catch {
            // Someone else created it first: use theirs.
            if error.code == EEXIST, let key = try load(path) { return key }
            throw Failure(description: "cannot create \(path): \(String(cString: strerror(error.code)))")
        }
        defer { close(fd) }
        var line = text + [0x0A]
        let written = line.withUnsafeMutableBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == line.count, fsync(fd) == 0 else {
            throw Failure(description: "cannot write \(path): \(String(cString: strerror(errno)))")
        }
        return text
    }

    /// The key in `path`, or `nil` when there is no such file.
    public static func load(_ path: String) throws -> [UInt8]? {
        let bytes: [UInt8]
        do {
            bytes = try Files.readAll(path)
        } catch {
            if error.code == ENOENT { return nil }
            throw Failure(description: "cannot read \(path): \(String(cString: strerror(error.code)))")
        }
        var key = bytes[...]
        while let first = key.first, first == 0x20 || first == 0x0A || first == 0x0D || first == 0x09 {
            key = key.dropFirst()
        }
        while let last = key.last, last == 0x20 || last == 0x0A || last == 0x0D || last == 0x09 { key = key.dropLast() }
        guard !key.isEmpty else { throw Failure(description: "\(path) is empty; delete it to have a new key made") }
        return Array(key)
    }
}
