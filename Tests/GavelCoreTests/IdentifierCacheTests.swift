import PropertyBased
import Testing

@testable import GavelCore

@Suite struct IdentifierCacheTests {
    /// The raw bits of a string: equal for two values only when they share one storage (or are the same inline
    /// value).
    static func bits(_ s: String) -> (UInt64, UInt64) { unsafeBitCast(s, to: (UInt64, UInt64).self) }

    static func string(_ cache: IdentifierCache, _ s: String) -> String {
        Array(s.utf8).withUnsafeBufferPointer { cache.string($0.baseAddress!, count: $0.count) }
    }

    @Test func aNameReadAgainSharesTheStorageOfTheFirst() {
        let cache = IdentifierCache()
        let name = "listing-4f1c2b9e-8d7a-4c31-9b0e-2f6a5d3c1e7b"
        let first = Self.string(cache, name)
        let second = Self.string(cache, name)
        #expect(first == name && second == name)
        #expect(Self.bits(first) == Self.bits(second))
        #expect(cache.hits == 1 && cache.misses == 1)
    }

    /// Two slots and many names: every name lands on a slot another held, and what comes back is always the name
    /// given, never the one the slot held before.
    @Test func aSlotHoldingOtherBytesGivesThemUpAndNeverAnswersWithThem() {
        let cache = IdentifierCache(slotCount: 2)
        #expect(cache.slotCount == 2)
        let names = (0..<200).map { "user-\(String(repeating: "x", count: $0 % 40))-\($0 * 7919)" }
        for round in 0..<3 {
            for name in names.shuffled() {
                #expect(Self.string(cache, name) == name, "round \(round)")
            }
        }
        #expect(cache.misses > cache.hits)
    }

    @Test func slotCountIsRoundedUpToAPowerOfTwo() {
        #expect(IdentifierCache(slotCount: 0).slotCount == 2)
        #expect(IdentifierCache(slotCount: 3).slotCount == 4)
        #expect(IdentifierCache(slotCount: 512).slotCount == 512)
        #expect(IdentifierCache(slotCount: 513).slotCount == 1_024)
    }

    /// Random ASCII names of every length up to the 64 an identifier may have, many of them repeated and many
    /// differing only in their middle bytes: each comes back equal to the bytes given, whatever the cache held.
    @Test func whatComesBackIsAlwaysTheBytesGiven() async {
        let byte = Gen.int(in: 0x21...0x7E).map { UInt8($0) }
        await propertyCheck(count: 200, input: byte.array(of: 0...64).array(of: 1...60)) { names in
            let cache = IdentifierCache(slotCount: 8)
            let varied =
                names
                + names.map { name -> [UInt8] in
                    var copy = name
                    if !copy.isEmpty { copy[copy.count / 2] ^= 1 }
                    return copy
                }
            for name in varied + varied.reversed() {
                let got = name.withUnsafeBufferPointer { buffer in
                    buffer.baseAddress.map { cache.string($0, count: buffer.count) } ?? ""
                }
                #expect(Array(got.utf8) == name)
            }
        }
    }

    @Test func emptyBytesGiveTheEmptyString() {
        let cache = IdentifierCache()
        let empty: [UInt8] = [0]
        #expect(empty.withUnsafeBufferPointer { cache.string($0.baseAddress!, count: 0) } == "")
    }

    /// A reader told to make its cache when needed (the snapshot loader) makes none for names that are all inline,
    /// and one at the first long name, which the names after it then share.
    @Test func aReaderMakesItsCacheOnlyAtTheFirstLongName() throws {
        var w = BinaryWriter()
        for n in 0..<3 {
            Command(id: "r\(n)", listing: "L1", body: .bid(bidder: "ann", amount: 100)).encode(into: &w)
        }
        var short = BinaryReader(w.bytes)
        short.identifierSlotsWhenNeeded = 64
        for _ in 0..<3 { _ = try Command.decode(from: &short) }
        #expect(short.isAtEnd && short.identifiers == nil)
        let listing = "listing-0123456789abcdef"
        for n in 0..<2 {
            Command(id: "r\(n)", listing: listing, body: .bid(bidder: "ann", amount: 100)).encode(into: &w)
        }
        var long = BinaryReader(w.bytes)
        long.identifierSlotsWhenNeeded = 64
        let commands = try (0..<5).map { _ in try Command.decode(from: &long) }
        #expect(long.isAtEnd && long.identifiers?.slotCount == 64)
        #expect(commands[3].listing == listing && Self.bits(commands[3].listing) == Self.bits(commands[4].listing))
    }

    /// A reader with a cache: each listing and user name read again (journal records, snapshots) shares the
    /// first one's storage; the request ids, read with `readString`, never do; the values are those written.
    @Test func aReaderWithACacheSharesNamesAndNotRequestIDs() throws {
        let listing = "listing-0123456789abcdef"
        let bidder = "bidder-0123456789abcdef-7"
        var w = BinaryWriter()
        for n in 0..<3 {
            Command(id: "request-0123456789-\(n)", listing: listing, body: .bid(bidder: bidder, amount: 100))
                .encode(into: &w)
        }
        var r = BinaryReader(w.bytes, identifiers: IdentifierCache())
        let commands = try (0..<3).map { _ in try Command.decode(from: &r) }
        #expect(r.isAtEnd)
        #expect(commands.map(\.id) == (0..<3).map { "request-0123456789-\($0)" })
        #expect(commands.allSatisfy { $0.listing == listing && $0.principal == bidder })
        #expect(Self.bits(commands[0].listing) == Self.bits(commands[2].listing))
        #expect(Self.bits(commands[0].principal) == Self.bits(commands[2].principal))
        #expect(r.identifiers?.hits == 4 && r.identifiers?.misses == 2)
        // Without a cache: the same values, each its own storage.
        var plain = BinaryReader(w.bytes)
        let again = try (0..<3).map { _ in try Command.decode(from: &plain) }
        #expect(again == commands)
        #expect(Self.bits(again[0].listing) != Self.bits(again[1].listing))
    }
}
