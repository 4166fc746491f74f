import Logging
import Testing

@testable import GavelGateway

@Suite struct JSONLogHandlerTests {
    func line(_ message: String, _ metadata: Logger.Metadata = [:], time: Int64 = 1_795_431_302_944) -> String {
        String(
            decoding: JSONLogHandler.line(
                time: time, level: .notice, label: "gavel.serve", message: message, metadata: metadata),
            as: UTF8.self)
    }

    @Test func aLineIsOneObjectWithTimeLevelLabelMessageThenTheMetadataSorted() {
        #expect(
            line("upgrade refused", ["status": "429", "principal": "ann", "address": "127.0.0.1"])
                == #"{"time":"2026-11-23T10:55:02.944Z","level":"notice","label":"gavel.serve","message":"upgrade refused","address":"127.0.0.1","principal":"ann","status":"429"}"#
                + "\n")
    }

    @Test func quotesBackslashesNewlinesAndControlCharactersAreEscaped() {
        #expect(
            line("a \"b\" \\ c\nd\te\u{01}é")
                .contains(#""message":"a \"b\" \\ c\nd\te\u0001é""#))
    }

    @Test func metadataNamedLikeAFixedKeyCannotHideIt() {
        let text = line("m", ["level": "forged", "time": "0"])
        #expect(text.contains(#""level":"notice""#) && text.contains(#""metadata.level":"forged""#))
        #expect(text.contains(#""metadata.time":"0""#))
    }

    @Test func nestedMetadataKeepsItsShapeWithKeysSorted() {
        let text = line("m", ["ids": ["b", "a"], "who": ["z": "1", "a": "2"]])
        #expect(text.contains(#""ids":["b","a"],"who":{"a":"2","z":"1"}"#))
    }

    @Test func timesAreRFC3339InUTCWithMilliseconds() {
        #expect(String(decoding: JSONLogHandler.rfc3339(millis: 0), as: UTF8.self) == "1970-01-01T00:00:00.000Z")
        #expect(
            String(decoding: JSONLogHandler.rfc3339(millis: 951_782_400_007), as: UTF8.self)
                == "2000-02-29T00:00:00.007Z")
    }
}
