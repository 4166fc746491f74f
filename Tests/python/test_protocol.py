"""RFC 6455 behaviour of the gateway, seen by a strict client library and by hand-crafted frames."""

import contextlib
import random
import struct

import pytest

from support import RawWebSocket, mint_token, unique

OP = RawWebSocket


def subscribe_text(listing, pad=0):
    text = '{"type":"subscribe","listing":"%s","pad":"%s"}' % (listing, "x" * pad)
    return text


def test_fragmented_text_message_is_reassembled(server):
    listing = unique()
    with server.connect() as client:
        text = subscribe_text(listing)
        client.ws.send([text[:7], text[7:20], text[20:]])
        snapshot = client.expect(lambda m: m.get("type") == "snapshot", what="snapshot")
        assert snapshot["listing"] == listing


def test_ping_between_fragments_is_answered_and_message_still_reassembled(server):
    with RawWebSocket(server.port) as raw:
        raw.recv_json()  # hello
        listing = unique()
        text = subscribe_text(listing).encode()
        raw.send_frame(OP.OP_TEXT, text[:10], fin=False)
        raw.send_frame(OP.OP_PING, b"between")
        raw.send_frame(OP.OP_CONT, text[10:], fin=True)
        fin, opcode, payload = raw.recv_frame()
        assert (opcode, payload) == (OP.OP_PONG, b"between")
        snapshot = raw.recv_json()
        assert snapshot["type"] == "snapshot" and snapshot["listing"] == listing


def test_ping_is_answered_with_pong_echoing_payload(server):
    with server.connect() as client:
        assert client.ws.ping(b"are you there").wait(5), "no pong within 5 s"
    with RawWebSocket(server.port) as raw:
        raw.recv_json()
        raw.send_frame(OP.OP_PING, b"\x00\x01payload")
        _, opcode, payload = raw.recv_frame()
        assert (opcode, payload) == (OP.OP_PONG, b"\x00\x01payload")


def test_client_close_is_echoed_with_its_code(server):
    with RawWebSocket(server.port) as raw:
        raw.recv_json()
        raw.send_frame(OP.OP_CLOSE, struct.pack("!H", 1000) + b"bye")
        assert raw.close_code() == 1000
    with server.connect() as client:
        client.ws.close(4001, "application code")
        assert client.ws.close_code == 4001


@pytest.mark.parametrize("payload", [struct.pack("!H", 1005), struct.pack("!H", 999), b"\x03"],
                         ids=["reserved-1005", "below-1000", "one-byte"])
def test_invalid_close_payload_is_a_protocol_error(server, payload):
    with RawWebSocket(server.port) as raw:
        raw.recv_json()
        raw.send_frame(OP.OP_CLOSE, payload)
        assert raw.close_code() == 1002


def test_message_at_the_size_limit_is_accepted_and_one_byte_more_closes_1009(server):
    with server.connect() as client:
        limit = client.hello["limits"]["max_message_bytes"]
        assert limit == 64 * 1024
        listing = unique()
        exact = subscribe_text(listing, pad=limit - len(subscribe_text(listing)))
        assert len(exact.encode()) == limit
        client.send(exact)
        assert client.expect(lambda m: m.get("type") == "snapshot")["listing"] == listing
        client.send(subscribe_text(listing, pad=limit + 1 - len(subscribe_text(listing))))
        assert client.close_code() == 1009


def test_fragments_adding_up_past_the_limit_close_1009(server):
    with server.connect() as client:
        limit = client.hello["limits"]["max_message_bytes"]
        text = subscribe_text(unique(), pad=limit)
        client.ws.send([text[: limit // 2], text[limit // 2:]])
        assert client.close_code() == 1009


def test_binary_message_closes_1003(server):
    with server.connect() as client:
        client.ws.send(b'{"type":"subscribe","listing":"L1"}')
        assert client.close_code() == 1003


def test_invalid_utf8_text_closes_1007(server):
    with server.connect() as client:
        client.ws.send(b'{"type":"subscribe","listing":"\xc3\x28"}', text=True)
        assert client.close_code() == 1007


def test_invalid_utf8_split_across_fragments_closes_1007(server):
    with RawWebSocket(server.port) as raw:
        raw.recv_json()
        raw.send_frame(OP.OP_TEXT, b'{"type":"x","a":"\xe2\x82', fin=False)
        raw.send_frame(OP.OP_CONT, b'\x28"}', fin=True)
        assert raw.close_code() == 1007


def test_close_reason_that_is_not_utf8_closes_1007(server):
    with RawWebSocket(server.port) as raw:
        raw.recv_json()
        raw.send_frame(OP.OP_CLOSE, struct.pack("!H", 1000) + b"\xff\xfe")
        assert raw.close_code() == 1007


def test_unmasked_client_frame_closes_1002(server):
    with RawWebSocket(server.port) as raw:
        raw.recv_json()
        raw.send_frame(OP.OP_TEXT, subscribe_text(unique()), mask=False)
        assert raw.close_code() == 1002


@pytest.mark.parametrize(
    "frames",
    [
        [dict(opcode=OP.OP_TEXT, payload="{}", rsv=0b100)],
        [dict(opcode=0x3, payload="")],
        [dict(opcode=OP.OP_CONT, payload="{}")],
        [dict(opcode=OP.OP_TEXT, payload="{", fin=False), dict(opcode=OP.OP_TEXT, payload="}")],
        [dict(opcode=OP.OP_PING, payload="p", fin=False)],
        [dict(opcode=OP.OP_PING, payload="p" * 126)],
    ],
    ids=["reserved-bit", "unknown-opcode", "continuation-first", "text-inside-text", "fragmented-ping",
         "ping-over-125-bytes"],
)
def test_protocol_violation_closes_1002(server, frames):
    with RawWebSocket(server.port) as raw:
        raw.recv_json()
        for frame in frames:
            raw.send_frame(**frame)
        assert raw.close_code() == 1002


def test_malformed_json_gets_bad_request_and_connection_stays_usable(server):
    with server.connect() as client:
        client.send('{"type":"subscribe",')
        result = client.expect(lambda m: m.get("type") == "result")
        assert result["ok"] is False and result["error"] == "bad_request" and result["id"] is None
        assert result["message"]
        client.send("[1,2,3]")
        assert client.expect(lambda m: m.get("type") == "result")["error"] == "bad_request"
        client.send('{"type":"nonsense","id":"n1"}')
        assert client.result("n1")["error"] == "bad_request"
        listing = unique()
        assert client.subscribe(listing)["listing"] == listing


def test_a_string_id_is_echoed_up_to_128_bytes_and_a_longer_one_is_refused_without_its_echo(server):
    with server.connect(mint_token("ann", "bidder")) as client:
        echoed = "\u0001" * 128
        client.send({"type": "bid", "id": echoed, "listing": "L-none", "amount": 100})
        result = client.expect(lambda m: m.get("type") == "result")
        assert result["id"] == echoed and result["error"] == "bad_request"
        for message in (
            {"type": "bid", "id": "q" * 129, "listing": "L-none", "amount": 100},
            {"type": "my_settlements", "id": "\u0001" * 4000},
            {"type": "list", "id": "\u00e9" * 65},
        ):
            client.send(message)
            result = client.expect(lambda m: m.get("type") == "result")
            assert result["id"] is None and result["error"] == "bad_request", result
            assert "bytes long" in result["message"] and "not echoed" in result["message"], result["message"]
        listing = unique()
        assert client.subscribe(listing)["listing"] == listing



def test_a_command_carrying_at_is_told_the_server_stamps_time_whatever_its_value(server):
    """A client must not send `at` at all: it is told so, not how to write the number."""
    token = mint_token("ann", "bidder")
    with server.connect(token) as client:
        for n, at in enumerate(["5", "1e3", '"x"', "18446744073709551616", "null", "-1"]):
            client.send('{"type":"bid","id":"t%d","listing":"L-none","amount":100,"at":%s}' % (n, at))
            result = client.result(f"t{n}")
            assert result["error"] == "bad_request", at
            assert result["message"].startswith("at is not accepted here"), (at, result["message"])


def test_random_bytes_never_take_the_server_down(server):
    rng = random.Random(6455)
    codes = set()
    for _ in range(30):
        with RawWebSocket(server.port) as raw:
            raw.recv_json()
            with contextlib.suppress(OSError):
                raw.sock.sendall(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300))))
                codes.add(raw.close_code(timeout=0.3))  # some garbage announces a long frame: no answer yet
    assert codes - {None} and codes <= {None, 1002, 1003, 1007, 1009}, codes
    assert server.admin_get("/healthz")[0] == 200
    listing = unique()
    with server.connect() as client:
        assert client.subscribe(listing)["listing"] == listing
