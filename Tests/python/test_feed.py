"""The durable event feed (`subscribe_feed`): live, filtered, caught up from the journal, and the switch between
them, compared with an independent replay of the journal (`gavel dump` fed to `gavel simulate`)."""

import json
import os
import pathlib
import subprocess
import sys
import threading
import time

import pytest

from feedsupport import (check_last_flags, expected_feed, feed_client, read_feed_through, read_feed_until,
                         replay_by_lsn, strip)
from support import UNLIMITED_SERVICE_RATE, RawWebSocket, eventually, flood_until, mint_token, open_english, unique


FIRST = "00000000000000000001.seg"


def bid_all(bidder, listing, amounts):
    for amount in amounts:
        bidder.command({"type": "bid", "listing": listing, "amount": amount})


@pytest.mark.parametrize("role", ["bidder", "seller", "watcher", None])
def test_feed_is_refused_to_bidder_seller_watcher_and_anonymous_tokens(server, role):
    client = server.connect(mint_token("eve", role, secret=server.secret)) if role else server.connect()
    with client:
        client.send({"type": "subscribe_feed", "id": "f1"})
        reply = client.result("f1")
        assert reply["ok"] is False and reply["error"] == "not_authorized"
        assert "service and admin" in reply["message"]
        client.quiet(lambda m: "lsn" in m, 0.3)


def test_live_feed_carries_every_event_in_journal_order_with_lsn_and_last(start_server, gavel_bin):
    srv = start_server()
    listing = unique()
    with feed_client(srv) as feed, srv.user("sam", "seller") as sam, srv.user("ann") as ann, srv.user("bob") as bob:
        feed.send({"type": "subscribe_feed"})
        live = feed.expect(lambda m: m.get("type") == "feed_live", what="feed_live")
        assert open_english(sam, listing, start=100, increments=[[0, 1]])["ok"]
        bid_all(ann, listing, [100, 150])
        bid_all(bob, listing, [120, 300])  # 120 is refused: not in the feed without include_rejections
        marker = {"type": "bid", "listing": listing, "amount": 400}
        ann.command(marker)
        messages = read_feed_through(feed, lambda m: m.get("type") == "bid_placed" and m.get("price") == 301)
        by_lsn, _ = replay_by_lsn(gavel_bin, srv.data_dir)
        through = messages[-1]["lsn"]
        assert strip(messages) == expected_feed(by_lsn, live["lsn"] + 1, through)
        assert any(m["type"] == "outbid" for m in messages), "private notices are in the feed as plain events"
        check_last_flags(messages)
        assert all("ts" not in m for m in messages)


def test_feed_filters_by_type_and_listing_and_reports_rejections_when_asked(start_server, gavel_bin):
    srv = start_server()
    wanted, other = unique(), unique()
    with feed_client(srv, role="admin") as feed, srv.user("sam", "seller") as sam, srv.user("ann") as ann, \
            srv.user("bob") as bob:
        feed.send({"type": "subscribe_feed", "types": ["bid_placed", "outbid"], "listings": [wanted],
                   "include_rejections": True})
        live = feed.expect(lambda m: m.get("type") == "feed_live")
        for listing in (other, wanted):
            assert open_english(sam, listing, start=100, increments=[[0, 1]])["ok"]
            bid_all(ann, listing, [100])
            bid_all(bob, listing, [50, 200])  # 50 is below the minimum: rejected
        messages = read_feed_through(feed, lambda m: m.get("type") == "bid_placed" and m.get("bids") == 2)
        by_lsn, entries = replay_by_lsn(gavel_bin, srv.data_dir)
        events = [m for m in messages if m["type"] != "rejected"]
        expected = expected_feed(by_lsn, live["lsn"] + 1, messages[-1]["lsn"], {"bid_placed", "outbid"}, {wanted})
        assert strip(events) == expected
        rejected = [m for m in messages if m["type"] == "rejected"]
        assert len(rejected) == 1
        r = rejected[0]
        assert r["listing"] == wanted and r["principal"] == "bob" and r["command"] == "bid"
        assert r["error"] == "bid_too_low" and r["last"] is True
        assert r["error"] == by_lsn[r["lsn"]]["result"]["error"] and r["message"] == by_lsn[r["lsn"]]["result"]["message"]
        assert entries[r["lsn"]]["id"] == r["id"]
        check_last_flags(messages)


def test_feed_requests_that_cannot_be_served_get_a_specific_error(server):
    with feed_client(server) as feed:
        feed.send({"type": "subscribe_feed", "id": "t", "types": ["bid_placed", "bids"]})
        reply = feed.result("t")
        assert reply["error"] == "bad_request" and '"bids"' in reply["message"] and "order_placed" in reply["message"]
        feed.send({"type": "subscribe_feed", "id": "far", "since_lsn": 10**12})
        reply = feed.result("far")
        assert reply["error"] == "feed_history_diverged" and "past this server's journal" in reply["message"]
        assert reply["durable_lsn"] < 10**12 and "rebuild" in reply["message"]
        feed.send({"type": "subscribe_feed", "id": "zero", "since_lsn": 0})
        assert feed.result("zero")["error"] == "bad_request"
        feed.send({"type": "subscribe_feed", "id": "ok"})
        feed.expect(lambda m: m.get("type") == "feed_live")
        feed.send({"type": "subscribe_feed", "id": "again"})
        reply = feed.result("again")
        assert reply["error"] == "bad_request" and "already has a feed" in reply["message"]


def drive(srv, listing, count, open_listing=True, start=100):
    """Opens `listing` and sends `count` english bids on it for ann and bob through one service connection,
    pipelined in windows of 200; returns the results."""
    results = []
    with feed_client(srv, sub="market") as market:
        if open_listing:
            assert open_english(market, listing, start=100, increments=[[0, 1]], on_behalf_of="sam")["ok"]
        for first in range(0, count, 200):
            ids = []
            for i in range(first, min(count, first + 200)):
                rid = f"d{listing}-{start + i}"
                market.send({"type": "bid", "id": rid, "listing": listing, "amount": start + i,
                             "on_behalf_of": "ann" if i % 2 else "bob"})
                ids.append(rid)
            results += [market.result(rid, timeout=60) for rid in ids]
    assert all(r["ok"] or r["error"] == "bid_too_low" for r in results), results[:3]
    return results


def rss_bytes(srv):
    with open(f"/proc/{srv.process.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_catch_up_from_the_middle_across_segments_and_a_snapshot_equals_a_replay(start_server, gavel_bin):
    srv = start_server("--segment-bytes", "4096", "--snapshot-every", "150", "--keep-snapshots", "50")
    listing = unique()
    drive(srv, listing, 700)
    # The checkpointer writes snapshots in the background, in the idle scheduling class.
    # (Points that come while one is being written are merged into the next.)
    assert eventually(lambda: len(os.listdir(os.path.join(srv.data_dir, "snapshots"))) >= 2, 60)
    by_lsn, _ = replay_by_lsn(gavel_bin, srv.data_dir)
    end = max(by_lsn)
    assert len(os.listdir(os.path.join(srv.data_dir, "journal"))) >= 3
    for since in (1, 151, 152, 400, end):
        with feed_client(srv) as feed:
            feed.send({"type": "subscribe_feed", "since_lsn": since})
            messages, live = read_feed_until(feed, lambda m: m.get("type") == "feed_live", timeout=60)
            assert live["lsn"] >= end
            assert strip(messages) == expected_feed(by_lsn, since, live["lsn"])
            check_last_flags(messages)


def test_switch_from_catch_up_to_live_under_load_gives_every_lsn_exactly_once(start_server, gavel_bin):
    srv = start_server("--segment-bytes", "8192", "--max-outbound-bytes", "65536")
    listing = unique()
    drive(srv, listing, 200)
    stop = threading.Event()

    going = threading.Event()

    def keep_bidding():
        with feed_client(srv, sub="driver") as market:
            amount = 1000
            while not stop.is_set():
                amount += 1
                market.command({"type": "bid", "listing": listing, "amount": amount,
                                "on_behalf_of": "cat" if amount % 2 else "dan"})
                if amount == 1050:
                    going.set()

    driver = threading.Thread(target=keep_bidding)
    driver.start()
    try:
        assert going.wait(30), "the driver is bidding"
        with feed_client(srv) as feed:
            feed.send({"type": "subscribe_feed", "since_lsn": 1})
            messages, live = read_feed_until(feed, lambda m: m.get("type") == "feed_live", timeout=60)
            # Live messages while the driver goes on.
            more, _ = read_feed_until(feed, lambda m: m["lsn"] >= live["lsn"] + 20 and m["last"], timeout=30)
            messages += more
            stop.set()
            driver.join(timeout=30)
            by_lsn, _ = replay_by_lsn(gavel_bin, srv.data_dir)
            end = max(by_lsn)
            assert end >= live["lsn"] + 20
            while messages[-1]["lsn"] < end or not messages[-1]["last"]:
                messages.append(feed.expect(lambda m: "lsn" in m and m.get("type") != "feed_live", timeout=30))
            assert strip(messages) == expected_feed(by_lsn, 1, end)
            check_last_flags(messages)
    finally:
        stop.set()
        driver.join(timeout=30)


def test_since_lsn_before_the_retained_journal_is_refused_with_the_oldest_lsn(start_server):
    srv = start_server("--segment-bytes", "4096", "--snapshot-every", "150", "--keep-snapshots", "1")
    drive(srv, unique(), 400)  # snapshots every 150 entries; the segments before the newest one's are removed

    def snapshots():
        return sorted(int(name.split(".")[0]) for name in os.listdir(os.path.join(srv.data_dir, "snapshots"))
                      if name.endswith(".snap"))

    # The checkpointer writes the last snapshot point (past 300) and applies retention after the drive returns.
    assert eventually(lambda: FIRST not in os.listdir(os.path.join(srv.data_dir, "journal"))
                      and len(snapshots()) == 1 and snapshots()[0] > 300, 60), snapshots()
    newest = snapshots()[0]
    drive(srv, unique(), 40)  # fewer than --snapshot-every: the journal goes on past the snapshot, none is taken
    with feed_client(srv) as feed:
        feed.send({"type": "subscribe_feed", "id": "old", "since_lsn": 1})
        reply = feed.result("old")
        assert reply["ok"] is False and reply["error"] == "feed_lsn_not_retained"
        oldest = reply["oldest_lsn"]
        assert f"is {oldest}" in reply["message"]
        # The oldest lsn a replay can start at: one past the oldest snapshot the journal continues from, not the
        # journal's end + 1, which would have a consumer skip what the feed can still serve.
        assert snapshots() == [newest] and oldest == newest + 1, (oldest, snapshots())
        feed.quiet(lambda m: "lsn" in m, 0.3)
    with feed_client(srv) as feed:
        feed.send({"type": "subscribe_feed", "since_lsn": oldest})
        messages, live = read_feed_until(feed, lambda m: m.get("type") == "feed_live", timeout=60)
        assert live["lsn"] >= newest + 40 and messages[0]["lsn"] == oldest
        check_last_flags(messages)


def test_retained_journal_keeps_covered_segments_the_feed_serves_from_lsn_1(start_server, gavel_bin):
    srv = start_server("--segment-bytes", "4096", "--snapshot-every", "50", "--keep-snapshots", "1",
                       "--retain-journal", "64MiB")
    drive(srv, unique(), 600)
    by_lsn, _ = replay_by_lsn(gavel_bin, srv.data_dir)
    assert min(by_lsn) == 1 and len(os.listdir(os.path.join(srv.data_dir, "journal"))) >= 3
    with feed_client(srv) as feed:
        feed.send({"type": "subscribe_feed", "since_lsn": 1})
        messages, live = read_feed_until(feed, lambda m: m.get("type") == "feed_live", timeout=60)
        assert strip(messages) == expected_feed(by_lsn, 1, live["lsn"])


def test_archived_segments_are_moved_served_dumped_and_verified(start_server, gavel_bin, tmp_path):
    archive = tmp_path / "archive"
    srv = start_server("--segment-bytes", "4096", "--snapshot-every", "50", "--keep-snapshots", "1",
                       "--archive-dir", str(archive))
    drive(srv, unique(), 400)
    assert eventually(lambda: os.path.exists(archive / FIRST), 60)
    archived = sorted(name for name in os.listdir(archive) if name.endswith(".seg"))
    assert archived and archived[0] == FIRST
    live_segments = sorted(os.listdir(os.path.join(srv.data_dir, "journal")))
    assert not set(archived) & set(live_segments), "moved, not copied"
    by_lsn, _ = replay_by_lsn(gavel_bin, srv.data_dir, archive_dir=archive)
    assert min(by_lsn) == 1
    with feed_client(srv) as feed:
        feed.send({"type": "subscribe_feed", "since_lsn": 1})
        messages, live = read_feed_until(feed, lambda m: m.get("type") == "feed_live", timeout=60)
        assert strip(messages) == expected_feed(by_lsn, 1, live["lsn"])
    srv.stop()
    verify = subprocess.run([gavel_bin, "verify", "--data-dir", srv.data_dir, "--archive-dir", str(archive)],
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def simulated_journal(gavel_bin, data_dir, bids):
    """A data directory whose journal holds 50 english listings and `bids` bids a millisecond apart, written by
    `gavel simulate` with a 1 s idempotency window: a long feed over a small state (about 1,000 remembered ids)."""
    lines = [json.dumps({"type": "open", "id": f"o{k}", "listing": f"L{k}", "seller": "sam", "format": "english",
                         "start": 100, "closes_at": 10**13, "at": 0}) for k in range(50)]
    lines += [json.dumps({"type": "bid", "id": f"b{n}", "listing": f"L{n % 50}", "bidder": f"u{(n // 50) % 7}",
                          "amount": 1000 + n, "at": 1 + n}) for n in range(bids)]
    subprocess.run([gavel_bin, "simulate", "--data-dir", str(data_dir), "--fsync", "none", "--snapshot-every", "0",
                    "--idempotency-window-ms", "1000"],
                   input="\n".join(lines) + "\n", text=True, stdout=subprocess.DEVNULL, check=True, timeout=300)


def test_a_consumer_that_does_not_read_its_catch_up_keeps_server_memory_bounded(start_server, gavel_bin, tmp_path):
    data = tmp_path / "big"
    simulated_journal(gavel_bin, data, 240_000)  # a feed from lsn 1 of about 88 MB
    srv = start_server("--max-feed-catchups", "1", data_dir=data)
    # The server snapshots the recovered state at start; the checkpointer's copy of the state (its shadow engine) is
    # not the consumer's doing, so the baseline is taken once that snapshot is written. The catch-up's own engine
    # holds a copy of the state too, small here, and the segment it reads: what must not grow is the feed.
    deadline = time.monotonic() + 120
    while "snapshot at lsn" not in pathlib.Path(srv.log_path).read_text(errors="replace"):
        assert time.monotonic() < deadline, "no snapshot at start:\n" + srv.log_tail()
        time.sleep(0.2)
    time.sleep(1.0)
    before = rss_bytes(srv)
    # The consumer reads nothing (a small receive buffer) while bids go on.
    sock = RawWebSocket(srv.port, headers={"Authorization": "Bearer " + mint_token("slow", "service",
                                                                                     secret=srv.secret)},
                        rcvbuf=8192)
    with sock:
        sock.send_text(json.dumps({"type": "subscribe_feed", "since_lsn": 1}))
        with feed_client(srv, sub="market") as market:
            for n in range(2_000):
                market.send({"type": "bid", "id": f"live{n}", "listing": f"L{n % 50}", "amount": 10**9 + n,
                             "on_behalf_of": "zed"})
            assert market.result(f"live{1999}", timeout=60)["ok"]
        time.sleep(1.0)
        grown = rss_bytes(srv) - before
        # A catch-up costs a fixed amount whatever the feed's length (its thread, its engine, the 4 MiB window of the
        # segment it reads: 48-54 MB with this 88 MB feed, debug build; 78 MB when it read whole segments); a server
        # that buffered the feed for this consumer would pass 140 MB.
        assert grown < 120 * 1024 * 1024, f"RSS grew by {grown} bytes for a consumer that reads nothing"
        # It holds the only catch-up: another one is refused, live feeds are not.
        with feed_client(srv) as feed:
            feed.send({"type": "subscribe_feed", "id": "busy", "since_lsn": 2})
            reply = feed.result("busy")
            assert reply["error"] == "overloaded" and "--max-feed-catchups" in reply["message"]
        with feed_client(srv) as feed:
            feed.send({"type": "subscribe_feed"})
            assert feed.expect(lambda m: m.get("type") == "feed_live")["lsn"] >= 242_050
    # Once it is gone its catch-up ends and frees the place.
    def caught_up():
        with feed_client(srv) as feed:
            feed.send({"type": "subscribe_feed", "id": "late", "since_lsn": 242_000})
            m = feed.expect(lambda m: m.get("id") == "late" or "lsn" in m, timeout=120)
            if m.get("type") == "result":
                return False
            messages, live = read_feed_until(feed, lambda m: m.get("type") == "feed_live", timeout=60)
            return [m, *messages][0]["lsn"] == 242_000 and live["lsn"] >= 242_050
    assert eventually(caught_up, 30)


def test_a_live_feed_consumer_that_does_not_read_is_dropped_with_1013(start_server):
    # Whichever way the live batches reach it (small ones straight to its connection, which passes the outbound cap;
    # one bigger than half the cap read from disk like a catch-up, which waits --feed-stall-timeout-ms for the
    # socket), the consumer is closed. Before that the kernel's socket buffers on loopback can take a few megabytes,
    # more than the default service rate lets through in a second or two, so the flood's rate limit is lifted.
    srv = start_server("--max-outbound-bytes", "65536", "--fsync", "none", "--feed-stall-timeout-ms", "500",
                       *UNLIMITED_SERVICE_RATE)
    listing = unique("hot") + "-" + "x" * 40  # long names make big events: fewer to flood the socket buffers
    bidder = "b" * 60
    with feed_client(srv, sub="market") as market:
        assert open_english(market, listing, on_behalf_of="sam", increments=[[0, 1]])["ok"]
        stalled = RawWebSocket(srv.port, headers={"Authorization": "Bearer " + mint_token("slow", "service",
                                                                                            secret=srv.secret)},
                               rcvbuf=4096)
        with stalled:
            stalled.send_text(json.dumps({"type": "subscribe_feed"}))
            flood_until(market, listing, bidder, lambda: srv.metric("gavel_slow_consumer_closes_total") >= 1,
                        "the stalled feed consumer was closed")


def test_example_consumer_resumes_from_its_stored_lsn(start_server, gavel_bin, tmp_path):
    srv = start_server()
    listing = unique()
    drive(srv, listing, 30)
    position = tmp_path / "position.txt"
    token = mint_token("consumer", "service", secret=srv.secret)
    example = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "feed_consumer.py")

    def run():
        out = subprocess.run([sys.executable, example, f"ws://127.0.0.1:{srv.port}/ws", token, str(position),
                              "--once"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines()]

    def stored():
        lsn, mark_lsn, chain = position.read_text().split()
        assert int(mark_lsn) >= int(lsn) and len(chain) == 64, "the position's lsn and the feed_mark of its batch"
        return int(lsn)

    first = run()
    by_lsn, _ = replay_by_lsn(gavel_bin, srv.data_dir)
    end = max(by_lsn)
    assert strip(first) == expected_feed(by_lsn, 1, end) and stored() == end
    drive(srv, listing, 10, open_listing=False, start=1000)
    second = run()
    by_lsn, _ = replay_by_lsn(gavel_bin, srv.data_dir)
    assert strip(second) == expected_feed(by_lsn, end + 1, max(by_lsn)), "only what came after, once"
    assert stored() == max(by_lsn)


def test_a_batch_bigger_than_the_connection_may_hold_is_read_from_disk_not_a_slow_consumer_close(start_server,
                                                                                                  gavel_bin):
    # 150 listings close at the same millisecond: one tick entry whose feed messages (closed, settlement) are several
    # times half of --max-outbound-bytes. A live consumer gets them read from the journal in paced pieces instead of
    # being closed as slow, with no gap, no duplicate and no second feed_live; a consumer catching up from lsn 1
    # gets the same entry in pieces too.
    srv = start_server("--max-outbound-bytes", "16384", "--opens-per-minute", "1000")
    prefix = unique()
    with feed_client(srv) as feed, feed_client(srv, sub="market") as market:
        feed.send({"type": "subscribe_feed"})
        live = feed.expect(lambda m: m.get("type") == "feed_live", what="feed_live")
        closes_at = market.hello["server_time"] + 4_000
        for k in range(150):
            listing = f"{prefix}-{k}"
            market.send({"type": "open", "id": f"o{k}", "listing": listing, "format": "english", "start": 100,
                         "closes_at": closes_at, "on_behalf_of": "sam"})
            market.send({"type": "bid", "id": f"b{k}", "listing": listing, "amount": 100, "on_behalf_of": "ann"})
        for k in range(150):
            assert market.result(f"o{k}", timeout=30)["ok"] and market.result(f"b{k}", timeout=30)["ok"]
        closed = set()

        def all_closed(m):
            if m.get("type") == "closed":
                closed.add(m["listing"])
            return len(closed) == 150

        messages = read_feed_through(feed, all_closed, timeout=60)
        assert not any(m.get("type") == "feed_live" for m in messages)
        by_lsn, _ = replay_by_lsn(gavel_bin, srv.data_dir)
        through = messages[-1]["lsn"]
        assert strip(messages) == expected_feed(by_lsn, live["lsn"] + 1, through)
        check_last_flags(messages)
        biggest = max(sum(len(json.dumps(e)) for e in entry["events"]) for entry in by_lsn.values())
        assert biggest > 4 * 8192, f"the closing tick's messages are only {biggest} bytes: the test proves nothing"
        # Still open and live: a later open reaches it.
        market.command({"type": "open", "listing": f"{prefix}-late", "format": "english", "start": 100,
                        "closes_at": closes_at + 600_000, "on_behalf_of": "sam"})
        later, _ = read_feed_until(feed, lambda m: m.get("listing") == f"{prefix}-late", timeout=30)
        assert later[-1]["type"] == "opened"
    with feed_client(srv) as again:
        again.send({"type": "subscribe_feed", "since_lsn": 1})
        caught, switch = read_feed_until(again, lambda m: m.get("type") == "feed_live", timeout=60)
        assert switch["lsn"] > through
        by_lsn, _ = replay_by_lsn(gavel_bin, srv.data_dir)
        assert strip(caught) == expected_feed(by_lsn, 1, switch["lsn"])
        check_last_flags(caught)


def test_a_catch_up_whose_consumer_stops_reading_is_closed_and_frees_its_place(start_server, gavel_bin, tmp_path):
    # One catch-up at a time; the consumer reads nothing, so its paced catch-up waits on its socket: after
    # --feed-stall-timeout-ms it is closed as a slow consumer, and the next consumer can catch up. The journal
    # (written by gavel simulate) holds about 14 MB of feed messages: more than the kernel's socket buffers take.
    data = tmp_path / "stall-data"
    lines = [json.dumps({"type": "open", "id": f"o{k}", "listing": f"L{k}", "seller": "sam", "format": "english",
                         "start": 100, "closes_at": 10**13, "at": 0}) for k in range(100)]
    lines += [json.dumps({"type": "bid", "id": f"b{n}", "listing": f"L{n % 100}", "bidder": f"u{n % 7}",
                          "amount": 1000 + n * 20000}) for n in range(30_000)]
    subprocess.run([gavel_bin, "simulate", "--data-dir", str(data), "--fsync", "none", "--snapshot-every", "0"],
                   input="\n".join(lines) + "\n", text=True, stdout=subprocess.DEVNULL, check=True, timeout=300)
    srv = start_server("--max-outbound-bytes", "65536", "--feed-stall-timeout-ms", "500", "--max-feed-catchups", "1",
                       data_dir=data)
    stalled = RawWebSocket(srv.port, headers={"Authorization": "Bearer " + mint_token("slow", "service",
                                                                                        secret=srv.secret)},
                           rcvbuf=4096)
    with stalled:
        stalled.send_text(json.dumps({"type": "subscribe_feed", "since_lsn": 1}))
        assert eventually(lambda: srv.metric("gavel_slow_consumer_closes_total") >= 1, 30), \
            "the stalled catch-up was not closed"
    with feed_client(srv) as feed:
        # The closed catch-up's threads end just after its connection is closed; until then its place is taken and
        # the server answers overloaded ("retry in a few seconds"), so the consumer retries, as a real one would.
        deadline = time.monotonic() + 10
        while True:
            feed.send({"type": "subscribe_feed", "id": "again", "since_lsn": 1})
            first = feed.expect(lambda m: "lsn" in m or m.get("type") == "result", timeout=60,
                                what="a feed message or a refusal")
            if first.get("type") != "result":
                break
            assert first["error"] == "overloaded" and time.monotonic() < deadline, first
            time.sleep(0.1)
        messages, live = read_feed_until(feed, lambda m: m.get("type") == "feed_live", timeout=60)
        assert live is not None and len(messages) + 1 >= 30_000
