import GavelCore
import GavelWire
import NIOCore
import NIOHTTP1

/// `/token` on the page's port, for trying Gavel locally: a bidder or seller token, signed with the server's own
/// key, for whoever shows the server's local code.
///
/// It exists only in local mode (the server made or read its own key in the data directory: no `--jwt-secret`, no
/// `GAVEL_JWT_SECRET`) and only for loopback peers (127.0.0.0/8, ::1) whose `Host` header names a loopback
/// address or `localhost`; everything else is 404, as if there were no such path. A `POST` must carry the local
/// code: random at every start, written to `<data-dir>/local-code` (mode 0600, in a 0700 directory) and printed on
/// the server's terminal in the page's address (`http://127.0.0.1:8080/#code=...`). Being on the same machine is
/// not enough: another Unix user reaches loopback too, but cannot read the data directory, so cannot show the
/// code; whoever can read it could read `<data-dir>/jwt-secret` or run `gavel token` anyway, so `/token` grants
/// nothing new. The code goes in an `X-Gavel-Local-Code` header or a `"code"` field, never in the request line
/// (which proxies and logs record), and is compared in constant time. The `Host` check keeps a web page in the
/// same browser from reaching it through a rebound DNS name, and requiring `Content-Type: application/json` makes
/// any other web origin's request need a CORS preflight, which is never granted. `service`, `admin` and
/// `watcher` tokens are never issued here.
public struct LocalTokens: Sendable {
    public let secret: [UInt8]
    /// The code a request must show; an empty code matches nothing.
    public let code: [UInt8]
    public let ttlSeconds: Int64
    /// Seconds since the Unix epoch.
    public let now: @Sendable () -> Int64

    public init(secret: [UInt8], code: [UInt8], ttlSeconds: Int64, now: @escaping @Sendable () -> Int64) {
        self.secret = secret
        self.code = code
        self.ttlSeconds = ttlSeconds
        self.now = now
    }

    /// The largest request body read.
    static let maxBody = 4096

    /// The header that may carry the local code.
    public static let codeHeader = "X-Gavel-Local-Code"

    /// Where the code is and how to send it, for the answer to a request without it or with a wrong one.
    static let codeHelp =
        "open the address gavel serve printed (http://127.0.0.1:PORT/#code=...), or send the code in <data-dir>/local-code in an X-Gavel-Local-Code header or a \"code\" field; it changes at every start of the server"

    /// Whether `address` is a loopback address: 127.0.0.0/8, ::1, or ::ffff:127.0.0.0/104.
    public static func isLoopback(_ address: SocketAddress?) -> Bool {
        switch address {
        case .v4(let a):
            return UInt32(bigEndian: a.address.sin_addr.s_addr) >> 24 == 127
        case .v6(let a):
            let bytes = withUnsafeBytes(of: a.address.sin6_addr) { Array($0) }
            guard bytes.count == 16 else { return false }
            if bytes[0..<15].allSatisfy({ $0 == 0 }) && bytes[15] == 1 { return true }
            return bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF && bytes[12] == 127
        default:
            return false
        }
    }

    /// Whether a `Host` header names this machine's loopback: `localhost`, `127.x.y.z` or `[::1]`, any port.
    public static func isLoopbackHost(_ host: String?) -> Bool {
        guard var name = host?.lowercased(), !name.isEmpty else { return false }
        if name.hasPrefix("[") {
            guard let end = name.firstIndex(of: "]") else { return false }
            return name[name.index(after: name.startIndex)..<end] == "::1"
        }
        if let colon = name.firstIndex(of: ":") { name = String(name[..<colon]) }
        if name == "localhost" { return true }
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "127" else { return false }
        return parts.allSatisfy { part in UInt8(part) != nil }
    }

    /// The answer to a request for `/token` from `peer`: a status and a JSON body.
    func answer(head: HTTPRequestHead, body: [UInt8], peer: SocketAddress?) -> (HTTPResponseStatus, [UInt8]) {
        guard Self.isLoopback(peer), Self.isLoopbackHost(head.headers.first(name: "host")) else {
            return (.notFound, Self.error("not found"))
        }
        switch head.method {
        case .GET, .HEAD:
            var w = JSONObjectWriter()
            w.field("local", true)
            w.field("code_required", true)
            w.field("roles", raw: Array(#"["bidder","seller"]"#.utf8))
            w.field("ttl_seconds", ttlSeconds)
            return (.ok, w.finish())
        case .POST:
            break
        default:
            return (.methodNotAllowed, Self.error("POST a JSON object {\"sub\": ..., \"role\": ...}"))
        }
        let contentType = head.headers.first(name: "content-type")?.lowercased() ?? ""
        guard contentType.hasPrefix("application/json") else {
            return (.unsupportedMediaType, Self.error("send Content-Type: application/json"))
        }
        let value = try? JSONParser.parse(body)
        // One code: two headers (which one a proxy or a client library keeps varies) are refused, not one picked.
        guard head.headers[Self.codeHeader].count <= 1 else {
            return (.badRequest, Self.error("send one \(Self.codeHeader) header, not several"))
        }
        var shown = head.headers.first(name: Self.codeHeader).map { Array($0.utf8) }
        if shown == nil, case .string(let field)? = value?["code"] { shown = Array(field.utf8) }
        guard let shown else {
            return (.unauthorized, Self.error("a token here needs the server's local code: " + Self.codeHelp))
        }
        guard JWT.constantTimeEqual(shown, code), !code.isEmpty else {
            return (.forbidden, Self.error("wrong local code (the server restarted since?): " + Self.codeHelp))
        }
        guard let value, case .object = value else {
            return (.badRequest, Self.error("the body must be a JSON object {\"sub\": ..., \"role\": ...}"))
        }
        guard case .string(let sub)? = value["sub"], Identifier.isValid(sub) else {
            return (.badRequest, Self.error("sub must be an identifier: 1-64 characters from [A-Za-z0-9_.:-]"))
        }
        guard case .string(let roleName)? = value["role"] else {
            return (.badRequest, Self.error("role must be \"bidder\" or \"seller\""))
        }
        switch Role(rawValue: roleName) {
        case .bidder?, .seller?:
            break
        case .service?, .watcher?, .admin?:
            return (
                .badRequest,
                Self.error(
                    "role \(roleName) is not issued here: /token gives only bidder and seller tokens for trying Gavel locally; use `gavel token` on the server machine"
                )
            )
        case nil:
            return (.badRequest, Self.error("role must be \"bidder\" or \"seller\""))
        }
        let expires = now() + ttlSeconds
        let token = JWT.sign(
            Claims(subject: sub, role: Role(rawValue: roleName) ?? .bidder, expires: expires), secret: secret)
        var w = JSONObjectWriter()
        w.field("token", token)
        w.field("sub", sub)
        w.field("role", roleName)
        w.field("expires_at", expires * 1000)
        return (.ok, w.finish())
    }

    static func error(_ message: String) -> [UInt8] {
        var w = JSONObjectWriter()
        w.field("error", message)
        return w.finish()
    }
}
