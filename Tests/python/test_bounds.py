"""Bounded engine state through a real server: listing queues only for listings that exist, closed listings
evicted after their retention, dutch steps no shorter than a minimum, listings no longer than a maximum, kept
across a restart."""

import os
import time

from conftest import run_gavel
from support import now_ms, open_english, request_id, unique


def test_bids_on_made_up_ids_do_not_stop_a_later_open(start_server):
    srv = start_server("--max-listing-queues", "5", "--fsync", "none", "--rate", "1000", "--rate-burst", "1000")
    with srv.user("mallory") as mallory, srv.user("sam", "seller") as sam:
        ids = [f"m{i}" for i in range(300)]
        for rid in ids:
            mallory.send({"type": "bid", "id": rid, "listing": unique("ghost"), "amount": 500})
        results = [mallory.result(rid) for rid in ids]
        assert all(r["error"] == "unknown_listing" for r in results), [r for r in results if r["error"] != "unknown_listing"][:3]
        assert all(r["message"] for r in results)
        listings = [unique() for _ in range(5)]
        for listing in listings:
            assert open_english(sam, listing)["ok"]
        # The cap is reached by real listings: a sixth open is refused with a message naming the setting, and
        # bids on the existing listings still go through.
        refused = open_english(sam, unique())
        assert refused["error"] == "overloaded" and "--max-listing-queues" in refused["message"], refused
        assert mallory.command({"type": "bid", "listing": listings[0], "amount": 200})["ok"]


def test_a_closed_listing_leaves_the_list_after_its_retention(start_server):
    srv = start_server("--closed-listing-retention-ms", "300", "--fsync", "none")
    listing = unique()
    with srv.user("sam", "seller") as sam, srv.user("ann") as ann:
        assert open_english(sam, listing, closes_in_ms=400)["ok"]
        ann.subscribe(listing)
        assert ann.event(listing, "closed", timeout=10)["seq"] == 2
        deadline = time.monotonic() + 10
        while True:
            rid = request_id("q")
            ann.send({"type": "list", "id": rid, "status": "all"})
            page = ann.expect(lambda m: m.get("id") == rid and m.get("type") == "listings", what=f"list {rid}")
            if listing not in [item["listing"] for item in page["listings"]]:
                break
            assert time.monotonic() < deadline, "the closed listing was never evicted"
            time.sleep(0.1)
        assert ann.command({"type": "bid", "listing": listing, "amount": 500})["error"] == "unknown_listing"
        snapshot = ann.subscribe(listing)
        assert snapshot["state"] is None and snapshot["seq"] == 0, snapshot
        assert open_english(sam, listing)["ok"], "an evicted id may be opened again"


def dutch(listing, step_every_ms, closes_in_ms=600_000):
    return {"type": "open", "listing": listing, "format": "dutch", "start": 10**15, "floor": 1, "step": 1,
            "step_every_ms": step_every_ms, "quantity": 1, "closes_at": now_ms() + closes_in_ms}


def test_a_dutch_step_below_the_minimum_and_a_listing_longer_than_the_maximum_are_refused(start_server, tmp_path):
    data = tmp_path / "limits"
    srv = start_server("--min-dutch-step-ms", "500", "--max-listing-duration-ms", "86400000", data_dir=data)
    with srv.user("sam", "seller") as sam:
        fast = sam.command(dutch(unique(), 1))
        assert fast["error"] == "bad_request"
        assert fast["message"] == "step_every_ms 1 is below the minimum of 500 ms (--min-dutch-step-ms)"
        assert sam.command(dutch(unique(), 500))["ok"]
        far = open_english(sam, unique(), closes_in_ms=86_400_000 + 60_000)
        assert far["error"] == "bad_request" and "maximum listing duration of 86400000 ms" in far["message"], far
    srv.stop()
    # Part of the state: a restart with other values keeps the data directory's, and says so.
    again = start_server("--min-dutch-step-ms", "2000", data_dir=data)
    with again.user("sam", "seller") as sam:
        assert sam.command(dutch(unique(), 500))["ok"]
    assert "--min-dutch-step-ms 2000 ignored" in again.log_tail()


def test_the_first_starts_state_settings_hold_after_a_crash_before_any_snapshot(start_server, tmp_path, gavel_bin):
    data = tmp_path / "settings"
    srv = start_server("--min-dutch-step-ms", "10", "--snapshot-every-seconds", "0", data_dir=data)
    with srv.user("sam", "seller") as sam, srv.user("bob") as bob:
        assert sam.command(dutch("D1", 50))["ok"]
        assert bob.command({"type": "accept", "listing": "D1", "quantity": 1})["ok"]
    assert os.listdir(data / "snapshots") == []
    srv.kill9()
    # Restarted without the option, after a crash that left no snapshot: the journal replays under the first
    # start's settings (kept in <data-dir>/engine-settings), so the acknowledged open and fill are there.
    again = start_server(data_dir=data)
    assert "--min-dutch-step-ms 100 ignored: the data directory's state keeps 10" in again.log_tail()
    with again.user("bob") as bob:
        state = bob.subscribe("D1")["state"]
        assert state is not None and state["status"] == "closed", state  # its one unit sold to bob
    again.stop()
    assert run_gavel(gavel_bin, "verify", "--data-dir", str(data)).returncode == 0
