/// A request whose remembered result differs between two engines: the one a snapshot recorded and the one a
/// replay of the journal under today's rules gives.
public struct OutcomeChange: Sendable, Hashable {
    public var principal: String
    public var id: String
    /// When the request was applied (engine time).
    public var at: Millis
    public var recorded: CommandResult
    /// `nil` when the replay does not remember the request at all.
    public var replayed: CommandResult?

    /// One line for a person: which request, and what each side says. Results with different codes show each code
    /// and its message (`recorded ok, replayed limit_exceeded (...)`); results with the same code show the fields
    /// that differ, on both sides (`recorded ok remaining 5, replayed ok remaining 3`). A message is cut at
    /// ``maxMessageLength`` characters, so the line stays bounded.
    public var description: String {
        let head = "request \(id) of \(principal) at \(at): "
        guard let replayed, replayed.error == recorded.error else {
            return head
                + "recorded \(Self.describe(recorded)), replayed \(replayed.map(Self.describe) ?? "not remembered")"
        }
        let differences = Self.differences(recorded, replayed)
        return head + "recorded \(Self.code(recorded))\(differences.recorded), "
            + "replayed \(Self.code(replayed))\(differences.replayed)"
    }

    /// The longest message shown of a result; a longer one is cut there and ends in `...`.
    static let maxMessageLength = 160

    private static func code(_ result: CommandResult) -> String { result.error?.rawValue ?? "ok" }

    private static func describe(_ result: CommandResult) -> String {
        guard result.error != nil else { return "ok" }
        return "\(code(result)) (\(shortened(result.message)))"
    }

    private static func shortened(_ message: String) -> String {
        message.count <= maxMessageLength ? message : String(message.prefix(maxMessageLength - 3)) + "..."
    }

    /// The fields in which `a` and `b` differ, as each shows them: ` (message)` first, then ` name value` in the
    /// protocol's order (`none` for a field one side lacks).
    private static func differences(_ a: CommandResult, _ b: CommandResult) -> (recorded: String, replayed: String) {
        var left = a.message == b.message ? "" : " (\(shortened(a.message)))"
        var right = a.message == b.message ? "" : " (\(shortened(b.message)))"
        func field(_ name: String, _ x: String?, _ y: String?) {
            guard x != y else { return }
            left += " \(name) \(x ?? "none")"
            right += " \(name) \(y ?? "none")"
        }
        field("min_bid", a.minBid.map { "\($0)" }, b.minBid.map { "\($0)" })
        field("price", a.price.map { "\($0)" }, b.price.map { "\($0)" })
        field("leading", a.leading.map { "\($0)" }, b.leading.map { "\($0)" })
        field("filled", a.filled.map { "\($0)" }, b.filled.map { "\($0)" })
        field("remaining", a.remaining.map { "\($0)" }, b.remaining.map { "\($0)" })
        field("settlement", a.settlement, b.settlement)
        field("state", a.settlementState?.rawValue, b.settlementState?.rawValue)
        field("request_id_conflict", "\(a.requestIDConflict)", "\(b.requestIDConflict)")
        return (left, right)
    }
}

extension Engine {
    /// The requests remembered by `recorded` (a snapshot's engine) whose result this engine (a replay to the same
    /// lsn) remembers differently or not at all, in the order they were applied.
    ///
    /// The journal records commands, not results; only the results still in the idempotency window, as a snapshot
    /// holds them, can be compared.
    public func outcomeChanges(comparedTo recorded: Engine) -> [OutcomeChange] {
        var changes: [OutcomeChange] = []
        for slot in recorded.liveRememberedSlots {
            let entry = recorded.rememberedSlots[slot]
            let key = recorded.rememberedKey(slot)
            var mine = remembered[key].map { rememberedSlots[$0].result }
            mine?.duplicate = entry.result.duplicate
            if mine != entry.result {
                changes.append(
                    OutcomeChange(
                        principal: key.principal, id: key.id, at: entry.at, recorded: entry.result,
                        replayed: mine))
            }
        }
        return changes
    }
}
