/// The result of one command: accepted, or rejected with an error code and a message for a person.
public struct CommandResult: Sendable, Hashable {
    // The stored properties are in the order that packs them best (the 16-byte strings, the 9-byte optional
    // integers, then the single bytes): 94 bytes rather than 106 in declaration order, and a result is copied into
    // every remembered request id, batch entry and reply.

    /// A message a person can act on; empty when accepted.
    public var message: String
    /// For accepted settlement commands and `accept_offer`: the settlement's id and its state after the command.
    public var settlement: String?
    /// For `bid_too_low`: the lowest amount that would have been accepted.
    public var minBid: Money?
    /// For accepted bids, accepts and orders: the current price or the fill price.
    public var price: Money?
    /// For accepted accepts and orders: the quantity filled by this command.
    public var filled: Int64?
    /// For accepted accepts (units left) and orders (quantity left resting).
    public var remaining: Int64?
    /// `nil` when the command was accepted.
    public var error: ErrorCode?
    /// Whether this is the remembered result of an earlier command with the same id and content.
    public var duplicate: Bool
    /// For accepted english bids: whether the bidder leads after the bid.
    public var leading: Bool?
    public var settlementState: SettlementState?
    /// Whether the idempotency table refused the command: its request id was already used by its principal for a
    /// different command (`idempotency_conflict` from the table, not from a rule). Not sent to clients.
    public internal(set) var requestIDConflict = false

    /// An accepted result with no details.
    public static let accepted = CommandResult(error: nil, message: "")

    public init(
        error: ErrorCode?, message: String, minBid: Money? = nil, duplicate: Bool = false, price: Money? = nil,
        leading: Bool? = nil, filled: Int64? = nil, remaining: Int64? = nil, settlement: String? = nil,
        settlementState: SettlementState? = nil
    ) {
        self.settlement = settlement
        self.settlementState = settlementState
        self.error = error
        self.message = message
        self.minBid = minBid
        self.duplicate = duplicate
        self.price = price
        self.leading = leading
        self.filled = filled
        self.remaining = remaining
    }

    /// A rejection with `code` and `message`.
    public static func rejected(_ code: ErrorCode, _ message: String, minBid: Money? = nil) -> CommandResult {
        CommandResult(error: code, message: message, minBid: minBid)
    }

    /// Whether the command was accepted.
    public var ok: Bool { error == nil }

    /// How the idempotency table answered the command this is the result of.
    public var requestOutcome: RequestOutcome {
        if duplicate { return .duplicate }
        return requestIDConflict ? .conflict : .applied
    }
}

/// How the idempotency table answered a command. The journal keeps it beside each command (record version 2), so a
/// replay that only wants the events (the durable feed's) can skip the table, which is most of its work.
public enum RequestOutcome: UInt8, Sendable, Hashable, CaseIterable {
    /// The request id was new: the command was checked and applied, or refused, by the rules, and its result
    /// remembered (unless its identifiers were malformed).
    case applied = 1
    /// The same command under a remembered id: answered with the remembered result; nothing applied.
    case duplicate = 2
    /// A different command under a remembered id: refused `idempotency_conflict`; nothing applied.
    case conflict = 3
}
