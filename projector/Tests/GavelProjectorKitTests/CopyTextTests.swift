import NIOCore
import XCTest

@testable import GavelProjectorKit

final class CopyTextTests: XCTestCase {
    /// Reads rows of COPY's text format back into fields (nil for `\N`), as PostgreSQL does.
    private func rows(_ buffer: ByteBuffer) -> [[String?]] {
        var rows: [[String?]] = []
        var row: [String?] = []
        var field: [UInt8] = []
        var isNull = false
        var bytes = Array(buffer.readableBytesView)[...]
        while let byte = bytes.popFirst() {
            switch byte {
            case UInt8(ascii: "\\"):
                let next = bytes.popFirst()!
                switch next {
                case UInt8(ascii: "t"): field.append(9)
                case UInt8(ascii: "n"): field.append(10)
                case UInt8(ascii: "r"): field.append(13)
                case UInt8(ascii: "N"): isNull = true
                default: field.append(next)
                }
            case 9, 10:
                row.append(isNull ? nil : String(decoding: field, as: UTF8.self))
                field = []
                isNull = false
                if byte == 10 {
                    rows.append(row)
                    row = []
                }
            default:
                field.append(byte)
            }
        }
        XCTAssertTrue(row.isEmpty && field.isEmpty, "the last row is not ended")
        return rows
    }

    func testEveryMixOfTabNewlineReturnAndBackslashReadsBackAsWritten() {
        let pieces = ["\t", "\n", "\r", "\\", "\\N", "N", "a", "é😀", "\"", ""]
        var values: [String] = []
        for a in pieces { for b in pieces { for c in pieces { values.append(a + b + c) } } }
        var text = CopyText(capacity: 64)
        for value in values {
            text.field(value)
            text.field(nil as String?)
            text.endRow()
        }
        let back = rows(text.buffer)
        XCTAssertEqual(back.count, values.count)
        for (row, value) in zip(back, values) {
            XCTAssertEqual(row, [value, nil])
        }
    }

    func testNumbersAndBooleansAreWrittenAsPostgreSQLReadsThem() {
        var text = CopyText(capacity: 64)
        for value: Int64 in [0, 7, -7, 10, 1_800_000_000_000, .max, .min] { text.field(value) }
        text.field(true)
        text.field(false)
        text.field(nil as Int64?)
        text.field(nil as Bool?)
        text.endRow()
        XCTAssertEqual(
            rows(text.buffer),
            [
                [
                    "0", "7", "-7", "10", "1800000000000", "9223372036854775807", "-9223372036854775808", "t", "f", nil,
                    nil,
                ]
            ])
    }

    func testABatchCopiesOnlyTheTablesItTouchesListingsFirst() throws {
        var batch = Batch(position: 0)
        for line in [
            #"{"type":"bid_placed","listing":"L9","seq":4,"at":6,"price":300,"leader":"ann","bids":3,"lsn":1,"last":true}"#,
            #"{"type":"opened","listing":"L1","seq":1,"at":5,"format":"english","seller":"sam","start":100,"lsn":2,"last":true}"#,
        ] {
            guard case .event(let event, let terms) = try FeedMessage.parse(Array(line.utf8)) else {
                return XCTFail(line)
            }
            try batch.add(event, terms: terms)
        }
        let copies = SQL.copies(for: batch)
        XCTAssertEqual(copies.map(\.table), ["listings", "listing_changes", "bids"])
        XCTAssertEqual(copies.map(\.rows), [1, 1, 1])
        var text = CopyText(capacity: 64)
        copies[2].write(&text)
        XCTAssertEqual(rows(text.buffer), [["L9", "4", "1", "6", "ann", "300", "3", nil]])
        XCTAssertEqual(copies[2].columns.count, 8)
    }
}
