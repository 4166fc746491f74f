import PropertyBased
import Testing

@testable import GavelCore

/// The characters of an identifier, `[A-Za-z0-9_.:-]`.
private let identifierCharacters = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-")

/// A well-formed identifier of `length` characters drawn by `rng`.
private func identifier(length: Int, _ rng: inout SplitMix64) -> String {
    String((0..<length).map { _ in identifierCharacters[Int(rng.next() % UInt64(identifierCharacters.count))] })
}

/// A random UUID in its canonical text form, lowercase.
private func randomUUID(_ rng: inout SplitMix64) -> String {
    let hex = Array("0123456789abcdef")
    let digits = (0..<32).map { _ in hex[Int(rng.next() % 16)] }
    return [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { String(digits[$0]) }.joined(separator: "-")
}

/// A number the results carry, often at an edge of what ``StoredResult`` keeps inline.
private func edgyNumber(_ rng: inout SplitMix64) -> Int64? {
    let edges: [Int64?] = [
        nil, 0, 1, Limits.maxAmount, (1 << 50) - 1, 1 << 50, Int64(UInt32.max), Int64(UInt32.max) + 1, -1, Int64.min,
        Int64.max, 1 << 16, (1 << 24) - 1, 1 << 24,
    ]
    let pick = Int(rng.next() % UInt64(edges.count + 2))
    if pick == edges.count { return Int64(rng.next() % (1 << 32)) }  // a quantity kept inline, any of its bits set
    return pick < edges.count ? edges[pick] : Int64(rng.next() % UInt64(Limits.maxAmount))
}

/// A result with each field drawn at random (accepted about half the time, so that the inline form is exercised).
private func randomResult(_ rng: inout SplitMix64) -> CommandResult {
    let accepted = rng.next() % 2 == 0
    let code = ErrorCode.allCases[Int(rng.next() % UInt64(ErrorCode.allCases.count))]
    var result = CommandResult(
        error: accepted ? nil : code, message: accepted && rng.next() % 4 != 0 ? "" : "refused \(rng.next() % 100)",
        minBid: rng.next() % 4 == 0 ? edgyNumber(&rng) : nil, duplicate: rng.next() % 8 == 0,
        price: edgyNumber(&rng), leading: [nil, false, true][Int(rng.next() % 3)], filled: edgyNumber(&rng),
        remaining: edgyNumber(&rng), settlement: rng.next() % 8 == 0 ? "S-\(rng.next() % 1000)" : nil,
        settlementState: rng.next() % 8 == 0 ? SettlementState.allCases.first : nil)
    result.requestIDConflict = rng.next() % 16 == 0
    return result
}

@Suite struct RememberedResultTests {
    @Test func aStoredIDGivesBackItsIdAndEqualsAnotherExactlyWhenTheIdsAreEqual() async {
        await propertyCheck(count: 300, input: Gen.int(in: 0...Int(Int32.max))) { seed in
            var rng = SplitMix64(seed: UInt64(seed))
            // Lengths around the inline capacity, and up to the longest identifier; UUIDs in lowercase, in uppercase
            // (kept as 16 bytes), and in mixed case or with a character out of place (kept as strings).
            let lengths = [1, 15, 16, 22, 23, 24, 36, Limits.maxIdentifierLength, Int(1 + rng.next() % 64)]
            let uuid = randomUUID(&rng)
            var misplaced = Array(uuid.utf8)
            misplaced[Int(rng.next() % 36)] = UInt8(ascii: "g")
            let mixed = String(uuid.prefix(18)) + uuid.dropFirst(18).uppercased()
            let ids =
                lengths.map { identifier(length: $0, &rng) }
                + [uuid, uuid.uppercased(), mixed, String(decoding: misplaced, as: UTF8.self)]
            for (n, id) in ids.enumerated() {
                let stored = StoredID(id)
                #expect(stored.string == id)
                let canonicalUUID = id == uuid || id == uuid.uppercased() || (id == mixed && mixed == uuid)
                if case .inline = stored {
                    #expect(id.utf8.count <= StoredID.inlineCapacity || canonicalUUID, "\(id) inline")
                } else {
                    #expect(id.utf8.count > StoredID.inlineCapacity && !canonicalUUID, "\(id) kept as a string")
                }
                for other in ids[..<n] { #expect((StoredID(other) == stored) == (other == id), "\(other) vs \(id)") }
                // Same length, one character changed (the first, the last): not equal.
                for place in [0, id.utf8.count - 1] {
                    var bytes = Array(id.utf8)
                    bytes[place] = bytes[place] == UInt8(ascii: "a") ? UInt8(ascii: "b") : UInt8(ascii: "a")
                    #expect(StoredID(String(decoding: bytes, as: UTF8.self)) != stored)
                }
            }
        }
    }

    @Test func aStoredResultGivesBackTheResultItWasMadeFrom() async {
        await propertyCheck(count: 500, input: Gen.int(in: 0...Int(Int32.max))) { seed in
            var rng = SplitMix64(seed: UInt64(seed))
            for _ in 0..<20 {
                let result = randomResult(&rng)
                let stored = StoredResult(result)
                #expect(stored.result == result, "\(result)")
                if case .accepted = stored {
                    #expect(result.ok && result.message.isEmpty && result.settlement == nil)
                }
            }
        }
    }

    @Test func aPackedResultGivesBackTheResultItWasMadeFromWithItsOutcome() async {
        await propertyCheck(count: 500, input: Gen.int(in: 0...Int(Int32.max))) { seed in
            var rng = SplitMix64(seed: UInt64(seed))
            for _ in 0..<20 {
                let result = randomResult(&rng)
                let packed = PackedResult(result)
                #expect(packed.result == result, "\(result)")
                #expect(packed.ok == result.ok)
                #expect(packed.duplicate == result.duplicate)
                #expect(packed.requestOutcome == result.requestOutcome)
            }
        }
    }

    @Test func theWritersPackedResultsAreTheEnginesResultsForNewDuplicateConflictingAndMalformedRequests() {
        // Two engines fed the same commands, one through `apply`, one through `applyPacked`.
        let plain = Engine()
        let packed = Engine()
        var events: [Event] = []
        let open = Command(
            id: "o", listing: "L", body: .open(seller: "s", terms: .english(.init(start: 100, closesAt: 60_000))))
        let commands = [
            open,
            Command(id: "b1", listing: "L", body: .bid(bidder: "ann", amount: 500)),
            Command(id: "b1", listing: "L", body: .bid(bidder: "ann", amount: 500)),  // a duplicate
            Command(id: "b1", listing: "L", body: .bid(bidder: "ann", amount: 900)),  // a conflict
            Command(id: "b2", listing: "L", body: .bid(bidder: "bob", amount: 100)),  // too low
            Command(id: "b2", listing: "L", body: .bid(bidder: "bob", amount: 100)),  // a duplicate refusal
            Command(id: "bad id!", listing: "L", body: .bid(bidder: "bob", amount: 900)),  // malformed
            Command(id: "b3", listing: "L", body: .bid(bidder: "bob", amount: 2_000)),
        ]
        var outcomes: [RequestOutcome] = []
        for command in commands {
            let expected = plain.apply(command, events: &events)
            let got = packed.applyPacked(command, digest: CommandDigest(command), listing: nil, events: &events)
            #expect(got.result == expected, "\(command.id)")
            #expect(got.ok == expected.ok && got.duplicate == expected.duplicate)
            outcomes.append(got.requestOutcome)
        }
        #expect(outcomes == [.applied, .applied, .duplicate, .conflict, .applied, .duplicate, .applied, .applied])
        #expect(plain.stateHash() == packed.stateHash())
    }

    @Test func acceptedBidsAndOrdersAreKeptInlineWithoutABox() {
        let bid = CommandResult(error: nil, message: "", price: Limits.maxAmount, leading: true)
        let order = CommandResult(error: nil, message: "", price: 1_000, filled: 7, remaining: 3)
        let opened = CommandResult.accepted
        for result in [bid, order, opened] {
            guard case .accepted = StoredResult(result) else {
                Issue.record("\(result) boxed")
                continue
            }
        }
    }

    @Test func equalRefusalsRememberedTogetherShareOneBoxAndDifferentOnesDoNot() {
        let engine = Engine()
        var events: [Event] = []
        // The same refusal (an unknown listing) for 100 requests of one principal, then another listing's.
        for n in 0..<100 {
            _ = engine.apply(
                Command(id: "r\(n)", listing: "nowhere", body: .cancelListing(seller: "ann")), events: &events)
        }
        _ = engine.apply(
            Command(id: "other", listing: "elsewhere", body: .cancelListing(seller: "ann")), events: &events)
        let boxes = engine.liveRememberedSlots.map { slot -> ResultBox? in
            if case .other(let box) = engine.rememberedSlots[slot].storedResult { return box }
            return nil
        }
        #expect(boxes.count == 101)
        #expect(boxes.allSatisfy { $0 != nil })
        #expect(boxes.dropLast().allSatisfy { $0 === boxes[0] }, "the same refusal shares one box")
        #expect(boxes.last! !== boxes[0], "a different refusal has its own")
        #expect(!boxes[0]!.result.ok && boxes.last!!.result.message.contains("elsewhere"))
        // And each still answers a repeat with its own remembered result.
        let repeated = engine.apply(
            Command(id: "other", listing: "elsewhere", body: .cancelListing(seller: "ann")), events: &events)
        #expect(repeated.duplicate && repeated.error == boxes.last!!.result.error)
        #expect(repeated.message == boxes.last!!.result.message)
    }

    @Test(arguments: [0, 1, 15, 16, 17, 1_000])
    func aRebuiltIndexFindsEveryRememberedIdAndNoOther(count: Int) {
        let engine = Engine()
        var events: [Event] = []
        let commands = (0..<count).map { n in
            Command(id: "request-\(n)-of-a-longer-id", listing: "none", body: .cancelListing(seller: "u\(n % 7)"))
        }
        for command in commands { _ = engine.apply(command, events: &events) }
        engine.dropRequestIndex()
        engine.rebuildRequestIndex()
        #expect(engine.indexesRequestIDs && engine.requests.count == count)
        for command in commands {
            #expect(
                engine.rememberedPosition(
                    of: command.principal, id: StoredID(command.id), hash: CommandDigest(command).requestHash) != nil)
            #expect(engine.apply(command, events: &events).duplicate)
        }
        let fresh = Command(id: "never-sent", listing: "none", body: .cancelListing(seller: "u1"))
        #expect(!engine.apply(fresh, events: &events).duplicate)
    }
}
