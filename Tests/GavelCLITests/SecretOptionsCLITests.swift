import Foundation
import GavelCore
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Whether `token` is an HS256 JWT signed with `key`.
func isSigned(_ token: String, with key: [UInt8]) -> Bool {
    let parts = token.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 3 else { return false }
    func digest(_ pad: UInt8, _ message: [UInt8]) -> [UInt8] {
        var block = key + [UInt8](repeating: 0, count: 64 - key.count)
        for index in block.indices { block[index] ^= pad }
        var hash = SHA256Digest()
        hash.update(block + message)
        return hash.finalize()
    }
    let mac = digest(0x5C, digest(0x36, Array(parts[0..<2].joined(separator: ".").utf8)))
    let encoded = Data(mac).base64EncodedString().replacingOccurrences(of: "+", with: "-")
        .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    return encoded == parts[2]
}

/// The command line of process `pid` as other users read it, its arguments split at their NULs.
func commandLine(of pid: Int32) -> [String] {
    let bytes = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))) ?? Data()
    return bytes.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
}

/// Runs `body` with a path in a fresh folder (0700) removed afterwards.
func withSecretPath(_ body: (String) throws -> Void) throws {
    try withDataDirectory { data in
        let folder = data + "-secrets"
        mkdir(folder, 0o700)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try body(folder + "/secret")
    }
}

/// Writes `text` to `path` with the permission bits `permissions`.
func writeSecret(_ text: String, to path: String, permissions: mode_t = 0o600) throws {
    try text.write(toFile: path, atomically: false, encoding: .utf8)
    chmod(path, permissions)
}

/// Secrets given as files (`--jwt-secret-file`, `GAVEL_JWT_SECRET_FILE`, `gavel send --token-file`) and as options
/// (overwritten in the command line once parsed, with a warning).
@Suite(
    .serialized,
    .enabled(if: gavelBinary != nil, "no .build/debug/gavel under the package root; run `swift build` first"))
struct SecretOptionsCLITests {
    static let key = "secret-options-cli-tests-key-0123456789abcdef"
    static let tokenArguments = ["token", "--sub", "ann", "--role", "bidder"]

    @Test func aKeyFileSignsWithItsTextLessOneTrailingNewline() throws {
        try withSecretPath { path in
            for (text, key) in [
                (Self.key + "\n", Self.key), (Self.key + "\r\n", Self.key), (Self.key, Self.key),
                (Self.key + "\n\n", Self.key + "\n"), (" " + Self.key + " \n", " " + Self.key + " "),
            ] {
                try writeSecret(text, to: path)
                for (arguments, environment) in [
                    (["--jwt-secret-file", path], [:]), ([], ["GAVEL_JWT_SECRET_FILE": path]),
                ] as [([String], [String: String])] {
                    let token = try GavelProcess(Self.tokenArguments + arguments, environment: environment)
                    #expect(token.exitStatus() == 0, "\(token.standardError)")
                    let printed = token.standardOutput.trimmingCharacters(in: .newlines)
                    #expect(isSigned(printed, with: Array(key.utf8)), "\(text.debugDescription) \(arguments)")
                    #expect(!token.standardError.contains("warning"), "\(token.standardError)")
                }
            }
        }
    }

    @Test func aMissingFileADirectoryAndAFIFOAreRefusedAtOnce() throws {
        try withSecretPath { path in
            let missing = try GavelProcess(Self.tokenArguments + ["--jwt-secret-file", path])
            #expect(missing.exitStatus(within: GavelProcess.refusalSeconds) == 1)
            #expect(
                missing.standardError.contains("cannot read --jwt-secret-file \(path): No such file or directory"),
                "\(missing.standardError)")
            #expect(missing.standardOutput.isEmpty)
            mkdir(path, 0o700)
            let directory = try GavelProcess(Self.tokenArguments, environment: ["GAVEL_JWT_SECRET_FILE": path])
            #expect(directory.exitStatus(within: GavelProcess.refusalSeconds) == 1)
            #expect(
                directory.standardError.contains("cannot read GAVEL_JWT_SECRET_FILE \(path): not a regular file"),
                "\(directory.standardError)")
            rmdir(path)
            mkfifo(path, 0o600)
            let fifo = try GavelProcess(Self.tokenArguments + ["--jwt-secret-file", path])
            #expect(fifo.exitStatus(within: GavelProcess.refusalSeconds) == 1, "a FIFO does not block the start")
            #expect(fifo.standardError.contains("not a regular file"), "\(fifo.standardError)")
        }
    }

    @Test func aKeyFileOpenToOtherUsersIsRefusedWithTheChmodThatFixesIt() throws {
        try withSecretPath { path in
            for loose: mode_t in [0o644, 0o640, 0o604, 0o620, 0o602] {
                try writeSecret(Self.key + "\n", to: path, permissions: loose)
                let token = try GavelProcess(Self.tokenArguments + ["--jwt-secret-file", path])
                #expect(token.exitStatus(within: GavelProcess.refusalSeconds) == 1)
                #expect(
                    token.standardError.contains(
                        "--jwt-secret-file \(path) is open to other users (mode 0\(String(loose, radix: 8)))"),
                    "\(token.standardError)")
                #expect(token.standardError.contains("`chmod 600 \(path)`"), "\(token.standardError)")
                #expect(token.standardOutput.isEmpty)
            }
            try withDataDirectory { data in
                let serve = try startServe(data, ["--jwt-secret-file", path])
                #expect(serve.exitStatus(within: GavelProcess.refusalSeconds) == 1)
                #expect(serve.standardError.contains("`chmod 600 \(path)`"), "\(serve.standardError)")
                #expect(!FileManager.default.fileExists(atPath: data), "refused before the data directory is made")
            }
            chmod(path, 0o400)
            let token = try GavelProcess(Self.tokenArguments + ["--jwt-secret-file", path])
            #expect(token.exitStatus() == 0 && token.standardOutput.hasPrefix("eyJ"), "\(token.standardError)")
        }
    }

    @Test(.enabled(if: geteuid() == 0, "needs root to give a file to another user"))
    func aKeyFileOfAnotherUserIsRefused() throws {
        try withSecretPath { path in
            try writeSecret(Self.key + "\n", to: path)
            chown(path, 65534, 65534)
            let token = try GavelProcess(Self.tokenArguments + ["--jwt-secret-file", path])
            #expect(token.exitStatus(within: GavelProcess.refusalSeconds) == 1)
            #expect(
                token.standardError.contains("--jwt-secret-file \(path) belongs to another user (uid 65534)")
                    && token.standardError.contains("`chown 0 \(path)`"), "\(token.standardError)")
        }
    }

    @Test func aShortOrEmptyKeyFileIsRefusedAndSoIsAKeyGivenTwice() throws {
        try withSecretPath { path in
            try writeSecret(String(repeating: "k", count: 31) + "\n", to: path)
            for (arguments, environment) in [
                (["--jwt-secret-file", path], [:]), ([], ["GAVEL_JWT_SECRET_FILE": path]),
            ] as [([String], [String: String])] {
                let token = try GavelProcess(Self.tokenArguments + arguments, environment: environment)
                #expect(token.exitStatus(within: GavelProcess.refusalSeconds) != 0 && token.standardOutput.isEmpty)
                #expect(token.standardError.contains("is 31 bytes; a signing key must be at least 32 bytes"))
                try withDataDirectory { data in
                    let serve = try GavelProcess(
                        ["serve", "--data-dir", data, "--port", "0", "--admin-port=-1"] + arguments,
                        environment: environment)
                    #expect(serve.exitStatus(within: GavelProcess.refusalSeconds) != 0)
                    #expect(serve.standardError.contains("must be at least 32 bytes"), "\(serve.standardError)")
                }
            }
            try writeSecret("\n", to: path)
            let empty = try GavelProcess(Self.tokenArguments + ["--jwt-secret-file", path])
            #expect(empty.exitStatus(within: GavelProcess.refusalSeconds) == 1)
            #expect(empty.standardError.contains("--jwt-secret-file \(path) is empty"), "\(empty.standardError)")
            try writeSecret(Self.key, to: path)
            for (arguments, environment) in [
                (["--jwt-secret-file", path, "--jwt-secret", Self.key], [:]),
                ([], ["GAVEL_JWT_SECRET_FILE": path, "GAVEL_JWT_SECRET": Self.key]),
            ] as [([String], [String: String])] {
                let token = try GavelProcess(Self.tokenArguments + arguments, environment: environment)
                #expect(token.exitStatus(within: GavelProcess.refusalSeconds) != 0 && token.standardOutput.isEmpty)
                #expect(token.standardError.contains("not both"), "\(token.standardError)")
            }
        }
    }

    @Test func aSecretOptionIsOverwrittenInTheCommandLineOnceParsedWithAWarning() throws {
        try withDataDirectory { data in
            for arguments in [["--jwt-secret", Self.key], ["--jwt-secret=" + Self.key]] {
                let serve = try startServe(data, arguments)
                #expect(serve.waitForError("/ws, page"), "\(serve.standardError)")
                let seen = commandLine(of: serve.pid)
                #expect(seen.contains("serve") && !seen.joined().contains(Self.key), "\(seen)")
                #expect(seen.contains { $0.hasSuffix(String(repeating: "x", count: Self.key.utf8.count)) })
                #expect(
                    serve.standardError.contains(
                        "gavel serve: warning: --jwt-secret on the command line can be read by other local users"),
                    "\(serve.standardError)")
                #expect(serve.standardError.contains("give GAVEL_JWT_SECRET or --jwt-secret-file instead"))
                #expect(serve.stop() == 0)
            }
            let token = try GavelProcess(Self.tokenArguments + ["--jwt-secret", Self.key])
            #expect(
                token.exitStatus() == 0
                    && isSigned(token.standardOutput.trimmingCharacters(in: .newlines), with: Array(Self.key.utf8)))
            #expect(token.standardError.contains("gavel token: warning: --jwt-secret on the command line"))
            let quiet = try GavelProcess(Self.tokenArguments, environment: ["GAVEL_JWT_SECRET": Self.key])
            #expect(quiet.exitStatus() == 0 && quiet.standardError.isEmpty, "\(quiet.standardError)")
        }
    }

    @Test func sendConnectsWithATokenFileAndRefusesALooseOne() throws {
        try withDataDirectory { data in
            try withSecretPath { path in
                let serve = try startServe(data)
                defer { _ = serve.stop() }
                let url = try #require(servedURL(serve), "\(serve.standardError)")
                let signed = try GavelProcess(["token", "--sub", "desk", "--role", "admin", "--data-dir", data])
                #expect(signed.exitStatus() == 0)
                try writeSecret(signed.standardOutput, to: path)
                let list = #"{"type":"list"}"#
                let run = try runSend(["--url", url, "--token-file", path, "--timeout-ms", "200", list])
                #expect(run.status == 0, "\(run.err)")
                #expect(jsonLines(run.out).first?["principal"] as? String == "desk", "\(run.out)")
                #expect(!run.err.contains("warning"), "\(run.err)")
                let token = signed.standardOutput.trimmingCharacters(in: .newlines)
                let option = try runSend(["--url", url, "--token", token, "--timeout-ms", "200", list])
                #expect(option.status == 0, "\(option.err)")
                #expect(option.err.contains("gavel send: warning: --token on the command line"), "\(option.err)")
                #expect(option.err.contains("give --token-file instead"))
                chmod(path, 0o640)
                let loose = try runSend(["--url", url, "--token-file", path, list])
                #expect(loose.status == 2 && loose.out.isEmpty)
                #expect(loose.err.contains("`chmod 600 \(path)`"), "\(loose.err)")
                #expect(loose.err.contains("they could read the token"), "\(loose.err)")
            }
        }
    }
}
