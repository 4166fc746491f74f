"""Limits at the gateway's edge: identifiers, connections per user, address and anonymous clients, each principal's
rate and opens over all its connections, token expiry on a live connection, slow handshakes (also from one address),
frame floods, list amplification."""

import json
import os
import socket
import subprocess
import time

import websockets
from websockets.exceptions import InvalidStatus

from support import RawWebSocket, eventually, journal_bytes, mint_token, now_ms, open_english, raw_connect, unique

UPGRADE_HEADERS = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


def upgrade(server, token=None):
    """The status and body of a WebSocket upgrade request (101 when it opens; the connection is then closed)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with raw_connect(server.ws_url(), headers):
            return 101, ""
    except InvalidStatus as refused:
        return refused.response.status_code, bytes(refused.response.body or b"").decode()


# ---------------------------------------------------------------------------------------------------------------
# Identifiers


def test_huge_and_malformed_ids_are_refused_naming_the_field_and_never_reach_the_journal(start_server, tmp_path):
    data = tmp_path / "ids"
    srv = start_server("--fsync", "always", data_dir=data)
    with srv.user("ann") as ann:
        assert ann.command({"type": "bid", "listing": "warm-up", "amount": 100})["error"] == "unknown_listing"
        before = journal_bytes(data)
        for i in range(40):
            huge = os.urandom(30_000).hex()  # 60 KB that does not compress
            answer = ann.command({"type": "bid", "listing": huge, "amount": 100})
            assert answer["error"] == "bad_request"
            assert answer["message"].startswith("listing must be") and "1-64 characters" in answer["message"]
        # An accepted command is journaled before it is answered: this one proves the journal is current and that
        # the measure sees it grow, and the refused ones above added nothing to it.
        with srv.user("sam", role="seller") as sam:
            assert open_english(sam, unique())["ok"]
        grown = journal_bytes(data) - before
        assert 0 < grown < 4096, f"the journal grew by {grown} bytes (the open alone, not the refused bids)"
        for field, message in [("id", {"id": "x" * 65}), ("bidder", {"bidder": "ann b"}),
                               ("on_behalf_of", {"on_behalf_of": "a/b"})]:
            rid = message.get("id", f"f-{field}")
            ann.send({"type": "bid", "id": rid, "listing": "L1", "amount": 100, **message})
            answer = ann.result(rid)
            assert answer["error"] == "bad_request" and answer["message"].startswith(f"{field} must be"), answer


# ---------------------------------------------------------------------------------------------------------------
# Connections per user, per address, anonymous


def test_one_user_past_its_connection_cap_gets_429_with_the_reason(start_server):
    srv = start_server("--max-connections-per-user", "3")
    token = mint_token("ann", "bidder")
    clients = [srv.connect(token) for _ in range(3)]
    try:
        status, body = upgrade(srv, token)
        assert status == 429 and "user ann holds 3 connections (--max-connections-per-user)" in body
        assert upgrade(srv, mint_token("bob", "bidder"))[0] == 101  # another user is not affected
        clients.pop().close()
        assert eventually(lambda: upgrade(srv, token)[0] == 101)
    finally:
        for client in clients:
            client.close()
    assert "--max-connections-per-user" in srv.log_tail()
    assert srv.metric("gavel_upgrades_refused_total") >= 1


def test_one_address_past_its_connection_cap_gets_429(start_server):
    srv = start_server("--max-connections-per-address", "2")
    with srv.connect(), srv.user("ann"):
        status, body = upgrade(srv, mint_token("bob", "bidder"))
        assert status == 429 and "--max-connections-per-address" in body


def test_the_anonymous_cap_leaves_room_for_a_token_holder(start_server):
    srv = start_server("--max-connections", "4", "--max-anonymous-connections", "2")
    with srv.connect(), srv.connect():
        status, body = upgrade(srv)
        assert status == 503 and "--max-anonymous-connections" in body and "connect with a token" in body
        with srv.user("ann") as ann:
            assert ann.hello["principal"] == "ann"


def test_limits_are_validated_at_start(gavel_bin, tmp_path):
    for args, fragment in [(["--max-connections-per-user", "0"], "--max-connections-per-user must be"),
                           (["--handshake-timeout-ms", "5"], "--handshake-timeout-ms must be"),
                           (["--max-handshakes-per-address", "0"], "--max-handshakes-per-address must be"),
                           (["--ipv6-address-prefix", "129"], "--ipv6-address-prefix must be 1 to 128"),
                           (["--frame-rate", "0"], "--frame-rate must be 1 to"),
                           (["--max-fragments-per-message", "0"], "--max-fragments-per-message must be"),
                           (["--max-read-bytes-per-second", "10"], "--max-read-bytes-per-second must be")]:
        done = subprocess.run([gavel_bin, "serve", "--data-dir", str(tmp_path / "d"), "--jwt-secret", "x" * 40,
                               *args], capture_output=True, text=True, timeout=30)
        assert done.returncode != 0 and fragment in done.stderr, (args, done.stderr)


# ---------------------------------------------------------------------------------------------------------------
# One principal over several connections


def test_one_seller_over_several_connections_is_limited_in_opens_per_minute(start_server):
    srv = start_server("--opens-per-minute", "5")
    sellers = [srv.user("sam", "seller") for _ in range(3)]
    try:
        answers = [open_english(seller, unique()) for _ in range(3) for seller in sellers]
    finally:
        for seller in sellers:
            seller.close()
    assert sum(1 for a in answers if a["ok"]) == 5
    limited = [a for a in answers if not a["ok"]]
    assert len(limited) == 4 and all(a["error"] == "rate_limited" for a in limited)
    assert all("sam may open 5 listings per minute; retry in" in a["message"] for a in limited)
    with srv.user("svc", "service") as svc:  # a service token is not limited
        assert all(open_english(svc, unique(), seller="sam")["ok"] for _ in range(6))


def test_one_bidder_over_several_connections_shares_one_command_rate(start_server):
    srv = start_server("--principal-rate", "1", "--principal-rate-burst", "10")
    bidders = [srv.user("ann") for _ in range(3)]
    try:
        for i in range(10):
            for n, bidder in enumerate(bidders):
                bidder.send({"type": "bid", "id": f"b{n}-{i}", "listing": "nowhere", "amount": 100})
        answers = [bidder.result(f"b{n}-{i}") for i in range(10) for n, bidder in enumerate(bidders)]
    finally:
        for bidder in bidders:
            bidder.close()
    limited = [a for a in answers if a.get("error") == "rate_limited"]
    # Each connection alone is within its own rate (50/s, burst 100); together they share 10 and 1/s.
    assert len(limited) >= 15, answers
    assert all("over all its connections; retry in" in a["message"] for a in limited)


# ---------------------------------------------------------------------------------------------------------------
# Token expiry


def test_a_session_is_closed_1008_when_its_token_expires_and_acts_no_more(server):
    listing = unique()
    expires = int(time.time()) + 2
    with server.user("sam", "seller") as sam, server.connect(mint_token("ann", "bidder", exp=expires)) as ann:
        assert open_english(sam, listing, increments=[[0, 1]])["ok"]
        assert ann.command({"type": "bid", "listing": listing, "amount": 150})["ok"]
        try:
            ann.recv(timeout=6)
            raise AssertionError("the server sent something other than a close")
        except websockets.exceptions.ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1008
            assert closed.rcvd.reason == "token expired; reconnect with a fresh token"
        assert server.metric("gavel_token_expired_closes_total") >= 1
        assert time.time() >= expires - 1  # not before the token's second
        try:
            ann.send({"type": "bid", "id": "late", "listing": listing, "amount": 500})
        except websockets.exceptions.ConnectionClosed:
            pass
        with server.connect() as watcher:
            state = watcher.subscribe(listing)["state"]
            assert state["bids"] == 1  # the bid before exp only


# ---------------------------------------------------------------------------------------------------------------
# Slow handshakes


def silent_socket(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the rest of the head
    return s


def closed_by_server(s, seconds):
    s.settimeout(seconds)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_silent_connections_are_closed_at_the_handshake_deadline_and_capped_before_it(start_server):
    srv = start_server("--handshake-timeout-ms", "500", "--max-handshakes", "3")
    silent = [silent_socket(srv.port) for _ in range(3)]
    try:
        time.sleep(0.1)  # the server has accepted them
        extra = silent_socket(srv.port)
        try:
            assert closed_by_server(extra, 2)  # past --max-handshakes: closed at once
        finally:
            extra.close()
        assert all(closed_by_server(s, 5) for s in silent)  # closed at the deadline
    finally:
        for s in silent:
            s.close()
    with srv.connect() as watcher:  # the slots are free again
        assert watcher.hello["role"] == "watcher"
    assert srv.metric("gavel_handshake_closes_total") == 4


def labelled_metric(server, sample):
    """The value of one exact sample line of `/metrics`, such as `name{label="value"}`; 0 when absent."""
    _, body = server.admin_get("/metrics")
    for line in body.decode().splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_one_address_holding_its_most_silent_connections_leaves_room_for_a_client_from_another(start_server):
    srv = start_server("--max-handshakes", "8", "--max-handshakes-per-address", "4", "--handshake-timeout-ms", "60000")
    silent = [silent_socket(srv.port) for _ in range(4)]
    try:
        time.sleep(0.1)  # the server has accepted them
        # The same address trying for the whole pool: each one past its share is closed at once.
        extra = [silent_socket(srv.port) for _ in range(8)]
        try:
            assert all(closed_by_server(s, 2) for s in extra)
        finally:
            for s in extra:
                s.close()
        # Another address (a legitimate client) still connects while the four are held.
        with srv.user("ann", source_address=("127.0.0.2", 0)) as ann:
            assert ann.hello["principal"] == "ann"
        with srv.connect(source_address=("127.0.0.3", 0)) as watcher:
            assert watcher.hello["role"] == "watcher"
        assert not any(closed_by_server(s, 0.2) for s in silent), "the first four are held until their deadline"
    finally:
        for s in silent:
            s.close()
    assert labelled_metric(srv, 'gavel_handshake_closes_total{reason="per_address"}') == 8
    assert labelled_metric(srv, 'gavel_handshake_closes_total{reason="max_handshakes"}') == 0


# ---------------------------------------------------------------------------------------------------------------
# Frame floods


EMPTY_CONTINUATION = bytes([0x00, 0x80]) + b"\0" * 4  # FIN=0, masked, no payload
EMPTY_PONG = bytes([0x8A, 0x80]) + b"\0" * 4


def flood(raw, frame, count):
    try:
        raw.sock.sendall(frame * count)
    except OSError:
        pass  # the server may have closed already


def test_a_flood_of_empty_continuation_frames_is_closed_1008_and_others_are_not_affected(start_server):
    srv = start_server("--rate", "10", "--rate-burst", "20", "--frame-rate", "10", "--frame-rate-burst", "20")
    with srv.user("bob") as bob, RawWebSocket(srv.port) as raw:
        assert raw.recv_json()["type"] == "hello"
        raw.send_frame(RawWebSocket.OP_TEXT, b"{", fin=False)  # a message that never ends ...
        flood(raw, EMPTY_CONTINUATION, 150)  # ... and more frames than the burst, none completing it
        assert raw.close_code() == 1008
        assert bob.command({"type": "bid", "listing": "nowhere", "amount": 100})["error"] == "unknown_listing"
    assert srv.metric("gavel_abuse_closes_total") >= 1


def test_a_flood_of_unsolicited_pongs_is_closed_1008(start_server):
    srv = start_server("--rate", "10", "--rate-burst", "20", "--frame-rate", "10", "--frame-rate-burst", "20")
    with RawWebSocket(srv.port) as raw:
        assert raw.recv_json()["type"] == "hello"
        flood(raw, EMPTY_PONG, 150)
        assert raw.close_code() == 1008


def test_a_large_message_in_many_fragments_within_the_default_limits_is_answered(server):
    with RawWebSocket(server.port) as raw:
        assert raw.recv_json()["type"] == "hello"
        message = json.dumps({"type": "list", "id": "big", "pad": "x" * 60_000}).encode()
        pieces = [message[i:i + 250] for i in range(0, len(message), 250)]
        assert 200 < len(pieces) <= 256  # the default --max-fragments-per-message
        for n, piece in enumerate(pieces):
            raw.send_frame(RawWebSocket.OP_TEXT if n == 0 else RawWebSocket.OP_CONT, piece, fin=n == len(pieces) - 1)
        assert raw.recv_json()["id"] == "big"


def test_a_message_in_more_fragments_than_the_limit_is_closed_1008(start_server):
    srv = start_server("--max-fragments-per-message", "8")
    with RawWebSocket(srv.port) as raw:
        assert raw.recv_json()["type"] == "hello"
        message = json.dumps({"type": "list", "id": "split"}).encode()
        for n in range(9):
            raw.send_frame(RawWebSocket.OP_TEXT if n == 0 else RawWebSocket.OP_CONT, message[n:n + 1], fin=False)
        assert raw.close_code() == 1008


# ---------------------------------------------------------------------------------------------------------------
# list amplification


def test_a_short_list_request_cannot_make_the_server_write_much_and_repeated_lists_are_throttled(start_server):
    srv = start_server("--max-read-bytes-per-second", "8192")
    with srv.user("svc", "service") as svc, srv.connect() as watcher:
        deadline = now_ms() + 600_000
        for i in range(150):
            svc.send({"type": "open", "id": f"o{i}", "listing": f"amplified-listing-{i:04d}-{'x' * 30}",
                      "seller": "sam", "format": "english", "start": 100, "closes_at": deadline})
        assert all(svc.result(f"o{i}")["ok"] for i in range(150))
        request = json.dumps({"type": "list", "limit": 1000})
        assert len(request) <= 40
        watcher.send(request)
        assert watcher.expect(lambda m: m.get("type") == "result")["error"] == "bad_request"
        watcher.send({"type": "list", "id": "q1", "limit": 100})
        page = watcher.expect(lambda m: m.get("id") == "q1")
        assert page["type"] == "listings" and len(page["listings"]) == 100
        assert len(json.dumps(page)) < 32 * 1024
        watcher.send({"type": "list", "id": "q2", "limit": 100})
        refused = watcher.expect(lambda m: m.get("id") == "q2")
        assert refused["error"] == "rate_limited" and "retry in" in refused["message"]
        default = srv.connect()
        try:
            default.send({"type": "list", "id": "q3"})
            assert len(default.expect(lambda m: m.get("id") == "q3")["listings"]) == 20
        finally:
            default.close()
