/// Every command type a client may send, in the order the protocol lists them. Its raw value is the type's name on
/// the wire (the `type` member of a command message).
///
/// The decoder, the gateway's dispatch and role rules, and the command metrics all read a command type from here,
/// so a new one is added in this one place (and in the decoder's `switch`, which must then read its fields).
public enum CommandKind: String, Sendable, Hashable, CaseIterable {
    case open
    case bid
    case buyNow = "buy_now"
    case accept
    case order
    case cancel
    case cancelListing = "cancel_listing"
    case confirmPayment = "confirm_payment"
    case markShipped = "mark_shipped"
    case confirmDelivery = "confirm_delivery"
    case openDispute = "open_dispute"
    case resolveDispute = "resolve_dispute"
    case refund
    case offerSecondChance = "offer_second_chance"
    case acceptOffer = "accept_offer"
    case declineOffer = "decline_offer"

    /// The type's name on the wire, which is also its label in the command metrics.
    @inlinable public var wireName: String { rawValue }

    /// The member that names the command's actor: `seller`, `bidder`, `buyer`, `trader`, or `by` for a settlement
    /// or second-chance command (and for an admin's `cancel_listing`, which the decoder reads under `by` or
    /// `seller`).
    public var actorField: String {
        switch self {
        case .open, .cancelListing: "seller"
        case .bid, .accept: "bidder"
        case .buyNow: "buyer"
        case .order, .cancel: "trader"
        default: "by"
        }
    }

    /// The member the decoder also reads the actor from when ``actorField`` is absent: `bidder` for `buy_now`,
    /// `buyer` for `accept`; `nil` for the other types.
    public var actorAlias: String? {
        switch self {
        case .buyNow: "bidder"
        case .accept: "buyer"
        default: nil
        }
    }

    /// The commands that trade or open a listing: an admin sends none of them.
    public var isTrading: Bool {
        switch self {
        case .open, .bid, .buyNow, .accept, .order, .cancel: true
        default: false
        }
    }

    /// The settlement and second-chance commands: they act as the connection's own user (`by`) in its token's
    /// role, so they refuse `on_behalf_of`; whether that user and role may make the transition is the engine's rule.
    public var isSettlement: Bool { actsOnSettlement || offerAction != nil }

    /// Whether the command acts on one settlement (`settlement: <listing>:<n>`), not on a listing.
    public var actsOnSettlement: Bool {
        switch self {
        case .confirmPayment, .markShipped, .confirmDelivery, .openDispute, .resolveDispute, .refund: true
        default: false
        }
    }

    /// The second-chance action of the type, `nil` for the other types.
    public var offerAction: OfferAction? {
        switch self {
        case .offerSecondChance: .offer
        case .acceptOffer: .accept
        case .declineOffer: .decline
        default: nil
        }
    }

    /// Whether a connection acting in `role` may send the command at all: a bidder opens and cancels no listing, an
    /// admin neither trades nor opens. The other rules (whose name, which transition) come later.
    public func mayBeSent(by role: ActorRole) -> Bool {
        switch role {
        case .bidder: self != .open && self != .cancelListing
        case .admin: !isTrading
        case .seller, .service: true
        }
    }

    /// Every type's wire name, in order, joined by `", "` (for the messages that list the types).
    public static let wireNames = allCases.map(\.rawValue).joined(separator: ", ")
}

extension CommandBody {
    /// The command's type.
    public var kind: CommandKind {
        switch self {
        case .open: .open
        case .bid: .bid
        case .buyNow: .buyNow
        case .accept: .accept
        case .order: .order
        case .cancel: .cancel
        case .cancelListing, .cancelListingAsAdmin: .cancelListing
        case .settle(_, let action, _, _): action.kind
        case .secondChance(let action, _, _): action.kind
        }
    }
}

extension SettlementAction {
    /// The command type of the action.
    public var kind: CommandKind {
        switch self {
        case .confirmPayment: .confirmPayment
        case .markShipped: .markShipped
        case .confirmDelivery: .confirmDelivery
        case .openDispute: .openDispute
        case .resolveDispute: .resolveDispute
        case .refund: .refund
        }
    }
}

extension OfferAction {
    /// The command type of the action.
    public var kind: CommandKind {
        switch self {
        case .offer: .offerSecondChance
        case .accept: .acceptOffer
        case .decline: .declineOffer
        }
    }
}
