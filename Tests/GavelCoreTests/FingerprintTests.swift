import PropertyBased
import Testing

@testable import GavelCore

/// FNV-1a over the 8 bytes of each value, least significant first, one byte at a time: the definition the
/// fingerprint's digest must keep (it is stored in snapshots and reaches the state hash).
private func byteWiseDigest(_ values: [UInt64]) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for value in values {
        for shift in stride(from: 0, to: 64, by: 8) {
            h = (h ^ ((value >> UInt64(shift)) & 0xFF)) &* 0x0000_0100_0000_01B3
        }
    }
    return h
}

/// A value from `seed` with a varied number of zero bytes on top and zero bytes inside (a length, an amount, a
/// time, a full 64-bit pattern).
private func valueWithZeroBytes(_ seed: Int) -> UInt64 {
    var rng = SplitMix64(seed: UInt64(seed))
    let topZeroBytes = Int(rng.next() % 9)
    var value = topZeroBytes == 8 ? 0 : rng.next() >> UInt64(8 * topZeroBytes)
    let innerMask = rng.next()
    for byte in 0..<8 where innerMask & (1 << UInt64(byte)) != 0 { value &= ~(UInt64(0xFF) << UInt64(8 * byte)) }
    return value
}

@Suite struct FingerprintTests {
    @Test func combiningIntegersGivesTheByteWiseDigest() async {
        await propertyCheck(count: 300, input: Gen.int(in: 0...Int(Int32.max)).array(of: 0...40)) { seeds in
            let values = seeds.map(valueWithZeroBytes)
            var fingerprint = Fingerprint()
            for value in values { fingerprint.combine(value) }
            #expect(fingerprint.value == byteWiseDigest(values))
        }
    }

    @Test func everyPowerOfThePrimeIsTheProductOfPrimes() {
        var power: UInt64 = 1
        for n in 0...8 {
            #expect(Fingerprint.primePower(n) == power, "prime^\(n)")
            power = power &* 0x0000_0100_0000_01B3
        }
    }
}
