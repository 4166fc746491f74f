"""Settlements over the wire: a sale's transaction from payment to completion, disputes, idempotent payment
confirmations, privacy between users, the private feed's resume, and deadlines across a kill -9 and restart.

Real `gavel serve` processes and real `websockets` clients: the buyer, the seller, a third user who must see
nothing, the payment backend (service) and the dispute desk (admin)."""

import pytest

import json
import os

from support import eventually, mint_token, open_english, unique


def sale(seller, buyer, watcher=None, **deadlines):
    """Opens an english listing with a buy-now price and buys it: one settlement, `<listing>:1`. `watcher`
    subscribes to the listing first."""
    listing = unique()
    assert open_english(seller, listing, start=100, buy_now=500, **deadlines)["ok"]
    if watcher is not None:
        watcher.subscribe(listing)
    assert buyer.command({"type": "buy_now", "listing": listing})["ok"]
    return listing, f"{listing}:1"


def step(client, settlement, state, timeout=10.0):
    """The `settlement` notice of `settlement` entering `state`."""
    notice = client.expect(
        lambda m: m.get("type") == "notice" and m["event"].get("type") == "settlement"
        and m["event"].get("settlement") == settlement and m["event"].get("state") == state,
        timeout, f"settlement {settlement} {state}")
    return notice["event"]


def query(client, message):
    message = dict(message)
    message.setdefault("id", f"q-{unique()}")
    client.send(message)
    return client.expect(lambda m: m.get("id") == message["id"], 10.0, f"answer to {message['type']}")


def test_a_sale_goes_from_payment_to_completion_and_only_its_buyer_and_seller_see_it(server):
    with server.user("sam", "seller") as sam, server.user("ann") as ann, server.user("carl") as carl, \
            server.user("payments", "service") as pay, server.user("desk", "admin") as desk:
        listing, sid = sale(sam, ann, watcher=carl, complaint_window_ms=1000)  # carl watches the listing
        for party in (sam, ann):
            created = step(party, sid, "awaiting_payment")
            assert created["buyer"] == "ann" and created["seller"] == "sam" and created["price"] == 500
            assert created["by"] is None and created["due_at"] is not None
        paid = pay.command({"type": "confirm_payment", "settlement": sid, "payment_ref": "pay-1"})
        assert paid["ok"], paid
        for party in (sam, ann):
            event = step(party, sid, "paid")
            assert event["by"] == "payments" and event["role"] == "service" and event["payment_ref"] == "pay-1"
        assert sam.command({"type": "mark_shipped", "settlement": sid, "tracking": "TRK-9"})["ok"]
        for party in (sam, ann):
            assert step(party, sid, "shipped")["tracking"] == "TRK-9"
        assert ann.command({"type": "confirm_delivery", "settlement": sid})["ok"]
        for party in (sam, ann):
            step(party, sid, "delivered")
        for party in (sam, ann):
            done = step(party, sid, "completed", timeout=15.0)
            assert done["by"] is None and done["due_at"] is None

        mine = query(ann, {"type": "my_settlements"})
        assert [s["settlement"] for s in mine["settlements"]] == [sid] and mine["next"] is None
        history = mine["settlements"][0]["history"]
        assert [h["state"] for h in history] == ["awaiting_payment", "paid", "shipped", "delivered", "completed"]
        assert query(sam, {"type": "get_settlement", "settlement": sid})["settlement"]["state"] == "completed"
        assert query(desk, {"type": "get_settlement", "settlement": sid})["settlement"]["buyer"] == "ann"

        # The third user, subscribed to the listing: its public events, and nothing of the settlement.
        assert carl.event(listing, "closed")["listing"] == listing
        assert query(carl, {"type": "my_settlements"})["settlements"] == []
        refused = query(carl, {"type": "get_settlement", "settlement": sid})
        # Answered as for no such settlement, word for word: carl cannot even tell that it exists.
        none = query(carl, {"type": "get_settlement", "settlement": f"{listing}:7"})
        missing = query(carl, {"type": "get_settlement"})
        assert missing["error"] == "bad_request" and missing["message"].startswith("missing field settlement")
        assert refused["ok"] is False and refused["error"] == "unknown_settlement"
        assert refused["message"] == none["message"].replace(f"{listing}:7", sid)
        assert "ann" not in refused["message"] and "sam" not in refused["message"]
        carl.quiet(lambda m: m.get("type") == "notice" and m["event"].get("type") == "settlement", 0.3)
        # Only the answers to carl's own requests name the settlement; no notice, no settlement event.
        leaks = [m for m in carl.received + carl.pending
                 if m.get("type") == "notice" or (sid in json.dumps(m) and m.get("type") != "result")]
        assert leaks == []
        # Acting on it is refused too, as on no such settlement.
        refused = carl.command({"type": "confirm_delivery", "settlement": sid})
        assert refused["ok"] is False and refused["error"] == "unknown_settlement"


def test_a_dispute_is_resolved_by_the_admin_with_a_refund(server):
    with server.user("sam", "seller") as sam, server.user("ann") as ann, \
            server.user("payments", "service") as pay, server.user("desk", "admin") as desk:
        listing, sid = sale(sam, ann)
        assert pay.command({"type": "confirm_payment", "settlement": sid, "payment_ref": "pay-2"})["ok"]
        assert sam.command({"type": "mark_shipped", "settlement": sid, "tracking": "TRK-2"})["ok"]
        assert ann.command({"type": "confirm_delivery", "settlement": sid})["ok"]
        # Only admin resolves; the seller may not dispute.
        assert sam.command({"type": "open_dispute", "settlement": sid, "reason": "x"})["error"] == "not_authorized"
        assert ann.command({"type": "open_dispute", "settlement": sid, "reason": "the box was empty"})["ok"]
        assert step(sam, sid, "disputed")["reason"] == "the box was empty"
        refused = pay.command({"type": "resolve_dispute", "settlement": sid, "outcome": "refund"})
        assert refused["ok"] is False and refused["error"] == "not_authorized"
        assert desk.command({"type": "resolve_dispute", "settlement": sid, "outcome": "refund"})["ok"]
        for party in (sam, ann):
            event = step(party, sid, "refunded")
            assert event["by"] == "desk" and event["role"] == "admin" and event["outcome"] == "refund"
        late = ann.command({"type": "confirm_delivery", "settlement": sid})
        assert late["ok"] is False and late["error"] == "invalid_transition" and "refunded" in late["message"]


def test_a_payment_confirmation_repeated_with_its_reference_is_accepted_once_and_another_reference_conflicts(server):
    with server.user("sam", "seller") as sam, server.user("ann") as ann, server.user("payments", "service") as pay:
        listing, sid = sale(sam, ann)
        assert pay.command({"type": "confirm_payment", "settlement": sid, "payment_ref": "pay-3"})["ok"]
        step(ann, sid, "paid")
        again = pay.command({"type": "confirm_payment", "settlement": sid, "payment_ref": "pay-3"})
        assert again["ok"], again
        other = pay.command({"type": "confirm_payment", "settlement": sid, "payment_ref": "pay-4"})
        assert other["ok"] is False and other["error"] == "idempotency_conflict" and "pay-3" in other["message"]
        ann.quiet(lambda m: m.get("type") == "notice" and m["event"].get("state") == "paid", 0.3)
        history = query(ann, {"type": "get_settlement", "settlement": sid})["settlement"]["history"]
        assert [h["state"] for h in history] == ["awaiting_payment", "paid"]


def test_unknown_and_malformed_settlement_ids_are_refused_with_their_own_codes(server):
    with server.user("payments", "service") as pay, server.user("ann") as ann:
        unknown = pay.command({"type": "confirm_payment", "settlement": f"{unique()}:1", "payment_ref": "p"})
        assert unknown["ok"] is False and unknown["error"] in ("unknown_settlement", "unknown_listing")
        bad = pay.command({"type": "confirm_payment", "settlement": "nocolon", "payment_ref": "p"})
        assert bad["ok"] is False and bad["error"] == "bad_request" and "settlement" in bad["message"]
        answer = query(ann, {"type": "get_settlement", "settlement": f"{unique()}:1"})
        assert answer["ok"] is False and answer["error"] == "unknown_settlement"


def test_subscribe_user_resumes_the_private_feed_after_a_reconnect(server):
    with server.user("sam", "seller") as sam, server.user("payments", "service") as pay:
        with server.user("ann") as ann:
            feed = query(ann, {"type": "subscribe_user"})
            assert feed["type"] == "user_subscribed" and feed["recovered"] is False
            epoch, seen = feed["epoch"], feed["user_seq"]
            listing, sid = sale(sam, ann)
            created = ann.expect(lambda m: m.get("type") == "notice" and m["event"].get("settlement") == sid)
            assert created["user_seq"] == seen + 1
            seen = created["user_seq"]
        assert pay.command({"type": "confirm_payment", "settlement": sid, "payment_ref": "pay-5"})["ok"]
        with server.user("ann") as ann:
            resumed = query(ann, {"type": "subscribe_user", "since": seen, "epoch": epoch})
            assert resumed["recovered"] is True and resumed["user_seq"] == seen + 1
            missed = step(ann, sid, "paid")
            replayed = [m for m in ann.received if m.get("type") == "notice"]
            assert [m["user_seq"] for m in replayed] == [seen + 1]
            assert missed["payment_ref"] == "pay-5"
            stale = query(ann, {"type": "subscribe_user", "since": seen, "epoch": epoch + "x"})
            assert stale["recovered"] is False and stale["user_seq"] == seen + 1


def test_the_admin_role_is_never_issued_by_local_mode_and_may_not_trade_but_cancels_any_listing(start_server):
    srv = start_server(secret=None)
    status, answer = srv.http_post_json("/token", {"sub": "desk", "role": "admin"}, headers=srv.code_header())
    assert status == 400 and "role admin is not issued here" in answer["error"]
    with srv.connect(srv.local_token("sam", "seller")) as sam:
        listing = unique()
        assert open_english(sam, listing)["ok"]
    with open(os.path.join(srv.data_dir, "jwt-secret")) as f:
        key = f.read().strip()
    with srv.connect(mint_token("desk", "admin", secret=key)) as desk:
        assert desk.hello["role"] == "admin" and desk.hello["principal"] == "desk"
        refused = desk.command({"type": "bid", "listing": listing, "amount": 500})
        assert refused["ok"] is False and refused["error"] == "not_authorized"
        assert "admin token may not bid" in refused["message"]
        assert desk.command({"type": "cancel_listing", "listing": listing})["ok"]


def test_a_payment_deadline_fires_after_a_kill_9_and_a_restart(start_server, tmp_path):
    data = tmp_path / "deadline-restart"
    first = start_server(data_dir=data)
    with first.user("sam", "seller") as sam, first.user("ann") as ann:
        listing, sid = sale(sam, ann, payment_due_ms=1500)
        step(ann, sid, "awaiting_payment")
    first.kill9()
    second = start_server(data_dir=data)
    with second.user("ann") as ann:
        # The deadline may pass during recovery or after: either way the restarted server expires it.
        assert eventually(
            lambda: query(ann, {"type": "get_settlement", "settlement": sid})["settlement"]["state"]
            == "payment_expired", seconds=15.0)
        got = query(ann, {"type": "get_settlement", "settlement": sid})["settlement"]
        assert [h["state"] for h in got["history"]] == ["awaiting_payment", "payment_expired"]


def test_a_second_chance_offer_reaches_only_the_seller_and_the_runner_up_and_its_acceptance_makes_a_new_sale(server):
    listing = unique()
    seller_name, winner_name, runner_name = unique("sam"), unique("ann"), unique("bob")
    with server.user(seller_name, "seller") as sam, server.user(winner_name) as ann, \
            server.user(runner_name) as bob, server.user("carl") as carl:
        assert open_english(sam, listing, start=100, closes_in_ms=1500, payment_due_ms=500,
                            increments=[[0, 1]])["ok"]
        assert bob.command({"type": "bid", "listing": listing, "amount": 300})["ok"]
        assert ann.command({"type": "bid", "listing": listing, "amount": 900})["ok"]
        sid = f"{listing}:1"
        step(ann, sid, "awaiting_payment")
        step(ann, sid, "payment_expired")
        refused = bob.command({"type": "offer_second_chance", "listing": listing})
        assert refused["ok"] is False and refused["error"] == "not_authorized"
        assert sam.command({"type": "offer_second_chance", "listing": listing})["ok"]
        for party in (sam, bob):
            offer = party.notice("second_chance")["event"]
            assert offer["state"] == "offered" and offer["bidder"] == runner_name and offer["price"] == 300
        offers = query(bob, {"type": "my_settlements"})["offers"]
        assert [(o["listing"], o["state"]) for o in offers] == [(listing, "offered")]
        assert bob.command({"type": "accept_offer", "listing": listing})["ok"]
        created = step(bob, f"{listing}:2", "awaiting_payment")
        assert created["buyer"] == runner_name and created["seller"] == seller_name and created["price"] == 300
        step(sam, f"{listing}:2", "awaiting_payment")
        # Neither the expired winner nor anyone else hears of the offer.
        for other in (ann, carl):
            other.quiet(lambda m: m.get("type") == "notice" and m["event"].get("type") == "second_chance", 0.3)
            assert not any(m.get("type") == "notice" and m["event"].get("settlement") == f"{listing}:2"
                           for m in other.received + other.pending)


def test_my_settlements_pages_in_creation_order_filters_by_state_and_lets_only_service_and_admin_name_a_user(server):
    seller_name, buyer_name = unique("sam"), unique("ann")
    with server.user(seller_name, "seller") as sam, server.user(buyer_name) as ann, \
            server.user("payments", "service") as pay, server.user("desk", "admin") as desk:
        ids = [sale(sam, ann)[1] for _ in range(3)]
        assert pay.command({"type": "confirm_payment", "settlement": ids[1], "payment_ref": "pay-p"})["ok"]
        first = query(ann, {"type": "my_settlements", "limit": 2})
        assert [s["settlement"] for s in first["settlements"]] == ids[:2] and first["next"] == ids[1]
        rest = query(ann, {"type": "my_settlements", "limit": 2, "after": first["next"]})
        assert [s["settlement"] for s in rest["settlements"]] == ids[2:] and rest["next"] is None
        paid = query(sam, {"type": "my_settlements", "state": "paid"})
        assert [s["settlement"] for s in paid["settlements"]] == [ids[1]]
        for reader in (desk, pay):
            theirs = query(reader, {"type": "my_settlements", "user": buyer_name})
            assert theirs["user"] == buyer_name and [s["settlement"] for s in theirs["settlements"]] == ids
        refused = query(ann, {"type": "my_settlements", "user": seller_name})
        assert refused["ok"] is False and refused["error"] == "not_authorized"
        for bad in ({"limit": 0}, {"limit": 201}, {"state": "lost"}, {"after": "nocolon"}):
            answer = query(ann, {"type": "my_settlements", **bad})
            assert answer["ok"] is False and answer["error"] == "bad_request", bad
    with server.connect() as anonymous:
        answer = query(anonymous, {"type": "my_settlements"})
        assert answer["ok"] is False and answer["error"] == "not_authorized"


def test_offers_are_paged_by_limit_with_their_own_cursor_and_a_page_without_it_starts_from_the_first(server):
    seller_name, winner_name, runner_name = unique("sam"), unique("ann"), unique("bob")
    listings = sorted(unique() for _ in range(3))
    with server.user(seller_name, "seller") as sam, server.user(winner_name) as ann, \
            server.user(runner_name) as bob:
        for listing in listings:
            assert open_english(sam, listing, start=100, closes_in_ms=1500, payment_due_ms=500,
                                increments=[[0, 1]])["ok"]
            assert bob.command({"type": "bid", "listing": listing, "amount": 300})["ok"]
            assert ann.command({"type": "bid", "listing": listing, "amount": 900})["ok"]
        for listing in listings:
            step(ann, f"{listing}:1", "payment_expired")
            assert sam.command({"type": "offer_second_chance", "listing": listing})["ok"]
        for reader in (sam, bob):
            seen, cursor = [], None
            while True:
                message = {"type": "my_settlements", "limit": 1}
                if cursor is not None:
                    message["offers_after"] = cursor
                page = query(reader, message)
                assert len(page["offers"]) <= 1 and len(page["settlements"]) <= 1
                seen += [o["listing"] for o in page["offers"]]
                cursor = page["offers_next"]
                if cursor is None:
                    break
                assert cursor == seen[-1]
            assert seen == listings
        # A page asked for with `after` only (a client that ignores offers_next) carries the first page of offers.
        first = query(sam, {"type": "my_settlements", "limit": 1})
        second = query(sam, {"type": "my_settlements", "limit": 1, "after": first["next"]})
        assert [o["listing"] for o in second["offers"]] == listings[:1] and second["offers_next"] == listings[0]
        # Every offer of the user's when there are no more than `limit`, as before offers were paged.
        whole = query(bob, {"type": "my_settlements"})
        assert [o["listing"] for o in whole["offers"]] == listings and whole["offers_next"] is None
        # The cursor need not be one of the user's listings.
        assert [o["listing"] for o in query(bob, {"type": "my_settlements", "offers_after": "A"})["offers"]] == listings
        refused = query(bob, {"type": "my_settlements", "offers_after": "no spaces"})
        assert refused["ok"] is False and refused["error"] == "bad_request"
        assert refused["message"].startswith("offers_after must be a listing id")


def test_a_settlements_answer_stays_within_the_smallest_outbound_cap_and_its_pages_list_everything(start_server):
    srv = start_server("--max-outbound-bytes", "4096")
    seller_name, buyer_name = unique("sam"), unique("ann")
    with srv.user(seller_name, "seller") as sam, srv.user(buyer_name) as ann:
        ids = [sale(sam, ann)[1] for _ in range(20)]
    with srv.user(buyer_name) as ann:
        seen, cursor, pages = [], None, 0
        while True:
            message = {"type": "my_settlements", "id": f"q{pages}", "limit": 200}
            if cursor is not None:
                message["after"] = cursor
            ann.send(message)
            raw = ann.ws.recv(timeout=10)
            while json.loads(raw).get("id") != message["id"]:
                raw = ann.ws.recv(timeout=10)
            page = json.loads(raw)
            assert len(raw.encode()) <= 4096, len(raw)
            seen += [s["settlement"] for s in page["settlements"]]
            pages += 1
            cursor = page["next"]
            if cursor is None:
                break
        assert seen == ids and pages > 1
        assert query(ann, {"type": "get_settlement", "settlement": ids[0]})["type"] == "settlement_detail"
