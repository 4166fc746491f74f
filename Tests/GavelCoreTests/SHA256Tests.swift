import Testing

@testable import GavelCore

/// SHA-256 against the FIPS 180-4 / NIST test vectors.
@Suite struct SHA256Tests {
    @Test func emptyMessage() {
        #expect(SHA256Digest.hex([UInt8]()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func abc() {
        #expect(
            SHA256Digest.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test func fiftySixByteMessageNeedsASecondPaddingBlock() {
        let message = Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
        #expect(message.count == 56)
        #expect(SHA256Digest.hex(message) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    @Test func messageLongerThanOneBlock() {
        let message = Array(
            "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"
                .utf8)
        #expect(message.count == 112)
        #expect(SHA256Digest.hex(message) == "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
    }

    @Test func blockBoundaryLengths() {
        let a = UInt8(ascii: "a")
        #expect(
            SHA256Digest.hex([UInt8](repeating: a, count: 55))
                == "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318")
        #expect(
            SHA256Digest.hex([UInt8](repeating: a, count: 56))
                == "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a")
        #expect(
            SHA256Digest.hex([UInt8](repeating: a, count: 64))
                == "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb")
    }

    @Test func millionAs() {
        let message = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        #expect(SHA256Digest.hex(message) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func incrementalUpdatesEqualOneShot() {
        let message = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let oneShot = SHA256Digest.hex(message)
        for chunk in [1, 7, 63, 64, 65, 200] {
            var digest = SHA256Digest()
            var offset = 0
            while offset < message.count {
                let end = min(offset + chunk, message.count)
                digest.update(message[offset..<end])
                offset = end
            }
            #expect(SHA256Digest.hexString(digest.finalize()) == oneShot, "chunk \(chunk)")
        }
    }

    @Test func hexStringIsLowercaseTwoDigitsPerByte() {
        #expect(SHA256Digest.hexString([0x00, 0x0f, 0xa0, 0xff]) == "000fa0ff")
    }

    @Test func stateHashIsSixtyFourLowercaseHexDigits() {
        let hash = Engine().stateHash()
        #expect(hash.count == 64)
        #expect(hash.allSatisfy { "0123456789abcdef".contains($0) })
        #expect(hash == SHA256Digest.hex(Engine().encodeState()))
    }
}
