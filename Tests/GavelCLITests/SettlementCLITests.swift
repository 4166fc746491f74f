import Foundation
import Testing

/// Runs `gavel arguments` with `input` on standard input: its exit status, standard output lines and standard error.
private func gavel(_ arguments: [String], input: String = "") throws -> (status: Int32?, lines: [String], error: String)
{
    let run = try runGavel(arguments, input: input)
    return (run.status, run.lines, run.standardError)
}

/// A sale and its whole transaction: paid by the payment backend, shipped, delivered, completed by the complaint
/// window's end; on the way, a refused step of each kind.
private let lifecycle = [
    #"{"type":"open","id":"o1","listing":"L1","seller":"sam","format":"english","start":100,"closes_at":60000,"at":0,"payment_due_ms":1000,"ship_due_ms":2000,"complaint_window_ms":3000}"#,
    #"{"type":"bid","id":"b1","listing":"L1","bidder":"ann","amount":1000,"at":10}"#,
    #"{"type":"advance","at":60000}"#,
    #"{"type":"confirm_payment","id":"p1","settlement":"L1:1","by":"ann","role":"bidder","payment_ref":"PAY-1"}"#,
    #"{"type":"confirm_payment","id":"p2","settlement":"L1:1","by":"pay","role":"service","payment_ref":"PAY-1"}"#,
    #"{"type":"confirm_delivery","id":"d0","settlement":"L1:1","by":"ann","role":"bidder"}"#,
    #"{"type":"mark_shipped","id":"m1","settlement":"L1:1","by":"sam","role":"seller","tracking":"TRK-9"}"#,
    #"{"type":"confirm_delivery","id":"d1","settlement":"L1:1","by":"ann","role":"bidder","at":60500}"#,
    #"{"type":"confirm_delivery","id":"d2","settlement":"L1:1","by":"ann"}"#,
    #"{"type":"advance","at":63500}"#,
]

@Suite(.enabled(if: gavelBinary != nil, "no .build/debug/gavel under the package root; run `swift build` first"))
struct SettlementCLITests {
    @Test func simulateTakesASaleThroughItsWholeTransaction() throws {
        let run = try gavel(["simulate"], input: lifecycle.joined(separator: "\n") + "\n")
        #expect(run.status == 0)
        let results = run.lines.filter { $0.hasPrefix(#"{"type":"result""#) }
        #expect(
            results.suffix(6)
                == [
                    #"{"type":"result","id":"p1","ok":false,"error":"not_authorized","message":"confirm_payment may be made by service only"}"#,
                    #"{"type":"result","id":"p2","ok":true,"settlement":"L1:1","state":"paid"}"#,
                    #"{"type":"result","id":"d0","ok":false,"error":"invalid_transition","message":"settlement L1:1 is paid; from paid: mark_shipped (seller), refund (service or admin); refunded at the shipping deadline"}"#,
                    #"{"type":"result","id":"m1","ok":true,"settlement":"L1:1","state":"shipped"}"#,
                    #"{"type":"result","id":"d1","ok":true,"settlement":"L1:1","state":"delivered"}"#,
                    #"{"type":"result","id":"d2","ok":false,"error":"bad_request","message":"missing field role"}"#,
                ])
        let states = run.lines.filter { $0.hasPrefix(#"{"type":"settlement""#) }.map {
            $0.split(separator: ",").first { $0.hasPrefix(#""state""#) } ?? ""
        }
        #expect(
            states == [
                #""state":"awaiting_payment""#, #""state":"paid""#, #""state":"shipped""#, #""state":"delivered""#,
                #""state":"completed""#,
            ])
        #expect(
            run.lines.last
                == #"{"type":"settlement","listing":"L1","at":63500,"settlement":"L1:1","state":"completed","buyer":"ann","seller":"sam","price":100,"quantity":1,"due_at":null,"by":null,"role":null}"#
        )
    }

    @Test func dumpPrintsOneSettlementsHistoryFromTheJournal() throws {
        try withDataDirectory { data in
            let simulate = try gavel(["simulate", "--data-dir", data], input: lifecycle.joined(separator: "\n") + "\n")
            #expect(simulate.status == 0, "\(simulate.error)")
            let dump = try gavel(["dump", "--data-dir", data, "--settlement", "L1:1"])
            #expect(dump.status == 0, "\(dump.error)")
            let commands = dump.lines.filter { $0.hasPrefix(#"{"lsn""#) }.map {
                $0.split(separator: ",").first { $0.hasPrefix(#""id""#) } ?? ""
            }
            #expect(commands == [#""id":"p1""#, #""id":"p2""#, #""id":"d0""#, #""id":"m1""#, #""id":"d1""#])
            #expect(dump.lines.filter { $0.hasPrefix(#"{"type":"settlement""#) }.count == 5)
            let history = dump.lines.last ?? ""
            #expect(history.hasPrefix(#"{"type":"history","settlement":"L1:1","listing":"L1","buyer":"ann""#))
            #expect(history.contains(#""payment_ref":"PAY-1","tracking":"TRK-9""#))
            #expect(history.contains(#"{"state":"completed","at":63500,"by":null,"role":null}]}"#))

            let unknown = try gavel(["dump", "--data-dir", data, "--settlement", "L1:2"])
            #expect(unknown.status == 1 && unknown.error.contains("no settlement L1:2"))
            let malformed = try gavel(["dump", "--data-dir", data, "--settlement", "L1"])
            #expect(malformed.status != 0 && malformed.error.contains("--settlement must be <listing>:<n>"))
        }
    }
}
