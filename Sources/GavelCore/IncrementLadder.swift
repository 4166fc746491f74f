/// A bid increment ladder: ascending `[from, step]` brackets starting at 0.
public enum IncrementLadder {
    /// The default ladder, in minor units.
    public static let standard: [IncrementStep] = [
        (0, 5), (100, 25), (500, 50), (2500, 100), (10000, 250), (25000, 500), (50000, 1000), (100_000, 2500),
        (250_000, 5000), (500_000, 10000),
    ].map { IncrementStep(from: $0.0, step: $0.1) }

    /// The step of the bracket that holds `amount`.
    @inlinable
    public static func increment(at amount: Money, in ladder: [IncrementStep]) -> Money {
        // Ladders are short; a backward scan finds the bracket without a branchy search.
        var index = ladder.count - 1
        while index > 0 && ladder[index].from > amount { index -= 1 }
        return ladder[index].step
    }

    /// Why `ladder` is not a valid ladder, or `nil` when it is.
    public static func problem(with ladder: [IncrementStep]) -> String? {
        guard let first = ladder.first else { return "increments must have at least one [from, step] pair" }
        if first.from != 0 { return "increments must start from 0" }
        for (index, bracket) in ladder.enumerated() {
            if !Limits.isValidAmount(bracket.step) {
                return "increment step \(bracket.step) must be a positive integer up to 10^15"
            }
            if index > 0 && bracket.from <= ladder[index - 1].from {
                return "increments must be ascending by from (\(bracket.from) follows \(ladder[index - 1].from))"
            }
            if bracket.from > Limits.maxAmount { return "increment bracket from \(bracket.from) is above 10^15" }
        }
        return nil
    }
}
