import GavelCore
import Testing

@testable import GavelWire

/// The wire form of settlement and second-chance commands, their events and results.
@Suite struct SettlementWireTests {
    private func decoded(_ line: String) -> DecodedInput { CommandDecoder.decode(line: line) }

    private func message(_ line: String) -> String? {
        guard case .invalid(_, let message) = decoded(line) else { return nil }
        return message
    }

    @Test func settlementCommandsDecodeWithTheListingPartOfTheIdAsTheirListing() {
        let cases: [(String, SettlementAction)] = [
            (#""type":"confirm_payment","payment_ref":"pay-1""#, .confirmPayment(paymentRef: "pay-1")),
            (#""type":"mark_shipped","tracking":"TRK.9""#, .markShipped(tracking: "TRK.9")),
            (#""type":"confirm_delivery""#, .confirmDelivery),
            (
                #""type":"open_dispute","reason":"arrived broken, ünïcode ok""#,
                .openDispute(reason: "arrived broken, ünïcode ok")
            ),
            (#""type":"resolve_dispute","outcome":"release""#, .resolveDispute(.release)),
            (#""type":"resolve_dispute","outcome":"refund""#, .resolveDispute(.refund)),
            (#""type":"refund""#, .refund),
        ]
        for (fields, action) in cases {
            let line = #"{"id":"r1","settlement":"cars:L:1:12","by":"ann","role":"bidder","# + fields + "}"
            let expected = Command(
                id: "r1", listing: "cars:L:1", body: .settle(number: 12, action: action, by: "ann", role: .bidder))
            #expect(decoded(line) == .command(expected, at: nil), "\(line)")
            // The encoder writes what the decoder reads.
            let again = String(decoding: CommandEncoder.encode(expected), as: UTF8.self)
            #expect(decoded(again) == .command(expected, at: nil), "\(again)")
        }
    }

    @Test func malformedSettlementIdsAreBadRequestsNamingTheField() {
        for id in ["L1", "L1:", ":1", "L1:0", "L1:01", "L1:-1", "L1:1x", "L 1:1", "L1:99999999999999999999"] {
            let line = #"{"type":"refund","id":"r1","settlement":"\#(id)","by":"ops","role":"service"}"#
            #expect(message(line)?.hasPrefix("settlement must be <listing>:<n>") == true, "\(id)")
        }
    }

    @Test func byAndRoleAreRequiredAndChecked() {
        let base = #"{"type":"confirm_delivery","id":"r1","settlement":"L1:1""#
        #expect(message(base + "}") == "missing field by")
        #expect(message(base + #","by":"ann"}"#) == "missing field role")
        #expect(
            message(base + #","by":"ann","role":"king"}"#)
                == #"role must be one of "bidder", "seller", "service", "admin""#)
        #expect(message(base + #","by":"a b","role":"bidder"}"#) == CommandDecoder.identifierRule("by"))
    }

    @Test func theRoleAConnectionFillsInWinsOverTheMessages() throws {
        let value = try JSONParser.parse(#"{"type":"refund","id":"r1","settlement":"L1:1","role":"admin"}"#)
        let expected = Command(
            id: "r1", listing: "L1", body: .settle(number: 1, action: .refund, by: "ops", role: .service))
        #expect(CommandDecoder.decode(value, actor: "ops", role: .service) == .command(expected, at: nil))
    }

    @Test func referencesAndReasonsFollowTheirRules() {
        let pay = #"{"type":"confirm_payment","id":"r1","settlement":"L1:1","by":"svc","role":"service","payment_ref":"#
        #expect(message(pay + #""has space"}"#) == CommandDecoder.identifierRule("payment_ref"))
        let dispute = #"{"type":"open_dispute","id":"r1","settlement":"L1:1","by":"ann","role":"bidder","reason":"#
        #expect(message(dispute + "\"\"}") == "reason must be 1-500 bytes of UTF-8 text")
        #expect(
            message(dispute + "\"" + String(repeating: "é", count: 251) + "\"}")
                == "reason must be 1-500 bytes of UTF-8 text")
        #expect(message(dispute + #""line\nbreak"}"#) == "reason must not contain control characters")
        #expect(message(dispute + "\"" + String(repeating: "é", count: 250) + "\"}") == nil)
    }

    @Test func reasonsThatWouldShowOtherTextThanTheirBytesAreRefused() {
        let dispute = #"{"type":"open_dispute","id":"r1","settlement":"L1:1","by":"ann","role":"bidder","reason":"#
        let bidi = "reason must not contain bidirectional formatting characters (U+202A-U+202E, U+2066-U+2069)"
        for escape in [#"\u202A"#, #"\u202e"#, #"\u2066"#, #"\u2069"#] {
            #expect(message(dispute + #""paid \#(escape)refund"}"#) == bidi)
        }
        #expect(message(dispute + "\"paid \u{202E}refund\"}") == bidi)
        let separators = "reason must not contain line or paragraph separators (U+2028, U+2029)"
        #expect(message(dispute + #""one\u2028two"}"#) == separators)
        #expect(message(dispute + #""one\u2029two"}"#) == separators)
        // Right-to-left text itself, marks and joiners (emoji sequences) are text, not formatting of other text.
        #expect(message(dispute + "\"وصل مكسورا \u{200F} 👨\u{200D}👩\u{200D}👧\"}") == nil)
    }

    @Test func secondChanceCommandsAndTheAdminCancelDecode() {
        for action in OfferAction.allCases {
            let line = #"{"type":"\#(action.rawValue)","id":"s1","listing":"L1","by":"bob","role":"bidder"}"#
            let expected = Command(id: "s1", listing: "L1", body: .secondChance(action, by: "bob", role: .bidder))
            #expect(decoded(line) == .command(expected, at: nil))
        }
        let admin = #"{"type":"cancel_listing","id":"c1","listing":"L1","by":"ada","role":"admin"}"#
        #expect(
            decoded(admin)
                == .command(Command(id: "c1", listing: "L1", body: .cancelListingAsAdmin(admin: "ada")), at: nil))
        let seller = #"{"type":"cancel_listing","id":"c1","listing":"L1","seller":"sam"}"#
        #expect(
            decoded(seller) == .command(Command(id: "c1", listing: "L1", body: .cancelListing(seller: "sam")), at: nil))
    }

    @Test func openTakesTheFourDeadlinesAndRefusesOutOfRangeOnes() {
        let open = #"{"type":"open","id":"o1","listing":"L1","seller":"sam","format":"market""#
        let line = open + #","payment_due_ms":1000,"ship_due_ms":2000,"complaint_window_ms":3000,"offer_due_ms":4000}"#
        let deadlines = SettlementDeadlines(
            paymentDueMs: 1000, shipDueMs: 2000, complaintWindowMs: 3000, offerDueMs: 4000)
        let expected = Command(
            id: "o1", listing: "L1", body: .open(seller: "sam", terms: .market(.init(deadlines: deadlines))))
        #expect(decoded(line) == .command(expected, at: nil))
        for field in ["payment_due_ms", "ship_due_ms", "complaint_window_ms", "offer_due_ms"] {
            for value in ["0", "-5", "31536000001"] {
                #expect(
                    message(open + #","\#(field)":\#(value)}"#)
                        == "\(field) must be a positive integer up to 31536000000 (365 days, in ms)")
            }
        }
        #expect(message(open + #","ship_due_ms":31536000000}"#) == nil)
    }

    @Test func aSettlementEventCarriesTheWholePictureAndTheStepsDetail() {
        let change = SettlementChange(
            number: 3, buyer: "ann", seller: "sam", price: 1500, quantity: 2, dueAt: 9000,
            step: SettlementStep(state: .paid, at: 700, by: "svc", role: .service, detail: .paymentRef("pay-7")))
        let event = Event(listing: "L1", seq: 0, at: 700, kind: .settlement(change))
        #expect(event.kind.isPrivate)
        #expect(
            String(decoding: MessageEncoder.event(event), as: UTF8.self)
                == #"{"type":"settlement","listing":"L1","at":700,"settlement":"L1:3","state":"paid","buyer":"ann","seller":"sam","price":1500,"quantity":2,"due_at":9000,"by":"svc","role":"service","payment_ref":"pay-7"}"#
        )
        let created = SettlementChange(
            number: 1, buyer: "ann", seller: "sam", price: 10, quantity: 1, dueAt: nil,
            step: SettlementStep(state: .completed, at: 5))
        #expect(
            String(
                decoding: MessageEncoder.event(Event(listing: "L1", seq: 0, at: 5, kind: .settlement(created))),
                as: UTF8.self)
                == #"{"type":"settlement","listing":"L1","at":5,"settlement":"L1:1","state":"completed","buyer":"ann","seller":"sam","price":10,"quantity":1,"due_at":null,"by":null,"role":null}"#
        )
    }

    @Test func aSecondChanceEventAndASettlementResult() {
        let offer = SecondChanceOffer(
            listing: "L1", seller: "sam", bidder: "bob", price: 900, state: .offered, dueAt: 50)
        #expect(
            String(
                decoding: MessageEncoder.event(Event(listing: "L1", seq: 0, at: 10, kind: .secondChance(offer))),
                as: UTF8.self)
                == #"{"type":"second_chance","listing":"L1","at":10,"bidder":"bob","seller":"sam","price":900,"state":"offered","due_at":50}"#
        )
        let result = CommandResult(error: nil, message: "", settlement: "L1:2", settlementState: .awaitingPayment)
        #expect(
            String(decoding: MessageEncoder.result(id: "a1", result), as: UTF8.self)
                == #"{"type":"result","id":"a1","ok":true,"settlement":"L1:2","state":"awaiting_payment"}"#)
    }

    @Test func aSettlementValueFollowsItsEvents() {
        let creation = SettlementChange(
            number: 1, buyer: "ann", seller: "sam", price: 10, quantity: 1, dueAt: 100,
            step: SettlementStep(state: .awaitingPayment, at: 0))
        var settlement = Settlement(listing: "L1", creation: creation)
        var paid = creation
        paid.dueAt = 200
        paid.step = SettlementStep(state: .paid, at: 50, by: "svc", role: .service, detail: .paymentRef("p1"))
        settlement.record(paid)
        #expect(settlement.id == "L1:1")
        #expect(settlement.state == .paid)
        #expect(settlement.dueAt == 200)
        #expect(settlement.paymentRef == "p1")
        #expect(settlement.history.map(\.state) == [.awaitingPayment, .paid])
    }

    /// The state hash of a stream, as `gavel simulate --hash` prints it.
    private func hash(_ lines: [String]) -> String {
        let simulator = Simulator()
        for line in lines { simulator.process(line: line) { _ in } }
        return simulator.engine.stateHash()
    }

    @Test func aStreamWithoutSalesKeepsTheStateHashItHadBeforeSettlements() {
        // Every format, bids, resting orders, a cancel and timers, but no sale and one english bidder: the hash
        // below was printed by `gavel simulate --hash` before settlements existed.
        let lines = [
            #"{"type":"open","id":"o1","listing":"L1","seller":"sam","format":"english","start":100,"closes_at":60000,"at":0}"#,
            #"{"type":"bid","id":"b1","listing":"L1","bidder":"ann","amount":1000,"at":10}"#,
            #"{"type":"open","id":"o2","listing":"S1","seller":"sam","format":"sealed","pricing":"second","start":10,"reserve":5000,"closes_at":50000}"#,
            #"{"type":"bid","id":"s1","listing":"S1","bidder":"ann","amount":300}"#,
            #"{"type":"open","id":"o3","listing":"D1","seller":"sam","format":"dutch","start":1000,"floor":500,"step":100,"step_every_ms":1000,"quantity":3,"closes_at":40000}"#,
            #"{"type":"open","id":"o4","listing":"M1","seller":"sam","format":"market","closes_at":90000}"#,
            #"{"type":"order","id":"q1","listing":"M1","trader":"ann","side":"sell","price":100,"quantity":3}"#,
            #"{"type":"order","id":"q2","listing":"M1","trader":"bob","side":"buy","price":99,"quantity":5}"#,
            #"{"type":"open","id":"o5","listing":"C1","seller":"sam","format":"english","start":100,"closes_at":60000}"#,
            #"{"type":"cancel_listing","id":"c5","listing":"C1","seller":"sam"}"#,
            #"{"type":"advance","at":55000}"#,
        ]
        #expect(hash(lines) == "134d55023fafbfd2dfabcca0b326ce7a7d3ed0e0e59b9974de7567dbf10f3082")
        // With a second english bidder the engine now keeps the runner-up, so that hash changed (it was
        // 8f5a601ef22a4d526077f6dabd585d9d345d40f6178a64c32615c41709bdb647).
        var withRunnerUp = lines
        withRunnerUp.insert(#"{"type":"bid","id":"b2","listing":"L1","bidder":"bob","amount":500,"at":20}"#, at: 2)
        #expect(hash(withRunnerUp) == "c34f997ae3241f8617f5efe66592fd9253a6c7f11284b061ae0b5369719b4a44")
    }
}
