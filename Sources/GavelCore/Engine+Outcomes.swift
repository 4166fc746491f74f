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

    /// One line for a person: which request, and what each side says.
    public var description: String {
        "request \(id) of \(principal) at \(at): recorded \(Self.describe(recorded)), "
            + "replayed \(replayed.map(Self.describe) ?? "not remembered")"
    }

    private static func describe(_ result: CommandResult) -> String {
        guard let error = result.error else { return "ok" }
        return "\(error.rawValue) (\(result.message))"
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
