"""Rate limits, slow consumers, shutdown and the admin endpoints."""

import json
import threading
import time

import pytest

import websockets

from support import UNLIMITED_SERVICE_RATE, RawWebSocket, flood_until, open_english, unique


def test_burst_over_the_rate_gets_rate_limited_results_for_each_excess_message(start_server):
    srv = start_server("--rate", "5", "--rate-burst", "10")
    listing = unique()
    with srv.user("sam", "seller") as sam, srv.user("ann") as ann:
        assert open_english(sam, listing, increments=[[0, 1]])["ok"]
        assert ann.hello["limits"]["rate_per_second"] == 5 and ann.hello["limits"]["rate_burst"] == 10
        ids = [f"q{i}" for i in range(40)]
        started = time.monotonic()
        for i, rid in enumerate(ids):
            ann.send({"type": "bid", "id": rid, "listing": listing, "amount": 200 + i})
        results = [ann.result(rid) for rid in ids]
        refilled = int(5 * (time.monotonic() - started)) + 1
        limited = [r for r in results if r.get("error") == "rate_limited"]
        accepted = [r for r in results if r["ok"]]
        assert 10 <= len(accepted) <= 10 + refilled, results  # the burst, plus what refilled meanwhile
        assert len(limited) == len(ids) - len(accepted)
        assert all(r["message"] for r in limited)
        time.sleep(0.5)  # the bucket refills: the connection is usable again
        assert ann.command({"type": "bid", "listing": listing, "amount": 1000})["ok"]


def test_sustained_abuse_of_the_rate_closes_1008(start_server):
    srv = start_server("--rate", "5", "--rate-burst", "5", "--abuse-factor", "2", "--abuse-window-seconds", "2")
    with srv.connect() as watcher:
        answers = []
        for _ in range(100):  # one at a time, so the server never holds unread input when it closes
            try:
                watcher.send({"type": "unsubscribe", "listing": "nothing"})
                answers.append(watcher.expect(lambda m: m.get("type") in ("result", "unsubscribed")))
            except websockets.exceptions.ConnectionClosed:
                break
        assert watcher.ws.close_code == 1008
        limited = [a for a in answers if a.get("error") == "rate_limited"]
        assert len(limited) >= 10 and len(answers) < 100
    assert srv.metric("gavel_abuse_closes_total") >= 1


def test_slow_consumer_is_closed_1013_while_other_subscribers_keep_receiving(start_server):
    srv = start_server("--max-outbound-bytes", "65536", "--fsync", "none", *UNLIMITED_SERVICE_RATE)
    listing = unique("hot") + "-" + "x" * 40  # long names make big events: fewer to flood the socket buffers
    bidder = "b" * 60
    with srv.user("market", "service") as market, srv.connect() as fast:
        assert open_english(market, listing, seller="sam", increments=[[0, 1]])["ok"]
        fast.subscribe(listing)
        stalled = RawWebSocket(srv.port, rcvbuf=4096)
        try:
            stalled.recv_json()  # hello
            stalled.send_text(json.dumps({"type": "subscribe", "listing": listing}))
            assert stalled.recv_json()["type"] == "snapshot"
            # From now on it reads nothing while the listing floods.
            amount = flood_until(market, listing, bidder,
                                 lambda: srv.metric("gavel_slow_consumer_closes_total") >= 1,
                                 "the stalled client was closed")
            # The stalled one gets 1013 once it reads again; the fast one got every event, in order.
            assert stalled.close_code(timeout=10) == 1013
        finally:
            stalled.close()
        bids = amount - 1000
        seqs = [fast.event(listing, "bid_placed")["seq"] for _ in range(bids)]
        assert seqs == list(range(2, bids + 2))
        assert market.command({"type": "bid", "listing": listing, "bidder": bidder, "amount": amount + 1})["ok"]
        assert fast.event(listing, "bid_placed")["seq"] == bids + 2
        with srv.connect() as back:  # the closed client resumes; its since is long out of the history
            reply = back.subscribe(listing, since=1)
            assert reply["recovered"] is False and reply["seq"] == bids + 2 and reply["state"]["bids"] == bids + 1


@pytest.mark.parametrize("sends", [[], ["--no-io-uring"]], ids=["io_uring", "one_send_each"])
def test_a_reader_that_falls_behind_and_catches_up_gets_every_event_once_and_in_order(start_server, sends):
    # Frames go to the socket itself while the server holds nothing of the connection, and through the server's own
    # buffer once the socket's is full. This reader (a 4 KiB receive buffer, the server's send buffer for it set to
    # 4 KiB) first reads nothing while hundreds of kilobytes of events pile up, then reads slowly while more arrive,
    # so the server switches between the two ways many times; nothing is lost, repeated or reordered, and under a
    # generous outbound limit it is not taken for a slow consumer. Each event and the bidder's result are flushed in
    # the same task (one event loop), so by default the two sends go in one io_uring submission, where the reader's
    # socket is full (EAGAIN) or takes part of its bytes; with --no-io-uring each is its own send.
    srv = start_server("--max-outbound-bytes", str(64 << 20), "--socket-send-buffer", "4096", "--fsync", "none",
                       "--threads", "1", *sends, *UNLIMITED_SERVICE_RATE)
    listing = unique("hot") + "-" + "x" * 40
    bidder = "b" * 60
    total = 4000
    with srv.user("market", "service") as market:
        assert open_english(market, listing, seller="sam", increments=[[0, 1]])["ok"]
        reader = RawWebSocket(srv.port, rcvbuf=4096, timeout=20)
        seen, failures = [], []

        def read_all(delay):
            try:
                while len(seen) < total:
                    event = reader.recv_json()
                    seen.append((event["type"], event["seq"], event["bids"]))
                    if len(seen) % 25 == 0:
                        time.sleep(delay)
            except Exception as error:  # reported below, with what was read
                failures.append(error)

        try:
            reader.recv_json()  # hello
            reader.send_text(json.dumps({"type": "subscribe", "listing": listing}))
            assert reader.recv_json()["type"] == "snapshot"
            amount = 1000
            slow = threading.Thread(target=read_all, args=(0.002,))
            for batch in range(total // 250):
                if batch == total // 500:  # half sent, none read: from now on it reads, slowly
                    slow.start()
                rids = []
                for _ in range(250):
                    amount += 1
                    rids.append(f"f{amount}")
                    market.send({"type": "bid", "id": rids[-1], "listing": listing, "bidder": bidder,
                                 "amount": amount})
                for rid in rids:
                    assert market.result(rid)["ok"]
            slow.join(60)
            assert not slow.is_alive() and not failures, (failures, len(seen))
            # The open was seq 1; bid k (from 1) is seq k + 1 and the listing's k-th bid.
            assert seen == [("bid_placed", k + 1, k) for k in range(1, total + 1)]
            assert srv.metric("gavel_slow_consumer_closes_total") == 0
        finally:
            reader.close()


def test_readers_at_different_speeds_in_one_send_batch_each_get_every_event_once_and_in_order(start_server):
    # Eight readers of one listing on one event loop, each flush of an event a batch of nine sends (the readers and
    # the bidder's result): the readers' sockets fill and drain at their own paces, so in one submission some take
    # everything, some part, some nothing, and a reader whose earlier bytes still wait in the server goes through
    # the channel while the others go to their sockets. Each must read every event once, in order, whole.
    srv = start_server("--max-outbound-bytes", str(64 << 20), "--socket-send-buffer", "4096", "--fsync", "none",
                       "--threads", "1", *UNLIMITED_SERVICE_RATE)
    listing = unique("hot") + "-" + "x" * 40
    total = 1500
    with srv.user("market", "service") as market:
        assert open_english(market, listing, seller="sam", increments=[[0, 1]])["ok"]
        readers = [RawWebSocket(srv.port, rcvbuf=4096, timeout=30) for _ in range(8)]
        seen = [[] for _ in readers]
        failures = []

        def read_all(index, delay):
            try:
                while len(seen[index]) < total:
                    event = readers[index].recv_json()
                    seen[index].append((event["type"], event["seq"], event["bids"]))
                    if delay and len(seen[index]) % 10 == 0:
                        time.sleep(delay)
            except Exception as error:  # reported below, with what was read
                failures.append((index, error))

        try:
            for reader in readers:
                reader.recv_json()  # hello
                reader.send_text(json.dumps({"type": "subscribe", "listing": listing}))
                assert reader.recv_json()["type"] == "snapshot"
            threads = [threading.Thread(target=read_all, args=(i, 0.0005 * i)) for i in range(len(readers))]
            for thread in threads:
                thread.start()
            amount = 1000
            for batch in range(total // 100):
                rids = []
                for _ in range(100):
                    amount += 1
                    rids.append(f"m{amount}")
                    market.send({"type": "bid", "id": rids[-1], "listing": listing, "bidder": "b" * 60,
                                 "amount": amount})
                for rid in rids:
                    assert market.result(rid)["ok"]
            for thread in threads:
                thread.join(60)
            assert not any(thread.is_alive() for thread in threads) and not failures, failures
            wanted = [("bid_placed", k + 1, k) for k in range(1, total + 1)]
            assert all(events == wanted for events in seen), [len(events) for events in seen]
            assert srv.metric("gavel_slow_consumer_closes_total") == 0
        finally:
            for reader in readers:
                reader.close()


def test_stalled_readers_past_the_outbound_budget_are_closed_1013_naming_it(start_server):
    # Each stalled reader that falls behind takes --max-outbound-bytes (64 KiB) of the 128 KiB budget: the first two
    # take it all, and the next ones to fall behind are closed at once, however little they hold.
    srv = start_server("--max-outbound-bytes", "65536", "--max-outbound-bytes-total", "131072", "--fsync", "none",
                       *UNLIMITED_SERVICE_RATE)
    listing = unique("hot") + "-" + "x" * 40
    bidder = "b" * 60
    stalled = []
    with srv.user("market", "service") as market:
        assert open_english(market, listing, seller="sam", increments=[[0, 1]])["ok"]
        try:
            for _ in range(4):
                raw = RawWebSocket(srv.port, rcvbuf=4096)
                stalled.append(raw)
                raw.recv_json()  # hello
                raw.send_text(json.dumps({"type": "subscribe", "listing": listing}))
                assert raw.recv_json()["type"] == "snapshot"
            # Until all four are closed: the two holding the budget once past their own 64 KiB.
            flood_until(market, listing, bidder, lambda: srv.metric("gavel_slow_consumer_closes_total") >= 4,
                        "the four stalled clients were closed")
            reasons = []
            for raw in stalled:
                try:
                    reasons.append(raw.close_reason(timeout=10))
                except TimeoutError:
                    reasons.append("still open")
            assert sum("--max-outbound-bytes-total (131072)" in (r or "") for r in reasons) >= 1, reasons
            assert "still open" not in reasons, reasons
        finally:
            for raw in stalled:
                raw.close()


def test_subscription_limit_gets_an_error_result(start_server):
    srv = start_server("--max-subscriptions", "2")
    with srv.connect() as watcher:
        watcher.subscribe(unique())
        watcher.subscribe(unique())
        watcher.send({"type": "subscribe", "id": "s3", "listing": unique()})
        result = watcher.result("s3")
        assert result["ok"] is False and result["error"] == "too_many_subscriptions"


def test_sigterm_closes_clients_1001_and_exits_0(start_server):
    srv = start_server()
    with srv.connect() as watcher:
        watcher.subscribe(unique())
        srv.process.terminate()
        assert watcher.close_code() == 1001
        assert srv.process.wait(15) == 0


def test_idle_client_that_ignores_pings_is_closed(start_server):
    srv = start_server("--idle-timeout-ms", "600")
    raw = RawWebSocket(srv.port)
    try:
        raw.recv_json()
        start = time.monotonic()
        _, opcode, _ = raw.recv_frame()
        assert opcode == RawWebSocket.OP_PING
        assert raw.close_code(timeout=5) == 1001
        assert time.monotonic() - start < 5
    finally:
        raw.close()


def test_admin_health_readiness_and_metrics(server):
    assert server.admin_get("/healthz")[0] == 200
    assert server.admin_get("/readyz")[0] == 200
    listing = unique()
    with server.user("sam", "seller") as sam:
        assert open_english(sam, listing)["ok"]
        status, body = server.admin_get("/metrics")
        assert status == 200
        text = body.decode()
        assert "# TYPE gavel_connections" in text
        assert server.metric("gavel_connections") >= 1
        ok_opens = [line for line in text.splitlines()
                    if line.startswith("gavel_commands_total{") and 'type="open"' in line and 'result="ok"' in line]
        assert ok_opens and float(ok_opens[0].rsplit(" ", 1)[1]) >= 1
        # The process's resident memory, for load tests that report memory per connection.
        assert 1_000_000 < server.metric("process_resident_memory_bytes") < 4_000_000_000


def test_page_is_served_at_root(server):
    status, body = server.http_get("/")
    assert status == 200
    assert b"<html" in body.lower() and b"/ws" in body



def test_connections_past_the_limit_get_503_at_upgrade(start_server):
    srv = start_server("--max-connections", "2")
    with srv.connect(), srv.connect():
        status, _ = srv.http_get("/ws", headers={
            "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        assert status == 503
    with srv.connect() as again:  # a slot is free once one closes
        assert again.hello["role"] == "watcher"


def test_plain_http_gets_426_at_the_endpoint_and_404_elsewhere(server):
    assert server.http_get("/ws")[0] == 426
    assert server.http_get("/nothing-here")[0] == 404
