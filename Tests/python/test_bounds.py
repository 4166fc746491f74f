"""Bounded engine state through a real server: listing queues only for listings that exist, closed listings
evicted after their retention."""

import time

from support import open_english, request_id, unique


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
