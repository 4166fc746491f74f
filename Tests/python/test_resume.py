"""Resuming a subscription with `since` after a disconnect."""

import pytest

from support import open_english, unique


def bid_n(bidder, listing, amounts):
    for amount in amounts:
        assert bidder.command({"type": "bid", "listing": listing, "amount": amount})["ok"]


def test_resume_with_since_replays_missed_events_without_gaps_or_duplicates(server):
    listing = unique()
    with server.user("sam", "seller") as sam, server.user("ann") as ann, server.connect() as steady:
        assert open_english(sam, listing, start=100, increments=[[0, 1]])["ok"]
        steady.subscribe(listing)
        with server.connect() as watcher:
            assert watcher.subscribe(listing)["seq"] == 1
            bid_n(ann, listing, [200, 201, 202])
            seen = [watcher.event(listing, "bid_placed")["seq"] for _ in range(3)]
            assert seen == [2, 3, 4]
        bid_n(ann, listing, [203, 204, 205])  # missed while away
        with server.connect() as watcher:
            reply = watcher.subscribe(listing, since=seen[-1])
            assert reply["recovered"] is True and reply["seq"] == 7
            replayed = [watcher.event(listing) for _ in range(3)]
            assert [e["seq"] for e in replayed] == [5, 6, 7]
            # The very events a subscriber that never left got, ts included.
            assert replayed == [steady.event(listing, seq=seq) for seq in (5, 6, 7)]
            bid_n(ann, listing, [206])
            live = watcher.event(listing)
            assert live["seq"] == 8 and live["bids"] == 7
            watcher.quiet(lambda m: "seq" in m and m.get("listing") == listing, 0.3)


def test_resume_beyond_history_gives_fresh_snapshot_not_partial_replay(start_server):
    srv = start_server("--history-events", "4")
    listing = unique()
    with srv.user("sam", "seller") as sam, srv.user("ann") as ann:
        assert open_english(sam, listing, start=100, increments=[[0, 1]])["ok"]
        bid_n(ann, listing, range(200, 210))  # seq 2..11; only 8..11 kept
        with srv.connect() as watcher:
            reply = watcher.subscribe(listing, since=2)
            assert reply["type"] == "snapshot" and reply["recovered"] is False
            assert reply["seq"] == 11 and reply["state"]["bids"] == 10 and reply["state"]["leader"] == "ann"
            watcher.quiet(lambda m: "seq" in m and m.get("listing") == listing and m["type"] != "snapshot", 0.3)
            bid_n(ann, listing, [210])
            assert watcher.event(listing)["seq"] == 12
        with srv.connect() as watcher:
            reply = watcher.subscribe(listing, since=8)  # still within the history
            assert reply["recovered"] is True
            assert [watcher.event(listing)["seq"] for _ in range(4)] == [9, 10, 11, 12]


@pytest.mark.parametrize("since, recovered", [(1, True), (50, False)], ids=["since-current-seq", "since-future-seq"])
def test_resume_from_current_seq_sends_nothing_and_from_unreached_seq_a_fresh_snapshot(server, since, recovered):
    listing = unique()
    with server.user("sam", "seller") as sam:
        assert open_english(sam, listing)["ok"]
        with server.connect() as watcher:
            reply = watcher.subscribe(listing, since=since)
            assert reply["recovered"] is recovered and reply["seq"] == 1
            assert recovered or reply["type"] == "snapshot" and reply["state"]["status"] == "open"
            watcher.quiet(lambda m: "seq" in m and m.get("listing") == listing and "recovered" not in m, 0.3)


def test_resume_after_restart_gives_snapshot_with_the_recovered_state(start_server, tmp_path):
    data = tmp_path / "resume-restart"
    first = start_server(data_dir=data)
    listing = unique()
    with first.user("sam", "seller") as sam, first.user("ann") as ann:
        assert open_english(sam, listing)["ok"]
        bid_n(ann, listing, [500])
    assert first.stop() == 0
    second = start_server(data_dir=data)
    with second.connect() as watcher:
        reply = watcher.subscribe(listing, since=1)  # the history is in memory only: gone with the restart
        assert reply["type"] == "snapshot" and reply["recovered"] is False and reply["seq"] == 2
        assert reply["state"]["leader"] == "ann" and reply["state"]["bids"] == 1


def test_subscribe_user_numbers_private_notices_and_resumes_the_missed_ones_after_a_reconnect(server):
    listing = unique()
    with server.user("sam", "seller") as sam, server.user("bob") as bob:
        assert open_english(sam, listing, start=100, increments=[[0, 1]])["ok"]
        with server.user("ann") as ann:
            ann.send({"type": "subscribe_user", "id": "f1"})
            feed = ann.expect(lambda m: m.get("id") == "f1")
            assert feed["type"] == "user_subscribed" and feed["user"] == "ann" and feed["recovered"] is False
            epoch, seen = feed["epoch"], feed["user_seq"]
            bid_n(ann, listing, [200])
            bid_n(bob, listing, [300])  # ann is outbid: a notice numbered seen + 1
            notice = ann.notice("outbid")
            assert notice["user_seq"] == seen + 1
            seen = notice["user_seq"]
        with server.user("ann") as elsewhere:
            bid_n(elsewhere, listing, [400])
        bid_n(bob, listing, [500])  # ann is outbid while away: seen + 1
        with server.user("ann") as ann:
            ann.send({"type": "subscribe_user", "id": "f2", "since": seen, "epoch": epoch})
            resumed = ann.expect(lambda m: m.get("id") == "f2")
            assert resumed["recovered"] is True and resumed["user_seq"] == seen + 1 and resumed["epoch"] == epoch
            missed = ann.notice("outbid")
            assert missed["user_seq"] == seen + 1 and missed["event"]["price"] == 401
            ann.quiet(lambda m: m.get("type") == "notice", 0.3)  # once only
            # Another epoch (a restart, a dropped feed) or a since ahead: nothing replayed, start again from user_seq.
            for since, other in ((seen, epoch + "x"), (seen + 5, epoch), (seen, None)):
                ann.send({"type": "subscribe_user", "id": "f3", "since": since, "epoch": other})
                stale = ann.expect(lambda m: m.get("id") == "f3")
                assert stale["recovered"] is False and stale["user_seq"] == seen + 1
            ann.quiet(lambda m: m.get("type") == "notice", 0.3)
    with server.connect() as anonymous:
        anonymous.send({"type": "subscribe_user", "id": "f4"})
        refused = anonymous.expect(lambda m: m.get("id") == "f4")
        assert refused["ok"] is False and refused["error"] == "not_authorized"


def test_resume_whose_events_newer_ones_of_other_listings_overwrote_gives_a_snapshot_and_recent_ones_resume(
    start_server,
):
    # All listings' kept events share --history-bytes (here 64 KiB, about 360 bid_placed frames): 600 bids on M push
    # L's one bid out, though L's own history holds far fewer than --history-events.
    srv = start_server(
        "--history-bytes", "65536", "--principal-rate", "100000", "--principal-rate-burst", "100000",
        "--rate", "100000", "--rate-burst", "100000")
    quiet, busy = unique(), unique()
    with srv.user("sam", "seller") as sam, srv.user("ann") as ann:
        for listing in (quiet, busy):
            assert open_english(sam, listing, start=100, increments=[[0, 1]])["ok"]
        bid_n(ann, quiet, [200])
        with srv.connect() as watcher:
            reply = watcher.subscribe(quiet, since=1)
            assert reply["recovered"] is True and watcher.event(quiet)["seq"] == 2
        bid_n(ann, busy, range(200, 800))  # seq 2..601
        with srv.connect() as watcher:
            reply = watcher.subscribe(quiet, since=1)
            assert reply["type"] == "snapshot" and reply["recovered"] is False
            assert reply["seq"] == 2 and reply["state"]["bids"] == 1
            reply = watcher.subscribe(busy, since=598)
            assert reply["recovered"] is True and reply["seq"] == 601
            assert [watcher.event(busy)["seq"] for _ in range(3)] == [599, 600, 601]
