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

/// `--jwt-secret` and `--jwt-secret-file`: the HS256 key of `gavel serve`, `gavel token` and `gavel send`.
struct JWTSecretOptions: ParsableArguments {
    @Option(
        name: .long,
        help:
            "The HS256 key, at least 32 bytes, instead of the key in <data-dir>/jwt-secret. Other local users can read a command line: prefer GAVEL_JWT_SECRET or --jwt-secret-file. Env GAVEL_JWT_SECRET."
    )
    var jwtSecret: String?

    @Option(
        name: .long,
        help:
            "A file holding the HS256 key (less one trailing newline), of the user running gavel and private to it (chmod 600). Env GAVEL_JWT_SECRET_FILE."
    )
    var jwtSecretFile: String?

    /// The given key, checked for length; `nil` when none is given. The options win over the environment; a key
    /// and a key file both given (as options, or as variables) are refused.
    func secret() throws -> [UInt8]? {
        guard
            let key = try givenSecret(
                option: jwtSecret, file: jwtSecretFile, names: ("--jwt-secret", "--jwt-secret-file"),
                variables: ("GAVEL_JWT_SECRET", "GAVEL_JWT_SECRET_FILE"), risk: SecretFileRisk.signingKey)
        else { return nil }
        try checkSecretStrength(key.bytes, source: key.source)
        return key.bytes
    }

    /// Whether a key is given at all (an option or a variable): then the server is not in local mode.
    var isGiven: Bool {
        jwtSecret != nil || jwtSecretFile != nil || Setting.environment("GAVEL_JWT_SECRET") != nil
            || Setting.environment("GAVEL_JWT_SECRET_FILE") != nil
    }

    /// The warning for a key given with `--jwt-secret`.
    func warnIfOnCommandLine(tool: String) {
        guard jwtSecret != nil else { return }
        warnAboutSecretOnCommandLine("--jwt-secret", tool: tool, instead: "GAVEL_JWT_SECRET or --jwt-secret-file")
    }
}

/// What another user could do with a secret file: the reason given when one is open to them.
enum SecretFileRisk {
    static let signingKey = "they could read the key and sign tokens that act for anyone, or change it"
    static let token = "they could read the token and act as its user, or change it"
}

/// A secret given as an option (`--jwt-secret`), a file option (`--jwt-secret-file`) or their environment
/// variables, in that order, with where it came from; `nil` when none is given. A value and a file both given as
/// options, or both as variables, are refused.
func givenSecret(
    option: String?, file: String?, names: (value: String, file: String), variables: (value: String, file: String)?,
    risk: String
) throws -> (bytes: [UInt8], source: String)? {
    func pick(_ value: String?, _ path: String?, _ labels: (value: String, file: String)) throws -> (
        bytes: [UInt8], source: String
    )? {
        switch (value, path) {
        case (let value?, nil): return (Array(value.utf8), labels.value)
        case (nil, let path?): return (try secretFile(path, option: labels.file, risk: risk), "\(labels.file) \(path)")
        case (_?, _?): throw ValidationError("give \(labels.value) or \(labels.file), not both")
        case (nil, nil): return nil
        }
    }
    if let given = try pick(option, file, names) { return given }
    guard let variables else { return nil }
    return try pick(Setting.environment(variables.value), Setting.environment(variables.file), variables)
}

/// The secret in the file `path`, named by `option`: its bytes less one trailing newline (`\n` or `\r\n`).
/// Refused, saying what to do: a path that is missing or not a regular file, a file of another user (who could put
/// a secret of their own in it), one that other users can read or write, and an empty one.
func secretFile(_ path: String, option: String, risk: String) throws -> [UInt8] {
    let file: (bytes: [UInt8], owner: uid_t, permissions: mode_t)
    do {
        file = try Files.readAllWithOwner(path)
    } catch {
        throw Refusal("cannot read \(option) \(path): \(error.reason ?? String(cString: strerror(error.code)))")
    }
    let user = geteuid()
    guard file.owner == user else {
        throw Refusal(
            "\(option) \(path) belongs to another user (uid \(file.owner)), who could change it: it must be a file of the user running this command (uid \(user)). Make it theirs with `chown \(user) \(path)` (as root) and `chmod 600 \(path)`"
        )
    }
    if let why = openToOthers(path, mode: file.permissions, kind: option, fix: "chmod 600", risk: risk) {
        throw Refusal(why + " and start again")
    }
    var secret = file.bytes[...]
    if secret.last == 0x0A {
        secret = secret.dropLast()
        if secret.last == 0x0D { secret = secret.dropLast() }
    }
    guard !secret.isEmpty else { throw Refusal("\(option) \(path) is empty") }
    return Array(secret)
}

/// What other users could do with a data directory (or a file in it) open to them.
let dataDirectoryRisk = "they could read sealed bids, reserves and the signing key, or change them"

/// Why `path` must not be open to other users: `nil` when it is private (no bit for group or others) or missing.
func loosePermissions(_ path: String, kind: String, fix: String, risk: String = dataDirectoryRisk) throws -> String? {
    let mode: mode_t?
    do {
        mode = try Files.permissions(path)
    } catch {
        throw Refusal("\(error)")
    }
    guard let mode else { return nil }
    return openToOthers(path, mode: mode, kind: kind, fix: fix, risk: risk)
}

/// Why a file with the permission bits `mode` must not be open to other users, and the `fix` that makes it
/// private: `nil` when no bit for group or others is set.
func openToOthers(
    _ path: String, mode: mode_t, kind: String, fix: String,
    risk: String = dataDirectoryRisk
) -> String? {
    guard mode & 0o077 != 0 else { return nil }
    return
        "\(kind) \(path) is open to other users (mode \(Files.octal(mode))): \(risk). Make it private with `\(fix) \(path)`"
}

/// Refuses a data directory that other users can read or write, saying how to fix it.
func refuseLooseDirectory(_ directory: DataDirectory) throws {
    if let why = try loosePermissions(directory.path, kind: "the data directory", fix: "chmod 700") {
        throw Refusal(why + " and start again")
    }
}

/// Refuses a key file that other users can read or write, saying how to fix it.
func refuseLooseKeyFile(_ path: String) throws {
    if let why = try loosePermissions(path, kind: "the key file", fix: "chmod 600", risk: SecretFileRisk.signingKey) {
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

/// The options whose value is a secret: overwritten in the process's argument memory at start
/// (``scrubSecretArguments(_:)``).
let secretOptions: Set<String> = ["--jwt-secret", "--token"]

/// Overwrites, in this process's own argument memory, the value of each of `options` given as `--option VALUE` or
/// `--option=VALUE` with as many 'x's, up to a `--` (after which every argument is positional). Linux serves
/// `/proc/PID/cmdline`, which every local user can read (`ps`), from that memory: from now on it shows the 'x's.
/// Until now it showed the secret, so the option's environment variable or file is the safe way to give it. Call it
/// as early as possible, once the arguments the parser reads are copied (`CommandLine.arguments`).
func scrubSecretArguments(_ options: Set<String>) {
    let argv = CommandLine.unsafeArgv
    var index = 1
    while index < Int(CommandLine.argc), let argument = argv[index] {
        let text = String(cString: argument)
        if text == "--" { break }
        if options.contains(text), index + 1 < Int(CommandLine.argc), let value = argv[index + 1] {
            memset(value, 0x78, strlen(value))
            index += 2
            continue
        }
        if let equals = text.utf8.firstIndex(of: 0x3D) {
            let option = String(decoding: text.utf8[..<equals], as: UTF8.self)
            if options.contains(option) {
                let prefix = option.utf8.count + 1
                memset(argument + prefix, 0x78, strlen(argument) - prefix)
            }
        }
        index += 1
    }
}

/// Warns on standard error that a secret was given on the command line as `option`; `instead` names the safe ways.
func warnAboutSecretOnCommandLine(_ option: String, tool: String, instead: String) {
    printError(
        "\(tool): warning: \(option) on the command line can be read by other local users (ps, /proc/PID/cmdline) while \(tool) starts, before it overwrites it: give \(instead) instead",
        level: .warning)
}
