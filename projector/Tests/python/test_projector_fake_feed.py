"""The projector's own logic against a stand-in feed (fake_feed.py) and a real PostgreSQL 15: what each event
writes, exactly once across kills and dropped connections, the refusal of a feed that no longer reaches back, and
the admin port. The same guarantees against a real gavel serve: test_projector_gavel.py."""

import pathlib
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

from conftest import SECRET, eventually, free_port, position, query
from fake_feed import AWKWARD, canned_feed, frames

HERE = pathlib.Path(__file__).resolve().parent


@pytest.fixture
def fake_feed(tmp_path):
    started = []

    def make(listings, bids=3, pace_ms=0.0, drop_after=0, oldest=1, awkward=False, reopen=0):
        port = free_port()
        log = tmp_path / f"since{len(started)}.log"
        process = subprocess.Popen(
            [sys.executable, str(HERE / "fake_feed.py"), "--port", str(port), "--listings", str(listings),
             "--bids", str(bids), "--pace-ms", str(pace_ms), "--drop-after", str(drop_after),
             "--oldest", str(oldest), "--log", str(log), "--reopen", str(reopen),
             *(["--awkward"] if awkward else [])],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert process.stdout.readline().strip() == "ready"
        started.append(process)
        lsns = listings * (bids + 4) * (reopen + 1)
        return f"ws://127.0.0.1:{port}/ws", lsns, log

    yield make
    for process in started:
        process.kill()
        process.wait(5)


def counts(url):
    return {table: query(url, f"SELECT count(*) FROM {table}")[0][0]
            for table in ("listings", "bids", "settlements", "settlement_transitions")}


def expected(listings, bids):
    return {"listings": listings, "bids": listings * bids, "settlements": listings,
            "settlement_transitions": 3 * listings}


def assert_read_model_is_exact(url, listings, bids):
    assert counts(url) == expected(listings, bids)
    # Every row once: the keys are unique, and every listing's bid seqs run 2..bids+1 without a gap.
    assert query(url, "SELECT count(*) FROM listings WHERE status <> 'closed' OR final_price IS NULL") == [(0,)]
    gaps = query(url, "SELECT listing FROM bids GROUP BY listing HAVING min(seq) <> 2 OR max(seq) <> %s "
                      "OR count(*) <> %s", bids + 1, bids)
    assert gaps == []
    assert query(url, "SELECT count(*) FROM settlements WHERE state <> 'shipped' OR payment_ref IS NULL "
                      "OR tracking IS NULL") == [(0,)]


def test_every_event_of_the_feed_writes_its_rows_once(fake_feed, database, projectors):
    url, lsns, _ = fake_feed(listings=200, bids=4)
    projector = projectors(url, database).start()
    assert eventually(lambda: position(database) == lsns), projector.log_text()
    assert_read_model_is_exact(database, 200, 4)
    row = query(database, "SELECT format, seller, status, start_price, price, leader, bids, final_price, winner, "
                          "terms->>'payment_due_ms' FROM listings WHERE id = 'L7'")[0]
    assert row == ("english", "s0", "closed", 100, 200, "u0", 4, 200, "u0", "1000")
    assert query(database, "SELECT version FROM schema_migrations ORDER BY version") == [(1,), (2,), (3,), (4,)]
    assert projector.metric("gavel_projector_applied_lsn") == lsns
    assert projector.metric("gavel_projector_live") == 1


def test_a_kill_9_in_the_middle_then_a_restart_neither_loses_nor_doubles_a_row(fake_feed, database, projectors):
    url, lsns, since_log = fake_feed(listings=300, bids=3, pace_ms=1.0)
    first = projectors(url, database, extra=["--batch-events", "50"]).start()
    assert eventually(lambda: (position(database) or 0) > lsns // 4), first.log_text()
    first.kill9()
    stopped_at = position(database)
    assert 0 < stopped_at < lsns
    second = projectors(url, database, extra=["--batch-events", "50"]).start()
    assert eventually(lambda: position(database) == lsns, seconds=60), second.log_text()
    assert_read_model_is_exact(database, 300, 3)
    # The restart asked for the lsn after the stored position.
    assert since_log.read_text().split() == ["1", str(stopped_at + 1)]


# Batches that only the byte bound closes: no event count or latency is reached before the feed goes live.
ONLY_BYTES = ["--batch-events", "100000", "--batch-latency-ms", "10000"]


def test_a_batch_closes_at_the_first_lsn_boundary_past_the_byte_bound(fake_feed, database, projectors):
    url, lsns, _ = fake_feed(listings=60, bids=3)
    projector = projectors(url, database, extra=[*ONLY_BYTES, "--batch-bytes", "2048", "--log-level", "debug"])
    projector.start()
    assert eventually(lambda: position(database) == lsns), projector.log_text()
    assert_read_model_is_exact(database, 60, 3)
    feed = frames(60, 3)
    largest_lsn = max(sum(len(f.encode()) for f in fs) for _, fs in feed)
    total = sum(len(f.encode()) for _, fs in feed for f in fs)
    sizes = [int(m) for m in re.findall(r"bytes=(\d+) .*applied$", projector.log_text(), re.MULTILINE)]
    assert sum(sizes) == total
    # Every batch but the last (closed by feed_live) reached the bound, and went past it by less than one lsn.
    assert all(2048 <= size < 2048 + largest_lsn for size in sizes[:-1]), sizes
    assert len(sizes) >= total // (2048 + largest_lsn)


def test_a_listing_changed_many_times_in_one_batch_is_written_once(fake_feed, database, projectors):
    # 40 listings, each opened, bid on 6 times and closed: 320 listing changes, in one batch.
    url, lsns, _ = fake_feed(listings=40, bids=6)
    projector = projectors(url, database, extra=ONLY_BYTES).start()
    assert eventually(lambda: position(database) == lsns), projector.log_text()
    assert_read_model_is_exact(database, 40, 6)
    assert projector.metric("gavel_projector_batches_total") == 1
    assert projector.metric('gavel_projector_rows_written_total{table="listings"}') == 40
    assert query(database, "SELECT price, leader, bids, final_price FROM listings WHERE id = 'L3'") == [
        (250, "u9", 6, 250)]


def test_text_that_copy_must_escape_reaches_postgresql_unchanged(fake_feed, database, projectors):
    url, lsns, _ = fake_feed(listings=5, awkward=True)
    projector = projectors(url, database).start()
    assert eventually(lambda: position(database) == lsns), projector.log_text()
    assert query(database, "SELECT DISTINCT terms->>'title' FROM listings") == [(AWKWARD,)]
    assert query(database, "SELECT payment_ref FROM settlements WHERE id = 'L2:1'") == [(f"{AWKWARD}-2",)]
    assert query(database, "SELECT payment_ref FROM settlement_transitions WHERE settlement = 'L4:1' AND "
                           "state = 'paid'") == [(f"{AWKWARD}-4",)]


def test_a_dropped_connection_in_the_middle_of_an_lsn_resumes_after_the_last_whole_one(fake_feed, database,
                                                                                        projectors):
    # Message 1001 falls inside an lsn (a bid and its outbid): the part of it received before the drop is not kept.
    # Batches close every 100 events, so whole lsns are committed before the drop whatever the timing (with the
    # default 50 ms latency the first commit came before message 1001 only when sending it took longer than that).
    url, lsns, since_log = fake_feed(listings=100, bids=5, drop_after=1001)
    projector = projectors(url, database, extra=["--batch-events", "100"]).start()
    assert eventually(lambda: position(database) == lsns), projector.log_text()
    assert_read_model_is_exact(database, 100, 5)
    resumed = since_log.read_text().split()
    assert resumed[0] == "1" and len(resumed) == 2 and 1 < int(resumed[1]) <= 1001
    assert projector.metric('gavel_projector_reconnects_total{peer="gavel"}') >= 1
    assert "reconnecting" in projector.log_text()


def test_a_feed_that_no_longer_reaches_the_position_stops_the_projector_naming_the_oldest_lsn(
        fake_feed, database, projectors):
    url, _, _ = fake_feed(listings=5, oldest=40)
    projector = projectors(url, database).start()
    assert projector.process.wait(30) == 1
    log = projector.log_text()
    assert "no longer holds lsn 1" in log and "oldest is 40" in log, log
    assert position(database) == 0


def test_the_admin_port_serves_metrics_that_promtool_accepts_and_healthz(fake_feed, database, projectors):
    url, lsns, _ = fake_feed(listings=20)
    projector = projectors(url, database).start()
    assert eventually(lambda: position(database) == lsns)
    assert eventually(lambda: projector.metric("gavel_projector_lag_lsn") == 0)
    text = projector.metrics()
    for name in ("gavel_projector_lag_lsn", "gavel_projector_lag_seconds", "gavel_projector_events_applied_total",
                 'gavel_projector_rows_written_total{table="bids"}', "gavel_projector_reconnects_total"):
        assert name in text
    assert projector.metric("gavel_projector_events_applied_total") >= lsns
    promtool = shutil.which("promtool")
    if promtool:
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{projector.admin_port}/healthz", timeout=2) as r:
        assert r.status == 200 and b"live" in r.read()


def test_bad_options_are_refused_at_start_with_a_message(database, projectors):
    for extra, words in ((["--batch-events", "0"], "--batch-events"), (["--batch-bytes", "1023"], "--batch-bytes"),
                         (["--postgres-url", "mysql://x"], "--postgres-url")):
        p = projectors("ws://127.0.0.1:1/ws", database, extra=extra).start()
        assert p.process.wait(30) != 0
        assert words in p.log_text()


def test_an_admin_port_in_use_stops_the_start_at_once_naming_it(database, projectors):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        p = projectors("ws://127.0.0.1:1/ws", database, extra=["--admin-port", str(port)]).start()
        assert p.process.wait(30) == 1
        text = p.log_text()
        assert f"cannot listen on 127.0.0.1:{port} for admin HTTP: Address already in use; choose another --admin-port" \
            in text, text
        assert "migrated the read model" not in text  # stopped before it touched the database
    finally:
        taken.close()


@pytest.mark.parametrize("batch_events", [1, 100_000])
def test_a_listing_id_opened_again_keeps_the_earlier_listings_rows_renamed_whatever_the_batches(
        fake_feed, database, projectors, batch_events):
    # Each id opened three times: the first two listings' rows are renamed <id>@<lsn that opened the id again>,
    # by the database's statements when batches are single lsns, in memory when one batch holds them all.
    url, lsns, _ = fake_feed(listings=5, bids=2, reopen=2)
    projector = projectors(url, database, extra=["--batch-events", str(batch_events)]).start()
    assert eventually(lambda: position(database) == lsns), projector.log_text()
    opened = {}
    for lsn, events in canned_feed(5, 2, reopen=2):
        for e in events:
            if e["type"] == "opened":
                opened.setdefault(e["listing"], []).append(lsn)
    names = {lid for lid in opened} | {f"{lid}@{lsn}" for lid, at in opened.items() for lsn in at[1:]}
    assert {row[0] for row in query(database, "SELECT id FROM listings")} == names
    assert {row[0] for row in query(database, "SELECT id FROM settlements")} == {f"{name}:1" for name in names}
    assert {row[0] for row in query(database, "SELECT DISTINCT listing FROM bids")} == names
    assert {row[0] for row in query(database, "SELECT DISTINCT settlement FROM settlement_transitions")} == \
        {f"{name}:1" for name in names}
    assert query(database, "SELECT count(*) FROM settlement_transitions t JOIN settlements s "
                           "ON s.id = t.settlement AND s.listing = t.listing") == [(45,)]
    assert_read_model_is_exact(database, 15, 2)
    if batch_events == 1:
        assert "opened again" in projector.log_text()


def test_a_token_file_and_a_key_file_feed_the_read_model_without_a_warning(fake_feed, database, projectors,
                                                                          tmp_path):
    url, lsns, _ = fake_feed(listings=5)
    token = tmp_path / "token"
    token.write_text("a-service-token-from-gavel-token-0123456789\n")
    token.chmod(0o600)
    key = tmp_path / "key"
    key.write_text(SECRET + "\n")
    key.chmod(0o400)
    by_token = projectors(url, database, extra=["--token-file", str(token)], secret=None).start()
    assert eventually(lambda: position(database) == lsns), by_token.log_text()
    assert by_token.stop() == 0
    again = fake_feed(listings=5)[0]
    by_key = projectors(again, database, secret=None, env={"GAVEL_PROJECTOR_JWT_SECRET_FILE": str(key)}).start()
    assert eventually(lambda: by_key.metric("gavel_projector_live") == 1), by_key.log_text()
    assert "warning" not in by_token.log_text() + by_key.log_text()


def test_secrets_given_as_options_are_overwritten_in_the_command_line_with_a_warning(fake_feed, database,
                                                                                     projectors):
    url, lsns, _ = fake_feed(listings=5)
    password = "pg-password-on-the-command-line"
    with_password = database.replace("://postgres@", f"://postgres:{password}@")
    p = projectors(url, with_password, extra=["--jwt-secret", SECRET], secret=None).start()
    assert eventually(lambda: position(database) == lsns), p.log_text()
    with open(f"/proc/{p.process.pid}/cmdline", "rb") as f:
        seen = f.read()
    assert SECRET.encode() not in seen and password.encode() not in seen
    assert b"--jwt-secret\0" + b"x" * len(SECRET) + b"\0" in seen
    assert b"://postgres:" + b"x" * len(password) + b"@127.0.0.1:" in seen
    log = p.log_text()
    assert "gavel-projector: warning: --jwt-secret on the command line can be read by other local users" in log
    assert "give GAVEL_PROJECTOR_JWT_SECRET or --jwt-secret-file instead" in log
    assert "gavel-projector: warning: the password in --postgres-url on the command line" in log
    assert SECRET not in log and password not in log


@pytest.mark.parametrize("mode", [0o640, 0o604])
def test_a_token_file_or_password_file_open_to_others_stops_the_start_with_the_chmod(database, projectors,
                                                                                    tmp_path, mode):
    token = tmp_path / "token"
    token.write_text("a-service-token-from-gavel-token-0123456789\n")
    token.chmod(mode)
    p = projectors("ws://127.0.0.1:1/ws", database, extra=["--token-file", str(token)], secret=None).start()
    assert p.process.wait(30) == 64
    assert f"--token-file {token} is open to other users (mode 0{mode:o})" in p.log_text()
    assert f"chmod 600 {token}" in p.log_text() and "service-token" not in p.log_text()
    passwords = tmp_path / "pgpass"
    passwords.write_text("*:*:*:*:pw\n")
    passwords.chmod(mode)
    p = projectors("ws://127.0.0.1:1/ws", database, env={"PGPASSFILE": str(passwords)}).start()
    assert p.process.wait(30) == 64
    assert f"chmod 600 {passwords}" in p.log_text()
