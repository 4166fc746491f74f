import PostgresNIO

/// The statements that write a batch: multi-row inserts and updates with bound parameters, at most `rowsPerStatement`
/// rows each (PostgreSQL takes at most 65,535 parameters per statement).
enum SQL {
    static let rowsPerStatement = 1000

    static func statements(for batch: Batch) throws -> [PostgresQuery] {
        var queries: [PostgresQuery] = []
        let newListings = batch.listings.filter { $0.opened != nil }
        let changedListings = batch.listings.filter { $0.opened == nil }
        // Listings first: a fill's seller is read from its listing, which may open in the same batch.
        try rows(newListings, into: &queries, columns: 23, head: insertListings) { listing, b in
            guard let opened = listing.opened else { return }
            b.append(listing.id)
            b.append(opened.format)
            b.append(opened.seller)
            b.append(listing.status ?? "open")
            b.append(opened.opensAt)
            b.append(listing.closesAt)
            b.append(opened.start)
            b.append(opened.buyNow)
            b.append(opened.pricing)
            b.append(opened.hasReserve)
            b.append(opened.quantity)
            b.append(opened.terms)
            b.append(listing.price)
            b.append(listing.leader)
            b.append(listing.bids ?? 0)
            b.append(listing.finalPrice)
            b.append(listing.winner)
            b.append(listing.reserveMet)
            b.append(listing.sold)
            b.append(opened.openedAt)
            b.append(listing.closedAt)
            b.append(opened.openedLSN)
            b.append(listing.updatedLSN)
        }
        try rows(changedListings, into: &queries, columns: 12, head: updateListingsHead, tail: updateListingsTail) {
            listing, b in
            b.append(listing.id)
            b.append(listing.status)
            b.append(listing.closesAt)
            b.append(listing.price)
            b.append(listing.leader)
            b.append(listing.bids)
            b.append(listing.finalPrice)
            b.append(listing.winner)
            b.append(listing.reserveMet)
            b.append(listing.sold)
            b.append(listing.closedAt)
            b.append(listing.updatedLSN)
        }
        try rows(batch.bids, into: &queries, columns: 8, head: insertBids) { bid, b in
            b.append(bid.listing)
            b.append(bid.seq)
            b.append(bid.lsn)
            b.append(bid.at)
            b.append(bid.leader)
            b.append(bid.price)
            b.append(bid.bids)
            b.append(bid.reserveMet)
        }
        try rows(batch.trades, into: &queries, columns: 12, head: insertTrades, tail: insertTradesTail) { trade, b in
            b.append(trade.listing)
            b.append(trade.seq)
            b.append(trade.lsn)
            b.append(trade.at)
            b.append(trade.kind)
            b.append(trade.buyer)
            b.append(trade.seller)
            b.append(trade.price)
            b.append(trade.quantity)
            b.append(trade.buyOrder)
            b.append(trade.sellOrder)
            b.append(trade.remaining)
        }
        try rows(batch.settlements, into: &queries, columns: 14, head: upsertSettlements, tail: upsertSettlementsTail) {
            s, b in
            b.append(s.id)
            b.append(s.listing)
            b.append(s.buyer)
            b.append(s.seller)
            b.append(s.price)
            b.append(s.quantity)
            b.append(s.state)
            b.append(s.dueAt)
            b.append(s.paymentRef)
            b.append(s.tracking)
            b.append(s.createdAt)
            b.append(s.updatedAt)
            b.append(s.createdLSN)
            b.append(s.updatedLSN)
        }
        try rows(batch.transitions, into: &queries, columns: 13, head: insertTransitions) { t, b in
            b.append(t.settlement)
            b.append(t.lsn)
            b.append(t.index)
            b.append(t.listing)
            b.append(t.state)
            b.append(t.at)
            b.append(t.dueAt)
            b.append(t.by)
            b.append(t.role)
            b.append(t.paymentRef)
            b.append(t.tracking)
            b.append(t.reason)
            b.append(t.outcome)
        }
        return queries
    }

    /// Appends one statement per `rowsPerStatement` of `items`: `head`, then `($1::type, ...), (...)` with the
    /// parameter types of `head`'s `types`, then `tail`.
    private static func rows<T>(
        _ items: [T], into queries: inout [PostgresQuery], columns: Int, head: (sql: String, types: [String]),
        tail: String = "", bind: (T, inout PostgresBindings) throws -> Void
    ) throws {
        precondition(head.types.count == columns)
        var start = 0
        while start < items.count {
            let end = min(items.count, start + rowsPerStatement)
            var sql = head.sql
            var bindings = PostgresBindings(capacity: (end - start) * columns)
            var parameter = 1
            for index in start..<end {
                sql += index == start ? "(" : ",("
                for column in 0..<columns {
                    if column > 0 { sql += "," }
                    sql += "$\(parameter)::\(head.types[column])"
                    parameter += 1
                }
                sql += ")"
                try bind(items[index], &bindings)
            }
            sql += tail
            queries.append(PostgresQuery(unsafeSQL: sql, binds: bindings))
            start = end
        }
    }

    static let insertListings = (
        sql: """
        INSERT INTO listings (id, format, seller, status, opens_at, closes_at, start_price, buy_now, pricing,
            has_reserve, quantity, terms, price, leader, bids, final_price, winner, reserve_met, sold, opened_at,
            closed_at, opened_lsn, updated_lsn) VALUES
        """,
        types: [
            "text", "text", "text", "text", "bigint", "bigint", "bigint", "bigint", "text", "boolean", "bigint",
            "jsonb",
            "bigint", "text", "bigint", "bigint", "text", "boolean", "bigint", "bigint", "bigint", "bigint", "bigint",
        ]
    )

    static let updateListingsHead = (
        sql:
            "UPDATE listings AS l SET status = COALESCE(v.status, l.status), closes_at = COALESCE(v.closes_at, l.closes_at), "
            + "price = COALESCE(v.price, l.price), leader = COALESCE(v.leader, l.leader), bids = COALESCE(v.bids, l.bids), "
            + "final_price = COALESCE(v.final_price, l.final_price), winner = COALESCE(v.winner, l.winner), "
            + "reserve_met = COALESCE(v.reserve_met, l.reserve_met), sold = COALESCE(v.sold, l.sold), "
            + "closed_at = COALESCE(v.closed_at, l.closed_at), updated_lsn = v.updated_lsn FROM (VALUES ",
        types: [
            "text", "text", "bigint", "bigint", "text", "bigint", "bigint", "text", "boolean", "bigint", "bigint",
            "bigint",
        ]
    )
    static let updateListingsTail =
        ") AS v(id, status, closes_at, price, leader, bids, final_price, winner, reserve_met, sold, closed_at, updated_lsn) WHERE l.id = v.id"

    static let insertBids = (
        sql: "INSERT INTO bids (listing, seq, lsn, at, leader, price, bids, reserve_met) VALUES ",
        types: ["text", "bigint", "bigint", "bigint", "text", "bigint", "bigint", "boolean"]
    )

    /// Trades and fills; a fill's seller is its listing's seller.
    static let insertTrades = (
        sql: "INSERT INTO trades (listing, seq, lsn, at, kind, buyer, seller, price, quantity, buy_order, sell_order, "
            + "remaining) SELECT v.listing, v.seq, v.lsn, v.at, v.kind, v.buyer, COALESCE(v.seller, l.seller), v.price, "
            + "v.quantity, v.buy_order, v.sell_order, v.remaining FROM (VALUES ",
        types: [
            "text", "bigint", "bigint", "bigint", "text", "text", "text", "bigint", "bigint", "text", "text", "bigint",
        ]
    )
    static let insertTradesTail =
        ") AS v(listing, seq, lsn, at, kind, buyer, seller, price, quantity, buy_order, sell_order, remaining) "
        + "LEFT JOIN listings AS l ON l.id = v.listing"

    static let upsertSettlements = (
        sql:
            "INSERT INTO settlements (id, listing, buyer, seller, price, quantity, state, due_at, payment_ref, tracking, "
            + "created_at, updated_at, created_lsn, updated_lsn) VALUES ",
        types: [
            "text", "text", "text", "text", "bigint", "bigint", "text", "bigint", "text", "text", "bigint", "bigint",
            "bigint", "bigint",
        ]
    )
    static let upsertSettlementsTail =
        " ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, due_at = EXCLUDED.due_at, "
        + "payment_ref = COALESCE(EXCLUDED.payment_ref, settlements.payment_ref), "
        + "tracking = COALESCE(EXCLUDED.tracking, settlements.tracking), updated_at = EXCLUDED.updated_at, "
        + "updated_lsn = EXCLUDED.updated_lsn"

    static let insertTransitions = (
        sql:
            "INSERT INTO settlement_transitions (settlement, lsn, idx, listing, state, at, due_at, by, role, payment_ref, "
            + "tracking, reason, outcome) VALUES ",
        types: [
            "text", "bigint", "integer", "text", "text", "bigint", "bigint", "text", "text", "text", "text", "text",
            "text",
        ]
    )
}
