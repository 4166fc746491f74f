import CGavelShims

#if canImport(Glibc)
    import Glibc
#endif

/// Why a file operation failed, with the path and the system's reason.
public struct FileError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var operation: String
    public var code: Int32
    /// What went wrong when it is not a system call's error (then `code` is `EINVAL`).
    public var reason: String? = nil

    public var description: String { "\(operation) \(path): \(reason ?? String(cString: strerror(code)))" }
}

/// Small wrappers over POSIX file calls that throw ``FileError``.
public enum Files {
    /// The whole content of the file at `path`.
    public static func readAll(_ path: String) throws(FileError) -> [UInt8] {
        try read(path, from: 0)
    }

    /// Why a file that may rightly be absent was not read (``readIfPresent(_:)``).
    public enum PresenceProblem: Error {
        /// A symbolic link to `target`, which does not exist: the file is somewhere else (a volume not mounted), not
        /// missing.
        case danglingLink(target: String)
        /// Something other than a regular file is there (a FIFO, a device, a directory).
        case notRegular
        /// Reading failed with the system's error `code`.
        case failed(code: Int32)
    }

    /// The whole content of the file at `path` (a regular file only, as ``read(_:from:limit:)``), or `nil` when
    /// nothing is there; a symbolic link to nothing is not "nothing there".
    public static func readIfPresent(_ path: String) throws(PresenceProblem) -> [UInt8]? {
        do {
            return try readAll(path)
        } catch {
            if error.code == ENOENT {
                guard let target = danglingLinkTarget(path) else { return nil }
                throw .danglingLink(target: target)
            }
            if error.reason != nil { throw .notRegular }
            throw .failed(code: error.code)
        }
    }

    /// The content of the file at `path` from byte `offset` to its end, or `limit` bytes of it at most (empty when
    /// the file is shorter). Only a regular file is read: a FIFO, a device or a directory where a file belongs (a
    /// mistyped option, a tampered data directory) is refused at once instead of blocking the caller or reading
    /// without end.
    public static func read(_ path: String, from offset: Int, limit: Int = .max) throws(FileError) -> [UInt8] {
        try readWithStatus(path, from: offset, limit: limit).bytes
    }

    /// The whole content of the file at `path` (a regular file only, as ``read(_:from:limit:)``), with the owner
    /// and permission bits (`st_mode & 0o7777`) of the file the bytes come from: both are taken from the open file,
    /// so another file put at `path` between the look and the read cannot pass for it.
    public static func readAllWithOwner(_ path: String) throws(FileError) -> (
        bytes: [UInt8], owner: uid_t, permissions: mode_t
    ) {
        let file = try readWithStatus(path, from: 0, limit: .max)
        return (file.bytes, file.status.st_uid, file.status.st_mode & 0o7777)
    }

    private static func readWithStatus(_ path: String, from offset: Int, limit: Int) throws(FileError) -> (
        bytes: [UInt8], status: stat
    ) {
        // Non-blocking, so that opening a FIFO with no writer returns (and is refused below) instead of waiting.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw FileError(path: path, operation: "open", code: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileError(path: path, operation: "stat", code: errno) }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw FileError(path: path, operation: "read", code: EINVAL, reason: "not a regular file")
        }
        // Read straight into uninitialised storage: zero-filling a segment or snapshot first would touch every
        // page twice.
        let size = min(limit, max(0, Int(st.st_size) - offset))
        var failure: Int32 = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            var done = 0
            while done < size {
                let n = pread(fd, buffer.baseAddress! + done, size - done, off_t(offset + done))
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    break
                }
                if n == 0 { break }
                done += n
            }
            count = done
        }
        if failure != 0 { throw FileError(path: path, operation: "read", code: failure) }
        return (bytes, st)
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(FileError) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(path: path, operation: "write", code: errno)
            }
            done += n
        }
    }

    static func syncData(_ fd: Int32, path: String) throws(FileError) {
        guard gavel_fdatasync(fd) == 0 else { throw FileError(path: path, operation: "fdatasync", code: errno) }
    }

    public static func syncDirectory(_ path: String) throws(FileError) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(path: path, operation: "open directory", code: errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw FileError(path: path, operation: "fsync directory", code: errno) }
    }

    /// Creates the directory `path` readable by its owner only (0700, whatever the umask) when it does not exist.
    ///
    /// - Throws: `ENOTDIR` when something other than a directory (a file) has the name: found at start, not at the
    ///   first write into it.
    static func makeDirectory(_ path: String) throws(FileError) {
        if mkdir(path, 0o700) == 0 {
            guard chmod(path, 0o700) == 0 else { throw FileError(path: path, operation: "chmod", code: errno) }
        } else if errno != EEXIST {
            throw FileError(path: path, operation: "mkdir", code: errno)
        } else {
            var st = stat()
            guard stat(path, &st) == 0 else { throw FileError(path: path, operation: "stat", code: errno) }
            guard st.st_mode & S_IFMT == S_IFDIR else {
                throw FileError(path: path, operation: "use as a directory", code: ENOTDIR)
            }
        }
    }

    /// Opens `path` for writing with `flags` (`O_WRONLY` or `O_RDWR` plus `O_CREAT` and the like), a file the
    /// call creates being readable and writable by its owner only (0600, whatever the umask).
    public static func openPrivate(_ path: String, _ flags: Int32) throws(FileError) -> Int32 {
        let fd = open(path, flags | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileError(path: path, operation: "create", code: errno) }
        // The umask can only take bits away from 0600; fchmod gives back what a strict one took.
        guard fchmod(fd, 0o600) == 0 else {
            let code = errno
            close(fd)
            throw FileError(path: path, operation: "chmod", code: code)
        }
        return fd
    }

    /// The permission bits of `path` (`st_mode & 0o7777`), or `nil` when it does not exist.
    public static func permissions(_ path: String) throws(FileError) -> mode_t? {
        var st = stat()
        guard stat(path, &st) == 0 else {
            if errno == ENOENT { return nil }
            throw FileError(path: path, operation: "stat", code: errno)
        }
        return st.st_mode & 0o7777
    }

    /// `mode` in octal with its leading zero, as `ls` and `chmod` users read it: `0755`.
    public static func octal(_ mode: mode_t) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    /// The names in `directory` (not `.` and `..`), sorted; empty when it does not exist.
    static func list(_ directory: String) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    /// Whether anything is at `path` itself, a symbolic link included whatever it leads to (`lstat`).
    static func entryExists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    /// The target of the symbolic link at `path` when it leads to nothing (a file since removed, a volume not
    /// mounted); `nil` when `path` is no link or its target is there.
    public static func danglingLinkTarget(_ path: String) -> String? {
        var st = stat()
        guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFLNK, stat(path, &st) != 0, errno == ENOENT else {
            return nil
        }
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX))
        let count = buffer.withUnsafeMutableBytes { readlink(path, $0.baseAddress!, $0.count) }
        return count >= 0 ? String(decoding: buffer[..<count], as: UTF8.self) : "a target that cannot be read"
    }

    /// Whether `path` is a directory (following symbolic links); `nil` when nothing is there.
    static func isDirectory(_ path: String) -> Bool? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return st.st_mode & S_IFMT == S_IFDIR
    }

    static func truncate(_ path: String, to length: Int) throws(FileError) {
        guard Glibc.truncate(path, off_t(length)) == 0 else {
            throw FileError(path: path, operation: "truncate", code: errno)
        }
    }

    /// Moves `source` to `destination` in `directory`: `rename`, or across file systems a copy that is synced
    /// before the source is removed; then `directory` is synced.
    static func move(_ source: String, to destination: String, directory: String) throws(FileError) {
        if rename(source, destination) != 0 {
            guard errno == EXDEV else {
                throw FileError(path: source, operation: "rename to \(destination)", code: errno)
            }
            let bytes = try readAll(source)
            let temporary = destination + ".tmp"
            do throws(FileError) {
                try writeSynced(bytes, to: temporary)
                guard rename(temporary, destination) == 0 else {
                    throw FileError(path: temporary, operation: "rename to \(destination)", code: errno)
                }
            } catch {
                // A part-written copy (a full archive disk) is not left behind.
                unlink(temporary)
                throw error
            }
            try syncDirectory(directory)
            try remove(source)
            return
        }
        try syncDirectory(directory)
    }

    private static func writeSynced(_ bytes: [UInt8], to path: String) throws(FileError) {
        let fd = try openPrivate(path, O_WRONLY | O_CREAT | O_TRUNC)
        defer { close(fd) }
        try writeAll(fd, bytes, path: path)
        try syncData(fd, path: path)
    }

    /// The size of the file at `path`, `nil` when it cannot be read.
    public static func size(_ path: String) -> Int? {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : nil
    }

    /// When the file at `path` was last modified, in seconds since the Unix epoch.
    static func modifiedSeconds(_ path: String) -> Int64? {
        var st = stat()
        return stat(path, &st) == 0 ? Int64(st.st_mtim.tv_sec) : nil
    }

    /// The wall clock, in seconds since the Unix epoch.
    static func wallClockSeconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec)
    }

    static func remove(_ path: String) throws(FileError) {
        guard unlink(path) == 0 || errno == ENOENT else {
            throw FileError(path: path, operation: "unlink", code: errno)
        }
    }

    /// Writes `bytes` to `path` atomically, readable by its owner only (0600): a temporary file, fsync, rename, and an fsync of the directory.
    public static func writeAtomically(_ bytes: [UInt8], to path: String, directory: String) throws(FileError) {
        try writeAtomically(to: path, directory: directory) { (sink: inout TricklingWriter) throws(FileError) in
            try sink.write(bytes)
        }
    }

    /// Writes what `body` hands its ``TricklingWriter`` to `path` atomically, like ``writeAtomically(_:to:directory:)``,
    /// without the whole file in memory at once.
    public static func writeAtomically(
        to path: String, directory: String, _ body: (inout TricklingWriter) throws(FileError) -> Void
    ) throws(FileError) {
        let temporary = path + ".tmp"
        let fd = try openPrivate(temporary, O_WRONLY | O_CREAT | O_TRUNC)
        do throws(FileError) {
            var sink = TricklingWriter(fd: fd, path: temporary)
            try body(&sink)
            guard fsync(fd) == 0 else { throw FileError(path: temporary, operation: "fsync", code: errno) }
        } catch {
            close(fd)
            // A part-written file (a full disk) is not left behind.
            unlink(temporary)
            throw error
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw FileError(path: path, operation: "rename", code: code)
        }
        try syncDirectory(directory)
    }
}

/// Writes a file a piece at a time and, at each 256 KiB boundary it passes, starts the writeback of that piece and
/// waits for the one before it: the dirty pages of a large file (a snapshot) never pile up, so its final `fsync` is
/// short and does not hold up the journal's `fdatasync` behind a long filesystem commit, and a journal sync queued
/// behind the snapshot's writes waits for at most half a MiB of them (with 1 MiB pieces, the run's `fdatasync`
/// p99.9 rose from 1 ms to 10 ms in half the runs with snapshots; docs/PERFORMANCE.md).
public struct TricklingWriter {
    static let chunk = 1 << 18
    let fd: Int32
    let path: String
    /// Bytes written so far.
    private(set) var offset = 0
    /// Where the writeback started last ends.
    private var started = 0

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    /// Writes `bytes` at the end of the file.
    public mutating func write(_ bytes: [UInt8]) throws(FileError) {
        try withBytes(of: bytes) { (raw) throws(FileError) in try write(raw) }
    }

    /// Writes `bytes` at the end of the file.
    public mutating func write(_ bytes: UnsafeRawBufferPointer) throws(FileError) {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            try wrote(n)
            done += max(0, n)
        }
    }

    /// Writes `bytes` again at `position`, over what was written there (a header completed at the end); the end
    /// of the file stays where it is.
    public mutating func overwrite(_ bytes: [UInt8], at position: Int) throws(FileError) {
        precondition(position >= 0 && position + bytes.count <= offset, "overwrite past what was written")
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes {
                pwrite(fd, $0.baseAddress! + done, $0.count - done, off_t(position + done))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(path: path, operation: "write", code: errno)
            }
            done += n
        }
    }

    /// Counts `n` bytes written (or throws the error of a failed write, retried on `EINTR`), starting writebacks.
    private mutating func wrote(_ n: Int) throws(FileError) {
        if n < 0 {
            if errno == EINTR { return }
            throw FileError(path: path, operation: "write", code: errno)
        }
        offset += n
        while offset - started >= Self.chunk {
            // Advice only: a file system without it still gets the fsync that follows.
            _ = gavel_writeback(fd, Int64(started), Int64(Self.chunk), 0)
            if started > 0 { _ = gavel_writeback(fd, Int64(started - Self.chunk), Int64(Self.chunk), 1) }
            started += Self.chunk
        }
    }
}

/// The layout of a data directory.
public struct DataDirectory: Sendable {
    public let path: String
    /// Where retention moves the segments and snapshots it no longer keeps, instead of deleting them
    /// (`--archive-dir`); `nil`: they are deleted. Reads (``segments()``, ``snapshotFiles()``) look there too.
    public let archive: String?

    public init(_ path: String, archive: String? = nil) {
        self.path = path
        self.archive = archive
    }

    public var journal: String { path + "/journal" }
    public var snapshots: String { path + "/snapshots" }
    /// Where recovery with `--truncate-after-corruption` moves the segments of a journal that ends before the
    /// snapshot it starts from (``Recovery``): out of the journal, kept for an audit by hand.
    public var setAside: String { path + "/" + Self.setAsideName }
    public static let setAsideName = "journal-set-aside"

    /// What makes this unreadable as a data directory, or `nil`: it does not exist, is not a directory, or its
    /// `journal` or `snapshots` (or the archive) is there but not a directory. A directory without `journal` or
    /// `snapshots` yet is an empty data directory, not a problem.
    public func layoutProblem() -> String? {
        switch Files.isDirectory(path) {
        case nil: return "there is no data directory at \(path) (nothing exists there; check --data-dir)"
        case false?: return "\(path) is not a directory (check --data-dir)"
        case true?: break
        }
        for folder in [journal, snapshots] + (archive.map { [$0] } ?? []) where Files.isDirectory(folder) == false {
            return "\(folder) is not a directory: move it aside"
        }
        return nil
    }

    /// Creates the directory and its `journal` and `snapshots` folders when missing, each readable by its owner
    /// only (0700).
    public func create() throws(FileError) {
        try Files.makeDirectory(path)
        try Files.makeDirectory(journal)
        try Files.makeDirectory(snapshots)
        if let archive { try Files.makeDirectory(archive) }
    }

    /// `<first lsn, 20 digits>.seg`.
    public static func segmentName(firstLSN: UInt64) -> String { pad(firstLSN) + ".seg" }

    /// `<lsn, 20 digits>.snap`.
    public static func snapshotName(lsn: UInt64) -> String { pad(lsn) + ".snap" }

    static func pad(_ value: UInt64) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    /// Journal segments as (first lsn, path), in lsn order: the archive's, then the journal folder's (a segment in
    /// both, left by a move that was cut short, is read from the journal folder).
    public func segments() -> [(firstLSN: UInt64, path: String)] {
        guard let archive else { return journalSegments() }
        var byLSN: [UInt64: String] = [:]
        for (lsn, path) in Self.segments(in: archive) { byLSN[lsn] = path }
        for (lsn, path) in journalSegments() { byLSN[lsn] = path }
        return byLSN.map { (firstLSN: $0.key, path: $0.value) }.sorted { $0.firstLSN < $1.firstLSN }
    }

    /// The segments of the journal folder only (not the archive), in lsn order.
    public func journalSegments() -> [(firstLSN: UInt64, path: String)] { Self.segments(in: journal) }

    private static func segments(in folder: String) -> [(firstLSN: UInt64, path: String)] {
        Files.list(folder).compactMap { name in
            guard name.hasSuffix(".seg"), let lsn = UInt64(name.dropLast(4)) else { return nil }
            return (lsn, folder + "/" + name)
        }.sorted { $0.firstLSN < $1.firstLSN }
    }

    /// Snapshots as (lsn, path), newest first: the snapshots folder's and the archive's.
    public func snapshotFiles() -> [(lsn: UInt64, path: String)] {
        guard let archive else { return keptSnapshots() }
        var byLSN: [UInt64: String] = [:]
        for (lsn, path) in Self.snapshots(in: archive) { byLSN[lsn] = path }
        for (lsn, path) in keptSnapshots() { byLSN[lsn] = path }
        return byLSN.map { (lsn: $0.key, path: $0.value) }.sorted { $0.lsn > $1.lsn }
    }

    /// The snapshots of the snapshots folder only (not the archive), newest first.
    public func keptSnapshots() -> [(lsn: UInt64, path: String)] { Self.snapshots(in: snapshots) }

    private static func snapshots(in folder: String) -> [(lsn: UInt64, path: String)] {
        Files.list(folder).compactMap { name in
            guard name.hasSuffix(".snap"), let lsn = UInt64(name.dropLast(5)) else { return nil }
            return (lsn, folder + "/" + name)
        }.sorted { $0.lsn > $1.lsn }
    }

    /// Removes `file` (a segment or a snapshot), or moves it into the archive when there is one: renamed (copied,
    /// synced and removed when the archive is on another file system), then the archive's directory synced.
    func retire(_ file: String) throws(FileError) {
        guard let archive else { return try Files.remove(file) }
        let name = String(file.split(separator: "/").last ?? Substring(file))
        try Files.move(file, to: archive + "/" + name, directory: archive)
    }
}

/// The number of CPUs this process may run on by its affinity mask (`taskset`, `sched_setaffinity`), or `nil` when
/// it cannot be read. `System.coreCount` counts the cgroup's quota and cpuset but not the affinity.
public func allowedCPUCount() -> Int? {
    let count = Int(gavel_allowed_cpu_count())
    return count > 0 ? count : nil
}

/// `body` with `array`'s bytes, its typed error carried out (`withUnsafeBytes` rethrows untyped ones).
func withBytes<E: Error>(of array: [UInt8], _ body: (UnsafeRawBufferPointer) throws(E) -> Void) throws(E) {
    var failure: E?
    array.withUnsafeBytes { bytes in
        do throws(E) { try body(bytes) } catch { failure = error }
    }
    if let failure { throw failure }
}
