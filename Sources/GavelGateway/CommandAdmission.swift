import GavelCore
import GavelWire

/// What a connection does with a command message: submit the command, or answer with a rejection.
enum CommandVerdict: Equatable {
    case submit(Command)
    case reject(id: String?, CommandResult)
}

/// The rules a connection applies to a command message before it is submitted: what its role may do, whose name
/// it acts in (`on_behalf_of` for a service, its own name for anyone else), and the decoding of the command.
///
/// A message reaches it either as a parsed JSON value (the generic path) or as a ``FastCommand`` read straight from
/// the bytes (the fast path, for a well-formed `bid` or `order`); both give the same ``CommandVerdict`` for the same
/// message, and every rejection is written by the same code.
struct CommandAdmission {
    let principal: Principal

    /// The generic path: `value` is a JSON object whose `type` is `kind`'s, `id` its id when it is a string.
    func admit(_ value: JSONValue, kind: CommandKind, id: String?) -> CommandVerdict {
        if let rejected = roleRejection(kind, id: id) { return rejected }
        if kind.isSettlement { return admitSettlement(value, kind: kind, id: id) }
        var onBehalfOf: String?
        if let field = value["on_behalf_of"], field != .null {
            guard case .string(let s) = field, Identifier.isValid(s) else {
                return .reject(id: id, .rejected(.badRequest, CommandDecoder.identifierRule("on_behalf_of")))
            }
            onBehalfOf = s
        }
        let actorField = kind.actorField
        let given = CommandDecoder.givenActor(value, kind: kind)
        let acting: String?
        switch actingName(given: given, onBehalfOf: onBehalfOf, actorField: actorField, id: id) {
        case .success(let name): acting = name
        case .failure(let rejection): return rejection.admission
        }
        return decoded(value, actor: acting, id: id, actorField: actorField)
    }

    /// A settlement or second-chance command: `by` is the connection's user, a service included (it acts as
    /// itself here, never on behalf of another user), and `role` its token's.
    private func admitSettlement(_ value: JSONValue, kind: CommandKind, id: String?) -> CommandVerdict {
        let name = principal.name ?? ""
        if let field = value["on_behalf_of"], field != .null {
            return .reject(
                id: id,
                .rejected(
                    .badRequest,
                    "on_behalf_of is not accepted for \(kind.wireName): a settlement command acts as the connection's own user (\(name))"
                ))
        }
        if case .string(let by)? = value["by"], by != name {
            return .reject(
                id: id,
                .rejected(.notAuthorized, "this connection acts as \(name); by \(by) is somebody else"))
        }
        return decoded(value, actor: name, id: id, actorField: "by")
    }

    static let atNotAccepted = CommandResult.rejected(
        .badRequest, "at is not accepted here: the server stamps each command with its own clock")

    /// The role commands carry, from the token's.
    private var actorRole: ActorRole? {
        switch principal.role {
        case .bidder: .bidder
        case .seller: .seller
        case .service: .service
        case .admin: .admin
        case .watcher: nil
        }
    }

    /// Decodes the message acting as `actor` in the token's role (never a role the message claims), and answers
    /// the decoder's refusals.
    private func decoded(_ value: JSONValue, actor acting: String?, id: String?, actorField: String) -> CommandVerdict {
        // Whatever its value: a client is told not to send it, not how to write it.
        if value["at"] != nil, case .string(let type)? = value["type"], type != "advance" {
            return .reject(id: id, Self.atNotAccepted)
        }
        switch CommandDecoder.decode(value, actor: acting, role: actorRole) {
        case .invalid(let invalidID, let message):
            return .reject(id: invalidID ?? id, .rejected(.badRequest, message))
        case .advance:
            return .reject(id: id, .rejected(.badRequest, "advance is not a gateway command"))
        case .command(let decoded, let at):
            guard at == nil else { return .reject(id: decoded.id, Self.atNotAccepted) }
            return checked(decoded, actorField: actorField)
        }
    }

    /// Whether `frame` may take the fast path: it may unless the command would need an actor filled in that the
    /// decoder would refuse or not have (those messages get the decoder's own error on the generic path).
    func takesFastPath(_ frame: FastCommand) -> Bool {
        if frame.actor != nil { return true }
        if principal.role == .service { return frame.onBehalfOf != nil }
        return Identifier.isValid(principal.name ?? "")
    }

    /// The fast path, for a frame that ``takesFastPath(_:)``.
    func admit(_ frame: FastCommand) -> CommandVerdict {
        let kind = frame.commandKind
        if let rejected = roleRejection(kind, id: frame.id) { return rejected }
        let actorField = kind.actorField
        switch actingName(given: frame.actor, onBehalfOf: frame.onBehalfOf, actorField: actorField, id: frame.id) {
        case .success(let acting):
            // `takesFastPath` made sure that an actor is there.
            return checked(frame.command(actor: frame.actor ?? acting ?? ""), actorField: actorField)
        case .failure(let rejection):
            return rejection.admission
        }
    }

    private struct Rejection: Error {
        var admission: CommandVerdict
    }

    /// What the role may not send at all (``CommandKind/mayBeSent(by:)``).
    private func roleRejection(_ kind: CommandKind, id: String?) -> CommandVerdict? {
        switch principal.role {
        case .watcher:
            .reject(
                id: id,
                .rejected(
                    .notAuthorized,
                    "this connection is read-only (watcher); connect with a bidder, seller or service token to send commands"
                ))
        case .bidder where !kind.mayBeSent(by: .bidder):
            .reject(id: id, .rejected(.notAuthorized, "a bidder token may not \(kind.wireName); use a seller token"))
        case .admin where !kind.mayBeSent(by: .admin):
            .reject(
                id: id,
                .rejected(
                    .notAuthorized,
                    "an admin token may not \(kind.wireName): admin resolves disputes, refunds and cancels listings; use a bidder, seller or service token to trade"
                ))
        default:
            nil
        }
    }

    /// The name the command acts in when the message names no actor: `on_behalf_of` (or the named actor) for a
    /// service, the connection's own name for anyone else.
    private func actingName(given: String?, onBehalfOf: String?, actorField: String, id: String?) -> Result<
        String?, Rejection
    > {
        if principal.role == .service {
            if let onBehalfOf, let given, given != onBehalfOf {
                return .failure(
                    Rejection(
                        admission: .reject(
                            id: id,
                            .rejected(.badRequest, "on_behalf_of \(onBehalfOf) and \(actorField) \(given) disagree"))))
            }
            return .success(onBehalfOf ?? given)
        }
        let name = principal.name ?? ""
        if let onBehalfOf, onBehalfOf != name {
            return .failure(
                Rejection(
                    admission: .reject(
                        id: id, .rejected(.notAuthorized, "only a service token may act on behalf of another user"))))
        }
        return .success(name)
    }

    /// The decoded command, unless a connection that is not a service names somebody else as its actor.
    private func checked(_ command: Command, actorField: String) -> CommandVerdict {
        if principal.role != .service, command.principal != principal.name {
            return .reject(
                id: command.id,
                .rejected(
                    .notAuthorized,
                    "this connection acts as \(principal.name ?? "nobody"); \(actorField) \(command.principal) is somebody else"
                ))
        }
        return .submit(command)
    }
}
