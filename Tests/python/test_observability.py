"""What an operator's tools read: /metrics as Prometheus parses it (promtool), and the log as a shipper reads it
(--log-format json), with no token or secret in it."""

import json
import pathlib
import re
import shutil
import subprocess
import time

import pytest
from websockets.exceptions import InvalidStatus

from conftest import run_gavel
from support import mint_token, open_english, raw_connect, unique

DASHBOARD = pathlib.Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
RFC3339_MS_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def promtool():
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: install Debian's prometheus package (./scripts/test does)")
    return path


def drive_some_commands(srv):
    """An open, accepted and refused bids, a watcher: every kind of metric gets samples."""
    listing = unique()
    with srv.user("sam", "seller") as sam, srv.user("ann") as ann, srv.connect() as watcher:
        assert open_english(sam, listing, start=100)["ok"]
        watcher.subscribe(listing)
        assert ann.command({"type": "bid", "listing": listing, "amount": 500})["ok"]
        assert ann.command({"type": "bid", "listing": listing, "amount": 1})["error"] == "bid_too_low"
    return listing


def test_metrics_of_a_real_server_pass_promtool_check_metrics(start_server):
    srv = start_server("--fsync", "always")
    drive_some_commands(srv)
    status, body = srv.admin_get("/metrics")
    assert status == 200
    checked = subprocess.run([promtool(), "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()
    text = body.decode()
    for name in ("process_cpu_seconds_total", "process_open_fds", "process_max_fds", "process_start_time_seconds",
                 "process_virtual_memory_bytes", "process_resident_memory_bytes", "gavel_journal_fsyncs_total",
                 "gavel_snapshot_failures_total", "gavel_snapshots_merged_total", "gavel_commands_total",
                 "gavel_ack_seconds", "gavel_fsync_seconds"):
        assert f"# HELP {name} " in text and f"# TYPE {name} " in text, name
    assert srv.metric("gavel_journal_fsyncs_total") >= 2  # --fsync always: at least one per durable batch
    assert srv.metric("process_open_fds") >= 3
    assert 'gavel_commands_total{type="bid",result="bid_too_low"} 1' in text
    # Each event loop counts its results and merges them once per durable group: every answer is in, none in flight.
    assert srv.metric("gavel_ack_seconds_count") == 3, "the open and the two bids"
    assert srv.metric('gavel_ack_seconds_bucket{le="+Inf"}') == 3
    assert srv.metric("gavel_commands_in_flight") == 0


def test_engine_gauges_count_listings_remembered_ids_and_timers_and_cancelled_orders_leave_no_timer(start_server):
    srv = start_server()
    listing = unique()
    with srv.user("sam", "seller") as sam, srv.user("mo") as mo:
        assert sam.command({"type": "open", "listing": listing, "format": "market"})["ok"]
        for n in range(20):
            placed = mo.command({"type": "order", "id": f"q{n}", "listing": listing, "side": "buy", "price": 100 + n,
                                 "quantity": 1, "tif": "gtc", "expires_at": 4_000_000_000_000})
            assert placed["ok"], placed
        for n in range(19):
            assert mo.command({"type": "cancel", "listing": listing, "order": f"q{n}"})["ok"]
        # The writer publishes the gauges at the end of each turn, before the results it answers go out.
        assert srv.metric("gavel_listings") == 1
        assert srv.metric("gavel_remembered_request_ids") == 1 + 20 + 19
        assert srv.metric("gavel_timers") == 1, "only the resting order's expiry is left"
        assert srv.metric("gavel_settlements") == 0, "nothing traded"
        assert sam.command({"type": "order", "id": "s1", "listing": listing, "side": "sell", "price": 100,
                            "quantity": 1, "tif": "ioc"})["filled"] == 1
        assert srv.metric("gavel_settlements") == 1, "one trade, one settlement held until it is final"
    _, body = srv.admin_get("/metrics")
    text = body.decode()
    for name in ("gavel_listings", "gavel_settlements", "gavel_remembered_request_ids", "gavel_timers"):
        assert f"# TYPE {name} gauge" in text, name


def test_the_grafana_dashboard_parses_and_queries_only_metrics_a_real_server_exports(start_server, tmp_path):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(exprs) >= 20
    # Every query is valid PromQL: promtool checks them as recording rules, Grafana's variables filled in.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"gavel:dashboard_{i}",
         "expr": e.replace("$__rate_interval", "1m").replace("$job", ".*").replace("$instance", ".*")}
        for i, e in enumerate(exprs)]}]}
    (tmp_path / "rules.yml").write_text(json.dumps(rules))
    checked = subprocess.run([promtool(), "check", "rules", str(tmp_path / "rules.yml")], capture_output=True,
                             timeout=30)
    assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()
    srv = start_server()
    drive_some_commands(srv)
    families = set(re.findall(r"^# TYPE (\S+) ", srv.admin_get("/metrics")[1].decode(), re.M))
    for name in set(re.findall(r"\b((?:gavel|process)_[a-z_]+)", " ".join(exprs))):
        assert re.sub(r"_(bucket|sum|count)$", "", name) in families, name


def upgrade_status(srv, token, query=False):
    headers = {} if query else {"Authorization": f"Bearer {token}"}
    try:
        with raw_connect(srv.ws_url(token if query else None), headers) as ws:
            ws.recv(timeout=5)
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_the_log_holds_no_token_and_no_secret_and_json_lines_are_objects(start_server, log_format):
    secret = "observability-test-secret-8c1f0b9e2d7a4"
    srv = start_server("--log-format", log_format, "--max-connections-per-user", "1", secret=secret)
    good = mint_token("ann", "bidder", secret=secret)
    seller = mint_token("sam", "seller", secret=secret)
    bad = [
        mint_token("eve", "bidder", secret=secret, sign_with="not-the-secret-at-all-0123456789"),
        mint_token("eve", "bidder", secret=secret, exp=int(time.time()) - 5),
        mint_token("eve", "bidder", alg="none"),
    ]
    for token in bad:
        assert upgrade_status(srv, token) == 401
        assert upgrade_status(srv, token, query=True) == 401
    listing = unique()
    with srv.connect(seller) as sam, srv.connect(good, header_token=False) as ann:
        assert open_english(sam, listing)["ok"]
        assert ann.command({"type": "bid", "listing": listing, "amount": 300})["ok"]
        # Refused upgrades are logged at most once a second (the 401s above took this second's line).
        time.sleep(1.1)
        assert upgrade_status(srv, good) == 429  # refused and logged: ann holds her one connection
    assert srv.stop() == 0
    with open(srv.log_path, "rb") as f:
        log = f.read().decode()
    assert "upgrade refused with 429" in log
    for token in [good, seller, *bad]:
        assert token not in log
        signature = token.split(".")[2]
        assert not signature or signature not in log
    assert secret not in log
    if log_format == "json":
        lines = log.splitlines()
        assert len(lines) >= 5
        for line in lines:
            entry = json.loads(line)
            assert RFC3339_MS_UTC.match(entry["time"]), entry
            assert entry["level"] in ("trace", "debug", "info", "notice", "warning", "error", "critical")
            assert entry["label"] and isinstance(entry["message"], str)
        messages = [json.loads(line)["message"] for line in lines]
        assert any(m.startswith("gavel serve: ws://127.0.0.1:") for m in messages)  # the start-up lines too
        assert any(m == "engine stopped" for m in messages)
        refusal = next(json.loads(line) for line in lines if "upgrade refused with 429" in line)
        assert refusal["principal"] == "ann" and refusal["status"] == "429" and refusal["address"] == "127.0.0.1"


def test_an_unknown_log_format_is_refused_at_start(gavel_bin, tmp_path):
    result = run_gavel(gavel_bin, "serve", "--log-format", "xml", "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 64 and "--log-format" in result.stderr
    env_result = subprocess.run([gavel_bin, "serve", "--data-dir", str(tmp_path / "d")], capture_output=True,
                                text=True, timeout=30, env={"GAVEL_LOG_FORMAT": "yaml", "PATH": "/usr/bin:/bin"})
    assert env_result.returncode == 64 and "GAVEL_LOG_FORMAT=yaml" in env_result.stderr


def test_an_error_that_stops_the_server_is_a_json_line_too_with_the_same_exit_status(gavel_bin, tmp_path):
    data = tmp_path / "open"
    data.mkdir()
    data.chmod(0o755)  # refused at start: other users could read it
    args = [gavel_bin, "serve", "--data-dir", str(data), "--port", "0", "--admin-port=-1"]
    text = subprocess.run(args, capture_output=True, text=True, timeout=30)
    as_json = subprocess.run(args + ["--log-format", "json"], capture_output=True, text=True, timeout=30)
    assert text.returncode == as_json.returncode == 1
    assert text.stderr.startswith("Error: the data directory") and "chmod 700" in text.stderr
    lines = as_json.stderr.splitlines()
    entry = json.loads(lines[-1])
    assert entry["level"] == "error" and entry["message"] == text.stderr.strip()
    assert all(json.loads(line) for line in lines)


def accept_backlog(port):
    """Connections waiting for the server listening on `port` to accept them (the listening socket's receive
    queue in /proc/net/tcp and tcp6)."""
    waiting = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local, state, queues = fields[1], fields[3], fields[4]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    waiting += int(queues.split(":")[1], 16)
    return waiting


def test_admin_http_holds_at_most_its_cap_of_connections_and_serves_again_once_one_goes(start_server):
    import socket
    srv = start_server("--max-admin-connections", "3")
    idle = []
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", srv.admin_port), timeout=5)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # a request never finished: a slot held
        idle.append(s)
    # The three are taken by the server before the next one comes: its accept queue empty (a connection is
    # complete for the client before the server accepts it), then a moment for their channels to be set up.
    deadline = time.monotonic() + 10
    while accept_backlog(srv.admin_port) > 0:
        assert time.monotonic() < deadline, "the admin server accepted its three connections within 10 s"
        time.sleep(0.05)
    time.sleep(0.3)
    extra = socket.create_connection(("127.0.0.1", srv.admin_port), timeout=5)
    try:
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = extra.recv(1024)
    except ConnectionResetError:
        answer = b""
    assert answer == b"", "a connection past the cap is closed at once, unanswered"
    extra.close()
    idle.pop().close()
    time.sleep(0.3)
    status, _ = srv.admin_get("/healthz")
    assert status == 200
    for s in idle:
        s.close()


def test_serve_under_a_low_open_file_limit_lowers_its_connection_caps_and_says_so(gavel_bin, tmp_path):
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is not installed")
    # Stopped after 3 s by `timeout` (SIGTERM: a clean stop).
    done = subprocess.run(["timeout", "3", "prlimit", "--nofile=1024:1024", "--", gavel_bin, "serve", "--data-dir",
                           str(tmp_path / "data"), "--port", "0", "--admin-port", "0", "--jwt-secret", "x" * 32,
                           "--max-connections", "5000"],
                          capture_output=True, text=True, timeout=30)
    assert "the open-file limit is 1024" in done.stderr, done.stderr
    assert "--max-connections lowered from 5000 to" in done.stderr, done.stderr
    assert "gavel serve: ws://" in done.stderr, "it serves all the same"
