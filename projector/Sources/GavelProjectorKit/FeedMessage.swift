import Foundation

/// One event of the feed: the event object of docs/PROTOCOL.md "Events" with its `lsn` and `last`.
///
/// Every field is optional: which ones an event carries depends on its `type`. Unknown fields are ignored.
public struct FeedEvent: Decodable, Sendable, Equatable {
    public var type: String
    public var listing: String?
    public var seq: Int64?
    public var at: Int64?
    public var lsn: Int64?
    public var last: Bool?
    // opened
    public var format: String?
    public var seller: String?
    public var start: Int64?
    public var opensAt: Int64?
    public var closesAt: Int64?
    public var hasReserve: Bool?
    public var buyNow: Int64?
    public var pricing: String?
    public var floor: Int64?
    public var step: Int64?
    public var quantity: Int64?
    // bids, closes, fills, trades
    public var price: Int64?
    public var leader: String?
    public var bids: Int64?
    public var reserveMet: Bool?
    public var bidder: String?
    public var winner: String?
    public var sold: Int64?
    public var remaining: Int64?
    public var buyer: String?
    public var buyOrder: String?
    public var sellOrder: String?
    // settlements
    public var settlement: String?
    public var state: String?
    public var dueAt: Int64?
    public var by: String?
    public var role: String?
    public var paymentRef: String?
    public var tracking: String?
    public var reason: String?
    public var outcome: String?

    enum CodingKeys: String, CodingKey {
        case type, listing, seq, at, lsn, last, format, seller, start
        case opensAt = "opens_at"
        case closesAt = "closes_at"
        case hasReserve = "has_reserve"
        case buyNow = "buy_now"
        case pricing, floor, step, quantity, price, leader, bids
        case reserveMet = "reserve_met"
        case bidder, winner, sold, remaining, buyer
        case buyOrder = "buy_order"
        case sellOrder = "sell_order"
        case settlement, state
        case dueAt = "due_at"
        case by, role
        case paymentRef = "payment_ref"
        case tracking, reason, outcome
    }

    /// An event of `type` with no other field set; tests fill in the rest.
    public init(type: String, listing: String? = nil, seq: Int64? = nil, at: Int64? = nil, lsn: Int64? = nil) {
        self.type = type
        self.listing = listing
        self.seq = seq
        self.at = at
        self.lsn = lsn
    }
}

/// A `feed_mark` of the server: the journal batch that ends at `lsn`, whose SHA-256 chain is `chain` (64 hex digits).
/// The projector keeps the one of its position and sends it back as `expect` when it resumes, so that the server
/// refuses it (`feed_history_diverged`) when its journal no longer holds that history.
public struct FeedMark: Sendable, Equatable {
    public var lsn: Int64
    public var chain: String

    public init(lsn: Int64, chain: String) {
        self.lsn = lsn
        self.chain = chain
    }

    /// Whether `chain` is 64 lowercase hex digits, as the server writes it.
    public static func isChain(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }
}

/// What one text frame from the server says, as far as the projector is concerned.
public enum FeedMessage: Sendable, Equatable {
    /// An event; `terms` is the `opened` event's terms as a JSON object (the event less type, listing, seq, at,
    /// lsn, last), nil for other events.
    case event(FeedEvent, terms: String?)
    /// Catch-up is over: every lsn up to this one has been sent.
    case live(lsn: Int64)
    /// The journal batch of the messages that follow.
    case mark(FeedMark)
    /// The server refused the subscription (or something else the projector asked).
    case refused(code: String, message: String, oldestLSN: Int64?)
    /// Anything else (`hello`, an ok result, unknown types): nothing to do.
    case other(type: String)

    /// Reads one text frame: with `FeedScanner` when the frame is in its subset of JSON (the server's frames are),
    /// else with `JSONDecoder`.
    /// - Throws: `FeedMessage.Error.malformed` when the frame is not a JSON object with a string `type`, or an
    ///   event lacks its `lsn`.
    public static func parse(_ bytes: some Collection<UInt8>) throws -> FeedMessage {
        let scanned = bytes.withContiguousStorageIfAvailable { FeedScanner.scan($0) } ?? nil
        let head: Head
        let event: FeedEvent
        if let (scannedEvent, envelope) = scanned {
            event = scannedEvent
            head = Head(
                type: event.type, lsn: event.lsn, ok: envelope.ok, error: envelope.error, code: envelope.code,
                message: envelope.message, oldestLSN: envelope.oldestLSN, chain: envelope.chain)
        } else {
            let both: Both
            do {
                both = try decoder.decode(Both.self, from: Data(bytes))
            } catch {
                throw Error.malformed("not a JSON object with a string type, or a field of the wrong type: \(error)")
            }
            head = both.head
            event = both.event
        }
        switch head.type {
        case "hello":
            return .other(type: head.type)
        case "feed_live":
            guard let lsn = head.lsn else { throw Error.malformed("feed_live without lsn") }
            return .live(lsn: lsn)
        case "feed_mark":
            guard let lsn = head.lsn, let chain = head.chain, FeedMark.isChain(chain) else {
                throw Error.malformed("feed_mark without lsn or a chain of 64 hex digits")
            }
            return .mark(FeedMark(lsn: lsn, chain: chain))
        case "result", "error":
            if head.ok == false || head.type == "error" {
                return .refused(
                    code: head.error ?? head.code ?? "unknown", message: head.message ?? "",
                    oldestLSN: head.oldestLSN)
            }
            return .other(type: head.type)
        default:
            guard head.lsn != nil else { return .other(type: head.type) }
            var terms: String?
            if event.type == "opened" {
                terms =
                    try bytes.withContiguousStorageIfAvailable { FeedScanner.terms($0, leaving: envelopeKeys) } ?? nil
                    ?? termsObject(Data(bytes))
            }
            return .event(event, terms: terms)
        }
    }

    /// The members of an `opened` event that are not its terms.
    static let envelopeKeys: Set<String> = ["type", "listing", "seq", "at", "lsn", "last", "format", "seller"]

    /// The `opened` event less its envelope fields, as compact JSON with sorted keys (through JSONSerialization:
    /// for what `FeedScanner.terms` does not read).
    static func termsObject(_ data: Data) throws -> String {
        guard var object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw Error.malformed("opened is not an object")
        }
        for key in envelopeKeys {
            object.removeValue(forKey: key)
        }
        let encoded = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return String(decoding: encoded, as: UTF8.self)
    }

    public enum Error: Swift.Error, CustomStringConvertible {
        case malformed(String)
        public var description: String {
            switch self {
            case .malformed(let why): "a feed message the projector cannot read: \(why)"
            }
        }
    }

    /// The frame read once, as an event and as a head.
    private struct Both: Decodable {
        var event: FeedEvent
        var head: Head
        init(from decoder: any Decoder) throws {
            event = try FeedEvent(from: decoder)
            head = try Head(from: decoder)
        }
    }

    private struct Head: Decodable {
        var type: String
        var lsn: Int64?
        var ok: Bool?
        var error: String?
        var code: String?
        var message: String?
        var oldestLSN: Int64?
        var chain: String?
        enum CodingKeys: String, CodingKey {
            case type, lsn, ok, error, code, message, chain
            case oldestLSN = "oldest_lsn"
        }
    }

    nonisolated(unsafe) private static let decoder = JSONDecoder()
}
