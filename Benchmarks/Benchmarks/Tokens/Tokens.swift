// Benchmarks of checking a token at the WebSocket upgrade: Gavel's own HS256 verifier against jwt-kit's HS256 with
// the same checks, and the identity provider's RS256, ES256 and EdDSA tokens (keys parsed by jwt-kit).
//
//     cd Benchmarks && swift package benchmark --target Tokens
//
// Every benchmark checks 1,000 tokens per iteration (`scalingFactor: .kilo`); figures marked `*` are per token.

import Benchmark
import Crypto
import FoundationEssentials
import GavelCore
import GavelGateway
import JWTKit

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.throughput, .wallClock, .mallocCountTotal],
        warmupIterations: 1,
        scalingFactor: .kilo,
        maxDuration: .seconds(3),
        maxIterations: 200
    )

    let secret = Array("benchmark-secret-0123456789abcdef".utf8)
    let tokens = (0..<1_024).map { k in
        JWT.sign(Claims(subject: "bidder-\(k)", role: .bidder, expires: 2_000_000_000), secret: secret)
    }
    Benchmark("HS256: Gavel's verifier (signature, alg, sub, role, exp)") { benchmark in
        for index in benchmark.scaledIterations {
            blackHole(try? JWT.verify(tokens[index & 1_023], secret: secret, now: 1_900_000_000))
        }
    }

    Benchmark("HS256: jwt-kit's JWTKeyCollection.verify with the same checks") { benchmark in
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(key: SymmetricKey(data: secret)), digestAlgorithm: .sha256)
        benchmark.startMeasurement()
        for index in benchmark.scaledIterations {
            let claims = try? await keys.verify(tokens[index & 1_023], as: LocalClaims.self)
            blackHole(claims.flatMap { Role(rawValue: $0.role) })
        }
    }

    let p256 = P256.Signing.PrivateKey()
    let point = p256.publicKey.rawRepresentation
    let keySet = Array(
        #"{"keys":[{"kty":"EC","crv":"P-256","kid":"ec-1","x":"\#(Base64URL.encode(Array(point.prefix(32))))","y":"\#(Base64URL.encode(Array(point.suffix(32))))"}]}"#
            .utf8)
    let es256Tokens = (0..<1_024).map { k -> String in
        let header = Base64URL.encode(Array(#"{"alg":"ES256","typ":"JWT","kid":"ec-1"}"#.utf8))
        let payload = Base64URL.encode(Array(#"{"sub":"bidder-\#(k)","role":"bidder","exp":2000000000}"#.utf8))
        let input = header + "." + payload
        let signature = (try? p256.signature(for: Array(input.utf8)).rawRepresentation) ?? .init()
        return input + "." + Base64URL.encode(Array(signature))
    }
    Benchmark("ES256: an identity provider's token, key by kid from a JWKS") { benchmark in
        guard let keys = try? await JWKSKeys.parse(keySet) else { return benchmark.error("bad key set") }
        let identity = IdentityProvider(keys: keys, issuer: nil, audience: nil, roleClaim: "role")
        benchmark.startMeasurement()
        for index in benchmark.scaledIterations {
            blackHole(try? JWT.verify(es256Tokens[index & 1_023], secret: secret, identity: identity, now: 0))
        }
    }
}

/// The claims Gavel reads, as jwt-kit decodes them: `sub` must be there (and an identifier), `exp` not passed.
struct LocalClaims: JWTPayload {
    var sub: SubjectClaim
    var role: String
    var exp: ExpirationClaim

    func verify(using algorithm: some JWTAlgorithm) throws {
        try exp.verifyNotExpired(currentDate: .init(timeIntervalSince1970: 1_900_000_000))
        guard Identifier.isValid(sub.value) else {
            throw JWTError.claimVerificationFailure(failedClaim: sub, reason: "not an identifier")
        }
    }
}
