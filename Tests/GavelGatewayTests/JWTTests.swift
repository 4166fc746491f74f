import Crypto
import NIOHTTP1
import Testing

@testable import GavelGateway

@Suite struct JWTTests {
    let secret = Array("test-secret".utf8)

    @Test func signedTokenVerifies() throws {
        let claims = Claims(subject: "alice", role: .bidder, expires: 2_000_000_000)
        let token = JWT.sign(claims, secret: secret)
        #expect(try JWT.verify(token, secret: secret, now: 1_900_000_000) == claims)
    }

    @Test func knownHS256SignatureIsAccepted() {
        // The widely published HS256 example token: its signature is right, its claims are not Gavel's.
        let token =
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
        #expect(throws: JWT.Failure.invalidClaims) {
            try JWT.verify(token, secret: Array("your-256-bit-secret".utf8), now: 0)
        }
        #expect(throws: JWT.Failure.badSignature) {
            try JWT.verify(token, secret: Array("another-secret".utf8), now: 0)
        }
    }

    @Test func wrongSecretIsRefused() {
        let token = JWT.sign(Claims(subject: "alice", role: .bidder, expires: 2_000_000_000), secret: secret)
        #expect(throws: JWT.Failure.badSignature) { try JWT.verify(token, secret: Array("x".utf8), now: 0) }
    }

    @Test func tamperedPayloadIsRefused() {
        let token = JWT.sign(Claims(subject: "alice", role: .bidder, expires: 2_000_000_000), secret: secret)
        let parts = token.split(separator: ".")
        let forged = Base64URL.encode(Array(#"{"sub":"alice","role":"service","exp":2000000000}"#.utf8))
        #expect(throws: JWT.Failure.badSignature) {
            try JWT.verify("\(parts[0]).\(forged).\(parts[2])", secret: secret, now: 0)
        }
    }

    @Test func algNoneIsRefused() {
        let header = Base64URL.encode(Array(#"{"alg":"none","typ":"JWT"}"#.utf8))
        let payload = Base64URL.encode(Array(#"{"sub":"alice","role":"service","exp":2000000000}"#.utf8))
        #expect(throws: JWT.Failure.unsupportedAlgorithm) {
            try JWT.verify("\(header).\(payload).", secret: secret, now: 0)
        }
        let hs512 = Base64URL.encode(Array(#"{"alg":"HS512"}"#.utf8))
        #expect(throws: JWT.Failure.unsupportedAlgorithm) {
            try JWT.verify("\(hs512).\(payload).AAAA", secret: secret, now: 0)
        }
    }

    @Test func aTokenWhoseHeaderNamesCriticalExtensionsIsRefusedThoughSigned() throws {
        let payload = Base64URL.encode(Array(#"{"sub":"alice","role":"bidder","exp":2000000000}"#.utf8))
        func token(_ header: String) -> String {
            let input = Base64URL.encode(Array(header.utf8)) + "." + payload
            return input + "." + Self.signature(input, secret: Array("k".utf8))
        }
        #expect(throws: JWT.Failure.malformed) {
            try JWT.verify(token(#"{"alg":"HS256","crit":["exp"],"exp":1}"#), secret: Array("k".utf8), now: 0)
        }
        #expect(try JWT.verify(token(#"{"alg":"HS256"}"#), secret: Array("k".utf8), now: 0).subject == "alice")
    }

    @Test func expiredTokenIsRefused() throws {
        let token = JWT.sign(Claims(subject: "alice", role: .bidder, expires: 1000), secret: secret)
        #expect(throws: JWT.Failure.expired) { try JWT.verify(token, secret: secret, now: 1000) }
        #expect(try JWT.verify(token, secret: secret, now: 999).subject == "alice")
    }

    @Test func claimsMustBeComplete() throws {
        func token(_ payload: String) -> String {
            let signingInput =
                Base64URL.encode(Array(#"{"alg":"HS256"}"#.utf8)) + "." + Base64URL.encode(Array(payload.utf8))
            return signingInput + "." + Self.signature(signingInput, secret: Array("k".utf8))
        }
        for payload in [
            #"{"role":"bidder","exp":2000000000}"#, #"{"sub":"alice","exp":2000000000}"#,
            #"{"sub":"alice","role":"root","exp":2000000000}"#, #"{"sub":"alice","role":"bidder"}"#,
            #"{"sub":"bad id!","role":"bidder","exp":2000000000}"#,
            #"{"sub":"alice","role":"bidder","exp":"2000000000"}"#,
        ] {
            #expect(throws: JWT.Failure.invalidClaims, "\(payload)") {
                try JWT.verify(token(payload), secret: Array("k".utf8), now: 0)
            }
        }
    }

    @Test func anAdminTokenSpeaksForItsSubjectInTheAdminRole() throws {
        let token = JWT.sign(Claims(subject: "desk", role: .admin, expires: 2_000_000_000), secret: secret)
        let claims = try JWT.verify(token, secret: secret, now: 0)
        #expect(claims.subject == "desk" && claims.role == .admin)
    }

    @Test func malformedTokensAreRefused() {
        for token in ["", "a.b", "a.b.c.d", "!!!.e30.AAAA", "e30.e30.AAAA", String(repeating: "a", count: 5000)] {
            #expect(throws: JWT.Failure.self, "\(token.prefix(20))") { try JWT.verify(token, secret: secret, now: 0) }
        }
    }

    @Test func base64URLRoundTrips() {
        #expect(Base64URL.encode(Array("f".utf8)) == "Zg")
        #expect(Base64URL.encode(Array("fo".utf8)) == "Zm8")
        #expect(Base64URL.encode(Array("foo".utf8)) == "Zm9v")
        #expect(Base64URL.encode([0xFB, 0xFF]) == "-_8")
        for n in 0..<40 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 * 37 + 11) }
            #expect(Base64URL.decode(Array(Base64URL.encode(bytes).utf8)) == bytes)
        }
        #expect(Base64URL.decode(Array("Zg==".utf8)) == nil)
        #expect(Base64URL.decode(Array("Z".utf8)) == nil)
    }

    /// The HS256 signature of `input`, for tokens with payloads `JWT.sign` would not write.
    static func signature(_ input: String, secret: [UInt8]) -> String {
        Base64URL.encode(
            Array(HMAC<SHA256>.authenticationCode(for: Array(input.utf8), using: SymmetricKey(data: secret))))
    }

    // MARK: - Admission

    @Test func admissionFollowsTokenAndAnonymousRule() {
        let open = Authenticator(secret: secret, allowAnonymous: true, now: { 1_000 })
        let closed = Authenticator(secret: secret, allowAnonymous: false, now: { 1_000 })
        let token = JWT.sign(Claims(subject: "bob", role: .seller, expires: 2_000), secret: secret)
        func head(_ uri: String, _ headers: [(String, String)] = []) -> HTTPRequestHead {
            HTTPRequestHead(version: .http1_1, method: .GET, uri: uri, headers: HTTPHeaders(headers))
        }
        #expect(open.admit(head("/ws")) == .accept(.anonymous))
        #expect(closed.admit(head("/ws")) == .refuse(.unauthorized))
        #expect(closed.admit(head("/ws?token=\(token)")) == .accept(Principal(name: "bob", role: .seller)))
        #expect(
            closed.admit(head("/ws", [("Authorization", "Bearer \(token)")]))
                == .accept(Principal(name: "bob", role: .seller)))
        #expect(open.admit(head("/ws", [("Authorization", "Basic abc")])) == .refuse(.unauthorized))
        #expect(open.admit(head("/ws?token=nope")) == .refuse(.unauthorized))
        let expired = JWT.sign(Claims(subject: "bob", role: .seller, expires: 999), secret: secret)
        #expect(open.admit(head("/ws?token=\(expired)")) == .refuse(.unauthorized))
        #expect(Authenticator.isEndpoint("/ws?x=1") && !Authenticator.isEndpoint("/wsx"))
    }

    @Test func aTokenOfferedAsASubprotocolIsReadFromAnyOfferAndTheHeaderWins() {
        let closed = Authenticator(secret: secret, allowAnonymous: false, now: { 1_000 })
        let bob = JWT.sign(Claims(subject: "bob", role: .seller, expires: 2_000), secret: secret)
        let ann = JWT.sign(Claims(subject: "ann", role: .bidder, expires: 2_000), secret: secret)
        func head(_ headers: [(String, String)], uri: String = "/ws") -> HTTPRequestHead {
            HTTPRequestHead(version: .http1_1, method: .GET, uri: uri, headers: HTTPHeaders(headers))
        }
        let asBob = Admission.accept(Principal(name: "bob", role: .seller))
        #expect(closed.admit(head([("Sec-WebSocket-Protocol", "gavel, gavel.bearer.\(bob)")])) == asBob)
        #expect(
            closed.admit(
                head([("Sec-WebSocket-Protocol", "gavel"), ("Sec-WebSocket-Protocol", "gavel.bearer.\(bob)")])) == asBob
        )
        #expect(
            closed.admit(head([("Sec-WebSocket-Protocol", "gavel, gavel.bearer.\(bob)")], uri: "/ws?token=\(ann)"))
                == asBob)
        #expect(
            closed.admit(
                head([("Authorization", "Bearer \(ann)"), ("Sec-WebSocket-Protocol", "gavel, gavel.bearer.\(bob)")]))
                == .accept(Principal(name: "ann", role: .bidder)))
        #expect(closed.admit(head([("Sec-WebSocket-Protocol", "gavel, gavel.bearer.nope")])) == .refuse(.unauthorized))
        #expect(closed.admit(head([("Sec-WebSocket-Protocol", "gavel")])) == .refuse(.unauthorized))
        // Without `gavel` beside it the answer could select none, and a browser would fail the connection.
        let open = Authenticator(secret: secret, allowAnonymous: true, now: { 1_000 })
        #expect(open.admit(head([("Sec-WebSocket-Protocol", "gavel.bearer.\(bob)")])) == .refuse(.unauthorized))
        #expect(open.admit(head([("Sec-WebSocket-Protocol", "chat, gavel.bearer.\(bob)")])) == .refuse(.unauthorized))
        #expect(Authenticator.selectedSubprotocol(head([("Sec-WebSocket-Protocol", "chat, gavel")])) == "gavel")
        #expect(Authenticator.selectedSubprotocol(head([("Sec-WebSocket-Protocol", "chat")])) == nil)
        #expect(Authenticator.selectedSubprotocol(head([])) == nil)
    }
}
