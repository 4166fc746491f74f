import ArgumentParser
import GavelCore
import GavelEngine
import GavelGateway
import GavelJournal

struct Token: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a signed token (HS256 JWT) for connecting to `gavel serve`.",
        discussion: """
            The token is signed with the key of --jwt-secret-file or --jwt-secret (or GAVEL_JWT_SECRET_FILE, \
            GAVEL_JWT_SECRET), else with the key in <data-dir>/jwt-secret, which is created when missing, as \
            `gavel serve` does. Pass it to the WebSocket endpoint as `Authorization: Bearer <token>`, from a \
            browser as the subprotocols ["gavel", "gavel.bearer.<token>"], or as \
            `ws://127.0.0.1:8080/ws?token=<token>` (a URL that access logs record).

            Example:
              gavel token --sub alice --role bidder --ttl 1h
            """
    )

    @Option(name: .long, help: "The user the token speaks for (an identifier: 1-64 of [A-Za-z0-9_.:-]).")
    var sub: String

    @Option(name: .long, help: "bidder, seller, service, admin or watcher.")
    var role: String

    @Option(name: .long, help: "How long the token is valid: seconds, or a number with s, m, h or d.")
    var ttl: String = "1h"

    @OptionGroup var key: SigningKeyOptions

    func validate() throws {
        guard Identifier.isValid(sub) else {
            throw ValidationError("--sub must be 1-64 characters from [A-Za-z0-9_.:-]")
        }
        guard Role(rawValue: role) != nil else {
            throw ValidationError("--role must be bidder, seller, service, admin or watcher")
        }
        guard Self.seconds(ttl) != nil else { throw ValidationError("--ttl must be like 3600, 90s, 15m, 1h or 7d") }
        _ = try key.jwt.secret()
    }

    static func seconds(_ text: String) -> Int64? {
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        var digits = Substring(text)
        var unit: Int64 = 1
        if let last = digits.last, let u = units[last] {
            unit = u
            digits = digits.dropLast()
        }
        guard let n = Int64(digits), n > 0, n <= 10 * 365 * 86400 / unit else { return nil }
        return n * unit
    }

    func run() throws {
        key.jwt.warnIfOnCommandLine(tool: "gavel token")
        let secret = try servingSecret(key.jwt, dataDir: key.dataDir)
        let expires = SystemClock().now() / 1000 + (Self.seconds(ttl) ?? 3600)
        print(JWT.sign(Claims(subject: sub, role: Role(rawValue: role) ?? .watcher, expires: expires), secret: secret))
    }
}

/// The key `gavel serve` and `gavel token` sign with: the one given (``JWTSecretOptions``), or
/// `<data-dir>/jwt-secret` (made when missing). Each must be at least 32 bytes; a data directory or key file that
/// other users can read or write is refused.
func servingSecret(_ given: JWTSecretOptions, dataDir: String?) throws -> [UInt8] {
    if let secret = try given.secret() { return secret }
    let directory = DataDirectory(try Setting.value(dataDir, "GAVEL_DATA_DIR", default: "./gavel-data"))
    try refuseLooseDirectory(directory)
    try directory.create()
    let path = directory.path + "/jwt-secret"
    try refuseLooseKeyFile(path)
    let key: [UInt8]
    do {
        key = try SecretFile.loadOrCreate(path)
    } catch let failure as SecretFile.Failure {
        throw Refusal(failure.description)
    }
    try checkSecretStrength(key, source: "the key in \(path)", advice: "delete the file to have a new key made")
    return key
}

/// The key `gavel token` and `gavel send` sign tokens with.
struct SigningKeyOptions: ParsableArguments {
    @Option(
        name: .long,
        help: "The data directory whose jwt-secret signs the token. Env GAVEL_DATA_DIR; default ./gavel-data.")
    var dataDir: String?

    @OptionGroup var jwt: JWTSecretOptions
}
