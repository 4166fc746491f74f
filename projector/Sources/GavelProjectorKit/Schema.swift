/// The read model's tables, as numbered migrations: each runs once, in order, in the transaction that records it in
/// `schema_migrations`. A migration already recorded is never run again, so a released one is never edited: a
/// change is a new migration.
///
/// Times (`at`, `opens_at`, `closes_at`, `due_at`, ...) are the engine's integer milliseconds, as in the feed;
/// money and quantities are integer minor units, as in the feed.
public enum Schema {
    public struct Migration: Sendable {
        public var version: Int32
        public var name: String
        public var statements: [String]
    }

    /// The newest version; a database at a higher one was written by a newer projector and is refused.
    public static var latest: Int32 { migrations.last?.version ?? 0 }

    public static let migrations: [Migration] = [
        Migration(
            version: 1, name: "the read model: listings, bids, trades, settlements, their transitions, the position",
            statements: [
                """
                CREATE TABLE listings (
                    id text PRIMARY KEY,
                    format text NOT NULL,
                    seller text NOT NULL,
                    status text NOT NULL CHECK (status IN ('open', 'closed', 'cancelled')),
                    opens_at bigint,
                    closes_at bigint,
                    start_price bigint,
                    buy_now bigint,
                    pricing text,
                    has_reserve boolean,
                    quantity bigint,
                    terms jsonb NOT NULL,
                    price bigint,
                    leader text,
                    bids bigint NOT NULL DEFAULT 0,
                    final_price bigint,
                    winner text,
                    reserve_met boolean,
                    sold bigint,
                    opened_at bigint NOT NULL,
                    closed_at bigint,
                    opened_lsn bigint NOT NULL,
                    updated_lsn bigint NOT NULL
                )
                """,
                "CREATE INDEX listings_seller ON listings (seller)",
                "CREATE INDEX listings_status_closes_at ON listings (status, closes_at)",
                """
                CREATE TABLE bids (
                    listing text NOT NULL,
                    seq bigint NOT NULL,
                    lsn bigint NOT NULL,
                    at bigint NOT NULL,
                    leader text,
                    price bigint,
                    bids bigint NOT NULL,
                    reserve_met boolean,
                    PRIMARY KEY (listing, seq)
                )
                """,
                "CREATE INDEX bids_leader ON bids (leader)",
                """
                CREATE TABLE trades (
                    listing text NOT NULL,
                    seq bigint NOT NULL,
                    lsn bigint NOT NULL,
                    at bigint NOT NULL,
                    kind text NOT NULL CHECK (kind IN ('trade', 'fill')),
                    buyer text NOT NULL,
                    seller text,
                    price bigint NOT NULL,
                    quantity bigint NOT NULL,
                    buy_order text,
                    sell_order text,
                    remaining bigint,
                    PRIMARY KEY (listing, seq)
                )
                """,
                "CREATE INDEX trades_buyer ON trades (buyer)",
                "CREATE INDEX trades_seller ON trades (seller)",
                """
                CREATE TABLE settlements (
                    id text PRIMARY KEY,
                    listing text NOT NULL,
                    buyer text NOT NULL,
                    seller text NOT NULL,
                    price bigint NOT NULL,
                    quantity bigint NOT NULL,
                    state text NOT NULL,
                    due_at bigint,
                    payment_ref text,
                    tracking text,
                    created_at bigint NOT NULL,
                    updated_at bigint NOT NULL,
                    created_lsn bigint NOT NULL,
                    updated_lsn bigint NOT NULL
                )
                """,
                "CREATE INDEX settlements_buyer ON settlements (buyer)",
                "CREATE INDEX settlements_seller ON settlements (seller)",
                "CREATE INDEX settlements_state_due_at ON settlements (state, due_at)",
                """
                CREATE TABLE settlement_transitions (
                    settlement text NOT NULL,
                    lsn bigint NOT NULL,
                    idx integer NOT NULL,
                    listing text NOT NULL,
                    state text NOT NULL,
                    at bigint NOT NULL,
                    due_at bigint,
                    by text,
                    role text,
                    payment_ref text,
                    tracking text,
                    reason text,
                    outcome text,
                    PRIMARY KEY (settlement, lsn, idx)
                )
                """,
                """
                CREATE TABLE feed_position (
                    id boolean PRIMARY KEY DEFAULT true CHECK (id),
                    lsn bigint NOT NULL CHECK (lsn >= 0),
                    updated_at timestamptz NOT NULL DEFAULT now()
                )
                """,
                "INSERT INTO feed_position (lsn) VALUES (0)",
            ]),
        Migration(
            version: 2, name: "listings leave half of each page free, so that a bid's update stays in its page",
            statements: [
                // A listing's row changes at nearly every bid. With room in its page, PostgreSQL updates it in place
                // (a heap-only tuple: no new index entries, old versions pruned as the page is read) instead of
                // writing a new row version and three index entries; the batch's UPDATE runs several times faster.
                // Applies to pages written from now on.
                "ALTER TABLE listings SET (fillfactor = 50)"
            ]),
        Migration(
            version: 3, name: "settlements and their transitions indexed by listing",
            statements: [
                // A listing's settlements, for support queries and for renaming the rows of a listing whose id is
                // opened again (Batch.Reopening), which would otherwise read both tables whole.
                "CREATE INDEX settlements_listing ON settlements (listing)",
                "CREATE INDEX settlement_transitions_listing ON settlement_transitions (listing)",
            ]),
        Migration(
            version: 4, name: "the position keeps the server's feed_mark of its journal batch",
            statements: [
                // The journal batch that holds the position (its last lsn and SHA-256 chain, from the server's
                // feed_mark), sent back as expect on resuming: a server whose journal no longer holds that history
                // refuses the feed instead of sending another on top. Null until the first batch after this.
                """
                ALTER TABLE feed_position
                    ADD COLUMN mark_lsn bigint,
                    ADD COLUMN mark_chain text,
                    ADD CONSTRAINT feed_position_mark CHECK (
                        (mark_lsn IS NULL AND mark_chain IS NULL)
                        OR (mark_lsn >= lsn AND mark_chain ~ '^[0-9a-f]{64}$'))
                """
            ]),
    ]
}
