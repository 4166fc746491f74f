import Foundation
import XCTest

@testable import GavelProjectorKit

final class FeedScannerTests: XCTestCase {
    private func scanned(_ text: String) -> FeedEvent? {
        Array(text.utf8).withUnsafeBufferPointer { FeedScanner.scan($0)?.0 }
    }

    func testTheScannerReadsWhatJSONDecoderReadsFromTheServersMessages() throws {
        let messages = [
            #"{"type":"opened","listing":"L1","seq":1,"at":5,"format":"english","seller":"sam","start":100,"buy_now":null,"increments":[[0,5],[100,25]],"opens_at":-3,"closes_at":900,"has_reserve":false,"meta":{"a":[1,2.5e3,{"b":null}],"c":"x"},"lsn":3,"last":true}"#,
            #"{"type":"bid_placed","listing":"L1","seq":2,"at":6,"price":9223372036854775807,"leader":"ann","bids":1,"reserve_met":true,"lsn":4,"last":false}"#,
            #"{"type":"outbid","listing":"L1","bidder":"bob","price":-9223372036854775808,"lsn":4,"last":true}"#,
            #"{"type":"settlement","listing":"L1","settlement":"L1:1","state":"paid","buyer":"ann","seller":"sam","price":500,"quantity":1,"due_at":null,"by":"pay","role":"service","payment_ref":"tab\there \"q\" \\ \/ \u00e9 \ud83d\ude00 \u0000 é","tracking":null,"reason":"r","outcome":"o","lsn":5,"last":true}"#,
            #"{"type":"trade","listing":"M1","seq":2,"at":1,"buyer":"b","seller":"s","price":5,"quantity":2,"buy_order":"o1","sell_order":"o2","lsn":6,"last":true}"#,
            #"{"type":"filled","listing":"D1","seq":3,"bidder":"b","price":5,"quantity":2,"remaining":0,"sold":2,"winner":"w","pricing":"p","floor":1,"step":2,"lsn":7}"#,
            " { \"type\" : \"feed_live\" ,\n\t\"lsn\" : 42 , \"ts\" : 1 } ",
            #"{"type":"result","ok":false,"error":"feed_not_retained","code":"c","message":"gone","oldest_lsn":9,"id":"projector"}"#,
            #"{"lsn":1,"type":"hello","principal":"p","extra":[],"more":{}}"#,
        ]
        for message in messages {
            let decoded = try JSONDecoder().decode(FeedEvent.self, from: Data(message.utf8))
            XCTAssertEqual(scanned(message), decoded, message)
        }
    }

    func testWhatTheScannerDoesNotReadGoesToJSONDecoder() throws {
        for message in [
            #"{"type":"bid_placed","lsn":1.0}"#, #"{"type":"bid_placed","lsn":1e3}"#,
            #"{"type":"bid_placed","lsn":01}"#,
            #"{"type":"bid_placed","lsn":"x"}"#, #"{"type":"bid_placed","lsn":9223372036854775808}"#,
            #"{"type":"x","listing":"\ud800"}"#, #"{"type":"x","listing":"a"#, #"{"type":"x"} x"#, #"{"lsn":1}"#,
            #"{"type":"x","n":+1}"#, "[1]", "", #"{"type":null}"#,
            #"{"type":"x","deep":"# + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "}",
        ] {
            XCTAssertNil(scanned(message), message)
        }
        // Through FeedMessage.parse: JSONDecoder's reading, or its error.
        XCTAssertThrowsError(try FeedMessage.parse(Array(#"{"type":"bid_placed","lsn":"x"}"#.utf8)))
        let deep = String(repeating: "[", count: 70) + String(repeating: "]", count: 70)
        XCTAssertEqual(
            try FeedMessage.parse(Array(#"{"type":"x","deep":\#(deep),"lsn":1}"#.utf8)),
            .event(FeedEvent(type: "x", lsn: 1), terms: nil))
    }
}

final class OpenedTermsTests: XCTestCase {
    private func terms(_ text: String) -> String? {
        Array(text.utf8).withUnsafeBufferPointer { FeedScanner.terms($0, leaving: FeedMessage.envelopeKeys) }
    }

    /// Both readings as JSON values: the scanner's keeps each value as written, JSONSerialization writes it anew.
    private func value(_ json: String) throws -> NSDictionary {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? NSDictionary)
    }

    func testTheScannersTermsAreJSONSerializationsTermsSortedByKey() throws {
        let opened =
            #"{"type":"opened","listing":"L1","seq":1,"at":5,"format":"english","seller":"sam","start":100,"buy_now":null,"increments":[[0,5],[100,25]],"title":"a \"b\" \u00e9\\","has_reserve":false,"lsn":3,"last":true,"zeta":{"y":1,"x":[true,null,-2.5e3]}}"#
        let scanned = try XCTUnwrap(terms(opened))
        XCTAssertEqual(
            scanned,
            #"{"buy_now":null,"has_reserve":false,"increments":[[0,5],[100,25]],"start":100,"title":"a \"b\" \u00e9\\","zeta":{"y":1,"x":[true,null,-2.5e3]}}"#
        )
        XCTAssertEqual(try value(scanned), try value(FeedMessage.termsObject(Data(opened.utf8))))
        XCTAssertEqual(terms(#"{"type":"opened"}"#), "{}")
    }

    func testTermsTheScannerDoesNotReadAreLeftToJSONSerialization() {
        XCTAssertNil(terms(#"{"type":"opened","a":1,"a":2}"#))
        XCTAssertNil(terms(#"{"type":"opened","\u0061":1}"#))
        XCTAssertNil(terms(#"{"type":"opened","a":01}"#))
    }
}
