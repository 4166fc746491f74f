import PropertyBased
import Testing

@testable import GavelCore

/// The identifier rule as the protocol states it: 1–64 bytes from `[A-Za-z0-9_.:-]`.
private func referenceIsValid(_ value: String) -> Bool {
    let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-".utf8)
    return (1...64).contains(value.utf8.count) && value.utf8.allSatisfy { allowed.contains($0) }
}

@Suite("Identifiers")
struct IdentifierTests {
    @Test func everySingleByteIsJudgedAsTheRuleSays() {
        for byte in 0...255 {
            let value = String(decoding: [UInt8(byte)], as: UTF8.self)
            #expect(Identifier.isValid(value) == referenceIsValid(value), "byte \(byte)")
        }
    }

    @Test func generatedStringsAreJudgedAsTheRuleSays() async {
        let alphabet = Array("aZ09_.:-/ é\u{0}@[`{".unicodeScalars)
        await propertyCheck(count: 500, input: Gen.int(in: 0...(alphabet.count - 1)).array(of: 0...70)) { picks in
            var value = ""
            value.unicodeScalars.append(contentsOf: picks.map { alphabet[$0] })
            #expect(Identifier.isValid(value) == referenceIsValid(value), "\(value)")
        }
    }
}
