"""Helpers for the gateway tests: a `gavel serve` process, HS256 tokens, JSON clients and a raw RFC 6455 socket.

Everything talks to 127.0.0.1 only. Every wait is bounded.
"""

import base64
import contextlib
import hashlib
import hmac
import http.client
import itertools
import json
import os
import signal
import socket
import struct
import subprocess
import time
import uuid

import websockets
from websockets.sync.client import connect

SECRET = "gavel-python-tests-secret-0123456789"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

_ids = itertools.count(1)


def now_ms():
    return int(time.time() * 1000)


def eventually(predicate, seconds=5.0):
    """Polls `predicate` until it holds (closes are asynchronous on the server), at most `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def journal_bytes(data_dir):
    """The bytes the journal's segments in `data_dir` hold, without the reserved space (the zeros after the last
    frame of the segment being appended to: the file's size does not grow as the journal writes)."""
    total = 0
    for name in os.listdir(os.path.join(data_dir, "journal")):
        with open(os.path.join(data_dir, "journal", name), "rb") as segment:
            total += len(segment.read().rstrip(b"\0"))
    return total


def unique(prefix="L"):
    """A fresh identifier, so tests sharing one server never meet."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def request_id(prefix="r"):
    return f"{prefix}{next(_ids)}"


# ---------------------------------------------------------------------------------------------------------------
# Tokens


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint_token(sub, role, secret=SECRET, ttl=3600, exp=None, alg="HS256", sign_with=None):
    """An HS256 JWT with claims sub, role, exp. `alg` changes only the header; `sign_with` signs with another key."""
    header = {"alg": alg, "typ": "JWT"}
    claims = {"sub": sub, "role": role, "exp": exp if exp is not None else int(time.time()) + ttl}
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    if alg == "none":
        return signing_input + "."
    key = (sign_with if sign_with is not None else secret).encode()
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


# ---------------------------------------------------------------------------------------------------------------
# The server process


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `gavel serve` process on free loopback ports."""

    def __init__(self, binary, data_dir, log_path, extra_args=(), secret=SECRET, env=None):
        self.binary = binary
        self.data_dir = str(data_dir)
        self.log_path = str(log_path)
        self.extra_args = list(extra_args)
        self.secret = secret
        self.env = env
        self.process = None
        self.port = None
        self.admin_port = None
        # Client TLS contexts (ssl.SSLContext) for a server started with --tls-cert / --admin-tls-cert.
        self.tls = None
        self.admin_tls = None

    def start(self, timeout=30.0):
        self.port = free_port()
        self.admin_port = free_port()
        args = [
            self.binary, "serve",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--admin-port", str(self.admin_port),
            "--data-dir", self.data_dir,
        ]
        args += self.extra_args
        env = dict(os.environ)
        for key in list(env):
            if key.startswith("GAVEL_"):
                del env[key]
        # The key in the environment, where other local users cannot read it (they can read a command line).
        if self.secret is not None:
            env["GAVEL_JWT_SECRET"] = self.secret
        env.update(self.env or {})
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gavel serve exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                status, _ = self.admin_get("/readyz", timeout=1.0)
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gavel serve not ready within {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL if it has not exited in `timeout` seconds. Returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()
        return self.process.returncode

    def kill9(self):
        self.process.kill()
        self.process.wait(5)
        self.log.close()

    def ws_url(self, token=None, path="/ws"):
        url = f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}{path}"
        return url + (f"?token={token}" if token else "")

    def http_get(self, path, port=None, timeout=5.0, headers=None, tls=None):
        if tls is not None:
            conn = http.client.HTTPSConnection("127.0.0.1", port or self.port, timeout=timeout, context=tls)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def http_post_json(self, path, body, timeout=5.0, headers=None):
        """POSTs `body` as JSON; returns (status, the answer parsed as JSON, or None when it is not JSON)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            conn.request("POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
            response = conn.getresponse()
            raw = response.read()
            try:
                return response.status, json.loads(raw)
            except ValueError:
                return response.status, None
        finally:
            conn.close()

    def local_code(self):
        """The code POST /token requires in local mode: `<data-dir>/local-code`, new at every start."""
        with open(os.path.join(self.data_dir, "local-code")) as f:
            return f.read().strip()

    def code_header(self):
        return {"X-Gavel-Local-Code": self.local_code()}

    def local_token(self, sub, role):
        """A token from POST /token (local mode only), showing the local code."""
        status, answer = self.http_post_json("/token", {"sub": sub, "role": role}, headers=self.code_header())
        assert status == 200, (status, answer)
        return answer["token"]

    def admin_get(self, path, timeout=5.0):
        return self.http_get(path, port=self.admin_port, timeout=timeout, tls=self.admin_tls)

    def metric(self, name):
        """The sum of every sample of metric `name` (all label sets)."""
        _, body = self.admin_get("/metrics")
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith("#"):
                continue
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def connect(self, token=None, header_token=True, **kwargs):
        """A JSON client; the token goes in an `Authorization: Bearer` header unless `header_token` is false."""
        headers = {}
        url = self.ws_url()
        if token and header_token:
            headers["Authorization"] = f"Bearer {token}"
        elif token:
            url = self.ws_url(token)
        if self.tls is not None:
            kwargs.setdefault("ssl", self.tls)
        return Client(raw_connect(url, headers, **kwargs))

    def user(self, sub, role="bidder", **kwargs):
        return self.connect(mint_token(sub, role, secret=self.secret), **kwargs)


def raw_connect(url, headers=None, **kwargs):
    options = dict(
        additional_headers=headers or {},
        compression=None,
        proxy=None,
        open_timeout=10,
        close_timeout=5,
        ping_interval=None,
        max_size=None,
        max_queue=None,
    )
    options.update(kwargs)
    return connect(url, **options).__enter__()  # the connection itself; closed by its `with` or `close()`


# ---------------------------------------------------------------------------------------------------------------
# A JSON client


class Closing:
    """`with x:` closes `x` at the end."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Client(Closing):
    """A `websockets` connection speaking JSON text frames. Messages not yet asked for wait in `pending`."""

    def __init__(self, ws):
        self.ws = ws
        self.received = []
        self.pending = []
        self.hello = self.expect(lambda m: m.get("type") == "hello", what="hello")

    def close(self):
        with contextlib.suppress(Exception):
            self.ws.close()

    def send(self, message):
        self.ws.send(message if isinstance(message, str) else json.dumps(message))

    def recv(self, timeout=5.0):
        raw = self.ws.recv(timeout=timeout)
        assert isinstance(raw, str), f"the server sent a binary message: {raw[:60]!r}"
        message = json.loads(raw)
        self.received.append(message)
        return message

    def expect(self, predicate, timeout=10.0, what="a message"):
        for i, message in enumerate(self.pending):
            if predicate(message):
                return self.pending.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {what} within {timeout} s; unclaimed: {self.pending[-6:]}")
            try:
                message = self.recv(timeout=remaining)
            except TimeoutError:
                continue
            if predicate(message):
                return message
            self.pending.append(message)

    def quiet(self, predicate, seconds):
        """Asserts no message matching `predicate` arrives within `seconds`."""
        try:
            message = self.expect(predicate, timeout=seconds)
        except AssertionError:
            return
        raise AssertionError(f"unexpected message: {message}")

    def result(self, rid, timeout=10.0):
        return self.expect(lambda m: m.get("type") == "result" and m.get("id") == rid, timeout, f"result {rid}")

    def command(self, message, timeout=10.0):
        message = dict(message)
        message.setdefault("id", request_id())
        self.send(message)
        return self.result(message["id"], timeout)

    def subscribe(self, listing, since=None, timeout=10.0):
        message = {"type": "subscribe", "listing": listing}
        if since is not None:
            message["since"] = since
        self.send(message)
        return self.expect(
            lambda m: m.get("type") in ("snapshot", "resumed") and m.get("listing") == listing,
            timeout, f"snapshot of {listing}")

    def event(self, listing, kind=None, seq=None, timeout=10.0):
        def match(m):
            return (m.get("listing") == listing and "seq" in m and m.get("type") not in ("snapshot", "resumed")
                    and (kind is None or m.get("type") == kind) and (seq is None or m.get("seq") == seq))
        return self.expect(match, timeout, f"{kind or 'event'} of {listing}")

    def notice(self, kind, timeout=10.0):
        return self.expect(
            lambda m: m.get("type") == "notice" and m.get("event", {}).get("type") == kind, timeout, f"{kind} notice")

    def close_code(self, timeout=10.0):
        """Reads until the server closes; returns the close code it sent (1006 when it sent none)."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                try:
                    self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))
                except TimeoutError:
                    pass
        except websockets.exceptions.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else 1006
        raise AssertionError(f"the connection was not closed within {timeout} s")


# Server arguments that lift the service rate limits, for floods that must run until the kernel's socket buffers
# (a few megabytes on loopback) are full.
UNLIMITED_SERVICE_RATE = ("--service-rate", "1000000", "--service-rate-burst", "1000000",
                          "--service-principal-rate", "1000000", "--service-principal-rate-burst", "1000000")


def flood_until(market, listing, bidder, done, what, seconds=60):
    """Sends bids of `bidder` on `listing` through `market` (a service connection), 250 at a time, from 1001 up,
    until `done()`; returns the last amount sent."""
    deadline = time.monotonic() + seconds
    amount = 1000
    while not done():
        assert time.monotonic() < deadline, f"{what} within {seconds} s"
        rids = []
        for _ in range(250):
            amount += 1
            rids.append(f"f{amount}")
            market.send({"type": "bid", "id": rids[-1], "listing": listing, "bidder": bidder, "amount": amount})
        for rid in rids:
            result = market.result(rid)
            assert result["ok"], result
    return amount


def open_english(client, listing, start=100, closes_in_ms=600_000, **terms):
    """Opens an english listing through `client` (a seller or service connection); returns the result."""
    closes_at = client.hello["server_time"] + closes_in_ms
    message = {"type": "open", "listing": listing, "format": "english", "start": start, "closes_at": closes_at}
    message.update(terms)
    return client.command(message)


# ---------------------------------------------------------------------------------------------------------------
# A raw RFC 6455 client, for frames a well-behaved library refuses to send


class RawWebSocket(Closing):
    OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

    def __init__(self, port, path="/ws", headers=None, rcvbuf=None, timeout=5.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buffer = bytearray()
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self.buffer += chunk
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        self.buffer = bytearray(rest)
        self.status_line = head.split(b"\r\n")[0].decode()
        self.status = int(self.status_line.split()[1])
        if self.status != 101:
            raise ConnectionError(f"upgrade refused: {self.status_line}")
        expected = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        assert headers.get("sec-websocket-accept") == expected, "bad Sec-WebSocket-Accept"

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()

    def send_frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0):
        if isinstance(payload, str):
            payload = payload.encode()
        first = (0x80 if fin else 0) | (rsv << 4) | opcode
        mask_bit = 0x80 if mask else 0
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", first, mask_bit | n)
        elif n < 65536:
            header = struct.pack("!BBH", first, mask_bit | 126, n)
        else:
            header = struct.pack("!BBQ", first, mask_bit | 127, n)
        if mask:
            key = os.urandom(4)
            repeated = (key * (n // 4 + 1))[:n]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big") if n else b""
            header += key
        self.sock.sendall(header + payload)

    def send_text(self, text):
        self.send_frame(self.OP_TEXT, text.encode() if isinstance(text, str) else text)

    def _fill(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("connection closed")
            self.buffer += chunk

    def recv_frame(self):
        """(fin, opcode, payload). Server frames must be unmasked."""
        self._fill(2)
        first, second = self.buffer[0], self.buffer[1]
        assert second & 0x80 == 0, "the server sent a masked frame"
        n = second & 0x7F
        offset = 2
        if n == 126:
            self._fill(4)
            n = struct.unpack_from("!H", self.buffer, 2)[0]
            offset = 4
        elif n == 127:
            self._fill(10)
            n = struct.unpack_from("!Q", self.buffer, 2)[0]
            offset = 10
        self._fill(offset + n)
        payload = bytes(self.buffer[offset:offset + n])
        del self.buffer[:offset + n]
        return bool(first & 0x80), first & 0x0F, payload

    def recv_json(self):
        """The next text message as JSON, skipping control frames."""
        while True:
            fin, opcode, payload = self.recv_frame()
            if opcode == self.OP_TEXT:
                assert fin, "the server fragmented a message"
                return json.loads(payload)
            if opcode == self.OP_CLOSE:
                raise EOFError(f"closed with {payload[:2].hex()}")

    def close_code(self, timeout=10.0):
        """Reads until the server's close frame; returns its code, or None when the socket ends without one."""
        code, _ = self.close_frame(timeout)
        return code

    def close_reason(self, timeout=10.0):
        """Reads until the server's close frame; returns its reason, or None when the socket ends without one."""
        _, reason = self.close_frame(timeout)
        return reason

    def close_frame(self, timeout=10.0):
        """Reads until the server's close frame: (code, reason), or (None, None) when the socket ends without one."""
        self.sock.settimeout(timeout)
        try:
            while True:
                _, opcode, payload = self.recv_frame()
                if opcode == self.OP_CLOSE:
                    if len(payload) < 2:
                        return 1005, ""
                    return struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8", "replace")
        except (EOFError, ConnectionResetError):
            return None, None
