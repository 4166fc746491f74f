"""What an operator meets at the edges: a full journal disk, a data directory with a file where a folder belongs,
`gavel snapshot` finding the server to signal, on/off settings from the environment."""

import fcntl
import json
import os
import signal
import subprocess
import time
import urllib.request

import pytest

from websockets.exceptions import InvalidStatus

from conftest import run_gavel
from support import SECRET, Server, eventually, mint_token, raw_connect, unique

# The exit status of a server whose journal write or sync failed (EX_IOERR).
JOURNAL_WRITE_FAILED = 74


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (root only; skipped where mounting is not allowed), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def dumped_ids(gavel_bin, data_dir):
    out = run_gavel(gavel_bin, "dump", "--data-dir", str(data_dir), timeout=120).stdout
    ids = set()
    for line in out.splitlines():
        entry = json.loads(line)
        if "id" in entry:
            ids.add(entry["id"])
    return ids


def test_a_full_journal_disk_stops_the_server_with_its_status_and_a_restart_refuses_until_there_is_room(
        gavel_bin, small_disk, tmp_path):
    data = small_disk / "data"
    args = ("--segment-bytes", "65536", "--snapshot-every", "100000000", "--snapshot-every-seconds", "0")
    srv = Server(gavel_bin, data, tmp_path / "serve.log", args).start()
    listing = unique()
    acked = set()
    with srv.connect(mint_token("mkt", "service")) as market:
        assert market.command({"type": "open", "listing": listing, "seller": "sam", "format": "english",
                               "start": 100, "closes_at": int(time.time() * 1000) + 3_600_000})["ok"]
        # Long ids fill the disk sooner: bids in windows of 50 until the server goes away.
        n = 0
        try:
            for _ in range(10_000):
                window = []
                for _ in range(50):
                    n += 1
                    rid = f"b{n}-".ljust(64, "y")
                    market.send({"type": "bid", "id": rid, "listing": listing, "bidder": f"u{n % 7}".ljust(64, "x"),
                                 "amount": 100_000 * n})
                    window.append(rid)
                for rid in window:
                    if market.result(rid)["ok"]:
                        acked.add(rid)
        except Exception:
            pass  # the connection closed: the disk is full
    status = srv.process.wait(timeout=60)
    log = (tmp_path / "serve.log").read_text(errors="replace")
    assert status == JOURNAL_WRITE_FAILED, log[-2000:]
    assert "journal write failed, stopping with exit status 74" in log and "No space left on device" in log
    assert "Fatal error" not in log and "Program crashed" not in log, "stopped by a trap, not an exit"
    assert len(acked) > 1000, len(acked)
    # Every acknowledged bid is in the journal.
    assert acked <= dumped_ids(gavel_bin, data)

    # Still full: the restart refuses with a message that says so, before it takes any command.
    again = Server(gavel_bin, data, tmp_path / "serve2.log", args)
    with pytest.raises(RuntimeError, match="journal's disk is full"):
        again.start()
    assert again.process.returncode == 1

    # Room made (the file system grown, as an operator would free space): it starts and serves the listing with
    # every acknowledged bid.
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)
    third = Server(gavel_bin, data, tmp_path / "serve3.log", args).start()
    try:
        with third.user("ann") as ann:
            state = ann.subscribe(listing)["state"]
            assert state["bids"] >= len(acked), (state, len(acked))
    finally:
        third.stop()


def test_a_key_file_that_cannot_be_written_is_not_left_half_made(gavel_bin, small_disk, tmp_path):
    data = small_disk / "data"
    data.mkdir(mode=0o700)
    subprocess.run(["dd", "if=/dev/zero", f"of={small_disk / 'filler'}", "bs=64k", "count=64"], capture_output=True)
    first = subprocess.run([gavel_bin, "serve", "--data-dir", str(data), "--port", "0", "--admin-port", "0"],
                           capture_output=True, text=True, timeout=30)
    assert first.returncode != 0 and "No space left on device" in first.stderr, first.stderr
    # No empty or partial key that every later start would refuse, and no temporary file.
    assert not (data / "jwt-secret").exists()
    assert [p.name for p in data.iterdir() if "jwt-secret" in p.name] == []
    (small_disk / "filler").unlink()
    srv = Server(gavel_bin, data, tmp_path / "serve.log", secret=None).start()
    srv.stop()
    assert len((data / "jwt-secret").read_text().strip()) == 64


def test_a_file_where_the_journal_folder_belongs_refuses_the_start(gavel_bin, tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "journal").write_text("")
    done = subprocess.run([gavel_bin, "serve", "--data-dir", str(data), "--port", "0", "--admin-port", "0",
                           "--jwt-secret", SECRET], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1, done.stderr
    assert f"{data}/journal: Not a directory" in done.stderr, done.stderr


def test_gavel_snapshot_signals_the_process_the_kernel_names_as_the_lock_holder_not_the_pid_in_the_file(
        gavel_bin, tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    # This test process holds the lock, as a server in another pid namespace would, and the file names another
    # process (a stand-in for the pid that namespace's server wrote, which here belongs to someone else).
    decoy = subprocess.Popen(["sleep", "60"])
    received = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: received.append(True))
    lock = os.open(data / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(lock, f"{decoy.pid}\n".encode())
        done = run_gavel(gavel_bin, "snapshot", "--data-dir", str(data), "--timeout", "1")
        assert decoy.poll() is None, "the process the file names was signalled"
        assert received, "the lock's holder was not asked for a snapshot"
        assert f"signalling pid {os.getpid()}" in done.stderr, done.stderr
        assert done.returncode == 1  # no snapshot was written: this holder is no server
    finally:
        os.close(lock)
        signal.signal(signal.SIGUSR1, previous)
        decoy.kill()
        decoy.wait()


@pytest.mark.parametrize("value,anonymous", [("on", False), ("TRUE", False), ("1", False), ("off", True), ("0", True)])
def test_an_on_off_variable_takes_the_usual_spellings(start_server, value, anonymous):
    srv = start_server(env={"GAVEL_NO_ANONYMOUS": value})
    try:
        with raw_connect(srv.ws_url()) as ws:
            ws.recv(timeout=5)
            status = 101
    except InvalidStatus as refused:
        status = refused.response.status_code
    assert status == (101 if anonymous else 401)


def test_an_on_off_variable_with_another_value_stops_the_start(gavel_bin, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAVEL_")}
    env["GAVEL_NO_ANONYMOUS"] = "maybe"
    done = subprocess.run([gavel_bin, "serve", "--data-dir", str(tmp_path / "d"), "--port", "0", "--admin-port", "0"],
                          capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 64, done.stderr
    assert "GAVEL_NO_ANONYMOUS=maybe is not a valid value" in done.stderr, done.stderr


@pytest.mark.parametrize("kind", ["missing", "directory", "fifo", "too_large"])
def test_a_page_file_that_cannot_be_served_stops_the_start_naming_it(gavel_bin, tmp_path, kind):
    page = tmp_path / "page.html"
    if kind == "directory":
        page.mkdir()
    elif kind == "fifo":
        os.mkfifo(page)
    elif kind == "too_large":
        with open(page, "wb") as f:
            f.truncate(16 * 1024 * 1024 + 1)
    done = subprocess.run([gavel_bin, "serve", "--data-dir", str(tmp_path / "data"), "--port", "0",
                           "--admin-port=-1", "--jwt-secret", SECRET, "--page", str(page)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 64, done.stderr
    assert "--page" in done.stderr and str(page) in done.stderr, done.stderr
    # Refused before recovery: no data directory was made.
    assert not (tmp_path / "data").exists()


def test_a_page_file_is_served_at_the_root(start_server, tmp_path):
    page = tmp_path / "page.html"
    page.write_text("<!doctype html><title>market</title><p>our own page</p>\n")
    srv = start_server("--page", str(page))
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/", timeout=10) as answer:
        assert answer.read() == page.read_bytes()


def test_a_full_archive_dir_counts_each_failed_retention_and_keeps_the_segments(start_server, small_disk):
    from test_feed import drive
    # The archive's file system is full before the first segment would be moved there.
    subprocess.run(["dd", "if=/dev/zero", f"of={small_disk / 'filler'}", "bs=64k", "count=32"], capture_output=True)
    archive = small_disk / "archive"
    srv = start_server("--segment-bytes", "4096", "--snapshot-every", "50", "--keep-snapshots", "1",
                       "--archive-dir", str(archive))
    assert srv.metric("gavel_retention_failures_total") == 0
    drive(srv, unique(), 400)
    assert eventually(lambda: srv.metric("gavel_retention_failures_total") > 0, 60)
    assert srv.metric("gavel_snapshot_failures_total") == 0, "the snapshots themselves were written"
    # Nothing was lost: the first segment is still in the data directory.
    assert "00000000000000000001.seg" in os.listdir(os.path.join(srv.data_dir, "journal"))


def test_an_idle_stop_writes_no_snapshot_and_keeps_the_journal(start_server, tmp_path):
    """A server's clock is the wall's: a stop with nothing journaled since the last snapshot writes none (one at
    every idle restart would, with --keep-snapshots 2, have retention remove the journal after two of them)."""
    data = tmp_path / "idle"
    first = start_server(data_dir=data)
    with first.connect(mint_token("sam", "seller")) as sam:
        assert sam.command({"type": "open", "listing": unique(), "format": "english", "start": 100,
                            "closes_at": int(time.time() * 1000) + 3_600_000})["ok"]
    assert first.stop() == 0
    snapshots = sorted(os.listdir(data / "snapshots"))
    segments = sorted(os.listdir(data / "journal"))
    assert len(snapshots) == 1, snapshots
    for _ in range(3):
        again = start_server(data_dir=data)
        time.sleep(1.1)  # the wall clock moves on while nothing happens
        assert again.stop() == 0
    assert sorted(os.listdir(data / "snapshots")) == snapshots
    assert sorted(os.listdir(data / "journal")) == segments
