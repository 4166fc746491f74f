"""Product behaviour over the WebSocket: hello, subscribe, bid, fan-out, private notices, ack after durable."""

import asyncio
import json
import socket
import struct
import time

from websockets.asyncio.client import connect as async_connect

from support import now_ms, open_english, unique


def test_hello_names_the_principal_role_limits_and_server_time(server):
    before = now_ms()
    with server.user("alice", "bidder") as alice, server.connect() as anonymous:
        after = now_ms()
        hello = alice.hello
        assert hello["principal"] == "alice" and hello["role"] == "bidder"
        assert before - 1000 <= hello["server_time"] <= after + 1000
        assert hello["ts"] == hello["server_time"] or abs(hello["ts"] - hello["server_time"]) < 1000
        limits = hello["limits"]
        for key in ("max_message_bytes", "max_outbound_bytes", "max_subscriptions", "rate_per_second"):
            assert isinstance(limits.get(key), int) and limits[key] > 0, key
        assert anonymous.hello["principal"] is None and anonymous.hello["role"] == "watcher"


def test_every_server_message_carries_ts(server):
    listing = unique()
    with server.user("sam", "seller") as sam, server.user("ann") as ann, server.user("bob") as bob:
        ann.subscribe(listing)
        assert open_english(sam, listing)["ok"]
        assert ann.command({"type": "bid", "listing": listing, "amount": 500})["ok"]
        assert bob.command({"type": "bid", "listing": listing, "amount": 900})["ok"]
        ann.notice("outbid")
        ann.event(listing, "bid_placed", seq=3)
        ann.send("not json")
        ann.expect(lambda m: m.get("type") == "result" and m.get("id") is None)
        ann.send({"type": "unsubscribe", "listing": listing})
        ann.subscribe(listing, since=1)
        messages = ann.received + sam.received + bob.received
        kinds = {m["type"] for m in messages}
        assert {"hello", "snapshot", "result", "opened", "bid_placed", "notice"} <= kinds
        now = now_ms()
        for m in messages:
            assert isinstance(m.get("ts"), int) and now - 60_000 < m["ts"] <= now + 1000, m


def test_subscribe_to_unknown_listing_gives_empty_snapshot_then_its_opening(server):
    listing = unique()
    with server.user("sam", "seller") as sam, server.connect() as watcher:
        snapshot = watcher.subscribe(listing)
        assert snapshot["seq"] == 0 and snapshot["state"] is None
        assert open_english(sam, listing, start=250)["ok"]
        opened = watcher.event(listing, "opened")
        assert opened["seq"] == 1 and opened["start"] == 250 and opened["seller"] == "sam"


def test_bid_result_and_bid_placed_reach_subscribers(server):
    listing = unique()
    with server.user("sam", "seller") as sam, server.user("ann") as ann, server.connect() as watcher:
        assert open_english(sam, listing, start=100)["ok"]
        snapshot = watcher.subscribe(listing)
        assert snapshot["seq"] == 1
        state = snapshot["state"]
        assert state["status"] == "open" and state["price"] == 100 and state["leader"] is None and state["bids"] == 0
        result = ann.command({"type": "bid", "listing": listing, "amount": 1000})
        assert result["ok"] and result["leading"] is True and result["price"] == 100
        event = watcher.event(listing, "bid_placed")
        assert event["seq"] == 2 and event["leader"] == "ann" and event["price"] == 100 and event["bids"] == 1
        low = ann.command({"type": "bid", "listing": listing, "amount": 1000})
        assert low["ok"] is False and low["error"] == "bid_too_low" and low["min_bid"] == 1001


def test_outbid_notice_goes_to_every_connection_of_that_user_only(server):
    listing = unique()
    with server.user("sam", "seller") as sam, server.user("ann") as ann1, server.user("ann") as ann2, \
            server.user("bob") as bob, server.user("cat") as cat:
        assert open_english(sam, listing)["ok"]
        assert ann1.command({"type": "bid", "listing": listing, "amount": 500})["ok"]
        assert bob.command({"type": "bid", "listing": listing, "amount": 900})["ok"]
        for ann in (ann1, ann2):
            notice = ann.notice("outbid")
            assert notice["event"]["bidder"] == "ann" and notice["event"]["listing"] == listing
        cat.quiet(lambda m: m.get("type") == "notice", 0.5)
        bob.quiet(lambda m: m.get("type") == "notice", 0.1)


def test_bid_placed_fans_out_identically_to_fifty_subscribers(server):
    listing = unique()
    count = 50

    async def run():
        sockets = [await async_connect(server.ws_url(), compression=None, proxy=None, ping_interval=None)
                   for _ in range(count)]
        try:
            for ws in sockets:
                json.loads(await asyncio.wait_for(ws.recv(), 10))  # hello
                await ws.send(json.dumps({"type": "subscribe", "listing": listing}))
            for ws in sockets:
                snapshot = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert snapshot["type"] == "snapshot" and snapshot["seq"] == 1

            def bid():
                with server.user("ann") as ann:
                    return ann.command({"type": "bid", "listing": listing, "amount": 700})

            started = time.monotonic()
            result = await asyncio.get_running_loop().run_in_executor(None, bid)
            assert result["ok"]
            frames = await asyncio.gather(*(asyncio.wait_for(ws.recv(), 10) for ws in sockets))
            return frames, time.monotonic() - started
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets))

    with server.user("sam", "seller") as sam:
        assert open_english(sam, listing)["ok"]
    frames, elapsed = asyncio.run(run())
    events = [json.loads(f) for f in frames]
    assert all(e["type"] == "bid_placed" and e["seq"] == 2 and e["leader"] == "ann" for e in events)
    # Encoded once: every subscriber gets the very same text, ts included.
    assert len(set(frames)) == 1
    assert elapsed < 10


def test_bid_acknowledged_survives_kill_9_and_restart(start_server, tmp_path):
    data = tmp_path / "durable"
    first = start_server("--fsync", "always", data_dir=data)
    listing = unique()
    with first.user("sam", "seller") as sam, first.user("ann") as ann:
        assert open_english(sam, listing, start=100)["ok"]
        result = ann.command({"type": "bid", "listing": listing, "amount": 800})
        assert result["ok"]
        first.kill9()  # at once: the result came only after the bid was durable
    second = start_server("--fsync", "always", data_dir=data)
    with second.connect() as watcher:
        snapshot = watcher.subscribe(listing)
        state = snapshot["state"]
        assert snapshot["seq"] == 2
        assert state["leader"] == "ann" and state["bids"] == 1 and state["price"] == 100


def test_commands_apply_in_order_with_gapless_seq_for_pipelined_bids(server):
    listing = unique()
    with server.user("sam", "seller") as sam, server.user("ann") as ann, server.connect() as watcher:
        assert open_english(sam, listing, start=100, increments=[[0, 1]])["ok"]
        watcher.subscribe(listing)
        ids = []
        for i in range(20):
            rid = f"p{i}-{listing}"
            ids.append(rid)
            ann.send({"type": "bid", "id": rid, "listing": listing, "amount": 200 + i})
        results = [ann.result(rid) for rid in ids]
        assert all(r["ok"] for r in results)
        seqs = [watcher.event(listing, "bid_placed")["seq"] for _ in ids]
        assert seqs == list(range(2, 22))


def test_client_time_at_is_refused_and_nothing_is_applied(server):
    listing = unique()
    with server.user("sam", "seller") as sam, server.user("ann") as ann, server.connect() as watcher:
        assert open_english(sam, listing)["ok"]
        watcher.subscribe(listing)
        refused = ann.command({"type": "bid", "listing": listing, "amount": 500, "at": now_ms() + 60_000})
        assert refused["ok"] is False and refused["error"] == "bad_request"
        assert ann.command({"type": "bid", "listing": listing, "amount": 600})["ok"]
        assert watcher.event(listing, "bid_placed")["bids"] == 1


def test_unsubscribe_stops_the_events_of_that_listing_only(server):
    first, second = unique(), unique()
    with server.user("sam", "seller") as sam, server.user("ann") as ann, server.connect() as watcher:
        assert open_english(sam, first)["ok"] and open_english(sam, second)["ok"]
        watcher.subscribe(first)
        watcher.subscribe(second)
        watcher.send({"type": "unsubscribe", "listing": first})
        watcher.expect(lambda m: m.get("type") == "unsubscribed" and m.get("listing") == first)
        assert ann.command({"type": "bid", "listing": first, "amount": 500})["ok"]
        assert ann.command({"type": "bid", "listing": second, "amount": 500})["ok"]
        assert watcher.event(second, "bid_placed")["seq"] == 2
        watcher.quiet(lambda m: m.get("listing") == first and m.get("type") == "bid_placed", 0.3)


def test_every_result_answers_its_own_command_while_other_connections_drop_with_bids_in_flight(start_server):
    """Waves of pipelined bids over two event loops, half the connections of each wave dropped (reset) with their
    bids still in flight: every connection that stays gets exactly one result per id it sent, each the answer to
    that command (a repeat of the same bid is its duplicate, another amount under the id a conflict), and a
    watcher sees every applied bid once, in order."""
    srv = start_server("--threads", "2", "--rate", "100000", "--rate-burst", "100000",
                       "--principal-rate", "100000", "--principal-rate-burst", "100000")
    listings = [unique() for _ in range(3)]
    with srv.user("sam", "seller") as sam, srv.connect() as watcher:
        for listing in listings:
            assert open_english(sam, listing, start=100, increments=[[0, 1]])["ok"]
            watcher.subscribe(listing)
        accepted = {}
        amount = 200
        for wave in range(3):
            keep, drop = [], []
            for n in range(8):
                client = srv.user(f"w{wave}-{n}")
                (keep if n % 2 == 0 else drop).append(client)
            sent = {}
            for client in keep + drop:
                for k in range(40):
                    rid = f"{client.hello['principal']}-{k}"
                    amount += 1
                    bid = {"type": "bid", "id": rid, "listing": listings[k % 3], "amount": amount}
                    client.send(bid)
                    sent[rid] = (client, bid)
            for client in drop:
                client.ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.ws.socket.close()  # a reset, with results on their way
            for client in keep:
                mine = {rid for rid, (owner, _) in sent.items() if owner is client}
                answered = {}
                while len(answered) < len(mine):
                    message = client.expect(lambda m: m.get("type") == "result", timeout=20)
                    assert message["id"] in mine, f"a result for a command this connection did not send: {message}"
                    assert message["id"] not in answered, f"two results for {message['id']}"
                    answered[message["id"]] = message
                for rid, result in answered.items():
                    assert result["ok"] or result["error"] == "bid_too_low", result
                    if result["ok"]:
                        accepted[rid] = result
                    bid = sent[rid][1]
                    again = client.command(dict(bid))
                    assert again["id"] == rid and again.get("duplicate") is True, again
                    assert again["ok"] == result["ok"] and again.get("price") == result.get("price"), (result, again)
                    other = client.command(dict(bid, amount=bid["amount"] + 1_000_000))
                    assert other["ok"] is False and other["error"] == "idempotency_conflict", other
                client.close()
        # The watcher saw every applied bid once and in order: per listing, the events' bid counts run 1, 2, 3...
        # with no gap, and there are at least as many as the bids the survivors had accepted.
        placed = []
        while True:
            try:
                placed.append(watcher.expect(lambda m: m.get("type") == "bid_placed", timeout=2))
            except AssertionError:
                break
        for listing in listings:
            counts = [m["bids"] for m in placed if m["listing"] == listing]
            assert counts == list(range(1, len(counts) + 1)), listing
        assert len(placed) >= len(accepted) > 0
