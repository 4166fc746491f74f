import GavelCore

#if canImport(Glibc)
    import Glibc
#endif

/// Draws indices 0..<count with Zipf popularity (rank 0 the most popular); exponent 0 is uniform.
public struct ZipfSampler: Sendable {
    let cumulative: [Double]

    public init(count: Int, exponent: Double) {
        var total = 0.0
        var cumulative: [Double] = []
        cumulative.reserveCapacity(count)
        for rank in 1...count {
            total += exponent == 0 ? 1 : 1 / pow(Double(rank), exponent)
            cumulative.append(total)
        }
        self.cumulative = cumulative
    }

    public func next(using rng: inout SplitMix64) -> Int {
        let u = Double(rng.next() >> 11) / Double(UInt64(1) << 53) * cumulative[cumulative.count - 1]
        var low = 0
        var high = cumulative.count - 1
        while low < high {
            let mid = (low + high) / 2
            if cumulative[mid] < u { low = mid + 1 } else { high = mid }
        }
        return low
    }
}
