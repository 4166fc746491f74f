import NIOHTTP1
import XCTest

@testable import GavelProjectorKit

/// A refused WebSocket upgrade is reported with the server's status and what it means for the projector.
final class UpgradeRefusalTests: XCTestCase {
    private let target = try! GavelTarget(url: "ws://127.0.0.1:8080/ws")

    func testAnUnauthorizedAnswerSaysTheTokenIsNotTakenAndHowToMakeOne() {
        let message = FeedConnection.refusal(.init(status: .unauthorized, body: "401 Unauthorized"), from: target)
        XCTAssertEqual(
            message,
            "the server at ws://127.0.0.1:8080/ws refused the WebSocket upgrade with 401 Unauthorized: the token is missing, malformed, expired or not signed with a key the server takes (its log says which): make a new one (gavel token --role service, or the identity provider's) and give it with --token-file, or give the server's key with --jwt-secret-file"
        )
    }

    func testALimitsAnswerQuotesTheServersReason() {
        let body = "the server holds 10000 connections (--max-connections); retry later"
        let message = FeedConnection.refusal(.init(status: .serviceUnavailable, body: body), from: target)
        XCTAssertTrue(message.contains("with 503 Service Unavailable (\"\(body)\")"), message)
        XCTAssertTrue(message.hasSuffix("it is retried with backoff"), message)
    }

    func testAnAnswerThatCouldNotBeReadIsSaidSo() {
        XCTAssertEqual(
            FeedConnection.refusal(nil, from: target),
            "the server at ws://127.0.0.1:8080/ws refused the WebSocket upgrade and closed before its answer could be read"
        )
    }
}
