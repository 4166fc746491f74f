import Crypto
import GavelGateway
import Testing

/// Tokens checked with an identity provider's key set (ES256 and EdDSA keys made here with swift-crypto), next to
/// the local HS256 secret.
@Suite struct IdentityTokenTests {
    let secret = Array("local-secret-0123456789abcdef0123".utf8)
    let p256 = P256.Signing.PrivateKey()
    let ed25519 = Curve25519.Signing.PrivateKey()

    var keySet: String {
        let point = p256.publicKey.rawRepresentation  // x || y
        let ec =
            #"{"kty":"EC","crv":"P-256","kid":"ec-1","use":"sig","x":"\#(Base64URL.encode(Array(point.prefix(32))))","y":"\#(Base64URL.encode(Array(point.suffix(32))))"}"#
        let ed =
            #"{"kty":"OKP","crv":"Ed25519","kid":"ed-1","alg":"EdDSA","x":"\#(Base64URL.encode(Array(ed25519.publicKey.rawRepresentation)))"}"#
        // Skipped, not fatal: an encryption key, an HMAC key, a key without kid.
        let others =
            #"{"kty":"RSA","use":"enc","kid":"enc-1","alg":"RSA-OAEP","n":"AQAB","e":"AQAB"},{"kty":"oct","kid":"h","k":"c2VjcmV0"},{"kty":"OKP","crv":"Ed25519","x":"\#(Base64URL.encode(Array(ed25519.publicKey.rawRepresentation)))"}"#
        return #"{"keys":[\#(ec),\#(ed),\#(others)]}"#
    }

    func provider(issuer: String? = nil, audience: String? = nil, roleClaim: String = "role") async throws
        -> IdentityProvider
    {
        let keys = try await JWKSKeys.parse(Array(keySet.utf8))
        return IdentityProvider(keys: keys, issuer: issuer, audience: audience, roleClaim: roleClaim)
    }

    func token(alg: String, kid: String?, payload: String, sign: (([UInt8]) throws -> [UInt8])? = nil) throws
        -> String
    {
        let kidField = kid.map { #","kid":"\#($0)""# } ?? ""
        let header = Base64URL.encode(Array(#"{"alg":"\#(alg)","typ":"JWT"\#(kidField)}"#.utf8))
        let input = header + "." + Base64URL.encode(Array(payload.utf8))
        let signer = sign ?? { message in try signES256(message) }
        return input + "." + Base64URL.encode(try signer(Array(input.utf8)))
    }

    func signES256(_ message: [UInt8]) throws -> [UInt8] {
        Array(try p256.signature(for: message).rawRepresentation)
    }

    func signEdDSA(_ message: [UInt8]) throws -> [UInt8] {
        Array(try ed25519.signature(for: message))
    }

    let alice = #"{"sub":"alice","role":"seller","exp":2000000000}"#

    @Test func keySetKeepsOnlyUsableSigningKeysWithKid() async throws {
        #expect(try await provider().keys.identifiers == ["ec-1", "ed-1"])
    }

    @Test func es256AndEdDSATokensVerifyWithTheirKid() async throws {
        let identity = try await provider()
        let es = try token(alg: "ES256", kid: "ec-1", payload: alice)
        let ed = try token(alg: "EdDSA", kid: "ed-1", payload: alice, sign: signEdDSA)
        for t in [es, ed] {
            let claims = try JWT.verify(t, secret: secret, identity: identity, now: 1_900_000_000)
            #expect(claims == Claims(subject: "alice", role: .seller, expires: 2_000_000_000))
        }
    }

    @Test func tokensNamingAnotherKeyOrAlgorithmAreRefused() async throws {
        let identity = try await provider()
        let cases: [(String, JWT.Failure)] = [
            (try token(alg: "ES256", kid: "nobody", payload: alice), .unknownKey),
            (try token(alg: "ES256", kid: nil, payload: alice), .unknownKey),
            (try token(alg: "ES256", kid: "ed-1", payload: alice), .unsupportedAlgorithm),
            (try token(alg: "EdDSA", kid: "ed-1", payload: alice), .badSignature),
            (try token(alg: "ES256", kid: "enc-1", payload: alice), .unknownKey),
            (try token(alg: "RS256", kid: "h", payload: alice), .unknownKey),
            (try token(alg: "none", kid: "ec-1", payload: alice), .unsupportedAlgorithm),
        ]
        for (t, failure) in cases {
            #expect(throws: failure) { try JWT.verify(t, secret: secret, identity: identity, now: 0) }
        }
    }

    @Test func hs256IsCheckedWithTheSecretOnlyEvenWithAKeySet() async throws {
        let identity = try await provider()
        let local = JWT.sign(Claims(subject: "bob", role: .bidder, expires: 2_000_000_000), secret: secret)
        #expect(try JWT.verify(local, secret: secret, identity: identity, now: 0).subject == "bob")
        // alg confusion: HMAC-signed with the public key's bytes, naming that key.
        let publicBytes = Array(p256.publicKey.rawRepresentation)
        let forged = try token(alg: "HS256", kid: "ec-1", payload: alice) { message in
            Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: publicBytes)))
        }
        #expect(throws: JWT.Failure.badSignature) {
            try JWT.verify(forged, secret: secret, identity: identity, now: 0)
        }
        // Without a key set, the provider's algorithms are not accepted at all.
        #expect(throws: JWT.Failure.unsupportedAlgorithm) {
            try JWT.verify(try token(alg: "ES256", kid: "ec-1", payload: alice), secret: secret, now: 0)
        }
    }

    @Test func issuerAndAudienceAreRequiredWhenSet() async throws {
        let identity = try await provider(issuer: "https://idp", audience: "gavel")
        func check(_ payload: String) throws -> Claims {
            try JWT.verify(
                try token(alg: "ES256", kid: "ec-1", payload: payload), secret: secret, identity: identity, now: 0)
        }
        #expect(
            try check(#"{"sub":"a","role":"bidder","exp":9,"iss":"https://idp","aud":["x","gavel"]}"#).subject == "a")
        #expect(throws: JWT.Failure.wrongIssuer) {
            try check(#"{"sub":"a","role":"bidder","exp":9,"iss":"https://other","aud":"gavel"}"#)
        }
        #expect(throws: JWT.Failure.wrongAudience) {
            try check(#"{"sub":"a","role":"bidder","exp":9,"iss":"https://idp","aud":"other"}"#)
        }
        #expect(throws: JWT.Failure.wrongAudience) {
            try check(#"{"sub":"a","role":"bidder","exp":9,"iss":"https://idp"}"#)
        }
    }

    @Test func roleComesFromTheConfiguredClaimPath() async throws {
        let identity = try await provider(roleClaim: "realm_access.roles")
        func role(_ payload: String) throws -> Role {
            try JWT.verify(
                try token(alg: "ES256", kid: "ec-1", payload: payload), secret: secret, identity: identity, now: 0
            )
            .role
        }
        #expect(
            try role(
                #"{"sub":"a","exp":9,"role":"service","realm_access":{"roles":["offline_access","bidder","seller"]}}"#)
                == .bidder)
        #expect(try role(#"{"sub":"a","exp":9,"realm_access":{"roles":"watcher"}}"#) == .watcher)
        for payload in [
            #"{"sub":"a","exp":9,"role":"bidder"}"#, #"{"sub":"a","exp":9,"realm_access":{"roles":["admin-x"]}}"#,
            #"{"sub":"a","exp":9,"realm_access":["bidder"]}"#,
        ] {
            #expect(throws: JWT.Failure.invalidClaims) { try role(payload) }
        }
    }

    @Test func subjectMustBeAnIdentifierAndExpPresent() async throws {
        let identity = try await provider()
        for payload in [
            #"{"sub":"auth0|123","role":"bidder","exp":9}"#, #"{"role":"bidder","exp":9}"#,
            #"{"sub":"a","role":"bidder"}"#,
        ] {
            #expect(throws: JWT.Failure.invalidClaims) {
                try JWT.verify(
                    try token(alg: "ES256", kid: "ec-1", payload: payload), secret: secret, identity: identity, now: 0)
            }
        }
        #expect(throws: JWT.Failure.expired) {
            try JWT.verify(
                try token(alg: "ES256", kid: "ec-1", payload: alice), secret: secret, identity: identity,
                now: 2_000_000_000)
        }
    }

    @Test func tokensUpTo8192BytesAreReadAndLongerOnesRefused() async throws {
        let identity = try await provider()
        func sized(_ bytes: Int) throws -> String {
            let base = try token(alg: "ES256", kid: "ec-1", payload: alice)
            // Pad the claims (an ignored claim) until the token has `bytes` bytes.
            let padding = String(repeating: "x", count: (bytes - base.utf8.count) * 3 / 4)
            var t = try token(
                alg: "ES256", kid: "ec-1",
                payload: #"{"sub":"alice","role":"seller","exp":2000000000,"pad":"\#(padding)"}"#)
            var extra = padding
            while t.utf8.count < bytes {
                extra += "x"
                t = try token(
                    alg: "ES256", kid: "ec-1",
                    payload: #"{"sub":"alice","role":"seller","exp":2000000000,"pad":"\#(extra)"}"#)
            }
            return t
        }
        let long = try sized(6000)
        #expect(long.utf8.count > 4096 && long.utf8.count <= JWT.maxLength)
        #expect(try JWT.verify(long, secret: secret, identity: identity, now: 0).subject == "alice")
        let tooLong = try sized(JWT.maxLength + 1)
        #expect(throws: JWT.Failure.malformed) { try JWT.verify(tooLong, secret: secret, identity: identity, now: 0) }
    }

    @Test func aKeySetWithoutUsableKeysIsRefused() async {
        for text in [#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#, #"{"keys":3}"#, "[]", "not json"] {
            await #expect(throws: JWKSKeys.Failure.self) { try await JWKSKeys.parse(Array(text.utf8)) }
        }
    }

    @Test func keySetURLsParse() {
        #expect(
            JWKSURL("https://idp.example/realms/m/protocol/openid-connect/certs")?.description
                == "https://idp.example:443/realms/m/protocol/openid-connect/certs")
        #expect(JWKSURL("http://127.0.0.1:8081")?.description == "http://127.0.0.1:8081/")
        #expect(JWKSURL("http://[::1]:9/k?x=1")?.description == "http://[::1]:9/k?x=1")
        for bad in ["ftp://x/", "http://", "http://h:0/", "http://h:99999/", "http://u@h/", "idp.example/certs"] {
            #expect(JWKSURL(bad) == nil)
        }
    }
}
