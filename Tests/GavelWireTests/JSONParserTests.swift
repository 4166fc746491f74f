import Testing

@testable import GavelWire

/// The strict RFC 8259 parser: what it accepts, what it refuses, and how it keeps money out of floating point.
@Suite struct JSONParserTests {
    private func parse(_ text: String) -> JSONValue? { try? JSONParser.parse(text) }
    private func parse(bytes: [UInt8]) -> JSONValue? { try? JSONParser.parse(bytes) }

    @Test func parsesEveryKindOfValue() throws {
        let value = try JSONParser.parse(#" { "a" : [1, -2, true, false, null, "s", {}, []] } "#)
        #expect(
            value
                == .object([
                    (
                        "a",
                        .array([
                            .integer(1), .integer(-2), .bool(true), .bool(false), .null, .string("s"), .object([]),
                            .array([]),
                        ])
                    )
                ]))
    }

    @Test func membersKeepTheirOrderAndTheLastRepeatWinsOnLookup() throws {
        let value = try JSONParser.parse(#"{"b":1,"a":2,"b":3}"#)
        guard case .object(let members) = value else {
            Issue.record("not an object")
            return
        }
        #expect(members.map(\.key) == ["b", "a", "b"])
        #expect(value["b"] == .integer(3))
        #expect(value["missing"] == nil)
    }

    @Test func integersThatFitStayIntegers() {
        #expect(parse("0") == .integer(0))
        #expect(parse("-0") == .integer(0))
        #expect(parse("9223372036854775807") == .integer(Int64.max))
        #expect(parse("-9223372036854775808") == .integer(Int64.min))
        #expect(parse("1000000000000000") == .integer(1_000_000_000_000_000))
    }

    @Test func otherNumbersAreKeptAsWritten() {
        #expect(parse("9223372036854775808") == .otherNumber("9223372036854775808"))
        #expect(parse("-9223372036854775809") == .otherNumber("-9223372036854775809"))
        #expect(parse("123456789012345678901234567890") == .otherNumber("123456789012345678901234567890"))
        #expect(parse("1.5") == .otherNumber("1.5"))
        #expect(parse("1.0") == .otherNumber("1.0"))
        #expect(parse("1e3") == .otherNumber("1e3"))
        #expect(parse("-2.5E-3") == .otherNumber("-2.5E-3"))
    }

    @Test(arguments: [
        "", " ", "01", "-01", "+1", ".5", "1.", "1.e3", "1e", "1e+", "-", "--1", "0x10", "NaN", "Infinity",
        "-Infinity", "1_000",
    ])
    func malformedNumbersAreRefused(text: String) {
        #expect(parse(text) == nil)
    }

    @Test(arguments: [
        "[1,]", "[,1]", "[1 2]", "{\"a\":1,}", "{,}", "{\"a\" 1}", "{\"a\":}", "{a:1}", "{'a':1}", "['a']", "[",
        "{", "{\"a\":1", "[1]]", "1 2", "tru", "true false", "nul", "nulls", "True", "// c\n1", "/* c */1", "[1]x",
        "\"abc", "\u{FEFF}1",
    ])
    func malformedDocumentsAreRefused(text: String) {
        #expect(parse(text) == nil)
    }

    @Test func errorsSayWhereAndWhy() {
        do {
            _ = try JSONParser.parse("[1,]")
            Issue.record("expected an error")
        } catch {
            #expect(error.offset == 3)
            #expect(error.description.contains("byte 3"))
        }
    }

    @Test func surroundingWhitespaceIsAllowedButOnlyJSONWhitespace() {
        #expect(parse(" \t\r\n1 \t\r\n") == .integer(1))
        #expect(parse("\u{0B}1") == nil)
        #expect(parse("1\u{A0}") == nil)
    }

    @Test func nestingUpToTheLimitIsAccepted() {
        let depth = JSONParser.maxDepth
        #expect(depth == 32)
        #expect(parse(String(repeating: "[", count: depth) + String(repeating: "]", count: depth)) != nil)
        let objects = String(repeating: "{\"a\":", count: depth - 1) + "{}" + String(repeating: "}", count: depth - 1)
        #expect(parse(objects) != nil)
    }

    @Test func nestingBeyondTheLimitIsRefused() {
        let depth = JSONParser.maxDepth + 1
        #expect(parse(String(repeating: "[", count: depth) + String(repeating: "]", count: depth)) == nil)
        let objects = String(repeating: "{\"a\":", count: depth - 1) + "{}" + String(repeating: "}", count: depth - 1)
        #expect(parse(objects) == nil)
        let mixed = String(repeating: "[{\"a\":", count: 17) + "1" + String(repeating: "}]", count: 17)
        #expect(parse(mixed) == nil)
    }

    @Test func deepInputFailsWithoutExhaustingTheStack() {
        let deep = String(repeating: "[", count: 1_000_000)
        #expect(parse(deep) == nil)
    }

    @Test func simpleEscapesDecode() {
        #expect(parse(#""\"\\\/\b\f\n\r\t""#) == .string("\"\\/\u{08}\u{0C}\n\r\t"))
    }

    @Test func invalidEscapesAreRefused() {
        #expect(parse(#""\x41""#) == nil)
        #expect(parse(#""\'""#) == nil)
        #expect(parse(#""\U0041""#) == nil)
        #expect(parse("\"\\") == nil)
    }

    @Test func unicodeEscapesDecode() {
        #expect(parse(#""\u0041\u00e9\u00E9\u4e2d""#) == .string("A\u{e9}\u{e9}\u{4e2d}"))
        #expect(parse(#""\u0000""#) == .string("\u{0}"))
    }

    @Test func surrogatePairsDecodeToOneScalar() {
        #expect(parse(#""\uD83D\uDE00""#) == .string("\u{1F600}"))
        #expect(parse(#""\ud834\udd1e""#) == .string("\u{1D11E}"))
    }

    @Test(arguments: [
        #""\uD83D""#, #""\uD83Dx""#, #""\uD83D\u0041""#, #""\uD83D\uD83D""#, #""\uDE00""#, #""\uDE00\uD83D""#,
        #""\uD83D\n""#,
    ])
    func unpairedSurrogatesAreRefused(text: String) {
        #expect(parse(text) == nil)
    }

    @Test(arguments: [#""\u00g0""#, #""\u12""#, #""\u""#, #""\u-123""#])
    func malformedUnicodeEscapesAreRefused(text: String) {
        #expect(parse(text) == nil)
    }

    @Test func rawControlCharactersInStringsAreRefused() {
        #expect(parse("\"a\nb\"") == nil)
        #expect(parse("\"a\tb\"") == nil)
        #expect(parse(bytes: [0x22, 0x00, 0x22]) == nil)
        #expect(parse(bytes: [0x22, 0x1F, 0x22]) == nil)
        #expect(parse(bytes: [0x22, 0x7F, 0x22]) == .string("\u{7F}"), "DEL is not a control character in JSON")
    }

    @Test func rawUTF8InStringsIsKept() {
        #expect(parse("\"caf\u{e9} \u{1F600}\"") == .string("caf\u{e9} \u{1F600}"))
    }

    @Test(arguments: [
        [0xFF] as [UInt8],  // never valid
        [0xC3],  // truncated two-byte sequence
        [0xC0, 0xAF],  // overlong '/'
        [0xE0, 0x80, 0xAF],  // overlong
        [0xED, 0xA0, 0x80],  // an encoded surrogate
        [0xF4, 0x90, 0x80, 0x80],  // above U+10FFFF
        [0x80],  // a lone continuation byte
        [0xE2, 0x82],  // truncated three-byte sequence
    ])
    func invalidUTF8InStringsIsRefused(bytes: [UInt8]) {
        #expect(parse(bytes: [0x22] + bytes + [0x22]) == nil)
    }

    @Test func invalidUTF8InMemberNamesIsRefused() {
        #expect(parse(bytes: Array(#"{""#.utf8) + [0xFF] + Array(#"":1}"#.utf8)) == nil)
    }

    @Test func typeNamesForMessages() {
        #expect(JSONValue.null.typeName == "null")
        #expect(JSONValue.integer(1).typeName == "a number")
        #expect(JSONValue.otherNumber("1.5").typeName == "a number")
        #expect(JSONValue.string("").typeName == "a string")
        #expect(JSONValue.array([]).typeName == "an array")
        #expect(JSONValue.object([]).typeName == "an object")
        #expect(JSONValue.bool(true).typeName == "a boolean")
    }
}
