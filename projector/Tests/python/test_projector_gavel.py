"""gavel-projector against a real `gavel serve` (the debug build, GAVEL_BIN) and a real PostgreSQL 15: the read
model equals what the journal says (`gavel dump`, replayed through `gavel simulate`), across kill -9 of the projector
and of the server, and after being away while traffic went on."""

import json
import os
import pathlib
import random
import subprocess
import sys
import threading
import time

import pytest
import websockets

from conftest import SECRET, eventually, position, query

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "Tests/python"))
from support import Server, mint_token  # noqa: E402

GAVEL = os.environ.get("GAVEL_BIN", str(ROOT / ".build/debug/gavel"))


def _serves_the_feed():
    try:
        return "feed" in subprocess.run([GAVEL, "serve", "--help"], capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _serves_the_feed(), reason=f"{GAVEL} has no subscribe_feed (gavel serve --help)")


class StickyServer(Server):
    """A server that keeps its ports across restarts, so the projector reconnects to the same URL."""

    def start(self, timeout=30.0):
        port, admin = self.port, self.admin_port
        if port is None:
            return super().start(timeout)
        import support
        saved = support.free_port
        ports = iter([port, admin])
        support.free_port = lambda: next(ports)
        try:
            return super().start(timeout)
        finally:
            support.free_port = saved


@pytest.fixture
def server_at(tmp_path):
    started = []

    def start(data_dir):
        s = StickyServer(GAVEL, data_dir, tmp_path / f"serve{len(started)}.log", secret=SECRET).start()
        started.append(s)
        return s

    yield start
    for s in started:
        if s.process is not None and s.process.poll() is None:
            s.stop()


def restart(server):
    server.stop()
    return server.start()


def traffic(server, listings, bids, seed, closes_in_ms=1500):
    """Opens `listings` english listings and sends `bids` bids over them from a service connection, rising, with
    every tenth too low (refused: in the journal but no row). Returns the listing ids."""
    rng = random.Random(seed)
    service = server.connect(mint_token("gw", "service", secret=SECRET))
    prefix = f"P{seed}-"
    ids = [f"{prefix}{i}" for i in range(listings)]
    closes = int(time.time() * 1000) + closes_in_ms
    sent = []
    for n, lid in enumerate(ids):
        rid = f"o{seed}-{n}"
        service.send({"type": "open", "id": rid, "listing": lid, "format": "english", "seller": f"s{n % 5}",
                      "start": 100, "closes_at": closes, "payment_due_ms": 60000})
        sent.append(rid)
    for rid in sent:
        assert service.result(rid)["ok"], rid
    sent = []
    for n in range(bids):
        rid = f"b{seed}-{n}"
        service.send({"type": "bid", "id": rid, "listing": rng.choice(ids), "bidder": f"u{rng.randrange(40)}",
                      "amount": 50 if n % 10 == 0 else 100 + 30 * n + rng.randrange(30)})
        sent.append(rid)
    for rid in sent:
        service.result(rid, timeout=30)
    service.close()
    return ids


def traffic_until_the_server_dies(*args, **kwargs):
    """`traffic` in a thread whose server is killed under it."""
    try:
        traffic(*args, **kwargs)
    except (websockets.exceptions.ConnectionClosed, AssertionError, OSError):
        pass


def pay_all(server, listings):
    """Confirms the payment of every listing's sale (settlement L:1) that exists."""
    service = server.connect(mint_token("payments", "service", secret=SECRET))
    for n, lid in enumerate(listings):
        service.send({"type": "confirm_payment", "id": f"p-{lid}", "settlement": f"{lid}:1",
                      "payment_ref": f"PAY-{n}"})
    for lid in listings:
        service.result(f"p-{lid}", timeout=30)
    service.close()


def journal_truth(data_dir):
    """What the journal says, as the read model should hold it: `gavel dump` replayed through `gavel simulate`
    (the engine is a pure function of the commands), its events collected."""
    dump = subprocess.run([GAVEL, "dump", "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=120,
                          check=True).stdout
    lines = []
    for line in dump.splitlines():
        entry = json.loads(line)
        if entry.get("type") == "tick":
            lines.append(json.dumps({"type": "advance", "at": entry["at"]}))
        else:
            lines.append(line)
    out = subprocess.run([GAVEL, "simulate"], input="\n".join(lines) + "\n", capture_output=True, text=True,
                         timeout=120, check=True).stdout
    truth = {"listings": {}, "bids": set(), "settlements": {}, "transitions": 0}
    for line in out.splitlines():
        e = json.loads(line)
        kind = e.get("type")
        if kind == "opened":
            truth["listings"][e["listing"]] = None
        elif kind == "closed":
            truth["listings"][e["listing"]] = (e.get("winner"), e.get("price"))
        elif kind == "bid_placed":
            truth["bids"].add((e["listing"], e["seq"], e.get("leader"), e.get("price")))
        elif kind == "settlement":
            truth["settlements"][e["settlement"]] = e["state"]
            truth["transitions"] += 1
    return truth


def read_model(url):
    listings = {lid: (winner, price) if status == "closed" else None
                for lid, status, winner, price in query(url, "SELECT id, status, winner, final_price FROM listings")}
    bids = query(url, "SELECT listing, seq, leader, price FROM bids")
    settlements = dict(query(url, "SELECT id, state FROM settlements"))
    transitions = query(url, "SELECT count(*) FROM settlement_transitions")[0][0]
    return {"listings": listings, "bids": set(bids), "settlements": settlements, "transitions": transitions,
            "bid_rows": len(bids)}


def assert_in_step(url, data_dir):
    truth = journal_truth(data_dir)
    model = read_model(url)
    assert model["bid_rows"] == len(model["bids"])  # no row twice
    assert model["listings"] == truth["listings"]
    assert model["bids"] == truth["bids"]
    assert model["settlements"] == truth["settlements"]
    assert model["transitions"] == truth["transitions"]
    return truth


def head_lsn(data_dir):
    dump = subprocess.run([GAVEL, "dump", "--data-dir", str(data_dir)], capture_output=True, text=True,
                          timeout=120, check=True).stdout.splitlines()
    return json.loads(dump[-1])["lsn"] if dump else 0


def catch_up_and_compare(server, projector, database):
    """Stops the server, reads its last lsn, starts it again on the same port and waits for the projector (which
    reconnects by itself) to reach that lsn; then stops it and compares the read model with the journal."""
    server.stop()
    head = head_lsn(server.data_dir)
    server.start()
    assert eventually(lambda: (position(database) or 0) >= head, seconds=90), projector.log_text()
    server.stop()
    return assert_in_step(database, server.data_dir)


def test_the_read_model_equals_the_journal_after_a_load_run(server_at, database, projectors, tmp_path):
    server = server_at(tmp_path / "data")
    projector = projectors(server.ws_url(), database).start()
    ids = traffic(server, listings=30, bids=1500, seed=1)
    time.sleep(2.0)  # the listings close (engine timers) and create their settlements
    pay_all(server, ids)
    truth = catch_up_and_compare(server, projector, database)
    assert len(truth["bids"]) > 100 and len(truth["settlements"]) > 10
    assert "paid" in truth["settlements"].values()
    assert projector.metric('gavel_projector_reconnects_total{peer="gavel"}') >= 1


def test_rows_show_within_a_second_of_the_bid(server_at, database, projectors, tmp_path):
    server = server_at(tmp_path / "data")
    projector = projectors(server.ws_url(), database).start()
    assert eventually(lambda: projector.metric("gavel_projector_live") == 1, seconds=30), projector.log_text()
    seller = server.user("sam", "seller")
    assert seller.command({"type": "open", "listing": "Q1", "format": "english", "start": 100,
                           "closes_at": int(time.time() * 1000) + 60000})["ok"]
    bidder = server.user("ann")
    assert bidder.command({"type": "bid", "listing": "Q1", "amount": 500})["ok"]
    acknowledged = time.monotonic()
    assert eventually(lambda: query(database, "SELECT leader FROM bids WHERE listing = 'Q1'") == [("ann",)],
                      seconds=5, interval=0.01)
    assert time.monotonic() - acknowledged < 1.0


def test_kill_9_of_projector_and_server_under_load_then_restart_neither_loses_nor_doubles(
        server_at, database, projectors, tmp_path):
    server = server_at(tmp_path / "data")
    extra = ["--batch-events", "40"]
    projector = projectors(server.ws_url(), database, extra=extra).start()
    load = threading.Thread(target=traffic, args=(server, 20, 3000, 2), kwargs={"closes_in_ms": 60000})
    load.start()
    # The projector dies in the middle of its batches while the traffic goes on.
    assert eventually(lambda: (position(database) or 0) > 200, seconds=60), projector.log_text()
    projector.kill9()
    load.join(120)
    projector = projectors(server.ws_url(), database, extra=extra).start()
    load = threading.Thread(target=traffic_until_the_server_dies, args=(server, 10, 2000, 3),
                            kwargs={"closes_in_ms": 60000})
    load.start()
    assert eventually(lambda: (projector.metric("gavel_projector_events_applied_total") or 0) > 0, seconds=30)
    # Then the server dies under load.
    time.sleep(0.3)
    server.kill9()
    load.join(60)
    server.start()
    truth = catch_up_and_compare(server, projector, database)
    assert len(truth["bids"]) > 500


def test_a_projector_far_behind_catches_up_while_traffic_goes_on(server_at, database, projectors, tmp_path):
    server = server_at(tmp_path / "data")
    traffic(server, listings=40, bids=4000, seed=5, closes_in_ms=60000)
    projector = projectors(server.ws_url(), database).start()
    traffic(server, listings=10, bids=1000, seed=6, closes_in_ms=60000)
    assert eventually(lambda: projector.metric("gavel_projector_live") == 1, seconds=60), projector.log_text()
    catch_up_and_compare(server, projector, database)


def test_a_bidder_token_cannot_read_the_feed(server_at, database, projectors, tmp_path):
    server = server_at(tmp_path / "data")
    projector = projectors(server.ws_url(), database, extra=[
        "--token", mint_token("ann", "bidder", secret=SECRET)], secret=None).start()
    assert projector.process.wait(30) == 1
    assert "not_authorized" in projector.log_text()


def test_a_token_the_server_does_not_take_is_named_with_the_servers_answer(server_at, database, projectors, tmp_path):
    server = server_at(tmp_path / "data")
    wrong = mint_token("feeder", "service", secret="another-secret-of-at-least-32-bytes!!")
    projector = projectors(server.ws_url(), database, extra=["--token", wrong], secret=None).start()
    assert eventually(lambda: "refused the WebSocket upgrade with 401 Unauthorized" in projector.log_text(),
                      seconds=30), projector.log_text()
    text = projector.log_text()
    assert "not signed with a key the server takes" in text
    assert wrong not in text
    projector.stop()
