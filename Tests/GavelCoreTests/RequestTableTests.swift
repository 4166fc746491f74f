import PropertyBased
import Testing

@testable import GavelCore

/// Runs a stream of operations (insert, remove) on a ``RequestTable`` and on a `Dictionary` (the model) side by
/// side: keys are small integers, positions are slots handed out as the engine hands them out (a removed key's slot
/// is reused by a later insert), and `hashOf` decides how much keys collide. Every step checks the looked-up key and the count; the end checks every key ever used.
private func matchesDictionary(_ operations: [Int], keySpace: Int, hashOf: (Int) -> UInt64) -> Bool {
    let table = RequestTable()
    var model: [Int: Int] = [:]
    var keyAt: [Int: Int] = [:]  // position → key, what the engine's slots answer
    var nextPosition = 0
    var free: [Int] = []
    for operation in operations {
        let key = (operation / 4) % keySpace
        let hash = hashOf(key)
        switch operation % 4 {
        case 0 where model[key] == nil:
            let position: Int
            if let reused = free.popLast() {
                position = reused
            } else {
                position = nextPosition
                nextPosition += 1
            }
            table.insert(hash: hash, position: position)
            model[key] = position
            keyAt[position] = key
        case 1, 2:
            if let position = model[key] {
                if !table.remove(hash: hash, position: position) { return false }
                model[key] = nil
                keyAt[position] = nil
                free.append(position)
            } else if table.remove(hash: hash, position: nextPosition + 1) {
                return false
            }
        default: break
        }
        if table.find(hash: hash, where: { keyAt[$0] == key }) != model[key] { return false }
        if table.count != model.count { return false }
    }
    for key in 0..<keySpace where table.find(hash: hashOf(key), where: { keyAt[$0] == key }) != model[key] {
        return false
    }
    return true
}

/// A reproducible well-spread hash of a small integer (the table's behaviour must not depend on the hash's quality).
private func spread(_ key: Int) -> UInt64 {
    var x = UInt64(key) &+ 0x9E37_79B9_7F4A_7C15
    x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
    x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
    return x ^ (x >> 31)
}

@Suite("Request table")
struct RequestTableTests {
    @Test func behavesLikeADictionaryThroughInsertsRemovesAndGrowth() async {
        await propertyCheck(
            count: 200,
            input: Gen.int(in: 0...Int(Int32.max)).array(of: 0...3_000), Gen.int(in: 1...5_000)
        ) { operations, keySpace in
            #expect(matchesDictionary(operations, keySpace: keySpace, hashOf: spread))
        }
    }

    @Test func behavesLikeADictionaryWhenKeysCollideInTheirHomeSlotOrFullHash() async {
        await propertyCheck(
            count: 100,
            input: Gen.int(in: 0...Int(Int32.max)).array(of: 0...1_500), Gen.int(in: 1...600)
        ) { operations, keySpace in
            // Only 8 distinct home slots; hashes that differ only above the 32 bits a slot keeps (one home slot, and
            // every key compared through `matches`); a single full hash for every key.
            #expect(matchesDictionary(operations, keySpace: keySpace) { UInt64($0 % 8) })
            #expect(matchesDictionary(operations, keySpace: keySpace) { UInt64($0 % 8) << 40 })
            #expect(matchesDictionary(operations, keySpace: keySpace) { _ in 42 })
        }
    }

    @Test func aTableFilledByInsertsDoublesWhenItGrowsSoItNeverHoldsMoreThanTwiceTheSlotsItNeeds() {
        let table = RequestTable()
        var capacity = table.capacity
        var growths = 0
        for position in 0..<300_000 {
            table.insert(hash: spread(position), position: position)
            if table.capacity != capacity {
                #expect(table.capacity == 2 * capacity, "grew from \(capacity) to \(table.capacity) at \(position)")
                capacity = table.capacity
                growths += 1
            }
            // Below 3/4 live slots (the growth threshold) and, once grown, above 3/8.
            #expect(table.count * 4 <= table.capacity * 3)
            if growths > 0 { #expect(table.count * 8 >= table.capacity * 3, "at \(position)") }
        }
        #expect(growths >= 14)
    }

    @Test func growsWithoutEverMovingMoreThanOneStepOfSlotsPerInsert() {
        let table = RequestTable()
        var resizes = 0
        var capacity = 0
        var wasResizing = false
        for position in 0..<200_000 {
            table.insert(hash: spread(position), position: position)
            if table.isResizing && !wasResizing {
                resizes += 1
                capacity = table.capacity
            } else if wasResizing && table.isResizing && table.capacity != capacity {
                // A resize starts on one insert and its move spans many; the next starts only after it ends.
                Issue.record("a new resize started before the last one finished, at \(position)")
                break
            }
            wasResizing = table.isResizing
            if position % 3 == 2 { #expect(table.remove(hash: spread(position - 1), position: position - 1)) }
        }
        #expect(resizes >= 10)
        #expect(table.count == 200_000 - 200_000 / 3)
        for position in stride(from: 0, to: 200_000, by: 997) {
            let expected: Int? = position % 3 == 1 ? nil : position
            #expect(table.find(hash: spread(position)) { $0 == position } == expected)
        }
    }

    @Test func theRequestHashDependsOnEveryByteAndOnWhereThePrincipalEnds() {
        let pairs = [("ann", "a1"), ("ann", "a2"), ("an", "na1"), ("anna", "1"), ("ann", "a1a1a1a1a1a1a1a1a1")]
        let hashes = Set(pairs.map { RequestHash.of(principal: $0.0, id: $0.1) })
        #expect(hashes.count == pairs.count)
        #expect(RequestHash.of(principal: "ann", id: "a1") == RequestHash.of(principal: "ann", id: "a1"))
    }
}

@Suite("Remembered log")
struct RememberedLogTests {
    private static func entry(_ n: Int) -> RememberedResult {
        RememberedResult(id: "r\(n)", hash: UInt64(n), fingerprint: UInt64(n), result: .accepted, at: Millis(n))
    }

    @Test func behavesLikeAnArrayThroughAppendsUpdatesAndDroppedPrefixesAndSuffixes() async {
        await propertyCheck(count: 60, input: Gen.int(in: 0...Int(Int32.max)).array(of: 0...400)) { steps in
            var log = RememberedSlots()
            var model: [RememberedResult] = []
            var next = 0
            for step in steps {
                switch step % 8 {
                case 0 where !model.isEmpty:
                    let n = (step / 8) % (model.count + 1)
                    log.removeFirst(n)
                    model.removeFirst(n)
                case 1 where !model.isEmpty:
                    let index = (step / 8) % model.count
                    log[index].generation = UInt32(step)
                    model[index].generation = UInt32(step)
                case 2 where !model.isEmpty:
                    let n = (step / 8) % (model.count + 1)
                    log.removeLast(n)
                    model.removeLast(n)
                default:
                    // Runs of appends long enough to cross chunk boundaries.
                    for _ in 0..<(step % 5_000) {
                        log.append(Self.entry(next))
                        model.append(Self.entry(next))
                        next += 1
                    }
                }
                #expect(log.count == model.count)
            }
            #expect(log.map(\.id) == model.map(\.id))
            #expect(log.map(\.generation) == model.map(\.generation))
        }
    }
}
