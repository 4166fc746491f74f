import XCTest

@testable import GavelProjectorKit

final class BatchTests: XCTestCase {
    private func parse(_ line: String) throws -> (FeedEvent, String?) {
        guard case .event(let event, let terms) = try FeedMessage.parse(Array(line.utf8)) else {
            XCTFail("not an event: \(line)")
            throw FeedMessage.Error.malformed(line)
        }
        return (event, terms)
    }

    private func add(_ lines: [String], to batch: inout Batch) throws {
        for line in lines {
            let (event, terms) = try parse(line)
            try batch.add(event, terms: terms)
        }
    }

    func testAnOpenedEventKeepsItsTermsWithoutTheEnvelope() throws {
        let (_, terms) = try parse(
            #"{"type":"opened","listing":"L1","seq":1,"at":5,"format":"english","seller":"sam","start":100,"buy_now":null,"increments":[[0,5]],"lsn":3,"last":true}"#
        )
        XCTAssertEqual(terms, #"{"buy_now":null,"increments":[[0,5]],"start":100}"#)
    }

    func testFeedLiveRefusalsAndOtherMessagesAreTold() throws {
        XCTAssertEqual(try FeedMessage.parse(Array(#"{"type":"feed_live","lsn":42,"ts":1}"#.utf8)), .live(lsn: 42))
        XCTAssertEqual(
            try FeedMessage.parse(
                Array(#"{"type":"result","ok":false,"error":"x","message":"gone","oldest_lsn":9}"#.utf8)),
            .refused(code: "x", message: "gone", oldestLSN: 9))
        XCTAssertEqual(try FeedMessage.parse(Array(#"{"type":"hello","principal":"p"}"#.utf8)), .other(type: "hello"))
        XCTAssertThrowsError(try FeedMessage.parse(Array("[1,2]".utf8)))
        XCTAssertThrowsError(try FeedMessage.parse(Array(#"{"type":"bid_placed","lsn":"x"}"#.utf8)))
    }

    func testThePositionMovesOnlyAtTheLastMessageOfAnLSN() throws {
        var batch = Batch(position: 10)
        try add(
            [
                #"{"type":"bid_placed","listing":"L1","seq":2,"at":1,"price":100,"leader":"ann","bids":1,"lsn":11,"last":false}"#
            ], to: &batch)
        XCTAssertFalse(batch.isAtBoundary)
        XCTAssertEqual(batch.position, 10)
        try add(
            [#"{"type":"outbid","listing":"L1","at":1,"bidder":"bob","price":100,"lsn":11,"last":true}"#], to: &batch)
        XCTAssertTrue(batch.isAtBoundary)
        XCTAssertEqual(batch.position, 11)
        XCTAssertEqual(batch.events, 2)
        XCTAssertEqual(batch.bids.count, 1)
    }

    func testEventsAtOrBelowTheStoredPositionAreSkipped() throws {
        var batch = Batch(position: 10)
        try add(
            [
                #"{"type":"bid_placed","listing":"L1","seq":2,"at":1,"price":100,"leader":"ann","bids":1,"lsn":9,"last":true}"#,
                #"{"type":"bid_placed","listing":"L1","seq":3,"at":1,"price":125,"leader":"bob","bids":2,"lsn":10,"last":true}"#,
            ], to: &batch)
        XCTAssertEqual(batch.skipped, 2)
        XCTAssertTrue(batch.bids.isEmpty)
        XCTAssertTrue(batch.isEmpty)
    }

    func testAnLSNGoingBackIsRefused() throws {
        var batch = Batch(position: 0)
        try add([#"{"type":"price","listing":"D1","seq":2,"at":1,"price":90,"lsn":5,"last":false}"#], to: &batch)
        let (event, _) = try parse(#"{"type":"price","listing":"D1","seq":3,"at":1,"price":80,"lsn":4,"last":true}"#)
        XCTAssertThrowsError(try batch.add(event))
    }

    func testALiveFeedMovesThePositionPastLSNsWithoutEvents() throws {
        var batch = Batch(position: 3)
        try add([#"{"type":"price","listing":"D1","seq":2,"at":1,"price":90,"lsn":5,"last":true}"#], to: &batch)
        batch.advance(to: 9)
        XCTAssertEqual(batch.position, 9)
    }

    func testSettlementTransitionsInOneBatchMergeIntoOneCurrentRow() throws {
        var batch = Batch(position: 0)
        try add(
            [
                #"{"type":"settlement","listing":"L1","at":10,"settlement":"L1:1","state":"awaiting_payment","buyer":"ann","seller":"sam","price":500,"quantity":1,"due_at":100,"by":null,"role":null,"lsn":1,"last":true}"#,
                #"{"type":"settlement","listing":"L1","at":20,"settlement":"L1:1","state":"paid","buyer":"ann","seller":"sam","price":500,"quantity":1,"due_at":200,"by":"pay","role":"service","payment_ref":"P1","lsn":2,"last":true}"#,
                #"{"type":"settlement","listing":"L1","at":30,"settlement":"L1:1","state":"shipped","buyer":"ann","seller":"sam","price":500,"quantity":1,"due_at":null,"by":"sam","role":"seller","tracking":"T1","lsn":3,"last":true}"#,
            ], to: &batch)
        XCTAssertEqual(batch.transitions.map(\.state), ["awaiting_payment", "paid", "shipped"])
        XCTAssertEqual(batch.settlements.count, 1)
        let s = batch.settlements[0]
        XCTAssertEqual(s.state, "shipped")
        XCTAssertEqual(s.paymentRef, "P1")
        XCTAssertEqual(s.tracking, "T1")
        XCTAssertNil(s.dueAt)
        XCTAssertEqual(s.createdAt, 10)
        XCTAssertEqual(s.updatedAt, 30)
        XCTAssertEqual(s.createdLSN, 1)
        XCTAssertEqual(s.updatedLSN, 3)
    }

    func testAListingOpenedAndClosedInOneBatchIsOneNewRowWithItsOutcome() throws {
        var batch = Batch(position: 0)
        try add(
            [
                #"{"type":"opened","listing":"L1","seq":1,"at":5,"format":"english","seller":"sam","start":100,"closes_at":900,"lsn":1,"last":true}"#,
                #"{"type":"bid_placed","listing":"L1","seq":2,"at":6,"price":100,"leader":"ann","bids":1,"closes_at":900,"reserve_met":true,"lsn":2,"last":true}"#,
                #"{"type":"extended","listing":"L1","seq":3,"at":7,"closes_at":950,"lsn":3,"last":true}"#,
                #"{"type":"closed","listing":"L1","seq":4,"at":950,"winner":"ann","price":100,"reserve_met":true,"lsn":4,"last":true}"#,
                #"{"type":"bid_placed","listing":"L2","seq":5,"at":6,"bids":3,"lsn":5,"last":true}"#,
            ], to: &batch)
        XCTAssertEqual(batch.listings.map(\.id), ["L1", "L2"])
        let l1 = batch.listings[0]
        XCTAssertEqual(l1.opened?.seller, "sam")
        XCTAssertEqual(l1.status, "closed")
        XCTAssertEqual(l1.closesAt, 950)
        XCTAssertEqual(l1.finalPrice, 100)
        XCTAssertEqual(l1.winner, "ann")
        XCTAssertEqual(l1.closedAt, 950)
        XCTAssertEqual(l1.updatedLSN, 4)
        // A sealed bid has no price or leader: the listing's existing row keeps its own.
        XCTAssertNil(batch.listings[1].opened)
        XCTAssertNil(batch.listings[1].price)
        XCTAssertEqual(batch.listings[1].bids, 3)
    }

    func testChangesToAnExistingListingInOneBatchFoldIntoOneRowWithTheLastValues() throws {
        var batch = Batch(position: 0)
        try add(
            (1...5).map { n in
                #"{"type":"bid_placed","listing":"L1","seq":\#(n + 1),"at":\#(n),"price":\#(100 * n),"leader":"u\#(n)","bids":\#(n),"lsn":\#(n),"last":true}"#
            } + [#"{"type":"extended","listing":"L1","seq":7,"at":6,"closes_at":990,"lsn":6,"last":true}"#], to: &batch)
        XCTAssertEqual(batch.bids.count, 5)
        XCTAssertEqual(batch.listings.count, 1)
        let l1 = batch.listings[0]
        XCTAssertNil(l1.opened)
        XCTAssertEqual(l1.price, 500)
        XCTAssertEqual(l1.leader, "u5")
        XCTAssertEqual(l1.bids, 5)
        XCTAssertEqual(l1.closesAt, 990)
        XCTAssertEqual(l1.updatedLSN, 6)
    }

    func testABatchCountsTheFrameBytesOfTheEventsItKeeps() throws {
        var batch = Batch(position: 1)
        let (old, _) = try parse(#"{"type":"outbid","listing":"L1","lsn":1,"last":true}"#)
        let (new, _) = try parse(#"{"type":"outbid","listing":"L1","lsn":2,"last":true}"#)
        try batch.add(old, bytes: 1000)
        try batch.add(new, bytes: 70)
        try batch.add(new.with(lsn: 3), bytes: 30)
        XCTAssertEqual(batch.bytes, 100)
        XCTAssertEqual(batch.skipped, 1)
    }

    func testAnEventWithoutAFieldItsRowNeedsIsRefused() throws {
        var batch = Batch(position: 0)
        let (event, _) = try parse(#"{"type":"trade","listing":"M1","seq":2,"at":1,"price":5,"lsn":1,"last":true}"#)
        XCTAssertThrowsError(try batch.add(event)) { error in
            XCTAssertTrue("\(error)".contains("buyer"), "\(error)")
        }
    }

    /// One incarnation of listing `id`: opened at `lsn`, two bids, closed with a sale and its settlement.
    private func incarnation(_ id: String, from lsn: Int) -> [String] {
        [
            #"{"type":"opened","listing":"\#(id)","seq":1,"at":\#(lsn),"format":"english","seller":"sam","start":100,"lsn":\#(lsn),"last":true}"#,
            #"{"type":"bid_placed","listing":"\#(id)","seq":2,"at":\#(lsn + 1),"price":100,"leader":"ann","bids":1,"lsn":\#(lsn + 1),"last":true}"#,
            #"{"type":"bid_placed","listing":"\#(id)","seq":3,"at":\#(lsn + 2),"price":125,"leader":"bob","bids":2,"lsn":\#(lsn + 2),"last":true}"#,
            #"{"type":"closed","listing":"\#(id)","seq":4,"at":\#(lsn + 3),"winner":"bob","price":125,"reserve_met":true,"lsn":\#(lsn + 3),"last":false}"#,
            #"{"type":"settlement","listing":"\#(id)","settlement":"\#(id):1","at":\#(lsn + 3),"buyer":"bob","seller":"sam","price":125,"quantity":1,"state":"awaiting_payment","lsn":\#(lsn + 3),"last":true}"#,
        ]
    }

    func testAListingIDOpenedAgainInOneBatchRenamesTheEarlierListingsRowsAfterTheLSNThatReopenedIt() throws {
        var batch = Batch(position: 0)
        try add(incarnation("a:b", from: 1) + incarnation("a:b", from: 10) + incarnation("a:b", from: 20), to: &batch)
        XCTAssertEqual(batch.listings.map(\.id), ["a:b@10", "a:b@20", "a:b"])
        XCTAssertEqual(batch.listings.map { $0.opened?.openedLSN }, [1, 10, 20])
        XCTAssertEqual(batch.listings.map(\.finalPrice), [125, 125, 125])
        XCTAssertEqual(batch.bids.map(\.listing), ["a:b@10", "a:b@10", "a:b@20", "a:b@20", "a:b", "a:b"])
        XCTAssertEqual(batch.settlements.map(\.id), ["a:b@10:1", "a:b@20:1", "a:b:1"])
        XCTAssertEqual(batch.settlements.map(\.listing), ["a:b@10", "a:b@20", "a:b"])
        XCTAssertEqual(batch.transitions.map(\.settlement), ["a:b@10:1", "a:b@20:1", "a:b:1"])
        // The database's rows of the id (from before this batch) are the ones the first reopening renames.
        XCTAssertEqual(batch.reopenings, [Batch.Reopening(listing: "a:b", lsn: 1)])
        // A later transition of the newest settlement lands on its current row.
        try add(
            [
                #"{"type":"settlement","listing":"a:b","settlement":"a:b:1","at":30,"buyer":"bob","seller":"sam","price":125,"quantity":1,"state":"paid","lsn":30,"last":true}"#
            ], to: &batch)
        XCTAssertEqual(batch.settlements.map(\.state), ["awaiting_payment", "awaiting_payment", "paid"])
    }

    func testRowsOfAListingFromAnEarlierBatchTakeTheNameTheDatabaseRowsGetWhenItsIDIsOpenedAgain() throws {
        var batch = Batch(position: 4)
        // L1 was opened before this batch (its row is in the database); it gets a payment here, then is opened again.
        try add(
            [
                #"{"type":"settlement","listing":"L1","settlement":"L1:1","at":5,"buyer":"bob","seller":"sam","price":125,"quantity":1,"state":"paid","lsn":5,"last":true}"#
            ] + incarnation("L1", from: 6), to: &batch)
        XCTAssertEqual(batch.reopenings, [Batch.Reopening(listing: "L1", lsn: 6)])
        XCTAssertEqual(batch.transitions.map(\.settlement), ["L1@6:1", "L1:1"])
        XCTAssertEqual(batch.settlements.map(\.id), ["L1@6:1", "L1:1"])
        XCTAssertEqual(batch.listings.map(\.id), ["L1"])
        XCTAssertEqual(Batch.archivedSettlement("L1:1", listing: "L1", lsn: 6), "L1@6:1")
        XCTAssertEqual(Batch.archivedSettlement("X7", listing: "L1", lsn: 6), "X7@6")
    }

    func testTheRowsOfAReopenedIDDoNotDependOnWhereBatchesEnd() throws {
        let lines =
            incarnation("L1", from: 1) + incarnation("L2", from: 6) + incarnation("L1", from: 11)
            + incarnation("L1", from: 16)
        // The ids rows end up with, whatever the batches: in one batch, or split at every lsn (each batch's
        // reopenings standing for the database's renames).
        var whole = Batch(position: 0)
        try add(lines, to: &whole)
        var names: [String: String] = [:]  // the row of each opened lsn, by the names of the split run
        var open: [String: Int64] = [:]  // listing id -> opened lsn of the row that has it now
        for line in lines {
            var one = Batch(position: 0)
            try add([line], to: &one)
            for reopening in one.reopenings {
                if let earlier = open[reopening.listing] {
                    names[String(earlier)] = Batch.archivedID(reopening.listing, lsn: reopening.lsn)
                }
                open[reopening.listing] = reopening.lsn
                names[String(reopening.lsn)] = reopening.listing
            }
        }
        for listing in whole.listings {
            XCTAssertEqual(names[String(listing.opened!.openedLSN)], listing.id)
        }
        XCTAssertEqual(Set(whole.listings.map(\.id)), ["L1@11", "L1@16", "L1", "L2"])
    }
}

extension FeedEvent {
    fileprivate func with(lsn: Int64) -> FeedEvent {
        var copy = self
        copy.lsn = lsn
        return copy
    }
}
