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

    /// The process that holds the lock of `directory`, as the kernel's lock table (`/proc/locks`) names it in this
    /// process's pid namespace; `nil` when no process holds it or the table cannot tell (not Linux, no `/proc`).
    ///
    /// Unlike the pid written in the file, this is the right process to signal: a holder in another pid namespace
    /// (a container sharing the volume) wrote its own namespace's pid, which here may be any other process.
    public static func holder(_ directory: DataDirectory) -> Int32? {
        var st = stat()
        guard stat(path(directory), &st) == 0 else { return nil }
        // A /proc file has no size: read it to its end.
        let fd = open("/proc/locks", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { break }
            bytes += buffer[0..<n]
        }
        let major = ((st.st_dev >> 8) & 0xfff) | ((st.st_dev >> 32) & ~0xfff)
        let minor = (st.st_dev & 0xff) | ((st.st_dev >> 12) & ~0xff)
        var onInode: [(pid: Int32, sameDevice: Bool)] = []
        // "1: FLOCK  ADVISORY  WRITE 19061 fe:00:16221225 0 EOF"; a waiter's line has "->" after the number.
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 6, fields[1] == "FLOCK", let pid = Int32(fields[4]) else { continue }
            let id = fields[5].split(separator: ":")
            guard id.count == 3, UInt64(id[2]) == UInt64(st.st_ino) else { continue }
            let sameDevice = UInt64(id[0], radix: 16) == UInt64(major) && UInt64(id[1], radix: 16) == UInt64(minor)
            onInode.append((pid, sameDevice))
        }
        if let exact = onInode.first(where: { $0.sameDevice }) { return exact.pid > 0 ? exact.pid : nil }
        // Some file systems (btrfs subvolumes, overlays) report another device to stat than in the table.
        return onInode.count == 1 && onInode[0].pid > 0 ? onInode[0].pid : nil
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
