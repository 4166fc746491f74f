-- English proxy bidding, the rules of Gavel's english format (docs/PROTOCOL.md), in one transaction with a row
-- lock. The amount is 1,000 + 10,000 × the listing's bids so far, as the Gavel load driver counts its bids on each
-- listing (10,000 is the ladder's largest step), so every bid is higher than the last one by at least a step and is
-- accepted and written (a refused bid would write nothing, skipping the commit's flush).
CREATE TABLE listings (
    id integer PRIMARY KEY,
    start bigint NOT NULL DEFAULT 100,
    price bigint NOT NULL DEFAULT 0,
    leader text,
    max bigint NOT NULL DEFAULT 0,
    bids integer NOT NULL DEFAULT 0
);
CREATE FUNCTION inc(x bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN x >= 500000 THEN 10000 WHEN x >= 250000 THEN 5000 WHEN x >= 100000 THEN 2500
        WHEN x >= 50000 THEN 1000 WHEN x >= 25000 THEN 500 WHEN x >= 10000 THEN 250 WHEN x >= 2500 THEN 100
        WHEN x >= 500 THEN 50 WHEN x >= 100 THEN 25 ELSE 5 END
$$;

CREATE FUNCTION bid(p_listing integer, p_bidder text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    l listings%ROWTYPE;
    amount bigint;
    ok boolean := true;
BEGIN
    SELECT * INTO l FROM listings WHERE id = p_listing FOR UPDATE;
    amount := 1000 + 10000 * l.bids;
    IF l.leader IS NULL THEN
        IF amount < l.start THEN ok := false;
        ELSE l.leader := p_bidder; l.max := amount; l.price := l.start; END IF;
    ELSIF p_bidder = l.leader THEN
        IF amount <= l.max THEN ok := false; ELSE l.max := amount; END IF;
    ELSIF amount < l.price + inc(l.price) THEN
        ok := false;
    ELSIF amount > l.max THEN
        l.price := least(amount, l.max + inc(l.max)); l.leader := p_bidder; l.max := amount;
    ELSE
        l.price := least(l.max, amount + inc(amount));
    END IF;
    IF ok THEN
        UPDATE listings SET price = l.price, leader = l.leader, max = l.max, bids = l.bids + 1 WHERE id = p_listing;
    END IF;
    RETURN ok;
END
$$;
