import NIOCore
import PostgresNIO

/// How a batch is written: one `COPY ... FROM STDIN` per table the batch touches (text format),
/// straight into the table for rows that are only inserted (new listings, bids, transitions), or into a temporary
/// staging table for rows that update or look up existing ones (changed listings, trades, settlements), which one
/// statement per table then moves into place. No per-row statement, no per-batch statement text: the statements
/// are the same for every batch.
enum SQL {
    /// One table's part of a batch: the COPY's target and columns, and the statement that moves staged rows into
    /// place (nil when the COPY writes the table itself).
    struct Copy {
        var table: String
        var columns: [String]
        var rows: Int
        var then: String?
        var write: (inout CopyText) -> Void
    }

    /// The temporary staging tables, made once per connection; emptied at every commit.
    static let stagingTables = [
        """
        CREATE TEMPORARY TABLE IF NOT EXISTS listing_changes (id text, status text, closes_at bigint, price bigint,
            leader text, bids bigint, final_price bigint, winner text, reserve_met boolean, sold bigint,
            closed_at bigint, updated_lsn bigint) ON COMMIT DELETE ROWS
        """,
        """
        CREATE TEMPORARY TABLE IF NOT EXISTS trade_rows (listing text, seq bigint, lsn bigint, at bigint, kind text,
            buyer text, seller text, price bigint, quantity bigint, buy_order text, sell_order text, remaining bigint)
            ON COMMIT DELETE ROWS
        """,
        """
        CREATE TEMPORARY TABLE IF NOT EXISTS settlement_rows (id text, listing text, buyer text, seller text,
            price bigint, quantity bigint, state text, due_at bigint, payment_ref text, tracking text,
            created_at bigint, updated_at bigint, created_lsn bigint, updated_lsn bigint) ON COMMIT DELETE ROWS
        """,
    ]

    /// The statements that rename the rows of the listing that held id `listing` before the entry at `lsn` opened
    /// it again: its row, bids, trades, settlements and their transitions, to ``Batch/archivedID(_:lsn:)`` (settlement
    /// `L1:1` becomes `L1@5012:1`, as ``Batch/archivedSettlement(_:listing:lsn:)`` renames it in memory). The
    /// listing's own row goes last, so that the others can still be found by the old id.
    static func archive(listing id: String, lsn: Int64) -> [PostgresQuery] {
        let archived = Batch.archivedID(id, lsn: lsn)
        let suffix = "@\(lsn)"
        let prefix = id + ":"
        return [
            "UPDATE bids SET listing = \(archived) WHERE listing = \(id)",
            "UPDATE trades SET listing = \(archived) WHERE listing = \(id)",
            """
            UPDATE settlement_transitions SET listing = \(archived),
                settlement = CASE WHEN starts_with(settlement, \(prefix))
                    THEN \(archived) || substr(settlement, \(Int32(id.utf8.count + 1))) ELSE settlement || \(suffix) END
            WHERE listing = \(id)
            """,
            """
            UPDATE settlements SET listing = \(archived),
                id = CASE WHEN starts_with(id, \(prefix))
                    THEN \(archived) || substr(id, \(Int32(id.utf8.count + 1))) ELSE id || \(suffix) END
            WHERE listing = \(id)
            """,
            "UPDATE listings SET id = \(archived) WHERE id = \(id)",
        ]
    }

    /// The copies that write `batch`, in the order they must run: listings first, since a fill's seller is read
    /// from its listing, which may open in the same batch.
    static func copies(for batch: Batch) -> [Copy] {
        let newListings = batch.listings.filter { $0.opened != nil }
        let changedListings = batch.listings.filter { $0.opened == nil }
        let all: [Copy] = [
            Copy(
                table: "listings",
                columns: [
                    "id", "format", "seller", "status", "opens_at", "closes_at", "start_price", "buy_now", "pricing",
                    "has_reserve", "quantity", "terms", "price", "leader", "bids", "final_price", "winner",
                    "reserve_met", "sold", "opened_at", "closed_at", "opened_lsn", "updated_lsn",
                ], rows: newListings.count, then: nil
            ) { out in
                for listing in newListings {
                    guard let opened = listing.opened else { continue }
                    out.field(listing.id)
                    out.field(opened.format)
                    out.field(opened.seller)
                    out.field(listing.status ?? "open")
                    out.field(opened.opensAt)
                    out.field(listing.closesAt)
                    out.field(opened.start)
                    out.field(opened.buyNow)
                    out.field(opened.pricing)
                    out.field(opened.hasReserve)
                    out.field(opened.quantity)
                    out.field(opened.terms)
                    out.field(listing.price)
                    out.field(listing.leader)
                    out.field(listing.bids ?? 0)
                    out.field(listing.finalPrice)
                    out.field(listing.winner)
                    out.field(listing.reserveMet)
                    out.field(listing.sold)
                    out.field(opened.openedAt)
                    out.field(listing.closedAt)
                    out.field(opened.openedLSN)
                    out.field(listing.updatedLSN)
                    out.endRow()
                }
            },
            Copy(
                table: "listing_changes",
                columns: [
                    "id", "status", "closes_at", "price", "leader", "bids", "final_price", "winner", "reserve_met",
                    "sold", "closed_at", "updated_lsn",
                ], rows: changedListings.count, then: updateListings
            ) { out in
                for listing in changedListings {
                    out.field(listing.id)
                    out.field(listing.status)
                    out.field(listing.closesAt)
                    out.field(listing.price)
                    out.field(listing.leader)
                    out.field(listing.bids)
                    out.field(listing.finalPrice)
                    out.field(listing.winner)
                    out.field(listing.reserveMet)
                    out.field(listing.sold)
                    out.field(listing.closedAt)
                    out.field(listing.updatedLSN)
                    out.endRow()
                }
            },
            Copy(
                table: "bids", columns: ["listing", "seq", "lsn", "at", "leader", "price", "bids", "reserve_met"],
                rows: batch.bids.count, then: nil
            ) { out in
                for bid in batch.bids {
                    out.field(bid.listing)
                    out.field(bid.seq)
                    out.field(bid.lsn)
                    out.field(bid.at)
                    out.field(bid.leader)
                    out.field(bid.price)
                    out.field(bid.bids)
                    out.field(bid.reserveMet)
                    out.endRow()
                }
            },
            Copy(
                table: "trade_rows",
                columns: [
                    "listing", "seq", "lsn", "at", "kind", "buyer", "seller", "price", "quantity", "buy_order",
                    "sell_order", "remaining",
                ], rows: batch.trades.count, then: insertTrades
            ) { out in
                for trade in batch.trades {
                    out.field(trade.listing)
                    out.field(trade.seq)
                    out.field(trade.lsn)
                    out.field(trade.at)
                    out.field(trade.kind)
                    out.field(trade.buyer)
                    out.field(trade.seller)
                    out.field(trade.price)
                    out.field(trade.quantity)
                    out.field(trade.buyOrder)
                    out.field(trade.sellOrder)
                    out.field(trade.remaining)
                    out.endRow()
                }
            },
            Copy(
                table: "settlement_rows",
                columns: [
                    "id", "listing", "buyer", "seller", "price", "quantity", "state", "due_at", "payment_ref",
                    "tracking", "created_at", "updated_at", "created_lsn", "updated_lsn",
                ], rows: batch.settlements.count, then: upsertSettlements
            ) { out in
                for s in batch.settlements {
                    out.field(s.id)
                    out.field(s.listing)
                    out.field(s.buyer)
                    out.field(s.seller)
                    out.field(s.price)
                    out.field(s.quantity)
                    out.field(s.state)
                    out.field(s.dueAt)
                    out.field(s.paymentRef)
                    out.field(s.tracking)
                    out.field(s.createdAt)
                    out.field(s.updatedAt)
                    out.field(s.createdLSN)
                    out.field(s.updatedLSN)
                    out.endRow()
                }
            },
            Copy(
                table: "settlement_transitions",
                columns: [
                    "settlement", "lsn", "idx", "listing", "state", "at", "due_at", "by", "role", "payment_ref",
                    "tracking", "reason", "outcome",
                ], rows: batch.transitions.count, then: nil
            ) { out in
                for t in batch.transitions {
                    out.field(t.settlement)
                    out.field(t.lsn)
                    out.field(Int64(t.index))
                    out.field(t.listing)
                    out.field(t.state)
                    out.field(t.at)
                    out.field(t.dueAt)
                    out.field(t.by)
                    out.field(t.role)
                    out.field(t.paymentRef)
                    out.field(t.tracking)
                    out.field(t.reason)
                    out.field(t.outcome)
                    out.endRow()
                }
            },
        ]
        return all.filter { $0.rows > 0 }
    }

    /// Every listing changed in the batch, once: a nil column keeps its value.
    static let updateListings: String = """
        UPDATE listings AS l SET status = COALESCE(v.status, l.status), closes_at = COALESCE(v.closes_at, l.closes_at),
            price = COALESCE(v.price, l.price), leader = COALESCE(v.leader, l.leader), bids = COALESCE(v.bids, l.bids),
            final_price = COALESCE(v.final_price, l.final_price), winner = COALESCE(v.winner, l.winner),
            reserve_met = COALESCE(v.reserve_met, l.reserve_met), sold = COALESCE(v.sold, l.sold),
            closed_at = COALESCE(v.closed_at, l.closed_at), updated_lsn = v.updated_lsn
        FROM listing_changes AS v WHERE l.id = v.id
        """

    /// Trades and fills; a fill's seller is its listing's seller.
    static let insertTrades: String = """
        INSERT INTO trades (listing, seq, lsn, at, kind, buyer, seller, price, quantity, buy_order, sell_order,
            remaining)
        SELECT v.listing, v.seq, v.lsn, v.at, v.kind, v.buyer, COALESCE(v.seller, l.seller), v.price, v.quantity,
            v.buy_order, v.sell_order, v.remaining
        FROM trade_rows AS v LEFT JOIN listings AS l ON l.id = v.listing
        """

    static let upsertSettlements: String = """
        INSERT INTO settlements (id, listing, buyer, seller, price, quantity, state, due_at, payment_ref, tracking,
            created_at, updated_at, created_lsn, updated_lsn)
        SELECT id, listing, buyer, seller, price, quantity, state, due_at, payment_ref, tracking, created_at,
            updated_at, created_lsn, updated_lsn FROM settlement_rows
        ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, due_at = EXCLUDED.due_at,
            payment_ref = COALESCE(EXCLUDED.payment_ref, settlements.payment_ref),
            tracking = COALESCE(EXCLUDED.tracking, settlements.tracking), updated_at = EXCLUDED.updated_at,
            updated_lsn = EXCLUDED.updated_lsn
        """
}

/// Rows in the text format of `COPY ... FROM STDIN`: fields separated by tabs, rows ended by a newline, `\N` for
/// null, and a backslash before a backslash, tab, newline or carriage return inside a value.
struct CopyText {
    var buffer: ByteBuffer
    private var atRowStart = true

    init(capacity: Int) {
        buffer = ByteBufferAllocator().buffer(capacity: capacity)
    }

    mutating func field(_ value: String?) {
        separate()
        guard var value else { return null() }
        value.withUTF8 { bytes in
            var plain = true
            for byte in bytes where byte == UInt8(ascii: "\\") || byte == 9 || byte == 10 || byte == 13 {
                plain = false
                break
            }
            if plain {
                buffer.writeBytes(bytes)
                return
            }
            for byte in bytes {
                switch byte {
                case UInt8(ascii: "\\"): buffer.writeStaticString("\\\\")
                case 9: buffer.writeStaticString("\\t")
                case 10: buffer.writeStaticString("\\n")
                case 13: buffer.writeStaticString("\\r")
                default: buffer.writeInteger(byte)
                }
            }
        }
    }

    mutating func field(_ value: Int64?) {
        separate()
        guard let value else { return null() }
        writeDecimal(value)
    }

    mutating func field(_ value: Bool?) {
        separate()
        guard let value else { return null() }
        buffer.writeInteger(value ? UInt8(ascii: "t") : UInt8(ascii: "f"))
    }

    mutating func endRow() {
        buffer.writeInteger(UInt8(ascii: "\n"))
        atRowStart = true
    }

    private mutating func separate() {
        if atRowStart {
            atRowStart = false
        } else {
            buffer.writeInteger(UInt8(ascii: "\t"))
        }
    }

    private mutating func null() {
        buffer.writeStaticString("\\N")
    }

    /// Writes `value` in decimal without making a String.
    private mutating func writeDecimal(_ value: Int64) {
        if value < 0 { buffer.writeInteger(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // room for the 20 digits of UInt64.max
        var count = 0
        withUnsafeMutableBytes(of: &digits) { raw in
            repeat {
                raw[count] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
                count += 1
            } while magnitude > 0
            var index = count
            while index > 0 {
                index -= 1
                buffer.writeInteger(raw[index])
            }
        }
    }
}
