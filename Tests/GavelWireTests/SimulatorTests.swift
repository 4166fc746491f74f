import GavelCore
import Testing

@testable import GavelWire

/// The line-in, lines-out driver behind `gavel simulate`.
@Suite struct SimulatorTests {
    static let example = [
        #"{"type":"open","id":"o1","listing":"L1","seller":"sam","format":"english","start":100,"closes_at":60000,"at":0}"#,
        #"{"type":"bid","id":"b1","listing":"L1","bidder":"ann","amount":1000,"at":10}"#,
    ]

    private func run(_ lines: [String], simulator: Simulator = Simulator()) -> [String] {
        var out: [String] = []
        for line in lines { simulator.process(line: line) { out.append(String(decoding: $0, as: UTF8.self)) } }
        return out
    }

    private func parsed(_ lines: [String]) -> [JSONValue] { lines.compactMap { try? JSONParser.parse($0) } }

    @Test func specExampleGivesOneResultPerCommandAndItsEvents() {
        let out = run(Self.example)
        #expect(
            out[0] == #"{"type":"result","id":"o1","ok":true}"#)
        #expect(out[1].hasPrefix(#"{"type":"opened","listing":"L1","seq":1,"at":0,"format":"english","seller":"sam""#))
        #expect(out[2] == #"{"type":"result","id":"b1","ok":true,"price":100,"leading":true}"#)
        #expect(
            out[3]
                == #"{"type":"bid_placed","listing":"L1","seq":2,"at":10,"price":100,"leader":"ann","bids":1,"closes_at":60000,"reserve_met":true}"#
        )
        #expect(out.count == 4)
        #expect(parsed(out).count == out.count, "every line is valid JSON")
    }

    @Test func advanceOnlyMovesTheClockAndPrintsTheTimerEvents() {
        let out = run(Self.example + [#"{"type":"advance","at":60000}"#])
        #expect(
            out.suffix(2) == [
                #"{"type":"closed","listing":"L1","seq":3,"at":60000,"winner":"ann","price":100,"reserve_met":true}"#,
                #"{"type":"settlement","listing":"L1","at":60000,"settlement":"L1:1","state":"awaiting_payment","buyer":"ann","seller":"sam","price":100,"quantity":1,"due_at":259260000,"by":null,"role":null}"#,
            ])
        #expect(out.filter { $0.contains(#""type":"result""#) }.count == 2, "advance has no result line")
    }

    @Test func timersFireBeforeTheCommandThatMovesTheClock() {
        let out = run(
            Self.example + [#"{"type":"bid","id":"b2","listing":"L1","bidder":"bob","amount":5000,"at":70000}"#])
        #expect(out[4].hasPrefix(#"{"type":"closed""#))
        #expect(out[5].hasPrefix(#"{"type":"settlement""#), "the sale's settlement, in the same step")
        #expect(out[6].contains(#""error":"listing_closed""#))
    }

    @Test func atEarlierThanTheClockIsBadRequestWithTheIdAndChangesNothing() {
        let sim = Simulator()
        _ = run(Self.example, simulator: sim)
        let hash = sim.engine.stateHash()
        let out = run([#"{"type":"bid","id":"b2","listing":"L1","bidder":"bob","amount":5000,"at":5}"#], simulator: sim)
        #expect(out.count == 1)
        let value = parsed(out).first
        #expect(value?["id"] == .string("b2"))
        #expect(value?["error"] == .string("bad_request"))
        #expect(sim.engine.stateHash() == hash, "not applied, not remembered")
        #expect(sim.engine.now == 10)
    }

    @Test func omittedAtKeepsTheClock() {
        let sim = Simulator()
        let out = run(
            Self.example + [#"{"type":"bid","id":"b2","listing":"L1","bidder":"bob","amount":5000}"#], simulator: sim)
        #expect(sim.engine.now == 10)
        #expect(out[5].contains(#""at":10"#))
    }

    @Test func invalidLinesGetABadRequestResultEach() {
        let out = run(["not json", #"{"type":"bid","id":"b9"}"#, "[1]", #"{"type":"advance"}"#])
        let values = parsed(out)
        #expect(values.count == 4)
        #expect(values.allSatisfy { $0["type"] == .string("result") && $0["error"] == .string("bad_request") })
        #expect(values.map { $0["id"] } == [.null, .string("b9"), .null, .null])
    }

    @Test func blankLinesProduceNothing() {
        #expect(run(["", "   ", "\t", "\r"]).isEmpty)
    }

    @Test func duplicateLineIsMarkedAndEmitsNoEvents() {
        let out = run(Self.example + [Self.example[1]])
        #expect(out.last == #"{"type":"result","id":"b1","ok":true,"duplicate":true,"price":100,"leading":true}"#)
    }

    @Test func stateHashLineIsTheEnginesHash() {
        let sim = Simulator()
        _ = run(Self.example, simulator: sim)
        let line = String(decoding: sim.stateHashLine(), as: UTF8.self)
        #expect(line == #"{"type":"state_hash","hash":"\#(sim.engine.stateHash())"}"#)
    }

    @Test func sameLinesGiveTheSameOutputAndHash() {
        let lines =
            Self.example + [
                #"{"type":"bid","id":"b2","listing":"L1","bidder":"bob","amount":500,"at":20}"#,
                #"{"type":"open","id":"o2","listing":"M","seller":"sam","format":"market","closes_at":9000}"#,
                #"{"type":"order","id":"q1","listing":"M","trader":"ann","side":"sell","price":100,"quantity":3}"#,
                #"{"type":"order","id":"q2","listing":"M","trader":"bob","side":"buy","price":101,"quantity":5}"#,
                #"{"type":"advance","at":100000}"#,
            ]
        let a = Simulator()
        let b = Simulator()
        #expect(run(lines, simulator: a) == run(lines, simulator: b))
        #expect(a.stateHashLine() == b.stateHashLine())
    }
}
