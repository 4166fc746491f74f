import Testing

@testable import GavelCore

/// Two engines in lockstep: `subject` gets every command, `twin` only the ones `subject` accepted. Both forget a
/// request id 1 ms after it was applied (the idempotency window is 1 ms) and the clock moves 1 ms per command, so
/// once the clock has moved on, a refused command has left no trace in `subject` unless it changed state: the two
/// state hashes agree exactly when every refusal changed nothing.
final class Twins {
    let subject: Harness
    let twin: Harness
    private(set) var time: Millis

    init(at time: Millis = 0) {
        subject = Harness(window: 1)
        twin = Harness(window: 1)
        self.time = time
    }

    /// Twins over two engines in the same state (restored from the same bytes) with a 1 ms idempotency window.
    init(subject: Engine, twin: Engine, at time: Millis) {
        self.subject = Harness(engine: subject)
        self.twin = Harness(engine: twin)
        self.time = time
    }

    /// Applies `command` at the current time to `subject`, and to `twin` when it was accepted; then moves on 1 ms.
    @discardableResult
    func apply(_ command: Command, sourceLocation: SourceLocation = #_sourceLocation) -> CommandResult {
        let result = subject.apply(command, at: time)
        if result.ok {
            let again = twin.apply(command, at: time)
            #expect(again == result, "the twin diverged at \(command.id)", sourceLocation: sourceLocation)
        }
        if time < .max { time += 1 }
        return result
    }

    /// Whether both engines, moved to the current time, hold the same state.
    func statesAgree() -> Bool {
        subject.advance(to: time)
        twin.advance(to: time)
        return subject.engine.stateHash() == twin.engine.stateHash()
    }
}

/// An order command on market `M` with the given request id.
func orderCommand(
    _ id: String, _ trader: String, _ side: Side, _ quantity: Int64, price: Money, tif: TimeInForce = .gtc
) -> Command {
    Command(
        id: id, listing: "M",
        body: .order(trader: trader, side: side, price: price, quantity: quantity, tif: tif, expiresAt: nil))
}

/// The audit's case through the engine: 9,224 buy orders of 10^15 at price 1 on one market listing. Before, the
/// 9,224th trapped on `Int64` overflow of the level total and took the process down (and again on every restart).
@Suite struct MarketLevelLimitTests {
    static let quantity = Limits.maxAmount
    /// How many orders of 10^15 one level holds: 9,223 (9,223 * 10^15 <= Int64.max < 9,224 * 10^15).
    static let fitting = Int(Int64.max / Limits.maxAmount)

    /// A market `M` with `fitting` buy orders of 10^15 resting at price 1, each from its own trader.
    private func fullLevel() -> Twins {
        let twins = Twins()
        #expect(twins.apply(Command(id: "o", listing: "M", body: .open(seller: "sam", terms: Terms.market()))).ok)
        for n in 1...Self.fitting {
            let result = twins.apply(orderCommand("q\(n)", "t\(n % 25)", .buy, Self.quantity, price: 1))
            if !result.ok {
                Issue.record("order \(n) refused: \(result.message)")
                break
            }
        }
        return twins
    }

    @Test func the9224thOrderOf10To15AtOnePriceIsRefusedWithLimitExceededAndChangesNothing() throws {
        #expect(Self.fitting == 9_223)
        let twins = fullLevel()
        let total = Int64(Self.fitting) * Self.quantity
        #expect(twins.subject.market()?.top.bidQuantity == total)
        let result = twins.apply(orderCommand("q9224", "t0", .buy, Self.quantity, price: 1))
        #expect(result.error == .limitExceeded)
        #expect(result.message.contains("total \(total)"))
        #expect(result.message.contains("at most \(Int64.max - total) more fits"))
        #expect(twins.subject.events.isEmpty, "a refused order emits nothing")
        #expect(twins.subject.market()?.top.bidQuantity == total)
        #expect(twins.subject.market()?.bids.last?.orders.count == Self.fitting)
        #expect(twins.statesAgree())
    }

    @Test func aLevelFillsExactlyToInt64MaxAndStillTradesAndCancels() throws {
        let twins = fullLevel()
        let room = Int64.max - Int64(Self.fitting) * Self.quantity
        #expect(twins.apply(orderCommand("fill", "ann", .buy, room, price: 1)).ok)
        #expect(twins.subject.market()?.top.bidQuantity == .max)
        #expect(twins.apply(orderCommand("one", "ann", .buy, 1, price: 1)).error == .limitExceeded)
        // Orders that do not rest on the full level are not limited: an ioc, another price, the other side.
        #expect(twins.apply(orderCommand("ioc", "bob", .buy, Self.quantity, price: 1, tif: .ioc)).ok)
        #expect(twins.apply(orderCommand("two", "bob", .buy, Self.quantity, price: 2)).ok)
        let first = twins.apply(orderCommand("sell1", "sue", .sell, Self.quantity, price: 1))
        #expect(first.ok && first.filled == Self.quantity, "trades with the best bid, at price 2")
        let second = twins.apply(orderCommand("sell2", "sue", .sell, Self.quantity, price: 1))
        #expect(second.ok && second.filled == Self.quantity, "trades with the oldest order of the full level")
        #expect(twins.subject.market()?.top.bidQuantity == .max - Self.quantity)
        let cancel = twins.apply(Command(id: "c", listing: "M", body: .cancel(trader: "t2", order: "q2")))
        #expect(cancel.ok && cancel.remaining == Self.quantity)
        #expect(twins.apply(orderCommand("again", "ann", .buy, Self.quantity, price: 1)).ok, "room again")
        #expect(twins.apply(orderCommand("more", "ann", .buy, Self.quantity, price: 1)).ok, "room again")
        #expect(twins.apply(orderCommand("full", "ann", .buy, 1, price: 1)).error == .limitExceeded)
        #expect(twins.statesAgree())
    }

    @Test func aFullLevelSurvivesSnapshotRestoreWithTheSameHash() throws {
        let twins = fullLevel()
        let room = Int64.max - Int64(Self.fitting) * Self.quantity
        #expect(twins.apply(orderCommand("fill", "ann", .buy, room, price: 1)).ok)
        let engine = twins.subject.engine
        let restored = try Engine.restore(from: engine.encodeState())
        #expect(restored.stateHash() == engine.stateHash())
        var events: [Event] = []
        let result = restored.apply(orderCommand("next", "bob", .buy, 1, price: 1), events: &events)
        #expect(result.error == .limitExceeded, "the next honest order at that price is refused, not a crash")
    }

    @Test func restoreRefusesAStateWhoseLevelTotalWouldOverflow() throws {
        let h = Harness()
        h.open("M", Terms.market(), at: 0)
        h.order("ann", .buy, Self.quantity, price: 1, id: "a")
        h.order("bob", .buy, Self.quantity, price: 1, id: "b")
        var bytes = h.engine.encodeState()
        // Raise the first resting quantity (written after "a" and "ann") from 10^15 to Int64.max.
        let marker: [UInt8] = Array("ann".utf8)
        guard let at = (0..<bytes.count - marker.count).first(where: { Array(bytes[$0..<$0 + 3]) == marker }) else {
            Issue.record("no resting order in the state")
            return
        }
        let quantityOffset = at + marker.count
        #expect(
            bytes[quantityOffset..<quantityOffset + 8].elementsEqual(
                withUnsafeBytes(of: Self.quantity.littleEndian, Array.init)))
        bytes.replaceSubrange(
            quantityOffset..<quantityOffset + 8, with: withUnsafeBytes(of: Int64.max.littleEndian, Array.init))
        #expect(throws: DecodingError.self) { try Engine.restore(from: bytes) }
    }
}
