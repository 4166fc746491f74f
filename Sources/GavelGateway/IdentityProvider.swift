import FoundationEssentials
import GavelCore
import GavelWire
import JWTKit
import Synchronization

/// The public keys of an identity provider, by `kid`, from a JSON Web Key Set (RFC 7517), parsed and checked by
/// jwt-kit: RS256 (RSA), ES256 (P-256) and EdDSA (Ed25519) keys. Keys of other kinds, and encryption keys
/// (`"use": "enc"`), are skipped, as are keys without a `kid`: a token names the key it was signed with.
public struct JWKSKeys: Sendable {
    /// The algorithms accepted from an identity provider. HS256 is never among them: an HMAC key has no place in a
    /// public key set, and an HS256 token is only ever checked with the server's own secret.
    public static let algorithms: Set<String> = ["RS256", "ES256", "EdDSA"]

    /// Why a key set cannot be used.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    let keys: [String: any JWTAlgorithm]

    /// The `kid`s of the keys, sorted.
    public var identifiers: [String] { keys.keys.sorted() }

    /// No keys at all.
    public static let empty = JWKSKeys(keys: [:])

    private init(keys: [String: any JWTAlgorithm]) { self.keys = keys }

    /// The usable keys of the JWKS document `json`.
    ///
    /// - Throws: ``Failure`` when it is not a JWKS (`{"keys": [...]}`) or holds no usable key.
    public static func parse(_ json: [UInt8]) async throws(Failure) -> JWKSKeys {
        let set: LenientSet
        do {
            set = try JSONDecoder().decode(LenientSet.self, from: Data(json))
        } catch {
            throw Failure(description: "not a JSON Web Key Set ({\"keys\": [...]})")
        }
        var keys: [String: any JWTAlgorithm] = [:]
        let collection = JWTKeyCollection()
        for entry in set.keys where entry.use != "enc" {
            guard let jwk = entry.jwk, let kid = jwk.keyIdentifier?.string, let algorithm = algorithm(of: jwk),
                Self.algorithms.contains(algorithm.rawValue)
            else { continue }
            guard (try? await collection.add(jwk: jwk)) != nil,
                let key = try? await collection.getKey(for: JWKIdentifier(string: kid), alg: algorithm.rawValue),
                key.name == algorithm.rawValue
            else { continue }
            keys[kid] = key
        }
        guard !keys.isEmpty else {
            throw Failure(description: "no RS256, ES256 or EdDSA key with a kid in the key set")
        }
        return JWKSKeys(keys: keys)
    }

    /// The key's algorithm: its `alg`, or the one its type and curve imply.
    private static func algorithm(of jwk: JWK) -> JWK.Algorithm? {
        if let algorithm = jwk.algorithm { return algorithm }
        switch jwk.keyType {
        case .rsa: return .rs256
        case .ecdsa: return jwk.curve?.rawValue == "P-256" ? .es256 : nil
        case .octetKeyPair: return jwk.curve?.rawValue == "Ed25519" ? .eddsa : nil
        default: return nil
        }
    }

    /// Checks that the key `kid` is an `algorithm` key and made `signature` over `signingInput`.
    func verify(kid: String, algorithm: String, signingInput: [UInt8], signature: [UInt8]) throws(JWT.Failure) {
        guard let key = keys[kid] else { throw .unknownKey }
        guard key.name == algorithm else { throw .unsupportedAlgorithm }
        guard (try? key.verify(signature, signs: signingInput)) == true else { throw .badSignature }
    }

    /// A key set whose unusable keys (other types, encryption keys, bad values) are skipped instead of failing it.
    private struct LenientSet: Decodable {
        var keys: [LenientKey]
    }

    private struct LenientKey: Decodable {
        var jwk: JWK?
        var use: String?

        private enum CodingKeys: String, CodingKey { case use }

        init(from decoder: any Decoder) throws {
            jwk = try? JWK(from: decoder)
            use = try? decoder.container(keyedBy: CodingKeys.self).decodeIfPresent(String.self, forKey: .use)
        }
    }
}

/// What Gavel accepts from an identity provider's tokens: the key set (swapped whole when it is reloaded or
/// fetched again), the `iss` and `aud` it requires, and the claim that carries the role.
public final class IdentityProvider: Sendable {
    /// `iss` must equal this when set.
    public let issuer: String?
    /// `aud` (a string, or an array of strings) must contain this when set.
    public let audience: String?
    /// The path of the claim that carries the role: `role`, `roles`, `realm_access.roles`.
    public let roleClaim: [String]
    private let current: Mutex<JWKSKeys>

    public init(keys: JWKSKeys, issuer: String?, audience: String?, roleClaim: String) {
        self.current = Mutex(keys)
        self.issuer = issuer
        self.audience = audience
        self.roleClaim = roleClaim.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
    }

    /// The keys in use.
    public var keys: JWKSKeys { current.withLock { $0 } }

    /// Uses `keys` for tokens checked from now on.
    public func replace(_ keys: JWKSKeys) { current.withLock { $0 = keys } }

    /// Whether `path` is a claim path the role can be read from: dot-separated names, none empty.
    public static func isValidClaimPath(_ path: String) -> Bool {
        !path.isEmpty && path.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { !$0.isEmpty }
    }

    /// The role in `payload`: the claim at ``roleClaim`` when it is a known role's name, or, when it is an array,
    /// the first element that is.
    func role(in payload: JSONValue) -> Role? {
        var value = payload
        for name in roleClaim {
            guard let next = value[name] else { return nil }
            value = next
        }
        switch value {
        case .string(let name): return Role(rawValue: name)
        case .array(let names):
            for case .string(let name) in names {
                if let role = Role(rawValue: name) { return role }
            }
            return nil
        default: return nil
        }
    }

    /// Checks `iss` and `aud` where required.
    func checkIssuerAndAudience(_ payload: JSONValue) throws(JWT.Failure) {
        if let issuer {
            guard case .string(issuer)? = payload["iss"] else { throw .wrongIssuer }
        }
        if let audience {
            switch payload["aud"] {
            case .string(audience)?: break
            case .array(let values)? where values.contains(.string(audience)): break
            default: throw .wrongAudience
            }
        }
    }
}
