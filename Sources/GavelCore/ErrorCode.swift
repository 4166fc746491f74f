/// The error codes a command can be rejected with. Their raw values are the protocol's codes.
public enum ErrorCode: String, Sendable, Hashable, CaseIterable {
    /// Malformed JSON, unknown `type`, missing or mistyped fields, inconsistent times.
    case badRequest = "bad_request"
    case unknownListing = "unknown_listing"
    case listingExists = "listing_exists"
    /// The listing exists but has not reached its `opens_at`.
    case notOpen = "not_open"
    /// The listing has closed or was cancelled.
    case listingClosed = "listing_closed"
    /// An amount or price that is not a positive integer up to 10^15.
    case invalidAmount = "invalid_amount"
    /// A quantity that is not a positive integer up to 10^15, or more than remains.
    case invalidQuantity = "invalid_quantity"
    /// A command that the listing's format does not take.
    case unsupported
    /// The bid is below the minimum; the result carries `min_bid`.
    case bidTooLow = "bid_too_low"
    case sellerCannotBid = "seller_cannot_bid"
    case buyNowUnavailable = "buy_now_unavailable"
    /// The command acts on something that belongs to somebody else.
    case notOwner = "not_owner"
    /// The listing can no longer be cancelled: it has bids or fills.
    case listingHasBids = "listing_has_bids"
    case unknownOrder = "unknown_order"
    /// A request id was reused with different content.
    case idempotencyConflict = "idempotency_conflict"
    /// The engine's queue for the listing is full; retry later.
    case overloaded
    /// The connection's principal may not act as the command's actor.
    case notAuthorized = "not_authorized"
    /// The connection sends commands faster than its limit.
    case rateLimited = "rate_limited"
    /// The connection already holds as many subscriptions as it may.
    case tooManySubscriptions = "too_many_subscriptions"
    /// The command would take a total the engine keeps past what it can hold (a market price level's resting
    /// quantity, the resting orders of a market listing or of one trader on it); the message names the limit and
    /// its setting or what still fits.
    case limitExceeded = "limit_exceeded"
    /// The settlement or second-chance offer is not in a state the command may move it from; the message names the
    /// current state and what is allowed from it.
    case invalidTransition = "invalid_transition"
    /// No settlement with that id: the listing is unknown or has no sale with that number.
    case unknownSettlement = "unknown_settlement"
    /// Gateway only: a `subscribe_feed` whose `since_lsn` is older than the journal and snapshots still retained.
    case feedLSNNotRetained = "feed_lsn_not_retained"
    /// Gateway only: a `subscribe_feed` whose consumer handled a history this server's journal does not hold (its
    /// `since_lsn` is past the journal's end, or its `expect` is not the journal batch there).
    case feedHistoryDiverged = "feed_history_diverged"
}
