"""Tokens at the upgrade, and what each role may do."""

import json
import os
import stat
import time

import pytest
from websockets.exceptions import InvalidStatus

from conftest import run_gavel
from support import SECRET, mint_token, open_english, raw_connect, unique


def upgrade_status(server, token=None, query=False):
    """The HTTP status of a WebSocket upgrade with `token` (101 when it opens), and the refusal's body."""
    headers = {} if token is None or query else {"Authorization": f"Bearer {token}"}
    url = server.ws_url(token if query else None)
    try:
        with raw_connect(url, headers) as ws:
            ws.recv(timeout=5)
            return 101, b""
    except InvalidStatus as refused:
        return refused.response.status_code, bytes(refused.response.body or b"")


def test_token_in_header_or_query_sets_principal_and_role(server):
    token = mint_token("sue", "seller")
    with server.connect(token) as by_header, server.connect(token, header_token=False) as by_query:
        for client in (by_header, by_query):
            assert client.hello["principal"] == "sue" and client.hello["role"] == "seller"


def test_a_browser_carries_its_token_in_a_subprotocol_and_the_server_selects_gavel(server):
    """The page's way: the token out of the URL (access logs record URLs), `gavel` selected in the answer (a client
    that offers subprotocols must get one of them)."""
    token = mint_token("sue", "seller")
    with raw_connect(server.ws_url(None), subprotocols=["gavel", "gavel.bearer." + token]) as ws:
        hello = json.loads(ws.recv(timeout=5))
        assert ws.subprotocol == "gavel"
        assert hello["principal"] == "sue" and hello["role"] == "seller"
    # Offered without a token: anonymous, still selected; a bad token in it is refused like any other.
    with raw_connect(server.ws_url(None), subprotocols=["gavel"]) as ws:
        assert json.loads(ws.recv(timeout=5))["role"] == "watcher" and ws.subprotocol == "gavel"
    bad = mint_token("eve", "bidder", sign_with="not-the-secret")
    with pytest.raises(InvalidStatus) as refused:
        raw_connect(server.ws_url(None), subprotocols=["gavel", "gavel.bearer." + bad])
    assert refused.value.response.status_code == 401
    # The header wins over the subprotocol.
    with raw_connect(server.ws_url(None), {"Authorization": f"Bearer {mint_token('ann', 'bidder')}"},
                     subprotocols=["gavel", "gavel.bearer." + token]) as ws:
        assert json.loads(ws.recv(timeout=5))["principal"] == "ann"


@pytest.mark.parametrize(
    "token",
    [
        mint_token("eve", "bidder", sign_with="not-the-secret"),
        mint_token("eve", "bidder", exp=int(time.time()) - 5),
        mint_token("eve", "bidder", alg="none"),
        mint_token("eve", "bidder", alg="HS512"),
        mint_token("eve", "emperor"),
        "not.a.token",
    ],
    ids=["bad-signature", "expired", "alg-none", "alg-hs512", "unknown-role", "garbage"],
)
def test_bad_token_is_refused_with_401_at_upgrade(server, token):
    assert upgrade_status(server, token)[0] == 401
    assert upgrade_status(server, token, query=True)[0] == 401


def test_refusals_do_not_say_why(server):
    bodies = {upgrade_status(server, t)[1] for t in (
        mint_token("eve", "bidder", sign_with="wrong"),
        mint_token("eve", "bidder", exp=int(time.time()) - 5),
        mint_token("eve", "bidder", alg="none"),
    )}
    assert len(bodies) == 1
    body = bodies.pop().lower()
    for word in (b"signature", b"expired", b"alg", b"none"):
        assert word not in body


def test_no_anonymous_refuses_connections_without_token(start_server):
    srv = start_server("--no-anonymous")
    assert upgrade_status(srv)[0] == 401
    with srv.user("ann") as ann:
        assert ann.hello["principal"] == "ann"


def test_token_printed_by_gavel_token_is_accepted(server, gavel_bin):
    printed = run_gavel(gavel_bin, "token", "--sub", "alice", "--role", "bidder", "--ttl", "1h",
                        "--jwt-secret", SECRET)
    assert printed.returncode == 0, printed.stderr
    with server.connect(printed.stdout.strip()) as alice:
        assert alice.hello["principal"] == "alice" and alice.hello["role"] == "bidder"


def test_local_mode_secret_is_created_0600_and_shared_with_gavel_token(start_server, gavel_bin, tmp_path):
    data = tmp_path / "local"
    srv = start_server(data_dir=data, secret=None)
    secret_file = data / "jwt-secret"
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    printed = run_gavel(gavel_bin, "token", "--sub", "bob", "--role", "seller", "--data-dir", str(data))
    assert printed.returncode == 0, printed.stderr
    with srv.connect(printed.stdout.strip()) as bob:
        assert bob.hello["principal"] == "bob" and bob.hello["role"] == "seller"
    assert upgrade_status(srv, mint_token("bob", "seller"))[0] == 401  # the test secret is not the server's


def test_bidder_cannot_bid_as_someone_else(server):
    listing = unique()
    with server.user("sam", "seller") as sam, server.user("ann") as ann:
        assert open_english(sam, listing)["ok"]
        result = ann.command({"type": "bid", "listing": listing, "bidder": "bob", "amount": 500})
        assert result["ok"] is False and result["error"] == "not_authorized"
        result = ann.command({"type": "bid", "listing": listing, "on_behalf_of": "bob", "amount": 500})
        assert result["ok"] is False and result["error"] == "not_authorized"


def test_bidder_without_actor_field_bids_as_itself(server):
    listing = unique()
    with server.user("sam", "seller") as sam, server.user("ann") as ann, server.connect() as watcher:
        assert open_english(sam, listing)["ok"]
        watcher.subscribe(listing)
        assert ann.command({"type": "bid", "listing": listing, "amount": 500})["ok"]
        assert watcher.event(listing, "bid_placed")["leader"] == "ann"


def test_watcher_cannot_send_commands(server):
    listing = unique()
    with server.user("sam", "seller") as sam, server.connect() as anonymous, \
            server.user("wes", "watcher") as wes:
        assert open_english(sam, listing)["ok"]
        for client in (anonymous, wes):
            result = client.command({"type": "bid", "listing": listing, "bidder": "wes", "amount": 500})
            assert result["ok"] is False and result["error"] == "not_authorized"
        assert wes.subscribe(listing)["state"]["bids"] == 0


def test_seller_can_open_and_bidder_cannot(server):
    with server.user("sam", "seller") as sam, server.user("ann") as ann:
        assert open_english(sam, unique())["ok"]
        refused = open_english(ann, unique())
        assert refused["ok"] is False and refused["error"] == "not_authorized"


def test_seller_cannot_open_for_another_seller(server):
    with server.user("sam", "seller") as sam:
        result = open_english(sam, unique(), seller="sid")
        assert result["ok"] is False and result["error"] == "not_authorized"


def test_seller_may_bid_on_other_listings_but_not_its_own(server):
    own, other = unique(), unique()
    with server.user("sam", "seller") as sam, server.user("sid", "seller") as sid:
        assert open_english(sam, own)["ok"] and open_english(sid, other)["ok"]
        assert sam.command({"type": "bid", "listing": other, "amount": 500})["ok"]
        assert sam.command({"type": "bid", "listing": own, "amount": 500})["error"] == "seller_cannot_bid"


def test_service_acts_on_behalf_of_users(server):
    listing = unique()
    with server.user("market", "service") as market, server.connect() as watcher:
        assert open_english(market, listing, seller="sam")["ok"]
        watcher.subscribe(listing)
        assert market.command({"type": "bid", "listing": listing, "on_behalf_of": "ann", "amount": 500})["ok"]
        assert market.command({"type": "bid", "listing": listing, "bidder": "bob", "amount": 900})["ok"]
        leaders = [watcher.event(listing, "bid_placed")["leader"] for _ in range(2)]
        assert leaders == ["ann", "bob"]
        clash = market.command({"type": "bid", "listing": listing, "bidder": "bob", "on_behalf_of": "ann",
                                "amount": 5000})
        assert clash["ok"] is False and clash["error"] == "bad_request"
