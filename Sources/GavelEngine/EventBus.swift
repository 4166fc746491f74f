import GavelCore
import Synchronization

/// Identifies a subscription so that it can be cancelled.
public struct SubscriptionToken: Hashable, Sendable {
    let value: UInt64
}

/// Receives a released event. Called on the thread that releases batches; it must not block.
public typealias EventHandler = @Sendable (Event) -> Void

/// Fans released events out to subscribers: public events to the listing's subscribers, private notices (`outbid`,
/// `settlement` and `second_chance`, and `trade` for its buyer and seller) to the users they concern.
///
/// Subscribing and cancelling take a lock; publishing takes it once per batch to read a snapshot of the
/// subscriptions and then delivers without it, so a handler may subscribe or cancel.
public final class EventBus: Sendable {
    struct Subscriptions {
        var byListing: [String: [(SubscriptionToken, EventHandler)]] = [:]
        var byUser: [String: [(SubscriptionToken, EventHandler)]] = [:]
        var all: [(SubscriptionToken, EventHandler)] = []
        var keys: [SubscriptionToken: Key] = [:]
        var next: UInt64 = 1
    }

    enum Key {
        case listing(String)
        case user(String)
        case all
    }

    private let state = Mutex(Subscriptions())

    public init() {}

    /// Delivers every public event of `listing` to `handler` from now on.
    public func subscribe(listing: String, handler: @escaping EventHandler) -> SubscriptionToken {
        state.withLock { s in
            let token = SubscriptionToken(value: s.next)
            s.next += 1
            s.byListing[listing, default: []].append((token, handler))
            s.keys[token] = .listing(listing)
            return token
        }
    }

    /// Delivers every private notice for `user` (and the trades they are party to) to `handler` from now on.
    public func subscribeNotices(user: String, handler: @escaping EventHandler) -> SubscriptionToken {
        state.withLock { s in
            let token = SubscriptionToken(value: s.next)
            s.next += 1
            s.byUser[user, default: []].append((token, handler))
            s.keys[token] = .user(user)
            return token
        }
    }

    /// Delivers every event, public and private, to `handler` (for journaling tools, metrics and tests).
    public func subscribeAll(handler: @escaping EventHandler) -> SubscriptionToken {
        state.withLock { s in
            let token = SubscriptionToken(value: s.next)
            s.next += 1
            s.all.append((token, handler))
            s.keys[token] = .all
            return token
        }
    }

    /// Ends a subscription. Events already being delivered may still arrive.
    public func cancel(_ token: SubscriptionToken) {
        state.withLock { s in
            switch s.keys.removeValue(forKey: token) {
            case .listing(let listing):
                s.byListing[listing]?.removeAll { $0.0 == token }
                if s.byListing[listing]?.isEmpty == true { s.byListing[listing] = nil }
            case .user(let user):
                s.byUser[user]?.removeAll { $0.0 == token }
                if s.byUser[user]?.isEmpty == true { s.byUser[user] = nil }
            case .all:
                s.all.removeAll { $0.0 == token }
            case nil:
                break
            }
        }
    }

    /// The number of live subscriptions.
    public var count: Int { state.withLock { $0.keys.count } }

    func snapshot() -> Subscriptions { state.withLock { $0 } }

    static func deliver(_ event: Event, using s: Subscriptions) {
        for (_, handler) in s.all { handler(event) }
        switch event.kind {
        case .outbid(let bidder, _):
            if let handlers = s.byUser[bidder] { for (_, h) in handlers { h(event) } }
            return
        case .settlement(let change):
            if let handlers = s.byUser[change.buyer] { for (_, h) in handlers { h(event) } }
            if change.seller != change.buyer, let handlers = s.byUser[change.seller] {
                for (_, h) in handlers { h(event) }
            }
            return
        case .secondChance(let offer):
            if let handlers = s.byUser[offer.bidder] { for (_, h) in handlers { h(event) } }
            if offer.seller != offer.bidder, let handlers = s.byUser[offer.seller] {
                for (_, h) in handlers { h(event) }
            }
            return
        case .trade(let buyer, let seller, _, _, _, _):
            if let handlers = s.byUser[buyer] { for (_, h) in handlers { h(event) } }
            if seller != buyer, let handlers = s.byUser[seller] { for (_, h) in handlers { h(event) } }
        default:
            break
        }
        if let handlers = s.byListing[event.listing] { for (_, h) in handlers { h(event) } }
    }
}
