import GavelCore
import GavelWire
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import GavelGateway

/// `POST /token` gives a token only to a caller that shows the server's local code: being on loopback is not
/// enough, since every Unix user of the machine is.
@Suite struct LocalTokenCodeTests {
    static let code = "8d3f0c6e1a2b4c5d6e7f8091a2b3c4d5"
    let tokens = LocalTokens(secret: Array("k".utf8), code: Array(code.utf8), ttlSeconds: 3600, now: { 1_000_000 })

    /// The answer to a POST from 127.0.0.1 with `body` and, when given, `header` as the code header.
    func post(_ body: String, header: String? = nil) throws -> (HTTPResponseStatus, String) {
        var headers = HTTPHeaders([("host", "127.0.0.1:8080"), ("content-type", "application/json")])
        if let header { headers.add(name: "X-Gavel-Local-Code", value: header) }
        let (status, json) = tokens.answer(
            head: HTTPRequestHead(version: .http1_1, method: .POST, uri: "/token", headers: headers),
            body: Array(body.utf8), peer: try SocketAddress(ipAddress: "127.0.0.1", port: 40000))
        let value = try? JSONParser.parse(json)
        if case .string(let token)? = value?["token"] { return (status, token) }
        if case .string(let error)? = value?["error"] { return (status, error) }
        return (status, "")
    }

    @Test func loopbackWithoutTheCodeIsUnauthorizedAndToldWhereTheCodeIs() throws {
        let (status, message) = try post(#"{"sub":"ann","role":"bidder"}"#)
        #expect(status == .unauthorized)
        #expect(message.contains("local code") && message.contains("<data-dir>/local-code"))
        #expect(message.contains("#code="))
        // Nothing about the body is judged before the code: a bad body without it is still 401.
        #expect(try post("not json").0 == .unauthorized)
    }

    @Test func aWrongCodeIsForbiddenInTheHeaderOrTheBody() throws {
        for wrong in ["", "0", String(Self.code.dropLast()), String(Self.code.dropLast()) + "0", Self.code + "0"] {
            let (status, message) = try post(#"{"sub":"ann","role":"bidder"}"#, header: wrong)
            #expect(status == .forbidden, "\(wrong)")
            #expect(message.contains("wrong local code"), "\(wrong)")
            #expect(try post(#"{"sub":"ann","role":"bidder","code":"\#(wrong)"}"#).0 == .forbidden, "\(wrong)")
        }
    }

    @Test func theRightCodeInTheHeaderOrTheBodyGivesAToken() throws {
        for (body, header) in [
            (#"{"sub":"ann","role":"bidder"}"#, Self.code),
            (#"{"sub":"ann","role":"bidder","code":"\#(Self.code)"}"#, nil),
        ] {
            let (status, token) = try post(body, header: header)
            #expect(status == .ok)
            let claims = try JWT.verify(token, secret: Array("k".utf8), now: 1_000_000)
            #expect(claims == Claims(subject: "ann", role: .bidder, expires: 1_003_600))
        }
    }

    @Test func aServerWithNoCodeGivesNoToken() throws {
        let codeless = LocalTokens(secret: Array("k".utf8), code: [], ttlSeconds: 3600, now: { 1_000_000 })
        var headers = HTTPHeaders([("host", "127.0.0.1"), ("content-type", "application/json")])
        headers.add(name: "X-Gavel-Local-Code", value: "")
        let (status, _) = codeless.answer(
            head: HTTPRequestHead(version: .http1_1, method: .POST, uri: "/token", headers: headers),
            body: Array(#"{"sub":"ann","role":"bidder","code":""}"#.utf8),
            peer: try SocketAddress(ipAddress: "::1", port: 1))
        #expect(status == .forbidden)
    }

    @Test func pageHandlerAnswersWithoutTheCode401() throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(
            PageHandler(page: Array("page".utf8), localTokens: tokens, refusal: { _ in nil }))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
        let headers = HTTPHeaders([("host", "localhost:8080"), ("content-type", "application/json")])
        try channel.writeInbound(
            HTTPServerRequestPart.head(
                HTTPRequestHead(version: .http1_1, method: .POST, uri: "/token", headers: headers)))
        try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(string: #"{"sub":"ann","role":"bidder"}"#)))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        guard case .head(let response)? = try channel.readOutbound(as: HTTPServerResponsePart.self) else {
            Issue.record("no response")
            return
        }
        #expect(response.status == .unauthorized)
    }
}
