import PropertyBased
import Testing

@testable import GavelCore

/// A bid's digest, computed in one pass over its identifiers, is the digest the general definitions give.
@Suite struct CommandDigestTests {
    /// Identifiers of every kind a client may send: well-formed ones of every length around the small-string limit
    /// (15 bytes) and the identifier limit (64), empty, too long, with a forbidden byte, with non-ASCII characters.
    static func identifier(_ seed: Int) -> String {
        var generator = SplitMix64(seed: UInt64(truncatingIfNeeded: seed))
        let allowed = Array("ABCXYZabcxyz0189_.:-")
        func pick(_ count: Int) -> String {
            String((0..<count).map { _ in allowed[Int(generator.next() % UInt64(allowed.count))] })
        }
        switch generator.next() % 8 {
        case 0: return ""
        case 1: return pick(Limits.maxIdentifierLength + 1 + Int(generator.next() % 3))
        case 2: return pick(3) + " " + pick(2)
        case 3: return pick(2) + "é" + pick(4)
        case 4: return pick(14 + Int(generator.next() % 4))
        case 5: return pick(Limits.maxIdentifierLength - Int(generator.next() % 2))
        default: return pick(1 + Int(generator.next() % 30))
        }
    }

    @Test func aBidsDigestIsTheOneTheGeneralDefinitionsGive() async {
        await propertyCheck(count: 400, input: Gen.int(in: 0...Int(Int32.max))) { seed in
            var generator = SplitMix64(seed: UInt64(seed))
            let command = Command(
                id: Self.identifier(Int(truncatingIfNeeded: generator.next())),
                listing: Self.identifier(Int(truncatingIfNeeded: generator.next())),
                body: .bid(
                    bidder: Self.identifier(Int(truncatingIfNeeded: generator.next())),
                    amount: Money(truncatingIfNeeded: generator.next())))
            let digest = CommandDigest(command)
            #expect(digest.identifiersValid == (command.identifierProblem == nil))
            #expect(digest.fingerprint == command.fingerprint)
            #expect(digest.requestHash == RequestHash.of(principal: command.principal, id: command.id))
            #expect(digest.principalHash == RequestHash.of(principal: command.principal))
            #expect(digest.listingHash == ListingHandle.hash(of: command.listing))
        }
    }

    @Test func theRequestAndPrincipalHashesTellPrincipalsAndIDsApart() {
        let pairs = [("ann", "b1"), ("ann", "b2"), ("bob", "b1"), ("annb", "1"), ("an", "nb1")]
        let requests = Set(pairs.map { RequestHash.of(principal: $0.0, id: $0.1) })
        #expect(requests.count == pairs.count)
        let both = pairs.map { RequestHash.both(principal: $0.0, id: $0.1) }
        #expect(both.map(\.request) == pairs.map { RequestHash.of(principal: $0.0, id: $0.1) })
        #expect(both.map(\.principal) == pairs.map { RequestHash.of(principal: $0.0) })
        #expect(RequestHash.of(principal: "ann") != RequestHash.of(principal: "bob"))
    }
}
