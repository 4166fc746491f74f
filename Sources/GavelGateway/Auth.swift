import NIOHTTP1

/// Who is on a connection: the token's subject and role, or an anonymous watcher (`name == nil`).
public struct Principal: Sendable, Hashable {
    public var name: String?
    public var role: Role

    public init(name: String?, role: Role) {
        self.name = name
        self.role = role
    }

    /// An anonymous, read-only connection.
    public static let anonymous = Principal(name: nil, role: .watcher)
}

/// Whether a WebSocket upgrade request may open a session, and as whom.
public enum Admission: Sendable, Equatable {
    case accept(Principal)
    /// Refuse the upgrade with this status (401 for any token problem, 503 when full) and no detail.
    case refuse(HTTPResponseStatus)
}

/// Decides upgrades: the path, the token (`Authorization: Bearer`, a `gavel.bearer.<token>` subprotocol or
/// `?token=`), anonymous access.
public struct Authenticator: Sendable {
    public let secret: [UInt8]
    /// The identity provider whose RS256, ES256 and EdDSA tokens are accepted too, if any.
    public let identity: IdentityProvider?
    public let allowAnonymous: Bool
    /// Seconds since the Unix epoch, for `exp`.
    public let now: @Sendable () -> Int64

    public init(
        secret: [UInt8], identity: IdentityProvider? = nil, allowAnonymous: Bool,
        now: @escaping @Sendable () -> Int64
    ) {
        self.secret = secret
        self.identity = identity
        self.allowAnonymous = allowAnonymous
        self.now = now
    }

    /// The WebSocket endpoint's path.
    public static let path = "/ws"

    /// Whether `uri` names the WebSocket endpoint (any query allowed).
    public static func isEndpoint(_ uri: String) -> Bool {
        uri == path || uri.hasPrefix(path + "?")
    }

    /// Decides who `head` speaks for. A header token wins over a subprotocol token, which wins over a query token.
    public func admit(_ head: HTTPRequestHead) -> Admission { admission(head).admission }

    /// Decides who `head` speaks for, and until when: the token's `exp` (seconds since the Unix epoch), `nil` for an
    /// anonymous connection.
    public func admission(_ head: HTTPRequestHead) -> (admission: Admission, expires: Int64?) {
        let decision = decide(head)
        return (decision.admission, decision.expires)
    }

    /// ``admission(_:)`` with the reason for a refusal, for the server's log (never for the client).
    func decide(_ head: HTTPRequestHead) -> Decision {
        guard let token = Self.token(in: head) else {
            if allowAnonymous { return Decision(admission: .accept(.anonymous)) }
            return Decision(admission: .refuse(.unauthorized), why: "no token (--no-anonymous)")
        }
        guard let token else {
            let why =
                head.headers.first(name: "authorization") != nil
                ? "an Authorization header that is not Bearer"
                : "a \(Self.bearerSubprotocolPrefix) subprotocol offered without \(Self.subprotocol)"
            return Decision(admission: .refuse(.unauthorized), why: why)
        }
        do {
            let claims = try JWT.verify(token, secret: secret, identity: identity, now: now())
            return Decision(
                admission: .accept(Principal(name: claims.subject, role: claims.role)), expires: claims.expires)
        } catch {
            return Decision(admission: .refuse(.unauthorized), why: "token refused: \(error)", failure: error)
        }
    }

    /// An upgrade's admission, with what the log needs.
    struct Decision {
        var admission: Admission
        /// The token's `exp`.
        var expires: Int64?
        /// Why it was refused.
        var why: String?
        /// Why the token was refused.
        var failure: JWT.Failure?
    }

    /// The WebSocket subprotocol a client may offer, which the server then selects (``selectedSubprotocol(_:)``).
    public static let subprotocol = "gavel"
    /// The prefix of the subprotocol that carries a token (`gavel.bearer.<token>`): a browser cannot set an
    /// `Authorization` header on a WebSocket, and a token in the URL ends up in proxies' and servers' access logs.
    public static let bearerSubprotocolPrefix = "gavel.bearer."

    /// The subprotocols `head` offers, in its order (every `Sec-WebSocket-Protocol` header, comma-separated).
    private static func offeredSubprotocols(_ head: HTTPRequestHead) -> [Substring] {
        head.headers[canonicalForm: "sec-websocket-protocol"].map { $0.trimmingSpaces.trimmingLeadingSpaces }
    }

    /// The subprotocol the upgrade's answer selects: ``subprotocol`` when the client offered it (a client that
    /// offers subprotocols must be answered with one of them), else none.
    static func selectedSubprotocol(_ head: HTTPRequestHead) -> String? {
        offeredSubprotocols(head).contains { $0 == subprotocol } ? subprotocol : nil
    }

    /// The token the request carries: `nil` when none, `.some(nil)` when an `Authorization` header is there but is
    /// not a bearer token, or a `gavel.bearer.` subprotocol is offered without `gavel`. The header wins over a
    /// `gavel.bearer.` subprotocol, which wins over `?token=`.
    static func token(in head: HTTPRequestHead) -> String?? {
        if let authorization = head.headers.first(name: "authorization") {
            let parts = authorization.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            guard parts.count == 2, parts[0].lowercased() == "bearer" else { return .some(nil) }
            return .some(String(parts[1].trimmingSpaces))
        }
        let offered = offeredSubprotocols(head)
        if let bearer = offered.first(where: { $0.hasPrefix(bearerSubprotocolPrefix) }) {
            // Only beside `gavel`, which the answer then selects: a browser fails a connection whose offered
            // subprotocols the answer does not select one of, after the server had counted it.
            guard offered.contains(where: { $0 == subprotocol }) else { return .some(nil) }
            return .some(String(bearer.dropFirst(bearerSubprotocolPrefix.count)))
        }
        guard let query = head.uri.split(separator: "?", maxSplits: 1).dropFirst().first else { return nil }
        for pair in query.split(separator: "&") where pair.hasPrefix("token=") {
            return .some(String(pair.dropFirst("token=".count)))
        }
        return nil
    }
}

extension Substring {
    fileprivate var trimmingLeadingSpaces: Substring {
        var s = self
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        return s
    }

    fileprivate var trimmingSpaces: Substring {
        var s = self
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return s
    }
}
