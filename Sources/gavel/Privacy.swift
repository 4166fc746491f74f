import ArgumentParser
import GavelJournal

#if canImport(Glibc)
    import Glibc
#endif

/// A reason not to start that is not a usage mistake: printed as `Error: <description>`, exit status 1.
struct Refusal: Error, CustomStringConvertible {
    var description: String

    init(_ description: String) { self.description = description }
}

/// The shortest `--jwt-secret` / `GAVEL_JWT_SECRET` (and key file) accepted, in bytes: HS256's own key size.
let minimumSecretBytes = 32

/// Refuses a signing key shorter than ``minimumSecretBytes``; `source` says where it came from, `advice` what to do.
func checkSecretStrength(
    _ secret: [UInt8], source: String,
    advice: String =
        "make one with `head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'` (64 hex digits), or give none to use <data-dir>/jwt-secret"
) throws {
    guard secret.count >= minimumSecretBytes else {
        throw ValidationError(
            "\(source) is \(secret.count) bytes; a signing key must be at least \(minimumSecretBytes) bytes, or it can be guessed and tokens signed for any user: \(advice)"
        )
    }
}

/// The key from `--jwt-secret` or `GAVEL_JWT_SECRET`, checked for length; `nil` when neither is given.
func givenSecret(option: String?) throws -> [UInt8]? {
    if let option {
        try checkSecretStrength(Array(option.utf8), source: "--jwt-secret")
        return Array(option.utf8)
    }
    guard let value = Setting.environment("GAVEL_JWT_SECRET") else { return nil }
    try checkSecretStrength(Array(value.utf8), source: "GAVEL_JWT_SECRET")
    return Array(value.utf8)
}

/// Why `path` must not be open to other users: `nil` when it is private (no bit for group or others) or missing.
func loosePermissions(_ path: String, kind: String, fix: String) throws -> String? {
    let mode: mode_t?
    do {
        mode = try Files.permissions(path)
    } catch {
        throw Refusal("\(error)")
    }
    guard let mode, mode & 0o077 != 0 else { return nil }
    return
        "\(kind) \(path) is open to other users (mode \(Files.octal(mode))): they could read sealed bids, reserves and the signing key, or change them. Make it private with `\(fix) \(path)`"
}

/// Refuses a data directory that other users can read or write, saying how to fix it.
func refuseLooseDirectory(_ directory: DataDirectory) throws {
    if let why = try loosePermissions(directory.path, kind: "the data directory", fix: "chmod 700") {
        throw Refusal(why + " and start again")
    }
}

/// Refuses a key file that other users can read or write, saying how to fix it.
func refuseLooseKeyFile(_ path: String) throws {
    if let why = try loosePermissions(path, kind: "the key file", fix: "chmod 600") {
        throw Refusal(
            why + " (or delete it to have a new key made, which ends every token signed with the old one)")
    }
}

/// Prepares `directory` for a process that journals to it: creates it (0700) when missing, refuses it when other
/// users can read or write it, and takes its lock for the rest of the process, refusing when another process
/// holds it. SIGUSR1 (`gavel snapshot` asking the holder) is ignored from before the lock is taken, so that
/// it cannot end the process before the process installs its handler.
func claimForWriting(_ directory: DataDirectory) throws {
    try refuseLooseDirectory(directory)
    do {
        try directory.create()
    } catch {
        throw Refusal("cannot create the data directory: \(error)")
    }
    signal(SIGUSR1, SIG_IGN)
    do throws(DirectoryLock.Failure) {
        try DirectoryLock.acquire(directory)
    } catch {
        switch error {
        case .held(let pid):
            let holder = pid.map { "process \($0)" } ?? "another process"
            throw Refusal(
                "the data directory \(directory.path) is in use by \(holder), which holds its lock \(DirectoryLock.path(directory)); stop that process first, or use another --data-dir. Only one process at a time writes a data directory; gavel verify, dump and replay may read it meanwhile"
            )
        case .file(let problem):
            throw Refusal("cannot lock the data directory: \(problem)")
        }
    }
}

/// For the read-only tools: a warning on standard error when other users can read or write `directory`.
func warnIfLoose(_ directory: DataDirectory, tool: String) {
    if let why = try? loosePermissions(directory.path, kind: "the data directory", fix: "chmod 700") {
        printError("\(tool): warning: \(why)")
    }
}
