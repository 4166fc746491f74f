import Foundation

/// Secrets given to the projector: files that hold them, the PostgreSQL password file, and the command line that
/// must not keep them.
///
/// Every local user can read a process's command line (`ps`, `/proc/PID/cmdline`), but only its owner its
/// environment (`/proc/PID/environ` is 0400) and, given the right permissions, its files. So a secret goes in an
/// environment variable or a file; one given as an option is overwritten in the process's memory once parsed.
public enum Secrets {
    /// What another user could do with a secret file: said when one is open to them.
    public static let tokenRisk = "they could read the token and act as its user, or change it"
    public static let keyRisk = "they could read the key and sign tokens that act for anyone, or change it"
    public static let passwordRisk = "they could read the database's passwords, or change them"

    /// The secret in the file `path`, named by `option` (`--token-file`): its text less one trailing newline
    /// (`\n` or `\r\n`). The file must be a regular file of the user running the projector that no other user may
    /// read or write; anything else is refused with what to do about it (`risk` says why it matters).
    public static func file(_ path: String, option: String, risk: String) throws(ProjectorError) -> String {
        var text = try privateFile(path, option: option, risk: risk)
        if text.last == 0x0A {
            text.removeLast()
            if text.last == 0x0D { text.removeLast() }
        }
        guard !text.isEmpty else { throw .invalidOption("\(option) \(path) is empty") }
        return String(decoding: text, as: UTF8.self)
    }

    /// The bytes of the file `path` once it is found private: a regular file (not a FIFO that would block, not a
    /// directory) of the effective user, without a permission bit for group or others. The checks look at the open
    /// file, so another file put at `path` in between cannot pass for it.
    static func privateFile(_ path: String, option: String, risk: String) throws(ProjectorError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            throw .invalidOption("cannot read \(option) \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0, status.st_mode & S_IFMT == S_IFREG else {
            throw .invalidOption("cannot read \(option) \(path): not a regular file")
        }
        let user = geteuid()
        guard status.st_uid == user else {
            throw .invalidOption(
                "\(option) \(path) belongs to another user (uid \(status.st_uid)), who could change it: it must be a file of the user running gavel-projector (uid \(user)). Make it theirs with `chown \(user) \(path)` (as root) and `chmod 600 \(path)`"
            )
        }
        let mode = status.st_mode & 0o7777
        guard mode & 0o077 == 0 else {
            let octal = String(mode, radix: 8)
            throw .invalidOption(
                "\(option) \(path) is open to other users (mode \(String(repeating: "0", count: max(0, 4 - octal.count)) + octal)): \(risk). Make it private with `chmod 600 \(path)` and start again"
            )
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else {
                throw .invalidOption("cannot read \(option) \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { return bytes }
            bytes += chunk[..<n]
            guard bytes.count <= 1 << 20 else { throw .invalidOption("\(option) \(path) is over 1 MiB") }
        }
    }

    /// A value given as an option, a file option, or their environment variables, in that order: `nil` when none
    /// is given. A value and a file both given as options, or both as variables, are refused.
    public static func given(
        value: String?, file: String?, names: (value: String, file: String),
        environment: [String: String], variables: (value: String, file: String), risk: String
    ) throws(ProjectorError) -> String? {
        func pick(_ value: String?, _ path: String?, _ labels: (value: String, file: String)) throws(ProjectorError)
            -> String?
        {
            switch (value, path) {
            case (let value?, nil): return value
            case (nil, let path?): return try Secrets.file(path, option: labels.file, risk: risk)
            case (_?, _?): throw .invalidOption("give \(labels.value) or \(labels.file), not both")
            case (nil, nil): return nil
            }
        }
        if let found = try pick(value, file, names) { return found }
        return try pick(environment[variables.value], environment[variables.file], variables)
    }

    /// The password for `target` as libpq finds it when its URL has none: `PGPASSWORD`, else the line of the
    /// password file (`PGPASSFILE`, default `~/.pgpass`) whose `host:port:database:user` match (`*` matches
    /// anything; `\:` and `\\` escape). A missing password file is no password; one that is not a private file of
    /// the user is refused, with the `chmod 600` that fixes it.
    public static func postgresPassword(for target: PostgresTarget, environment: [String: String])
        throws(ProjectorError)
        -> String?
    {
        if let password = environment["PGPASSWORD"], !password.isEmpty { return password }
        let path: String
        if let named = environment["PGPASSFILE"], !named.isEmpty {
            path = named
        } else if let home = environment["HOME"], !home.isEmpty {
            path = home + "/.pgpass"
        } else {
            return nil
        }
        guard access(path, F_OK) == 0 else { return nil }
        let text = String(
            decoding: try privateFile(path, option: "the password file", risk: passwordRisk), as: UTF8.self)
        return passwordLine(in: text, for: target)
    }

    /// The password of the first line of a password file's `text` that matches `target`.
    static func passwordLine(in text: String, for target: PostgresTarget) -> String? {
        let wanted = [target.host, String(target.port), target.database, target.user]
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }) where !line.hasPrefix("#") {
            var fields: [String] = [""]
            var escaped = false
            for character in line {
                if escaped {
                    fields[fields.count - 1].append(character)
                    escaped = false
                } else if character == "\\" {
                    escaped = true
                } else if character == ":" && fields.count < 5 {
                    fields.append("")
                } else {
                    fields[fields.count - 1].append(character)
                }
            }
            guard fields.count == 5 else { continue }
            if zip(fields, wanted).allSatisfy({ $0 == "*" || $0 == $1 }) { return fields[4] }
        }
        return nil
    }

    /// Overwrites, in this process's own argument memory, what is secret in the arguments with as many 'x's: the
    /// value of each of `options` (`--token T`, `--token=T`) and the password of each of `urlOptions`
    /// (`--postgres-url postgres://USER:PASSWORD@...`), up to a `--`. Linux serves `/proc/PID/cmdline`, which every
    /// local user can read, from that memory; until now it showed the secrets. Call it as early as possible, once
    /// the arguments the parser reads are copied (`CommandLine.arguments`).
    public static func scrubArguments(options: Set<String>, urlOptions: Set<String>) {
        scrub(CommandLine.unsafeArgv, count: Int(CommandLine.argc), options: options, urlOptions: urlOptions)
    }

    static func scrub(
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>, count: Int, options: Set<String>,
        urlOptions: Set<String>
    ) {
        /// Overwrites the secret part of the C string `value` given to `option`.
        func overwrite(_ value: UnsafeMutablePointer<CChar>, of option: String) {
            let length = strlen(value)
            if options.contains(option) {
                memset(value, 0x78, length)
            } else if let password = passwordRange(
                in: UnsafeBufferPointer(
                    start: UnsafeRawPointer(value).assumingMemoryBound(to: UInt8.self), count: length))
            {
                memset(value + password.lowerBound, 0x78, password.count)
            }
        }
        var index = 1
        while index < count, let argument = argv[index] {
            let text = String(cString: argument)
            if text == "--" { break }
            if options.contains(text) || urlOptions.contains(text) {
                if index + 1 < count, let value = argv[index + 1] { overwrite(value, of: text) }
                index += 2
                continue
            }
            if let equals = text.utf8.firstIndex(of: 0x3D) {
                let option = String(decoding: text.utf8[..<equals], as: UTF8.self)
                if options.contains(option) || urlOptions.contains(option) {
                    overwrite(argument + option.utf8.count + 1, of: option)
                }
            }
            index += 1
        }
    }

    /// Where the password is in a URL `scheme://USER:PASSWORD@HOST...`: from the first `:` of the user (before any
    /// `/`, `?` or `#`) to the last `@` after it; `nil` when there is none. The last `@`, not the authority's: a
    /// password written with an unescaped `/`, `?` or `#` (which would end the authority) is still found, and
    /// overwritten.
    static func passwordRange<Bytes: RandomAccessCollection>(in bytes: Bytes) -> Range<Int>?
    where Bytes.Element == UInt8, Bytes.Index == Int {
        let separator = Array("://".utf8)
        guard let scheme = bytes.indices.first(where: { bytes[$0...].starts(with: separator) }) else { return nil }
        let start = scheme + separator.count
        let end = bytes[start...].firstIndex(where: { $0 == 0x2F || $0 == 0x3F || $0 == 0x23 }) ?? bytes.endIndex
        guard let colon = bytes[start..<end].firstIndex(of: 0x3A), let at = bytes[colon...].lastIndex(of: 0x40),
            bytes[start..<colon].firstIndex(of: 0x40) == nil, colon + 1 < at
        else { return nil }
        return (colon + 1)..<at
    }

    /// Whether `url` (a `--postgres-url`) holds a password.
    public static func hasPassword(_ url: String) -> Bool { passwordRange(in: Array(url.utf8)) != nil }
}
