import GavelCore
import PropertyBased
import Testing

@testable import GavelGateway
@testable import GavelWire

// The fast path (``FastCommandDecoder`` and ``CommandAdmission/admit(_:)-(FastCommand)``) against the generic path
// (``JSONParser``, ``CommandDecoder`` and ``CommandAdmission/admit(_:kind:id:)``) on random valid and mutated bid and
// order messages: wherever the fast path reads a message, both give the same decoded input and the same verdict.

/// Builds one random message, member by member, from a seeded generator.
private struct FrameMaker {
    var rng: SplitMix64

    mutating func pick<T>(_ options: [T]) -> T { options[Int(rng.next() % UInt64(options.count))] }
    mutating func chance(_ percent: UInt64) -> Bool { rng.next() % 100 < percent }

    mutating func whitespace() -> [UInt8] {
        guard chance(20) else { return [] }
        // JSON whitespace, and rarely bytes that are not (vertical tab, form feed, a no-break space).
        if chance(4) { return pick([[0x0B], [0x0C], [0xC2, 0xA0]]) }
        return pick([[0x20], [0x09], [0x0A], [0x0D, 0x0A], [0x20, 0x20]])
    }

    mutating func identifierValue() -> [UInt8] {
        switch rng.next() % 60 {
        case 0: return Array(#""""#.utf8)
        case 1: return Array(("\"" + String(repeating: "x", count: 64) + "\"").utf8)
        case 2: return Array(("\"" + String(repeating: "y", count: 65) + "\"").utf8)
        case 3: return Array(#""a b""#.utf8)
        case 4: return Array(#""\u0061nn""#.utf8)
        case 5: return Array(#""an\"n""#.utf8)
        case 6: return [0x22, 0x61, 0xFF, 0x22]
        case 7: return Array("\"é\"".utf8)
        case 8:
            return pick([Array("42".utf8), Array("null".utf8), Array("true".utf8), Array("{}".utf8), Array("[]".utf8)])
        case 9: return Array(#""a/b""#.utf8)
        default:
            let name = pick([
                "ann", "bob", "sam", "svc", "L1", "L-2.x:y_z", "b1", "a-rather-long-identifier-of-40-characters",
            ])
            return Array("\"\(name)\"".utf8)
        }
    }

    mutating func integerValue() -> [UInt8] {
        if chance(60) { return Array(String(Int64(rng.next() % 2_000_000) - 1_000).utf8) }
        let text = pick([
            "0", "-0", "1", "5", "100", "1000", "-7", "01", "1e3", "1E3", "1.0", "1.5", "-", "1000000000000000",
            "999999999999999999", "-999999999999999999", "9223372036854775807", "9223372036854775808",
            "-9223372036854775808", "123456789012345678901234567890", "\"100\"", "null", "true", "[1]", "7x",
        ])
        return Array(text.utf8)
    }

    mutating func member(_ key: String, value: [UInt8]) -> [UInt8] {
        var bytes = whitespace()
        bytes += Array("\"\(key)\"".utf8) + whitespace() + [UInt8(ascii: ":")] + whitespace() + value + whitespace()
        return bytes
    }

    mutating func frame() -> [UInt8] {
        let isBid = chance(50)
        var members: [[UInt8]] = []
        let type =
            chance(92) ? (isBid ? "bid" : "order") : pick(["buy_now", "subscribe", "bi", "orders", "BID", "advance"])
        if chance(97) { members.append(member("type", value: Array("\"\(type)\"".utf8))) }
        if chance(95) { members.append(member("id", value: chance(80) ? Array(#""r1""#.utf8) : identifierValue())) }
        if chance(95) {
            members.append(member("listing", value: chance(80) ? Array(#""L1""#.utf8) : identifierValue()))
        }
        let actorKey = isBid ? (chance(90) ? "bidder" : "buyer") : (chance(90) ? "trader" : "bidder")
        if chance(60) { members.append(member(actorKey, value: identifierValue())) }
        if chance(30) { members.append(member("on_behalf_of", value: identifierValue())) }
        if isBid {
            if chance(95) { members.append(member("amount", value: integerValue())) }
        } else {
            if chance(95) { members.append(member("price", value: integerValue())) }
            if chance(95) { members.append(member("quantity", value: integerValue())) }
            if chance(92) {
                let side = pick(["\"buy\"", "\"sell\"", "\"BUY\"", "\"hold\"", "1", "null", "\"bu\\u0079\""])
                members.append(member("side", value: Array(side.utf8)))
            }
            if chance(50) {
                members.append(member("tif", value: Array(pick(["\"gtc\"", "\"ioc\"", "\"fok\"", "null"]).utf8)))
            }
            if chance(30) { members.append(member("expires_at", value: integerValue())) }
        }
        if chance(5) { members.append(member("at", value: integerValue())) }
        if chance(5) {
            members.append(member(pick(["note", "Type", "ty\\u0070e", "since"]), value: identifierValue()))
        }
        if chance(8), let repeated = members.randomElement(using: &rng) { members.append(repeated) }
        members.shuffle(using: &rng)
        var bytes = whitespace() + [UInt8(ascii: "{")]
        for (i, m) in members.enumerated() {
            if i > 0 { bytes.append(UInt8(ascii: ",")) }
            bytes += m
        }
        bytes += [UInt8(ascii: "}")] + whitespace()
        switch rng.next() % 40 {
        case 0: bytes += Array("x".utf8)
        case 1: bytes += Array("{}".utf8)
        case 2: bytes.removeLast(Int(rng.next() % UInt64(bytes.count)))
        case 3: bytes.insert(UInt8(ascii: ","), at: bytes.count - 1)
        default: break
        }
        return bytes
    }
}

/// What the session does with `bytes` on the generic path: the request id it takes a rate token for, and the
/// verdict (`nil` for a message that is not a command).
private func genericOutcome(_ bytes: [UInt8], _ admission: CommandAdmission) -> (id: String?, CommandVerdict)? {
    guard let text = String(validating: bytes, as: UTF8.self), let value = try? JSONParser.parse(text) else {
        return nil
    }
    var id: String?
    if case .string(let s)? = value["id"] { id = s }
    guard case .object = value, case .string(let type)? = value["type"] else { return nil }
    guard let kind = CommandKind(rawValue: type), !kind.isSettlement else { return nil }
    return (id, admission.admit(value, kind: kind, id: id))
}

private let principals: [Principal] = [
    Principal(name: "ann", role: .bidder), Principal(name: "sam", role: .seller),
    Principal(name: "svc", role: .service), Principal(name: nil, role: .service),
    Principal(name: "w", role: .watcher), Principal(name: nil, role: .bidder),
]

private let seeds = Gen.int(in: 0...Int(Int32.max))

/// Wherever the fast path reads `bytes` (with `actor` as the default actor), it gives the generic decoder's input.
private func expectTheGenericInput(_ bytes: [UInt8], actor: String?) {
    guard let fast = FastCommandDecoder.decodedInput(bytes, actor: actor) else { return }
    let generic = (try? JSONParser.parse(bytes)).map { CommandDecoder.decode($0, actor: actor) }
    #expect(fast == generic, "\(String(decoding: bytes, as: UTF8.self)) with actor \(actor ?? "nil")")
}

/// Wherever the fast path reads `bytes` for a connection of any of the `principals`, it gives the generic path's
/// request id and verdict.
private func expectTheGenericVerdictForEveryRole(_ bytes: [UInt8]) {
    for principal in principals {
        let admission = CommandAdmission(principal: principal)
        guard let frame = FastCommandDecoder.decode(bytes), admission.takesFastPath(frame) else { continue }
        let generic = genericOutcome(bytes, admission)
        #expect(
            generic?.id == frame.id && generic?.1 == admission.admit(frame),
            "\(String(decoding: bytes, as: UTF8.self)) from \(principal)")
    }
}

@Suite struct FastPathEquivalenceTests {
    @Test func fastDecoderGivesTheGenericDecodersInputWheneverItReadsAMessage() async {
        await propertyCheck(count: 300, input: seeds) { seed in
            var maker = FrameMaker(rng: SplitMix64(seed: UInt64(seed)))
            for _ in 0..<40 {
                let bytes = maker.frame()
                for actor in [nil, "ann", "", "not an id"] as [String?] { expectTheGenericInput(bytes, actor: actor) }
            }
        }
    }

    @Test func fastPathGivesTheSessionsVerdictForEveryRole() async {
        await propertyCheck(count: 300, input: seeds) { seed in
            var maker = FrameMaker(rng: SplitMix64(seed: UInt64(seed)))
            for _ in 0..<40 { expectTheGenericVerdictForEveryRole(maker.frame()) }
        }
    }

    /// The generator makes both kinds of message, so that the properties above test something: many that the fast
    /// path reads (and some of those rejected by the session's rules), many that it leaves to the generic path.
    @Test func generatedMessagesExerciseBothPaths() {
        var maker = FrameMaker(rng: SplitMix64(seed: 7))
        var read = 0
        var left = 0
        var rejected = 0
        let admission = CommandAdmission(principal: Principal(name: "ann", role: .bidder))
        for _ in 0..<2_000 {
            guard let frame = FastCommandDecoder.decode(maker.frame()) else {
                left += 1
                continue
            }
            read += 1
            if case .reject = admission.admit(frame) { rejected += 1 }
        }
        #expect(read > 100)
        #expect(left > 500)
        #expect(rejected > 20)
    }

    @Test func wellFormedBidAndOrderAreReadWithEveryField() {
        let bid = FastCommandDecoder.decode(
            Array(#" { "type" : "bid", "id":"b1","listing":"L1","bidder":"ann","amount":-0 } "#.utf8))
        #expect(
            bid
                == FastCommand(
                    kind: .bid, id: "b1", listing: "L1", actor: "ann", onBehalfOf: nil, amount: 0, quantity: 0,
                    side: .buy, tif: .gtc, expiresAt: nil))
        let order = FastCommandDecoder.decode(
            Array(
                #"{"type":"order","id":"o1","listing":"M","side":"sell","price":999999999999999999,"quantity":3,"tif":"ioc","expires_at":5,"on_behalf_of":"bob"}"#
                    .utf8))
        #expect(
            order
                == FastCommand(
                    kind: .order, id: "o1", listing: "M", actor: nil, onBehalfOf: "bob",
                    amount: 999_999_999_999_999_999,
                    quantity: 3, side: .sell, tif: .ioc, expiresAt: 5))
    }

    @Test func messagesTheFastPathDoesNotFullyUnderstandGoTheGenericWay() {
        let leftToTheGenericPath = [
            #"{"type":"bid","id":"b1","listing":"L1","bidder":"ann","amount":1000,"at":5}"#,
            #"{"type":"bid","id":"b1","listing":"L1","bidder":"ann","amount":1e3}"#,
            #"{"type":"bid","id":"b1","listing":"L1","bidder":"ann","amount":1000000000000000000}"#,
            #"{"type":"bid","id":"b1","listing":"L1","bidder":"ann","amount":01}"#,
            #"{"type":"bid","id":"b1","listing":"L1","bidder":"\u0061nn","amount":1}"#,
            #"{"type":"bid","id":"b1","listing":"L1","bidder":null,"amount":1}"#,
            #"{"type":"bid","id":"b1","id":"b2","listing":"L1","amount":1}"#,
            #"{"type":"bid","id":"b1","listing":"L1","amount":1,"note":"x"}"#,
            #"{"type":"bid","id":"b1","listing":"L1","amount":1}x"#,
            #"{"type":"order","id":"o1","listing":"M","price":1,"quantity":1}"#,
            #"{"type":"buy_now","id":"b1","listing":"L1"}"#,
        ]
        for text in leftToTheGenericPath {
            #expect(FastCommandDecoder.decode(Array(text.utf8)) == nil, "\(text)")
        }
    }
}

/// The same messages through a real session, once as the fast path reads them and once in a form it leaves to the
/// generic path (an escaped character in the request id's value, which reads the same): the same answers.
@Suite struct FastPathSessionTests {
    /// The frames a session of `principal` answers `messages` with, without their `ts`.
    private func answers(_ messages: [String], as principal: Principal) throws -> [JSONValue] {
        let h = try SessionHarness(principal: principal)
        _ = try h.frames()
        for message in messages { try h.send(message) }
        h.settle()
        return try h.frames().compactMap { frame in
            guard case .object(let members)? = frame.json else { return frame.json }
            return .object(members.filter { $0.key != "ts" })
        }
    }

    @Test func fastAndGenericPathsAnswerTheSameThroughTheSession() throws {
        let messages = [
            #"{"type":"bid","id":"b1","listing":"L1","bidder":"bob","amount":100}"#,
            #"{"type":"bid","id":"b2","listing":"L1","amount":100,"on_behalf_of":"bob"}"#,
            #"{"type":"bid","id":"b3","listing":"L1","bidder":"ann","amount":100,"on_behalf_of":"bob"}"#,
            #"{"type":"order","id":"b4","listing":"L1","side":"buy","price":5,"quantity":1}"#,
            #"{"type":"order","id":"b5","listing":"L1","trader":"ann","side":"sell","price":5,"quantity":2}"#,
        ]
        let principals = [
            Principal(name: "ann", role: .bidder), Principal(name: "svc", role: .service),
            Principal(name: nil, role: .watcher),
        ]
        for principal in principals {
            for message in messages {
                #expect(FastCommandDecoder.decode(Array(message.utf8)) != nil)
                // "\u0062" is "b": the same id, written so that only the generic path reads it.
                let generic = message.replacingOccurrences(of: #""id":"b"#, with: #""id":"\u0062"#)
                #expect(FastCommandDecoder.decode(Array(generic.utf8)) == nil)
                let fast = try answers([message], as: principal)
                #expect(!fast.isEmpty)
                #expect(fast == (try answers([generic], as: principal)), "\(message) from \(principal)")
            }
        }
    }
}

@Suite struct FastPathIdentifierTests {
    @Test func everyByteIsAnIdentifierCharacterExactlyWhenTheIdentifierRuleSaysSo() {
        for byte in UInt8.min...UInt8.max {
            let single = String(decoding: [byte], as: UTF8.self)
            #expect(
                (FastCommandDecoder.decode(Array(#"{"type":"bid","id":"\#(single)","listing":"L","amount":1}"#.utf8))
                    != nil) == (byte < 0x80 && Identifier.isValid(single)), "byte \(byte)")
        }
    }
}

/// Member names one byte away from the ones the fast path knows (cut short, one byte longer, a letter changed, an
/// upper-case letter), identifiers of every length around the small-string (15) and identifier (64) limits, and
/// frames cut at every byte: the key matcher reads up to 16 bytes at once and the identifiers are built from two
/// words, so these are the places where a fast read could go wrong.
private struct NearMissMaker {
    var rng: SplitMix64

    mutating func pick<T>(_ options: [T]) -> T { options[Int(rng.next() % UInt64(options.count))] }

    static let names = [
        "type", "id", "listing", "bidder", "trader", "amount", "price", "quantity", "side", "tif", "expires_at",
        "on_behalf_of",
    ]

    /// A member name: a known one, or one changed by a byte.
    mutating func name(_ known: String) -> String {
        guard rng.next() % 6 == 0 else { return known }
        var bytes = Array(known.utf8)
        switch rng.next() % 5 {
        case 0: bytes.removeLast()
        case 1: bytes.append(pick(Array("s_\"x".utf8)))
        case 2: bytes[Int(rng.next() % UInt64(bytes.count))] ^= 0x20
        case 3: bytes[Int(rng.next() % UInt64(bytes.count))] = pick(Array("aeiz_".utf8))
        default: return pick(Self.names)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// An identifier of 1-66 characters (every length around 15, 16, 64 and 65 is likely).
    mutating func identifier() -> String {
        let length = rng.next() % 3 == 0 ? pick([14, 15, 16, 17, 63, 64, 65]) : Int(1 + rng.next() % 66)
        let characters = Array("abcXYZ019_.:-".utf8)
        return String(decoding: (0..<length).map { _ in pick(characters) }, as: UTF8.self)
    }

    mutating func frame() -> [UInt8] {
        let isBid = rng.next() % 2 == 0
        var members = [
            (name("type"), "\"\(isBid ? "bid" : "order")\""), (name("id"), "\"\(identifier())\""),
            (name("listing"), "\"\(identifier())\""),
        ]
        if rng.next() % 2 == 0 { members.append((name(isBid ? "bidder" : "trader"), "\"\(identifier())\"")) }
        if rng.next() % 4 == 0 { members.append((name("on_behalf_of"), "\"\(identifier())\"")) }
        if isBid {
            members.append((name("amount"), String(rng.next() % 100_000)))
        } else {
            members.append((name("price"), String(rng.next() % 100_000)))
            members.append((name("quantity"), String(1 + rng.next() % 9)))
            members.append((name("side"), pick(["\"buy\"", "\"sell\""])))
            if rng.next() % 2 == 0 { members.append((name("tif"), pick(["\"gtc\"", "\"ioc\""]))) }
            if rng.next() % 3 == 0 { members.append((name("expires_at"), String(rng.next() % 1_000_000))) }
        }
        members.shuffle(using: &rng)
        var bytes = Array(("{" + members.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}").utf8)
        if rng.next() % 4 == 0 { bytes.removeLast(Int(rng.next() % UInt64(bytes.count))) }
        return bytes
    }
}

@Suite struct FastPathNearMissTests {
    @Test func nearMissNamesIdentifierLengthsAndCutFramesGiveTheGenericVerdict() async {
        await propertyCheck(count: 300, input: seeds) { seed in
            var maker = NearMissMaker(rng: SplitMix64(seed: UInt64(seed)))
            for _ in 0..<40 {
                let bytes = maker.frame()
                expectTheGenericInput(bytes, actor: "ann")
                expectTheGenericVerdictForEveryRole(bytes)
            }
        }
    }

    /// The generator makes frames the fast path reads, with long identifiers among them, and near misses it leaves.
    @Test func nearMissFramesExerciseBothPathsAndBothStringForms() {
        var maker = NearMissMaker(rng: SplitMix64(seed: 11))
        var read = 0
        var long = 0
        var left = 0
        for _ in 0..<2_000 {
            guard let frame = FastCommandDecoder.decode(maker.frame()) else {
                left += 1
                continue
            }
            read += 1
            if frame.id.utf8.count > 15 { long += 1 }
        }
        #expect(read > 200)
        #expect(long > 100)
        #expect(left > 500)
    }
}

@Suite struct SmallASCIITests {
    /// The strings the decoder builds from two words are the standard library's, bit for bit, for every length,
    /// from every offset (with and without bytes before them to read).
    @Test func smallStringsAreTheStandardLibrarysForEveryLengthAndOffset() {
        #expect(SmallASCII.layoutHolds)
        let bytes = Array("ab-Z_09.:xyzQRSTUVWab-Z_09.:xyz".utf8)
        bytes.withUnsafeBufferPointer { buffer in
            for offset in 0..<16 {
                for count in 0...SmallASCII.capacity where offset + count <= buffer.count {
                    let start = buffer.baseAddress! + offset
                    let expected = String(decoding: UnsafeBufferPointer(start: start, count: count), as: UTF8.self)
                    let built = SmallASCII.string(start, count: count, readableBefore: offset)
                    #expect(built == expected)
                    #expect(built.hashValue == expected.hashValue)
                    #expect(Array(built.utf8) == Array(expected.utf8))
                    #expect(
                        unsafeBitCast(built, to: (UInt64, UInt64).self)
                            == unsafeBitCast(expected, to: (UInt64, UInt64).self), "\(count) bytes at \(offset)")
                }
            }
        }
    }
}
