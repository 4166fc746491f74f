import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The exclusive lock of a data directory: `flock` on `<data-dir>/LOCK`, which holds the pid of the process that
/// has it. Only one process at a time journals to a directory (`gavel serve`, `gavel simulate --data-dir`, an
/// offline `gavel snapshot`); the read-only tools never take it.
///
/// The lock lasts as long as the process: its descriptor is never closed, and the kernel releases it when the
/// process ends, however it ends (`kill -9` included). The file stays behind with the last holder's pid, which the
/// next holder overwrites.
public enum DirectoryLock {
    public enum Failure: Error, Sendable {
        /// Another process holds the lock; its pid, when the file names one.
        case held(pid: Int32?)
        case file(FileError)
    }

    /// `<data-dir>/LOCK`.
    public static func path(_ directory: DataDirectory) -> String { directory.path + "/LOCK" }

    /// The lock files this process holds.
    private static let held = Mutex<Set<String>>([])

    /// Takes the lock of `directory` (which must exist) for the rest of the process and writes this process's pid
    /// into the lock file; throws ``Failure/held(pid:)`` at once when another process holds it. Taking it again
    /// (with the same path) does nothing.
    public static func acquire(_ directory: DataDirectory) throws(Failure) {
        let path = path(directory)
        if held.withLock({ $0.contains(path) }) { return }
        let fd: Int32
        do {
            fd = try Files.openPrivate(path, O_RDWR | O_CREAT)
        } catch {
            throw .file(error)
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            let holder = pid(fd)
            close(fd)
            if code == EWOULDBLOCK { throw .held(pid: holder) }
            throw .file(FileError(path: path, operation: "flock", code: code))
        }
        let line = Array("\(getpid())\n".utf8)
        do throws(FileError) {
            guard ftruncate(fd, 0) == 0 else { throw FileError(path: path, operation: "truncate", code: errno) }
            try Files.writeAll(fd, line, path: path)
        } catch {
            close(fd)
            throw .file(error)
        }
        held.withLock { _ = $0.insert(path) }
    }

    /// The pid written in the open lock file `fd`.
    private static func pid(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        let text = String(decoding: buffer[0..<n], as: UTF8.self).split(separator: "\n").first ?? ""
        return Int32(text).flatMap { $0 > 0 ? $0 : nil }
    }
}
