import Testing

@testable import GavelCore

@Suite struct BinaryReaderStringTests {
    /// Strings of every length around the 15 bytes a small string holds, ASCII and not, each read back after a
    /// string of every length before it (so a string starts at every offset, with more or fewer bytes before it
    /// than a word): the same `String`, bit for bit where the standard library would store it inline.
    @Test func readsBackEveryStringWrittenWhateverItsLengthAndOffset() throws {
        let ascii = "abcdefghijklmnopqrstuvwxyz-0123456789"
        let samples =
            (0...20).map { String(ascii.prefix($0)) } + [
                "é", "abcdefghijklmnoé", "ü-ü-ü", String(repeating: "x", count: 64),
            ]
        for before in 0...9 {
            for sample in samples {
                var w = BinaryWriter()
                w.write(String(ascii.prefix(before)))
                w.write(sample)
                w.write(UInt8(7))
                var r = BinaryReader(w.bytes)
                #expect(try r.readString() == String(ascii.prefix(before)))
                let read = try r.readString()
                #expect(read == sample && read.utf8.count == sample.utf8.count)
                let native = String(decoding: Array(sample.utf8), as: UTF8.self)
                if sample.utf8.count <= 15, sample.utf8.allSatisfy({ $0 < 0x80 }) {
                    #expect(
                        unsafeBitCast(read, to: (UInt64, UInt64).self)
                            == unsafeBitCast(native, to: (UInt64, UInt64).self))
                }
                #expect(try r.readByte() == 7 && r.isAtEnd)
            }
        }
    }

    @Test func refusesBytesThatAreNotUTF8() {
        var w = BinaryWriter()
        w.write(UInt32(3))
        w.bytes.append(contentsOf: [0x61, 0xFF, 0x62])
        var r = BinaryReader(w.bytes)
        #expect(throws: DecodingError.self) { try r.readString() }
    }
}
