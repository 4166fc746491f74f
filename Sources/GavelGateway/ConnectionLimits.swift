import GavelEngine
import NIOHTTP1
import Synchronization

/// A token bucket in thousandths of a message, refilled continuously: integer arithmetic only.
struct TokenBucket {
    /// Messages added per `periodNanos`.
    let perPeriod: Int64
    let periodNanos: Int64
    let capacity: Int64
    private var milli: Int64
    private var last: UInt64

    /// A bucket refilled at `limit.perSecond` a second, holding at most `limit.burst`; it starts full.
    init(_ limit: RateLimit, now: UInt64) {
        self.init(perPeriod: limit.perSecond, periodNanos: 1_000_000_000, burst: limit.burst, now: now)
    }

    init(perPeriod: Int, periodNanos: Int64, burst: Int, now: UInt64) {
        self.perPeriod = Int64(max(1, perPeriod))
        self.periodNanos = max(1, periodNanos)
        capacity = Int64(max(1, burst)) * 1000
        milli = capacity
        last = now
    }

    /// Whether the bucket has refilled to its capacity by `now`.
    func isFull(now: UInt64) -> Bool {
        var copy = self
        copy.refill(now: now)
        return copy.milli >= copy.capacity
    }

    /// `now` may be earlier than the last refill: threads read the clock before they take the table's lock, so
    /// the later reader can refill first. That adds nothing and leaves `last` where it is (an unsigned difference
    /// would wrap and refill the whole bucket).
    private mutating func refill(now: UInt64) {
        guard now > last else { return }
        let elapsed = Int64(min(now - last, 1_000_000_000_000))
        last = now
        let (scaled, overflow) = elapsed.multipliedReportingOverflow(by: perPeriod * 1000)
        milli = overflow ? capacity : min(capacity, milli + scaled / periodNanos)
    }

    /// Takes one message's token; `false` when the bucket is empty.
    mutating func take(now: UInt64) -> Bool { take(upTo: 1, now: now) == 1 }

    /// Takes up to `count` tokens; returns how many it took (0 when the bucket is empty).
    mutating func take(upTo count: Int, now: UInt64) -> Int {
        refill(now: now)
        let taken = Int(min(Int64(max(0, count)), milli / 1000))
        milli -= Int64(taken) * 1000
        return taken
    }

    /// How long, in milliseconds, until the bucket holds one token again (0 when it holds one now).
    func millisUntilToken(now: UInt64) -> Int64 {
        var copy = self
        copy.refill(now: now)
        guard copy.milli < 1000 else { return 0 }
        let nanos = (1000 - copy.milli) * periodNanos / (perPeriod * 1000)
        return nanos / 1_000_000 + 1
    }
}

/// A byte budget refilled at `perSecond` bytes a second up to one second's worth. A request is let through while
/// the budget is positive and then charged what it wrote, so one answer may take it below zero: the next waits
/// until it is paid back.
struct ByteBudget {
    let perSecond: Int64
    private var balance: Int64
    private var last: UInt64

    init(perSecond: Int, now: UInt64) {
        self.perSecond = Int64(max(1, perSecond))
        balance = self.perSecond
        last = now
    }

    /// Whether a read may be answered now.
    mutating func allows(now: UInt64) -> Bool {
        if now > last {
            let elapsed = Int64(min(now - last, 1_000_000_000_000))
            last = now
            let (scaled, overflow) = elapsed.multipliedReportingOverflow(by: perSecond)
            balance = overflow ? perSecond : min(perSecond, balance + scaled / 1_000_000_000)
        }
        return balance > 0
    }

    /// Charges `bytes` written.
    mutating func charge(_ bytes: Int) { balance -= Int64(bytes) }

    /// Milliseconds until the budget is positive again.
    var millisUntilPositive: Int64 { balance > 0 ? 0 : (-balance + 1) * 1000 / perSecond + 1 }
}

/// Why an upgrade is refused: the HTTP status and a reason a person can act on (sent as the body and logged).
struct Refusal: Sendable, Equatable {
    var status: HTTPResponseStatus
    var reason: String
}

/// The limits that span connections: connections per user, per source address and anonymous ones, each
/// principal's command rate across all its connections, and the opens of each seller per minute.
///
/// One table shared by every event loop behind one mutex. A connection takes it at its upgrade and at its close,
/// once per lease of commands (``takeCommands(_:role:want:now:)``), and once per `open`. A principal's entry lives
/// while it has a connection and, after its last one goes, until its buckets have refilled (so reconnecting does
/// not refill them); then it is dropped, so the table holds only principals seen within the last minute or so.
final class ConnectionLimits: Sendable {
    struct Entry {
        var connections = 0
        var commands: TokenBucket
        var opens: TokenBucket
        /// The ticket of its latest place in ``State/idle`` (0: none yet); an older place is stale.
        var idleTicket: UInt64 = 0
    }

    /// A principal whose last connection went away, and the ticket that place was given.
    struct Idle {
        var name: String
        var ticket: UInt64
    }

    struct State {
        var principals: [String: Entry] = [:]
        var addresses: [String: Int] = [:]
        /// TCP connections not upgraded yet, per source address (``beginHandshake(address:)``).
        var handshakes: [String: Int] = [:]
        var anonymous = 0
        /// Principals whose last connection went away, oldest first, from `idleHead` on. A principal that came back
        /// and went again has a newer place; its older ones are skipped.
        var idle: [Idle] = []
        var idleHead = 0
        /// The last ticket given to a place in `idle`.
        var idleTickets: UInt64 = 0
    }

    /// The limits: the `maxConnectionsPer...`, `maxAnonymousConnections`, principal rates and `opensPerMinute`.
    let settings: GatewayConfiguration
    private let state = Mutex(State())
    /// What the connections falling behind have taken of ``GatewayConfiguration/maxOutboundBytesTotal``.
    private let outboundTaken = Atomic<Int>(0)

    init(_ settings: GatewayConfiguration) { self.settings = settings }

    /// Takes `bytes` of the outbound budget for a connection falling behind; `false` (nothing taken) when that
    /// would pass ``GatewayConfiguration/maxOutboundBytesTotal``.
    func takeOutbound(_ bytes: Int) -> Bool {
        let before = outboundTaken.wrappingAdd(bytes, ordering: .relaxed).oldValue
        guard before + bytes <= settings.maxOutboundBytesTotal else {
            outboundTaken.wrappingSubtract(bytes, ordering: .relaxed)
            return false
        }
        return true
    }

    /// Gives back what ``takeOutbound(_:)`` took.
    func giveBackOutbound(_ bytes: Int) { outboundTaken.wrappingSubtract(bytes, ordering: .relaxed) }

    /// The bytes of the outbound budget taken now.
    var outboundTakenBytes: Int { outboundTaken.load(ordering: .relaxed) }

    /// Commands a connection of `role` takes from its principal's bucket at a time: the table is touched once per
    /// lease, not once per command.
    func lease(for role: Role) -> Int { max(1, min(16, settings.principalRate(for: role).burst / 8)) }

    /// The principals with an entry (connected, or gone less than a refill ago), for tests and metrics.
    var principalCount: Int { state.withLock { $0.principals.count } }

    /// Everything the table holds: principals, addresses with a connection, anonymous connections and places in
    /// the idle queue. For tests that check that memory is returned.
    var tracked: (principals: Int, addresses: Int, anonymous: Int, idle: Int) {
        state.withLock { ($0.principals.count, $0.addresses.count, $0.anonymous, $0.idle.count - $0.idleHead) }
    }

    /// Source addresses with a TCP connection not upgraded yet. For tests that check that memory is returned.
    var handshakingAddresses: Int { state.withLock { $0.handshakes.count } }

    /// Counts a TCP connection from `address` as a handshake until ``endHandshake(address:)``; `false` (nothing
    /// counted) when that address already has `maxHandshakesPerAddress` connections not upgraded yet.
    func beginHandshake(address: String) -> Bool {
        let most = settings.maxHandshakesPerAddress
        return state.withLock { state in
            let held = state.handshakes[address, default: 0]
            guard held < most else { return false }
            state.handshakes[address] = held + 1
            return true
        }
    }

    /// Forgets a handshake ``beginHandshake(address:)`` counted (the connection was upgraded, or it closed).
    func endHandshake(address: String) {
        state.withLock { state in
            let left = state.handshakes[address, default: 1] - 1
            state.handshakes[address] = left > 0 ? left : nil
        }
    }

    /// Counts a connection of `principal` from `address`, or says why it may not open.
    func admit(_ principal: Principal, address: String?, now: UInt64) -> Refusal? {
        let s = settings
        return state.withLock { state -> Refusal? in
            state.dropRefilled(now: now)
            if let address, state.addresses[address, default: 0] >= s.maxConnectionsPerAddress {
                return Refusal(
                    status: .tooManyRequests,
                    reason:
                        "address \(address) holds \(s.maxConnectionsPerAddress) connections (--max-connections-per-address); close one first"
                )
            }
            if let name = principal.name {
                if principal.role != .service, let entry = state.principals[name],
                    entry.connections >= s.maxConnectionsPerUser
                {
                    return Refusal(
                        status: .tooManyRequests,
                        reason:
                            "user \(name) holds \(s.maxConnectionsPerUser) connections (--max-connections-per-user); close one first"
                    )
                }
                let rate = s.principalRate(for: principal.role)
                state.principals[
                    name,
                    default: Entry(
                        commands: TokenBucket(rate, now: now),
                        opens: TokenBucket(
                            perPeriod: s.opensPerMinute, periodNanos: 60_000_000_000, burst: s.opensPerMinute, now: now)
                    )
                ].connections += 1
            } else {
                if state.anonymous >= s.maxAnonymousConnections {
                    return Refusal(
                        status: .serviceUnavailable,
                        reason:
                            "\(s.maxAnonymousConnections) anonymous connections are open (--max-anonymous-connections); connect with a token or retry later"
                    )
                }
                state.anonymous += 1
            }
            if let address { state.addresses[address, default: 0] += 1 }
            return nil
        }
    }

    /// Forgets a connection ``admit(_:address:now:)`` counted.
    func release(_ principal: Principal, address: String?) {
        state.withLock { state in
            if let address {
                let left = state.addresses[address, default: 1] - 1
                state.addresses[address] = left > 0 ? left : nil
            }
            guard let name = principal.name else {
                state.anonymous -= 1
                return
            }
            guard var entry = state.principals[name] else { return }
            entry.connections -= 1
            if entry.connections == 0 {
                state.idleTickets += 1
                entry.idleTicket = state.idleTickets
                state.idle.append(Idle(name: name, ticket: entry.idleTicket))
            }
            state.principals[name] = entry
        }
    }

    /// Takes up to `want` command tokens from `name`'s bucket; 0 when it is empty.
    func takeCommands(_ name: String, want: Int, now: UInt64) -> Int {
        state.withLock { state in state.principals[name]?.commands.take(upTo: want, now: now) ?? want }
    }

    /// Takes an `open` from `name`'s allowance; `nil` when it may open, else the milliseconds until it may.
    func takeOpen(_ name: String, now: UInt64) -> Int64? {
        state.withLock { state -> Int64? in
            guard var entry = state.principals[name] else { return nil }
            defer { state.principals[name] = entry }
            return entry.opens.take(now: now) ? nil : entry.opens.millisUntilToken(now: now)
        }
    }

    /// The milliseconds until `name` has a command token again.
    func millisUntilCommand(_ name: String, now: UInt64) -> Int64 {
        state.withLock { $0.principals[name]?.commands.millisUntilToken(now: now) ?? 0 }
    }
}

extension ConnectionLimits.State {
    /// Drops principals without connections whose buckets have refilled, oldest first; stops at the first that
    /// has not, so each call costs O(1) amortised. A place left stale by a principal that came back is skipped:
    /// one that keeps coming back and spending its allowance must not hold every principal behind it (they would
    /// never be dropped).
    mutating func dropRefilled(now: UInt64) {
        while idleHead < idle.count {
            let place = idle[idleHead]
            if let entry = principals[place.name], entry.connections == 0, entry.idleTicket == place.ticket {
                guard entry.commands.isFull(now: now) && entry.opens.isFull(now: now) else { break }
                principals[place.name] = nil
            }
            idleHead += 1
        }
        if idleHead > 64 && idleHead * 2 > idle.count {
            idle.removeFirst(idleHead)
            idleHead = 0
        }
    }
}
