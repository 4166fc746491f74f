import Foundation
import XCTest

@testable import GavelProjectorKit

/// The projector keeps, with its position, the server's `feed_mark` of the journal batch that holds it, and sends it
/// back as `expect` when it resumes; a server whose journal is another history refuses, and the projector stops.
final class ResumeTests: XCTestCase {
    private let chainA = String(repeating: "a", count: 64)
    private let chainB = String(repeating: "b", count: 64)
    private let chainC = String(repeating: "c", count: 64)

    private func message(_ line: String) throws -> FeedMessage {
        try FeedMessage.parse(Array(line.utf8))
    }

    private func add(_ line: String, to batch: inout Batch) throws {
        switch try message(line) {
        case .event(let event, let terms): try batch.add(event, terms: terms)
        case .mark(let mark): batch.receive(mark)
        case .live(let lsn): batch.advance(to: lsn)
        default: XCTFail("not a feed message: \(line)")
        }
    }

    private func bid(_ lsn: Int, last: Bool = true) -> String {
        #"{"type":"bid_placed","listing":"L1","seq":\#(lsn),"at":1,"price":\#(100 + lsn),"leader":"ann","bids":1,"lsn":\#(lsn),"last":\#(last)}"#
    }

    private func mark(_ lsn: Int, _ chain: String) -> String {
        #"{"type":"feed_mark","lsn":\#(lsn),"chain":"\#(chain)"}"#
    }

    func testThePositionKeepsTheMarkReceivedBeforeItsLastMessageNotOneThatCameAfter() throws {
        var batch = Batch(position: 10, mark: FeedMark(lsn: 10, chain: chainA))
        try add(mark(12, chainB), to: &batch)
        try add(bid(11), to: &batch)
        XCTAssertEqual(batch.mark, FeedMark(lsn: 12, chain: chainB))
        try add(bid(12, last: false), to: &batch)
        // Inside lsn 12 the position stays at 11, and so does its mark.
        XCTAssertEqual(batch.position, 11)
        try add(bid(12), to: &batch)
        // The next journal batch is announced before the batch is written: the position's mark stays lsn 12's.
        try add(mark(14, chainC), to: &batch)
        XCTAssertEqual(batch.position, 12)
        XCTAssertEqual(batch.mark, FeedMark(lsn: 12, chain: chainB))
        var next = batch.next()
        XCTAssertEqual(next.startPosition, 12)
        XCTAssertEqual(next.mark, FeedMark(lsn: 12, chain: chainB))
        try add(bid(13), to: &next)
        XCTAssertEqual(next.mark, FeedMark(lsn: 14, chain: chainC))
    }

    func testFeedLiveTakesTheMarkOfTheBatchItEndsIn() throws {
        var batch = Batch(position: 0)
        XCTAssertNil(batch.mark)
        try add(mark(7, chainA), to: &batch)
        try add(#"{"type":"feed_live","lsn":5}"#, to: &batch)
        XCTAssertEqual(batch.position, 5)
        XCTAssertEqual(batch.mark, FeedMark(lsn: 7, chain: chainA))
    }

    func testAMarkOfAnEarlierBatchOrNoneLeavesThePositionWithout() throws {
        // A server that sends no marks: the stored mark does not hold the new position.
        var old = Batch(position: 10, mark: FeedMark(lsn: 10, chain: chainA))
        try add(bid(11), to: &old)
        XCTAssertEqual(old.position, 11)
        XCTAssertNil(old.mark)
        var none = Batch(position: 10)
        try add(bid(11), to: &none)
        XCTAssertNil(none.mark)
    }

    func testAMarkIsReadByTheScannerAndByJSONDecoderAndAMalformedOneIsRefused() throws {
        XCTAssertEqual(try message(mark(9, chainA)), .mark(FeedMark(lsn: 9, chain: chainA)))
        // Nested deeper than the scanner reads: through JSONDecoder.
        let deep = String(repeating: "[", count: 70) + String(repeating: "]", count: 70)
        XCTAssertEqual(
            try message(#"{"type":"feed_mark","deep":\#(deep),"lsn":9,"chain":"\#(chainA)"}"#),
            .mark(FeedMark(lsn: 9, chain: chainA)))
        XCTAssertThrowsError(try message(#"{"type":"feed_mark","lsn":9,"chain":"abc"}"#))
        XCTAssertThrowsError(try message(#"{"type":"feed_mark","chain":"\#(chainA)"}"#))
        XCTAssertThrowsError(try message(mark(9, chainA.uppercased())))
    }

    func testTheSubscriptionAsksForMarksAndExpectsTheStoredOneOnlyWhenThereIsOne() throws {
        func json(_ text: String) throws -> [String: Any] {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        }
        let fresh = try json(FeedConnection.subscription(sinceLSN: 1, expect: nil))
        XCTAssertEqual(fresh["since_lsn"] as? Int, 1)
        XCTAssertEqual(fresh["marks"] as? Bool, true)
        XCTAssertNil(fresh["expect"])
        // A read model from before marks were kept resumes unchecked.
        XCTAssertNil(try json(FeedConnection.subscription(sinceLSN: 42, expect: nil))["expect"])
        let resumed = try json(FeedConnection.subscription(sinceLSN: 42, expect: FeedMark(lsn: 44, chain: chainB)))
        XCTAssertEqual(resumed["since_lsn"] as? Int, 42)
        let expect = try XCTUnwrap(resumed["expect"] as? [String: Any])
        XCTAssertEqual(expect["lsn"] as? Int, 44)
        XCTAssertEqual(expect["chain"] as? String, chainB)
    }

    func testTheServersRefusalOfAnotherHistoryIsAFatalErrorThatSaysToRebuild() throws {
        let refusal = try message(
            #"{"type":"result","id":"projector","ok":false,"error":"feed_history_diverged","message":"since_lsn 9 is past this server's journal","durable_lsn":4,"ts":1}"#
        )
        XCTAssertEqual(
            refusal,
            .refused(
                code: "feed_history_diverged", message: "since_lsn 9 is past this server's journal", oldestLSN: nil))
        let error = ProjectorError.historyDiverged(position: 8, message: "since_lsn 9 is past this server's journal")
        XCTAssertTrue(error.isFatal)
        XCTAssertTrue(error.description.contains("rebuild it from an empty database"))
        XCTAssertTrue(error.description.contains("lsns up to 8"))
    }

    func testTheMigrationsAreNumberedInOrderAndTheLastKeepsTheMark() {
        XCTAssertEqual(Schema.migrations.map(\.version), Array(1...Schema.latest))
        XCTAssertEqual(Schema.latest, 4)
        XCTAssertTrue(Schema.migrations.last?.statements.joined().contains("mark_chain") == true)
    }
}
