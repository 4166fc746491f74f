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
    ///
    /// The key is written whole to a temporary file next to `path`, synced, and linked to `path` (`link` never
    /// replaces a file): a start that fails half-way (a full disk) leaves no file, or an empty one, that every later
    /// start would refuse, and when two starts race, both use the key the first one linked.
    public static func loadOrCreate(_ path: String) throws -> [UInt8] {
        if let key = try load(path) { return key }
        let text = randomHex(count: 32)
        let temporary = "\(path).\(getpid()).tmp"
        func failure(_ what: String, _ code: Int32) -> Failure {
            unlink(temporary)
            return Failure(description: "cannot \(what) \(path): \(String(cString: strerror(code)))")
        }
        let fd: Int32
        do {
            fd = try Files.openPrivate(temporary, O_WRONLY | O_CREAT | O_TRUNC)
        } catch {
            throw failure("create", error.code)
        }
        let line = text + [0x0A]
        let written = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == line.count else {
            // A short write without an error is a full disk.
            let code = written < 0 ? errno : ENOSPC
            close(fd)
            throw failure("write", code)
        }
        guard fsync(fd) == 0 else {
            let code = errno
            close(fd)
            throw failure("write", code)
        }
        close(fd)
        guard link(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            // Someone else created it first: use theirs.
            if code == EEXIST, let key = try load(path) { return key }
            throw Failure(description: "cannot create \(path): \(String(cString: strerror(code)))")
        }
        unlink(temporary)
        let directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        // The link made durable where the file system allows; the key is usable either way.
        try? Files.syncDirectory(directory.isEmpty ? "." : directory)
        return text
    }

    /// The key in `path`, or `nil` when there is no such file.
    public static func load(_ path: String) throws -> [UInt8]? {
        let bytes: [UInt8]
        do {
            guard let read = try Files.readIfPresent(path) else { return nil }
            bytes = read
        } catch {
            switch error {
            case .danglingLink(let target):
                throw Failure(
                    description:
                        "\(path) is a symbolic link to \(target), which does not exist (a volume not mounted?); restore the key it points to, or remove the link to have a new key made"
                )
            case .notRegular:
                throw Failure(
                    description:
                        "\(path) is not a regular file; put the key file back, or remove it to have a new key made")
            case .failed(let code):
                throw Failure(description: "cannot read \(path): \(String(cString: strerror(code)))")
            }
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
