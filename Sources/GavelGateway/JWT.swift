import Crypto
import GavelCore
import GavelWire

/// What a connection may do.
public enum Role: String, Sendable, Hashable, CaseIterable {
    /// Bids, buys and trades as itself only.
    case bidder
    /// Opens and cancels its own listings; may also bid as itself elsewhere.
    case seller
    /// The marketplace's internal gateway: acts for any user (`on_behalf_of`), with its own limits.
    case service
    /// Read-only: subscribes, sends no commands. Anonymous connections are watchers.
    case watcher
    /// The marketplace's dispute desk and operators: resolves disputes, refunds, cancels any listing and reads any
    /// settlement; never bids, buys, trades or opens.
    case admin
}

/// The claims Gavel reads from a token.
public struct Claims: Sendable, Hashable {
    /// `sub`: the user the token speaks for (an identifier).
    public var subject: String
    /// `role`.
    public var role: Role
    /// `exp`: seconds since the Unix epoch after which the token is refused.
    public var expires: Int64

    public init(subject: String, role: Role, expires: Int64) {
        self.subject = subject
        self.role = role
        self.expires = expires
    }
}

/// JSON Web Tokens (RFC 7519 with RFC 7515 compact serialization): HS256, signed and checked with the server's own
/// secret (HMAC-SHA256, compared in constant time), and, when an ``IdentityProvider`` is configured, RS256, ES256
/// and EdDSA tokens checked with its public keys (jwt-kit).
///
/// The header's `alg` decides the key before the signature is looked at: `HS256` only ever with the secret (so an
/// HS256 token HMAC-signed with a public key's bytes fails), the others only with the provider's key named by
/// `kid`, whose own algorithm must be the same. Any other `alg`, `none` included, is refused.
public enum JWT {
    /// Why a token was refused. Callers answer every case with the same 401 and no detail, and log it.
    public enum Failure: Error, Equatable, CustomStringConvertible {
        /// Not three base64url parts, or a part that is not a JSON object.
        case malformed
        /// `alg` is not `HS256`, nor (with an identity provider) the algorithm of the key it names.
        case unsupportedAlgorithm
        /// No `kid`, or one the identity provider's key set does not hold.
        case unknownKey
        case badSignature
        /// `exp` is in the past (or `nbf` in the future).
        case expired
        /// `sub` missing or not an identifier, `role` missing or unknown, `exp` missing or not an integer.
        case invalidClaims
        /// `iss` is not the required issuer.
        case wrongIssuer
        /// `aud` does not name the required audience.
        case wrongAudience

        public var description: String {
            switch self {
            case .malformed: "malformed token"
            case .unsupportedAlgorithm: "algorithm not accepted (alg)"
            case .unknownKey: "unknown key id (kid)"
            case .badSignature: "bad signature"
            case .expired: "expired or not yet valid (exp, nbf)"
            case .invalidClaims: "missing or invalid claims (sub, role, exp)"
            case .wrongIssuer: "wrong issuer (iss)"
            case .wrongAudience: "wrong audience (aud)"
            }
        }
    }

    /// The longest token accepted, in bytes.
    public static let maxLength = 8192

    /// A signed token for `claims`.
    public static func sign(_ claims: Claims, secret: [UInt8]) -> String {
        let header = Base64URL.encode(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
        var payload = JSONObjectWriter()
        payload.field("sub", claims.subject)
        payload.field("role", claims.role.rawValue)
        payload.field("exp", claims.expires)
        let signingInput = header + "." + Base64URL.encode(payload.finish())
        return signingInput + "." + Base64URL.encode(mac(Array(signingInput.utf8), secret: secret))
    }

    /// Checks `token`'s algorithm, signature and claims at `now` (seconds since the Unix epoch): HS256 with
    /// `secret`, RS256, ES256 and EdDSA with `identity`'s keys (when given).
    ///
    /// - Throws: ``Failure``.
    public static func verify(
        _ token: String, secret: [UInt8], identity: IdentityProvider? = nil, now: Int64
    ) throws(Failure) -> Claims {
        let bytes = Array(token.utf8)
        guard bytes.count <= maxLength else { throw .malformed }
        let parts = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3, let headerBytes = Base64URL.decode(parts[0]),
            let payloadBytes = Base64URL.decode(parts[1]), let signature = Base64URL.decode(parts[2])
        else { throw .malformed }
        guard let header = try? JSONParser.parse(headerBytes), case .object = header else { throw .malformed }
        // RFC 7515, 4.1.11: a token whose `crit` names extensions must be refused by a verifier that implements
        // none of them (this one implements none).
        guard header["crit"] == nil else { throw .malformed }
        let signingInput = Array(bytes[..<(parts[0].count + 1 + parts[1].count)])
        let fromProvider: IdentityProvider?
        switch header["alg"] {
        case .string("HS256")?:
            guard constantTimeEqual(mac(signingInput, secret: secret), signature) else { throw .badSignature }
            fromProvider = nil
        case .string(let algorithm)? where JWKSKeys.algorithms.contains(algorithm):
            guard let identity else { throw .unsupportedAlgorithm }
            guard case .string(let kid)? = header["kid"] else { throw .unknownKey }
            try identity.keys.verify(kid: kid, algorithm: algorithm, signingInput: signingInput, signature: signature)
            fromProvider = identity
        default:
            throw .unsupportedAlgorithm
        }
        guard let payload = try? JSONParser.parse(payloadBytes), case .object = payload else { throw .malformed }
        let role: Role? = if let fromProvider { fromProvider.role(in: payload) } else { localRole(payload) }
        guard case .string(let subject)? = payload["sub"], Identifier.isValid(subject), let role,
            case .integer(let expires)? = payload["exp"]
        else { throw .invalidClaims }
        guard expires > now else { throw .expired }
        if let notBefore = payload["nbf"] {
            guard case .integer(let nbf) = notBefore else { throw .invalidClaims }
            guard nbf <= now else { throw .expired }
        }
        try fromProvider?.checkIssuerAndAudience(payload)
        return Claims(subject: subject, role: role, expires: expires)
    }

    /// The role of a token signed with the server's secret: the `role` claim.
    private static func localRole(_ payload: JSONValue) -> Role? {
        guard case .string(let name)? = payload["role"] else { return nil }
        return Role(rawValue: name)
    }

    static func mac(_ message: [UInt8], secret: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: secret)))
    }

    /// Compares without an early exit, so the time taken says nothing about where the bytes differ.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in 0..<a.count { difference |= a[i] ^ b[i] }
        return difference == 0
    }
}

/// base64url without padding (RFC 4648 §5), as JWTs use it.
public enum Base64URL {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count * 4 + 2) / 3)
        var i = 0
        while i + 3 <= bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(alphabet[Int(n >> 6 & 63)])
            out.append(alphabet[Int(n & 63)])
            i += 3
        }
        let rest = bytes.count - i
        if rest == 1 {
            let n = UInt32(bytes[i]) << 16
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
        } else if rest == 2 {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(alphabet[Int(n >> 6 & 63)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The decoded bytes, or `nil` for a character outside the alphabet, padding, or an impossible length.
    public static func decode<S: Collection<UInt8>>(_ text: S) -> [UInt8]? {
        guard text.count % 4 != 1 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(text.count * 3 / 4)
        var accumulator: UInt32 = 0
        var bits = 0
        for c in text {
            let v: UInt32
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = UInt32(c - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): v = UInt32(c - UInt8(ascii: "a")) + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = UInt32(c - UInt8(ascii: "0")) + 52
            case UInt8(ascii: "-"): v = 62
            case UInt8(ascii: "_"): v = 63
            default: return nil
            }
            accumulator = accumulator << 6 | v
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
            }
        }
        // Leftover bits must be zero (a canonical encoding).
        if bits > 0 && accumulator & ((1 << UInt32(bits)) - 1) != 0 { return nil }
        return out
    }
}
