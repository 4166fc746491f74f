import GavelCore

/// A decoded line of client input.
public enum DecodedInput: Sendable, Equatable {
    /// A command, with the engine time it asks to be applied at (`nil`: at the current time).
    case command(Command, at: Millis?)
    /// Move the engine clock only.
    case advance(at: Millis)
    /// Input that is not a valid command: a `bad_request` with the request id when it could be read.
    case invalid(id: String?, message: String)
}

/// A field problem found while decoding; becomes a `bad_request` result.
struct FieldError: Error {
    var message: String
}

/// Reads the fields of one JSON object, with messages that name the field and what it must be.
struct FieldReader {
    let value: JSONValue
    /// A member that reads as present with this string value whatever the object holds under its key (the actor a
    /// connection fills in).
    var filled: (key: String, value: String)?
    /// The role that reads as the `role` member whatever the object holds (the role of a connection's token).
    var filledRole: ActorRole?

    init(value: JSONValue, filled: (key: String, value: String)? = nil) {
        self.value = value
        self.filled = filled
    }

    /// The member `name`, or the filled-in value when `name` is its key.
    subscript(name: String) -> JSONValue? {
        if let filled, filled.key == name { return .string(filled.value) }
        if name == "role", let filledRole { return .string(filledRole.rawValue) }
        return value[name]
    }

    func string(_ name: String) throws(FieldError) -> String {
        guard let field = self[name], field != .null else { throw FieldError(message: "missing field \(name)") }
        guard case .string(let s) = field else {
            throw FieldError(message: "\(name) must be a string, not \(field.typeName)")
        }
        return s
    }

    func optionalString(_ name: String) throws(FieldError) -> String? {
        guard let field = self[name], field != .null else { return nil }
        guard case .string(let s) = field else {
            throw FieldError(message: "\(name) must be a string, not \(field.typeName)")
        }
        return s
    }

    /// The identifier field `name`: a string of 1-64 characters from `[A-Za-z0-9_.:-]` (``Identifier``). Checked
    /// here, at the edge, so that a malformed id is refused before it is queued or journaled.
    func identifier(_ name: String) throws(FieldError) -> String {
        try Self.identifier(try string(name), name: name)
    }

    static func identifier(_ value: String, name: String) throws(FieldError) -> String {
        guard Identifier.isValid(value) else { throw FieldError(message: Self.identifierRule(name)) }
        return value
    }

    /// What an identifier field must be, for a `bad_request` message.
    static func identifierRule(_ name: String) -> String {
        "\(name) must be an identifier: 1-64 characters from [A-Za-z0-9_.:-]"
    }

    /// The actor field `name`, or its alias `alias` when `name` is absent; an identifier either way.
    func actor(_ name: String, or alias: String) throws(FieldError) -> String {
        if let value = try optionalString(name) { return try Self.identifier(value, name: name) }
        if let value = try optionalString(alias) { return try Self.identifier(value, name: alias) }
        throw FieldError(message: "missing field \(name)")
    }

    /// An integer time or count; anything else is a `bad_request`.
    func integer(_ name: String) throws(FieldError) -> Int64 {
        guard let field = self[name], field != .null else { throw FieldError(message: "missing field \(name)") }
        return try Self.integer(field, name: name)
    }

    func optionalInteger(_ name: String) throws(FieldError) -> Int64? {
        guard let field = self[name], field != .null else { return nil }
        return try Self.integer(field, name: name)
    }

    static func integer(_ field: JSONValue, name: String) throws(FieldError) -> Int64 {
        switch field {
        case .integer(let v): return v
        case .otherNumber(let text): throw FieldError(message: "\(name) must be an integer, not \(text)")
        default: throw FieldError(message: "\(name) must be an integer, not \(field.typeName)")
        }
    }

    /// An amount or quantity. A number that is not a 64-bit integer decodes to 0, so that the rules reject it
    /// with `invalid_amount` or `invalid_quantity`; a value that is not a number at all is a `bad_request`.
    func amount(_ name: String) throws(FieldError) -> Int64 {
        guard let field = self[name], field != .null else { throw FieldError(message: "missing field \(name)") }
        return try Self.amount(field, name: name)
    }

    func optionalAmount(_ name: String) throws(FieldError) -> Int64? {
        guard let field = self[name], field != .null else { return nil }
        return try Self.amount(field, name: name)
    }

    static func amount(_ field: JSONValue, name: String) throws(FieldError) -> Int64 {
        switch field {
        case .integer(let v): return v
        case .otherNumber: return 0
        default: throw FieldError(message: "\(name) must be a number, not \(field.typeName)")
        }
    }

    /// The `settlement` field: `<listing>:<n>`, split into the listing and the number.
    func settlement() throws(FieldError) -> (listing: String, number: Int64) {
        let text = try string("settlement")
        guard let parsed = SettlementID.parse(text) else {
            throw FieldError(
                message:
                    "settlement must be <listing>:<n>, a listing id and the sale's number from 1 without a leading zero, such as L1:1"
            )
        }
        return parsed
    }

    /// The `role` field: bidder, seller, service or admin.
    func role() throws(FieldError) -> ActorRole { try choice("role", ActorRole.self) }

    func optionalRole() throws(FieldError) -> ActorRole? {
        guard let field = self["role"], field != .null else { return nil }
        return try role()
    }

    func choice<T: RawRepresentable>(_ name: String, _: T.Type, default fallback: T? = nil) throws(FieldError) -> T
    where T.RawValue == String, T: CaseIterable {
        guard let field = self[name], field != .null else {
            if let fallback { return fallback }
            throw FieldError(message: "missing field \(name)")
        }
        let options = T.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
        guard case .string(let s) = field, let v = T(rawValue: s) else {
            throw FieldError(message: "\(name) must be one of \(options)")
        }
        return v
    }
}

/// Decodes client input lines into engine commands.
public enum CommandDecoder {
    /// The `bad_request` message for an identifier field `name` that breaks the rule.
    public static func identifierRule(_ name: String) -> String { FieldReader.identifierRule(name) }

    /// Decodes one line of text.
    public static func decode(line: String) -> DecodedInput {
        let value: JSONValue
        do {
            value = try JSONParser.parse(line)
        } catch {
            return .invalid(id: nil, message: error.description)
        }
        return decode(value)
    }

    /// The actor a command message names: the string in its type's actor field, else in the alias.
    public static func givenActor(_ value: JSONValue, kind: CommandKind) -> String? {
        if case .string(let s)? = value[kind.actorField] { return s }
        if let alias = kind.actorAlias, case .string(let s)? = value[alias] { return s }
        return nil
    }

    /// Decodes one parsed JSON value.
    ///
    /// - Parameters:
    ///   - actor: when given and the message names no actor (``givenActor(_:kind:)`` is `nil`), the value of the
    ///     type's actor field, as if the message held it: the actor a connection acts as.
    ///   - role: when given, the `role` the command is decoded with, whatever the message says: the role of the
    ///     connection's token (settlement and second-chance commands, and `cancel_listing` by an admin, carry it).
    public static func decode(_ value: JSONValue, actor: String? = nil, role: ActorRole? = nil) -> DecodedInput {
        guard case .object = value else {
            return .invalid(id: nil, message: "a command must be a JSON object, not \(value.typeName)")
        }
        var fields = FieldReader(value: value)
        fields.filledRole = role
        var id: String?
        if case .string(let s)? = value["id"] { id = s }
        do throws(FieldError) {
            let type = try fields.string("type")
            let kind = CommandKind(rawValue: type)
            if let actor, let kind, givenActor(value, kind: kind) == nil {
                fields.filled = (kind.actorField, actor)
            }
            let at = try fields.optionalInteger("at")
            if type == "advance" {
                guard let at else { throw FieldError(message: "advance needs at, the engine time to move to") }
                return .advance(at: at)
            }
            guard let requestID = id else {
                if let field = value["id"], field != .null {
                    throw FieldError(message: "id must be a string, not \(field.typeName)")
                }
                throw FieldError(message: "missing field id (a request id, unique per principal)")
            }
            _ = try FieldReader.identifier(requestID, name: "id")
            guard let kind else {
                _ = try fields.identifier("listing")
                throw FieldError(message: "unknown type \(Echo.quoted(type)); expected \(typeNames)")
            }
            return .command(try decodeCommand(kind, id: requestID, fields), at: at)
        } catch {
            return .invalid(id: id, message: error.message)
        }
    }

    /// The command of type `kind`. A settlement command reads its action's member first, then `settlement`, `by`
    /// and `role`; any other command reads `listing` first, then its body's members.
    static func decodeCommand(_ kind: CommandKind, id: String, _ f: FieldReader) throws(FieldError) -> Command {
        switch kind {
        case .confirmPayment:
            return try settle(.confirmPayment(paymentRef: try f.identifier("payment_ref")), id: id, f)
        case .markShipped:
            return try settle(.markShipped(tracking: try f.identifier("tracking")), id: id, f)
        case .confirmDelivery:
            return try settle(.confirmDelivery, id: id, f)
        case .openDispute:
            let reason = try f.string("reason")
            if let problem = DisputeReason.decodingProblem(reason) { throw FieldError(message: problem) }
            return try settle(.openDispute(reason: reason), id: id, f)
        case .resolveDispute:
            return try settle(.resolveDispute(try f.choice("outcome", DisputeOutcome.self)), id: id, f)
        case .refund:
            return try settle(.refund, id: id, f)
        default:
            let listing = try f.identifier("listing")
            return Command(id: id, listing: listing, body: try decodeBody(kind, f))
        }
    }

    /// A settlement command: `action` on the settlement named by `settlement`, by `by` acting as `role`.
    static func settle(_ action: SettlementAction, id: String, _ f: FieldReader) throws(FieldError) -> Command {
        let (listing, number) = try f.settlement()
        let body = CommandBody.settle(number: number, action: action, by: try f.identifier("by"), role: try f.role())
        return Command(id: id, listing: listing, body: body)
    }

    /// The body of a command that acts on a listing (every type but a settlement command's).
    static func decodeBody(_ kind: CommandKind, _ f: FieldReader) throws(FieldError) -> CommandBody {
        switch kind {
        case .open:
            return .open(seller: try f.identifier("seller"), terms: try decodeTerms(f))
        case .bid:
            return .bid(bidder: try f.identifier("bidder"), amount: try f.amount("amount"))
        case .buyNow:
            return .buyNow(buyer: try f.actor("buyer", or: "bidder"))
        case .accept:
            return .accept(
                bidder: try f.actor("bidder", or: "buyer"),
                quantity: try f.optionalAmount("quantity") ?? 1)
        case .order:
            return .order(
                trader: try f.identifier("trader"), side: try f.choice("side", Side.self), price: try f.amount("price"),
                quantity: try f.amount("quantity"), tif: try f.choice("tif", TimeInForce.self, default: .gtc),
                expiresAt: try f.optionalInteger("expires_at"))
        case .cancel:
            return .cancel(trader: try f.identifier("trader"), order: try f.identifier("order"))
        case .cancelListing:
            if try f.optionalRole() == .admin { return .cancelListingAsAdmin(admin: try f.actor("by", or: "seller")) }
            return .cancelListing(seller: try f.identifier("seller"))
        case .offerSecondChance, .acceptOffer, .declineOffer:
            return .secondChance(kind.offerAction ?? .offer, by: try f.identifier("by"), role: try f.role())
        case .confirmPayment, .markShipped, .confirmDelivery, .openDispute, .resolveDispute, .refund:
            // decodeCommand reads these before it comes here; refused rather than trusted, should that change.
            throw FieldError(message: "\(kind.rawValue) acts on a settlement: it takes settlement, not listing")
        }
    }

    /// Every command type the decoder reads, for the message about an unknown one.
    static let typeNames = CommandKind.wireNames + " or advance"

    static func decodeTerms(_ f: FieldReader) throws(FieldError) -> ListingTerms {
        var terms = try decodeFormatTerms(f)
        let deadlines = SettlementDeadlines(
            paymentDueMs: try f.optionalInteger("payment_due_ms"), shipDueMs: try f.optionalInteger("ship_due_ms"),
            complaintWindowMs: try f.optionalInteger("complaint_window_ms"),
            offerDueMs: try f.optionalInteger("offer_due_ms"))
        if let problem = deadlines.problem { throw FieldError(message: problem) }
        terms.deadlines = deadlines
        return terms
    }

    static func decodeFormatTerms(_ f: FieldReader) throws(FieldError) -> ListingTerms {
        switch try f.choice("format", ListingFormat.self) {
        case .english:
            var ladder: [IncrementStep]?
            if let field = f.value["increments"], field != .null {
                ladder = try decodeLadder(field)
            }
            var soft: SoftClose?
            if let field = f.value["soft_close"], field != .null {
                guard case .object = field else {
                    throw FieldError(message: "soft_close must be an object {window_ms, extend_ms, max_closes_at}")
                }
                let s = FieldReader(value: field)
                soft = SoftClose(
                    windowMs: try s.integer("window_ms"), extendMs: try s.integer("extend_ms"),
                    maxClosesAt: try s.optionalInteger("max_closes_at"))
            }
            return .english(
                .init(
                    start: try f.amount("start"), reserve: try f.optionalAmount("reserve"),
                    buyNow: try f.optionalAmount("buy_now"), closesAt: try f.integer("closes_at"),
                    opensAt: try f.optionalInteger("opens_at"), increments: ladder, softClose: soft))
        case .sealed:
            return .sealed(
                .init(
                    pricing: try f.choice("pricing", SealedPricing.self), start: try f.amount("start"),
                    reserve: try f.optionalAmount("reserve"), closesAt: try f.integer("closes_at"),
                    opensAt: try f.optionalInteger("opens_at")))
        case .dutch:
            return .dutch(
                .init(
                    start: try f.amount("start"), floor: try f.amount("floor"), step: try f.amount("step"),
                    stepEveryMs: try f.integer("step_every_ms"), quantity: try f.amount("quantity"),
                    closesAt: try f.integer("closes_at"), opensAt: try f.optionalInteger("opens_at")))
        case .market:
            return .market(
                .init(closesAt: try f.optionalInteger("closes_at"), opensAt: try f.optionalInteger("opens_at")))
        }
    }

    /// The most `[from, step]` pairs an `increments` ladder may have, so that every command's record is small.
    public static let maxLadderSteps = 64

    static func decodeLadder(_ field: JSONValue) throws(FieldError) -> [IncrementStep] {
        let shape = "increments must be an array of [from, step] pairs of integers"
        guard case .array(let pairs) = field else { throw FieldError(message: shape) }
        guard pairs.count <= maxLadderSteps else {
            throw FieldError(message: "increments may have at most \(maxLadderSteps) [from, step] pairs")
        }
        var ladder: [IncrementStep] = []
        for pair in pairs {
            guard case .array(let two) = pair, two.count == 2 else { throw FieldError(message: shape) }
            ladder.append(
                IncrementStep(
                    from: try FieldReader.integer(two[0], name: "increments from"),
                    step: try FieldReader.integer(two[1], name: "increments step")))
        }
        return ladder
    }
}
