"""Local mode's `POST /token` asks for the server's local code; the data directory is private to its owner."""

import http.client
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

from support import now_ms, open_english

ANN = {"sub": "ann", "role": "bidder"}


def test_token_without_the_local_code_is_401_and_says_where_the_code_is(start_server):
    server = start_server(secret=None)
    status, info = server.http_get("/token")
    assert status == 200  # the page learns that it may ask, and that it needs the code
    status, answer = server.http_post_json("/token", ANN)
    assert status == 401
    assert "local code" in answer["error"] and "<data-dir>/local-code" in answer["error"]
    assert "token" not in answer


def test_token_with_a_wrong_code_is_403(start_server):
    server = start_server(secret=None)
    right = server.local_code()
    for wrong in ("", "0" * len(right), right[:-1], right + "0", right.upper()):
        status, answer = server.http_post_json("/token", ANN, headers={"X-Gavel-Local-Code": wrong})
        assert status == 403 and "wrong local code" in answer["error"], wrong
        status, answer = server.http_post_json("/token", {**ANN, "code": wrong})
        assert status == 403 and "token" not in answer, wrong


def test_two_code_headers_are_refused_whichever_comes_first(start_server):
    """Which of two headers a proxy or client library keeps varies: the server takes neither."""
    server = start_server(secret=None)
    right = server.local_code()
    for codes in ((right, "0" * len(right)), ("0" * len(right), right), (right, right)):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            body = json.dumps(ANN).encode()
            conn.putrequest("POST", "/token")
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(body)))
            for code in codes:
                conn.putheader("X-Gavel-Local-Code", code)
            conn.endheaders(body)
            response = conn.getresponse()
            answer = json.loads(response.read())
            assert response.status == 400 and "one X-Gavel-Local-Code header" in answer["error"], codes
            assert "token" not in answer
        finally:
            conn.close()


def test_token_with_the_right_code_in_a_header_or_the_body_can_bid(start_server):
    server = start_server(secret=None)
    code = server.local_code()
    assert len(code) == 32 and all(c in "0123456789abcdef" for c in code)
    status, by_header = server.http_post_json("/token", ANN, headers={"X-Gavel-Local-Code": code})
    assert status == 200 and by_header["sub"] == "ann"
    status, by_body = server.http_post_json("/token", {"sub": "sam", "role": "seller", "code": code})
    assert status == 200 and by_body["role"] == "seller"
    assert by_header["expires_at"] > now_ms()
    with server.connect(by_body["token"]) as sam, server.connect(by_header["token"]) as ann:
        assert open_english(sam, "LM1", start=100)["ok"]
        assert ann.command({"type": "bid", "listing": "LM1", "amount": 500})["ok"]


def test_the_code_changes_at_every_start(start_server, tmp_path):
    data = tmp_path / "restarted"
    first = start_server(data_dir=data, secret=None)
    old = first.local_code()
    assert stat.S_IMODE(os.stat(data / "local-code").st_mode) == 0o600
    assert first.stop() == 0
    second = start_server(data_dir=data, secret=None)
    assert second.local_code() != old
    status, answer = second.http_post_json("/token", ANN, headers={"X-Gavel-Local-Code": old})
    assert status == 403
    assert second.http_post_json("/token", ANN, headers=second.code_header())[0] == 200


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to be uid 65534")
def test_another_unix_user_can_reach_loopback_but_reads_nothing_and_gets_no_token(start_server):
    # A directory every user can pass through, so that only the data directory's own mode keeps uid 65534 out.
    base = tempfile.mkdtemp(prefix="gavel-other-user-", dir="/tmp")
    try:
        os.chmod(base, 0o755)
        data = os.path.join(base, "data")
        server = start_server(data_dir=data, secret=None)
        me = server.local_token("sam", "seller")
        with server.connect(me) as sam:
            assert open_english(sam, "OTHER1", start=100)["ok"]
        segments = os.listdir(os.path.join(data, "journal"))
        assert segments
        probe = f"""
import http.client, json, sys
paths = {[os.path.join(data, name) for name in ("local-code", "jwt-secret", "LOCK")]
          + [os.path.join(data, "journal", segments[0])]!r}
readable = []
for path in paths:
    try:
        open(path, "rb").read()
        readable.append(path)
    except OSError:
        pass
conn = http.client.HTTPConnection("127.0.0.1", {server.port}, timeout=5)
conn.request("POST", "/token", body=json.dumps({{"sub": "mallory", "role": "bidder"}}),
             headers={{"Content-Type": "application/json"}})
print(json.dumps({{"readable": readable, "status": conn.getresponse().status}}))
"""
        python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
        other = subprocess.run(
            ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", python, "-I", "-c", probe],
            capture_output=True, text=True, timeout=30, cwd="/")
        assert other.returncode == 0, other.stderr
        result = json.loads(other.stdout)
        assert result == {"readable": [], "status": 401}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _post_head(port, path, headers):
    import socket
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"] + headers
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def _read_status(sock):
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode(errors="replace")


@pytest.mark.parametrize("path", ["/token", "/elsewhere"])
def test_a_body_announced_over_the_limit_is_refused_before_it_is_sent(start_server, path):
    server = start_server(secret=None)
    sock = _post_head(server.port, path, ["Content-Type: application/json", "Content-Length: 10000000000"])
    try:
        # Nothing of the 10 GB is sent: the answer comes from the head alone.
        assert _read_status(sock).endswith("413 Payload Too Large")
    finally:
        sock.close()


def test_a_chunked_body_is_refused_once_it_passes_the_limit_not_at_its_end(start_server):
    server = start_server(secret=None)
    sock = _post_head(server.port, "/token", ["Content-Type: application/json", "Transfer-Encoding: chunked"])
    try:
        # One chunk past the 4 KiB limit, and the body never ends: the answer comes without its end.
        sock.sendall(b"1388\r\n" + b"x" * 5000 + b"\r\n")
        assert _read_status(sock).endswith("413 Payload Too Large")
    finally:
        sock.close()


def test_the_page_and_every_answer_refuse_to_be_framed(server):
    """The page's "Buy now" is one click from a binding sale: another site must not frame it (clickjacking)."""
    for path in ("/", "/token", "/nothing-here"):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            assert response.getheader("x-frame-options") == "DENY", path
            assert response.getheader("content-security-policy") == "frame-ancestors 'none'", path
            assert response.getheader("x-content-type-options") == "nosniff", path
        finally:
            conn.close()
