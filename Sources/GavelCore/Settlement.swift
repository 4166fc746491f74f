/// The role a command's actor acts in, as the command says (the gateway fills it from the connection's token).
public enum ActorRole: String, Sendable, Hashable, CaseIterable {
    case bidder
    case seller
    /// The marketplace's own backend (payments, the gateway acting for users).
    case service
    /// The dispute desk: resolves disputes and may cancel any listing.
    case admin
}

/// Where a settlement is in its life. Its raw value is the protocol's name.
public enum SettlementState: String, Sendable, Hashable, CaseIterable {
    case awaitingPayment = "awaiting_payment"
    case paid
    case shipped
    case delivered
    case completed
    case paymentExpired = "payment_expired"
    case refunded
    case disputed
    case released

    /// Whether no transition leaves this state.
    public var isTerminal: Bool {
        switch self {
        case .completed, .paymentExpired, .refunded, .released: true
        default: false
        }
    }
}

/// How an admin resolves a dispute: release the funds to the seller, or refund the buyer.
public enum DisputeOutcome: String, Sendable, Hashable, CaseIterable {
    case release
    case refund
}

/// What a settlement command asks for.
public enum SettlementAction: Sendable, Hashable {
    /// `confirm_payment`: the payment backend reports the buyer's payment.
    case confirmPayment(paymentRef: String)
    /// `mark_shipped`: the seller shipped the item.
    case markShipped(tracking: String)
    /// `confirm_delivery`: the item arrived.
    case confirmDelivery
    /// `open_dispute`: the buyer complains within the complaint window.
    case openDispute(reason: String)
    /// `resolve_dispute`: an admin decides a dispute.
    case resolveDispute(DisputeOutcome)
    /// `refund`: the payment is returned before shipping.
    case refund

    /// The protocol name of the command type.
    public var typeName: String { kind.rawValue }
}

/// What a second-chance command asks for.
public enum OfferAction: String, Sendable, Hashable, CaseIterable {
    /// `offer_second_chance`: the seller offers the item to the runner-up.
    case offer = "offer_second_chance"
    /// `accept_offer`: the runner-up takes it, which creates a settlement.
    case accept = "accept_offer"
    /// `decline_offer`: the runner-up declines; the listing stays unsold.
    case decline = "decline_offer"
}

/// What a transition carried beyond its actor: the payment reference, the tracking reference, the dispute's reason
/// or its outcome.
public enum SettlementDetail: Sendable, Hashable {
    case paymentRef(String)
    case tracking(String)
    case reason(String)
    case outcome(DisputeOutcome)
}

/// The settlement deadlines of a listing, as given in its `open` command (`nil`: the default).
public struct SettlementDeadlines: Sendable, Hashable {
    /// From the sale to the payment. Default: 3 days.
    public var paymentDueMs: Millis?
    /// From the payment to the shipping. Default: 5 days.
    public var shipDueMs: Millis?
    /// From the delivery to the completion; a dispute may be opened within it. Default: 3 days.
    public var complaintWindowMs: Millis?
    /// From a second-chance offer to its expiry. Default: 2 days.
    public var offerDueMs: Millis?

    public static let defaultPaymentDueMs: Millis = 259_200_000
    public static let defaultShipDueMs: Millis = 432_000_000
    public static let defaultComplaintWindowMs: Millis = 259_200_000
    public static let defaultOfferDueMs: Millis = 172_800_000
    /// The longest deadline a listing may set: 365 days.
    public static let maxMs: Millis = 31_536_000_000

    public init(
        paymentDueMs: Millis? = nil, shipDueMs: Millis? = nil, complaintWindowMs: Millis? = nil,
        offerDueMs: Millis? = nil
    ) {
        self.paymentDueMs = paymentDueMs
        self.shipDueMs = shipDueMs
        self.complaintWindowMs = complaintWindowMs
        self.offerDueMs = offerDueMs
    }

    /// Whether no deadline was given.
    public var isEmpty: Bool {
        paymentDueMs == nil && shipDueMs == nil && complaintWindowMs == nil && offerDueMs == nil
    }

    /// The deadlines in effect: the given ones, the defaults for the rest.
    public var effective: (paymentDueMs: Millis, shipDueMs: Millis, complaintWindowMs: Millis, offerDueMs: Millis) {
        (
            paymentDueMs ?? Self.defaultPaymentDueMs, shipDueMs ?? Self.defaultShipDueMs,
            complaintWindowMs ?? Self.defaultComplaintWindowMs, offerDueMs ?? Self.defaultOfferDueMs
        )
    }

    /// The protocol field names with their given values, in the protocol's order.
    public var fields: [(name: StaticString, value: Millis?)] {
        [
            ("payment_due_ms", paymentDueMs), ("ship_due_ms", shipDueMs),
            ("complaint_window_ms", complaintWindowMs), ("offer_due_ms", offerDueMs),
        ]
    }

    /// Why a given deadline is out of range, or `nil` when every one is in range.
    public var problem: String? {
        for (name, value) in fields {
            if let value, value <= 0 || value > Self.maxMs {
                return "\(name) must be a positive integer up to \(Self.maxMs) (365 days, in ms)"
            }
        }
        return nil
    }
}

/// One transition of a settlement, creation included: the state it entered, when, who made it (`nil` for a timer
/// and for creation) and what it carried.
public struct SettlementStep: Sendable, Hashable {
    public var state: SettlementState
    public var at: Millis
    public var by: String?
    public var role: ActorRole?
    public var detail: SettlementDetail?

    public init(
        state: SettlementState, at: Millis, by: String? = nil, role: ActorRole? = nil, detail: SettlementDetail? = nil
    ) {
        self.state = state
        self.at = at
        self.by = by
        self.role = role
        self.detail = detail
    }
}

/// A settlement's transition, as its `settlement` event carries it: the whole current picture of the settlement
/// plus the step just made, so that a reader can keep a ``Settlement`` in step from events alone.
public struct SettlementChange: Sendable, Hashable {
    /// The settlement's number on its listing (its id is `listing:number`).
    public var number: Int64
    public var buyer: String
    public var seller: String
    public var price: Money
    public var quantity: Int64
    /// The deadline of the new state, `nil` for states without one.
    public var dueAt: Millis?
    /// The step made; its `at` is the event's.
    public var step: SettlementStep

    public init(
        number: Int64, buyer: String, seller: String, price: Money, quantity: Int64, dueAt: Millis?,
        step: SettlementStep
    ) {
        self.number = number
        self.buyer = buyer
        self.seller = seller
        self.price = price
        self.quantity = quantity
        self.dueAt = dueAt
        self.step = step
    }

    public var state: SettlementState { step.state }
}

/// A settlement: one sale's transaction from payment to completion, with its whole history.
public struct Settlement: Sendable, Hashable {
    public var listing: String
    /// Counts the listing's sales from 1.
    public var number: Int64
    public var buyer: String
    public var seller: String
    public var price: Money
    public var quantity: Int64
    public var state: SettlementState
    /// The deadline of the current state, `nil` for states without one.
    public var dueAt: Millis?
    public var paymentRef: String?
    public var tracking: String?
    /// Every transition from creation on, oldest first.
    public var history: [SettlementStep]
    /// Pruned from its listing's memory, waiting to be removed with others (never seen outside the engine).
    var pruned = false
    /// Its place in the order the engine created the settlements it holds, from 1 (see
    /// ``Engine/settlementsInCreationOrder``); 0 outside the engine.
    var created: UInt64 = 0

    public init(
        listing: String, number: Int64, buyer: String, seller: String, price: Money, quantity: Int64,
        state: SettlementState, dueAt: Millis?, paymentRef: String? = nil, tracking: String? = nil,
        history: [SettlementStep]
    ) {
        self.listing = listing
        self.number = number
        self.buyer = buyer
        self.seller = seller
        self.price = price
        self.quantity = quantity
        self.state = state
        self.dueAt = dueAt
        self.paymentRef = paymentRef
        self.tracking = tracking
        self.history = history
    }

    /// The settlement a creation event describes.
    public init(listing: String, creation change: SettlementChange) {
        self.init(
            listing: listing, number: change.number, buyer: change.buyer, seller: change.seller, price: change.price,
            quantity: change.quantity, state: change.state, dueAt: change.dueAt, history: [])
        record(change)
    }

    /// Takes the transition `change` into the settlement: its state, deadline, references and history.
    public mutating func record(_ change: SettlementChange) {
        state = change.state
        dueAt = change.dueAt
        switch change.step.detail {
        case .paymentRef(let ref): paymentRef = ref
        case .tracking(let ref): tracking = ref
        default: break
        }
        history.append(change.step)
    }

    /// The settlement's id: `listing:number`.
    public var id: String { SettlementID.format(listing: listing, number: number) }
}

/// Settlement ids: `<listing>:<n>`, the listing everything before the last `:`, `n` a positive decimal integer
/// without a leading zero.
public enum SettlementID {
    /// The id of settlement `number` of `listing`.
    public static func format(listing: String, number: Int64) -> String { "\(listing):\(number)" }

    /// The listing and number of a well-formed id, or `nil`.
    public static func parse(_ id: String) -> (listing: String, number: Int64)? {
        guard let colon = id.utf8.lastIndex(of: UInt8(ascii: ":")) else { return nil }
        let listing = String(id[..<colon])
        let digits = id.utf8[id.utf8.index(after: colon)...]
        guard Identifier.isValid(listing), let first = digits.first, first != UInt8(ascii: "0"), digits.count <= 18
        else { return nil }
        var number: Int64 = 0
        for byte in digits {
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
            number = number * 10 + Int64(byte - UInt8(ascii: "0"))
        }
        return (listing, number)
    }
}

/// Where a second-chance offer is. Its raw value is the protocol's name.
public enum OfferState: String, Sendable, Hashable, CaseIterable {
    case offered
    case accepted
    case declined
    case expired
}

/// A second-chance offer on an english listing whose sale's payment expired: the runner-up may buy at their own
/// highest bid until `dueAt`.
public struct SecondChanceOffer: Sendable, Hashable {
    public var listing: String
    public var seller: String
    /// The runner-up.
    public var bidder: String
    public var price: Money
    public var state: OfferState
    /// The deadline while offered, `nil` after.
    public var dueAt: Millis?

    public init(listing: String, seller: String, bidder: String, price: Money, state: OfferState, dueAt: Millis?) {
        self.listing = listing
        self.seller = seller
        self.bidder = bidder
        self.price = price
        self.state = state
        self.dueAt = dueAt
    }
}

/// The rule for a dispute's `reason`: free text of 1-500 UTF-8 bytes without control characters.
public enum DisputeReason {
    /// The most bytes a reason may have.
    public static let maxBytes = 500

    /// Why `reason` breaks the rule, or `nil` when it keeps it.
    public static func problem(_ reason: String) -> String? {
        let count = reason.utf8.count
        guard count > 0 && count <= maxBytes else { return "reason must be 1-\(maxBytes) bytes of UTF-8 text" }
        for scalar in reason.unicodeScalars where scalar.properties.generalCategory == .control {
            return "reason must not contain control characters"
        }
        return nil
    }

    /// Why `reason` is refused where a command is read (the gateway's and `gavel simulate`'s decoder), or `nil`: the
    /// rule's ``problem(_:)``, and no character that changes how the text around it is shown — the bidirectional
    /// embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069), which can make a support tool show a
    /// reason other than its bytes, and the line and paragraph separators (U+2028, U+2029). Not a rule of the engine:
    /// a journal written before this check replays as it was applied.
    public static func decodingProblem(_ reason: String) -> String? {
        if let problem = problem(reason) { return problem }
        for scalar in reason.unicodeScalars {
            switch scalar.value {
            case 0x202A...0x202E, 0x2066...0x2069:
                return "reason must not contain bidirectional formatting characters (U+202A-U+202E, U+2066-U+2069)"
            case 0x2028, 0x2029:
                return "reason must not contain line or paragraph separators (U+2028, U+2029)"
            default:
                continue
            }
        }
        return nil
    }
}
