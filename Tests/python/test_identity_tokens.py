"""Tokens from an identity provider: RS256, ES256 and EdDSA keys from a JWKS file or URL (keys made here with
`cryptography`), kid rotation, issuer and audience, the role claim, and the attacks a verifier must refuse."""

import http.server
import json
import os
import signal
import ssl
import threading
import time

import pytest
from websockets.exceptions import InvalidStatus

from conftest import run_gavel
from keys import CA, SigningKey, claims, hs256_with_key_bytes, jwks
from support import SECRET, eventually, mint_token, raw_connect


@pytest.fixture(scope="module")
def rsa():
    return SigningKey("RS256", "rsa-1")


@pytest.fixture(scope="module")
def ec():
    return SigningKey("ES256", "ec-1")


@pytest.fixture(scope="module")
def ed():
    return SigningKey("EdDSA", "ed-1")


def upgrade(server, token):
    """101 when a connection with `token` opens (and its hello), else the refusal's status and body."""
    try:
        with raw_connect(server.ws_url(), {"Authorization": f"Bearer {token}"}) as ws:
            return 101, json.loads(ws.recv(timeout=5))
    except InvalidStatus as refused:
        return refused.response.status_code, bytes(refused.response.body or b"")


@pytest.fixture
def jwks_server(start_server, tmp_path, rsa, ec, ed):
    """A server that takes tokens from the JWKS file holding the three keys, issuer and audience required."""
    path = tmp_path / "jwks.json"
    path.write_text(jwks(rsa, ec, ed))
    return start_server("--jwks", str(path), "--jwt-issuer", "https://idp.example", "--jwt-audience", "gavel")


def idp_claims(**overrides):
    c = claims(iss="https://idp.example", aud="gavel")
    c.update(overrides)
    return c


@pytest.mark.parametrize("key", ["rsa", "ec", "ed"])
def test_rs256_es256_and_eddsa_tokens_from_the_jwks_are_accepted(jwks_server, key, request):
    signer = request.getfixturevalue(key)
    status, hello = upgrade(jwks_server, signer.sign(idp_claims(sub="alice", role="seller")))
    assert status == 101 and hello["principal"] == "alice" and hello["role"] == "seller"


def test_audience_may_be_an_array_that_contains_ours(jwks_server, rsa):
    status, _ = upgrade(jwks_server, rsa.sign(idp_claims(aud=["account", "gavel"])))
    assert status == 101


def test_hs256_tokens_with_the_local_secret_still_work_next_to_the_jwks(jwks_server):
    status, hello = upgrade(jwks_server, mint_token("bob", "bidder", secret=SECRET))
    assert status == 101 and hello["principal"] == "bob"


def refused(server, token):
    status, body = upgrade(server, token)
    return status == 401 and b"token" not in body.lower()


def test_refusals(jwks_server, rsa, ec, ed):
    stranger = SigningKey("RS256", "rsa-1")  # same kid, another key
    expired = idp_claims(exp=int(time.time()) - 5)
    cases = {
        "wrong kid": rsa.sign(idp_claims(), header={"kid": "nobody"}),
        "no kid": rsa.sign(idp_claims(), header={"kid": None}),
        "wrong key for the kid": stranger.sign(idp_claims()),
        "wrong issuer": rsa.sign(idp_claims(iss="https://evil.example")),
        "no issuer": rsa.sign({k: v for k, v in idp_claims().items() if k != "iss"}),
        "wrong audience": rsa.sign(idp_claims(aud="someone-else")),
        "audience array without ours": rsa.sign(idp_claims(aud=["a", "b"])),
        "expired": rsa.sign(expired),
        "not yet valid": ec.sign(idp_claims(nbf=int(time.time()) + 600)),
        "no exp": ed.sign({k: v for k, v in idp_claims().items() if k != "exp"}),
        "unknown role": rsa.sign(idp_claims(role="emperor")),
        "sub not an identifier": rsa.sign(idp_claims(sub="al ice")),
        "alg of another key type": rsa.sign(idp_claims(), header={"kid": "ec-1"}),
        "alg none": rsa.sign(idp_claims(), header={"alg": "none"}).rsplit(".", 1)[0] + ".",
        "alg confusion: HS256 signed with the RSA public key": hs256_with_key_bytes(
            idp_claims(), rsa.public_pem(), "rsa-1"),
        "alg confusion: HS256 signed with the JWK's n": hs256_with_key_bytes(
            idp_claims(), rsa.jwk()["n"].encode(), "rsa-1"),
    }
    wrongly_accepted = [name for name, token in cases.items() if not refused(jwks_server, token)]
    assert wrongly_accepted == []
    log = jwks_server.log_tail(200)
    assert "401" in log and "unknown key id" in log
    # Never a token in the log: neither a whole one nor its signature.
    for token in cases.values():
        signature = token.split(".")[2]
        assert token not in log and (not signature or signature not in log)


def test_keycloak_shaped_token_takes_its_role_from_realm_access_roles(start_server, tmp_path, rsa):
    path = tmp_path / "jwks.json"
    path.write_text(jwks(rsa))
    s = start_server("--jwks", str(path), "--role-claim", "realm_access.roles")
    token = rsa.sign({
        "exp": int(time.time()) + 300, "iat": int(time.time()), "jti": "abc", "iss": "http://kc/realms/market",
        "aud": "account", "sub": "f0e1d2c3-b4a5-4697-8899-aabbccddeeff", "typ": "Bearer", "azp": "gavel-web",
        "realm_access": {"roles": ["offline_access", "uma_authorization", "seller", "bidder"]},
        "resource_access": {"account": {"roles": ["manage-account"]}},
        "scope": "openid profile email", "preferred_username": "sue",
    })
    status, hello = upgrade(s, token)
    assert status == 101 and hello["role"] == "seller"
    assert hello["principal"] == "f0e1d2c3-b4a5-4697-8899-aabbccddeeff"
    # No known role in the array: refused.
    assert refused(s, rsa.sign(claims(role=None, realm_access={"roles": ["offline_access"]})))


def test_new_kid_in_the_file_is_used_after_sighup(start_server, tmp_path, rsa, ec):
    path = tmp_path / "jwks.json"
    path.write_text(jwks(rsa))
    s = start_server("--jwks", str(path))
    token = ec.sign(claims())
    assert refused(s, token)
    path.write_text(jwks(rsa, ec))
    s.process.send_signal(signal.SIGHUP)
    assert eventually(lambda: upgrade(s, token)[0] == 101)
    # A broken file on the next SIGHUP keeps the keys in use.
    path.write_text("{not json")
    s.process.send_signal(signal.SIGHUP)
    assert eventually(lambda: "key set not reloaded" in s.log_tail())
    assert upgrade(s, rsa.sign(claims()))[0] == 101


class KeySetServer:
    """A loopback HTTP server for a JWKS document that the test changes, counting the fetches."""

    def __init__(self, body, tls=None):
        self.body = body
        self.fetches = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                owner.fetches += 1
                data = owner.body.encode()
                self.send_response(200 if self.path == "/certs" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}/certs"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def key_set_server(rsa):
    k = KeySetServer(jwks(rsa))
    yield k
    k.close()


def test_url_is_fetched_again_on_an_unknown_kid_at_most_once_per_interval(start_server, key_set_server, rsa, ec, ed):
    s = start_server("--jwks-url", key_set_server.url, "--jwks-refresh-seconds", "3600")
    assert key_set_server.fetches == 1
    assert upgrade(s, rsa.sign(claims()))[0] == 101
    assert key_set_server.fetches == 1  # a known kid: the cache answers
    # The provider rotates: the first token with the new kid makes the server fetch the set again, and is accepted.
    key_set_server.body = jwks(rsa, ec)
    status, hello = upgrade(s, ec.sign(claims(sub="carol")))
    assert status == 101 and hello["principal"] == "carol"
    assert key_set_server.fetches == 2
    assert "refused with 401" not in s.log_tail(100)  # the accepted rotation logs no refusal
    # Another unknown kid within the interval: no new fetch, refused.
    key_set_server.body = jwks(rsa, ec, ed)
    assert refused(s, ed.sign(claims()))
    assert refused(s, ed.sign(claims()))
    assert key_set_server.fetches == 2
    assert "fetched less than --jwks-refresh-seconds ago" in s.log_tail(100)


def test_url_refresh_after_the_interval_and_on_sighup(start_server, key_set_server, rsa, ec):
    s = start_server("--jwks-url", key_set_server.url, "--jwks-refresh-seconds", "1")
    key_set_server.body = jwks(rsa, ec)
    time.sleep(1.1)
    assert upgrade(s, ec.sign(claims()))[0] == 101
    fetched = key_set_server.fetches
    s.process.send_signal(signal.SIGHUP)
    assert eventually(lambda: key_set_server.fetches == fetched + 1)


def test_https_url_is_fetched_through_tls_trusting_the_given_ca(start_server, gavel_bin, tmp_path, rsa):
    ca = CA(tmp_path / "pki", "IdP Test CA")
    cert, key = ca.issue("idp", 1)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    k = KeySetServer(jwks(rsa), tls=context)
    try:
        s = start_server("--jwks-url", k.url, "--jwks-ca", str(ca.cert))
        assert upgrade(s, rsa.sign(claims(sub="dave")))[1]["principal"] == "dave"
        # Without the CA, the system's roots do not vouch for the test's certificate: the start fails.
        result = run_gavel(gavel_bin, "serve", "--port", "0", "--admin-port=-1", "--data-dir",
                           str(tmp_path / "other"), "--jwt-secret", SECRET, "--jwks-url", k.url)
        assert result.returncode != 0 and k.url.split("/certs")[0] in result.stderr
    finally:
        k.close()


def test_start_errors_name_the_key_set(gavel_bin, tmp_path, rsa):
    missing = tmp_path / "missing.json"
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{\"keys\": 3}")
    only_hmac = tmp_path / "hmac.json"
    only_hmac.write_text(json.dumps({"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}))
    cases = [
        (["--jwks", str(missing)], str(missing)),
        (["--jwks", str(garbage)], str(garbage)),
        (["--jwks", str(only_hmac)], "no RS256, ES256 or EdDSA key"),
        (["--jwks-url", "http://127.0.0.1:1/certs"], "127.0.0.1:1"),
        (["--jwks-url", "ftp://x/certs"], "--jwks-url"),
        (["--jwks", str(missing), "--jwks-url", "http://127.0.0.1:1/"], "not both"),
        (["--jwt-issuer", "x"], "need --jwks"),
        (["--role-claim", "a..b"], "--role-claim"),
    ]
    for args, named in cases:
        result = run_gavel(gavel_bin, "serve", "--port", "0", "--admin-port=-1", "--data-dir",
                           str(tmp_path / "data"), "--jwt-secret", SECRET, *args)
        assert result.returncode != 0, args
        assert named in result.stderr, (args, result.stderr)


def test_a_server_with_an_identity_provider_and_no_secret_has_no_local_mode(start_server, tmp_path, rsa):
    """Users are the provider's: /token would mint a token for any of them, in any role, unchecked for issuer and
    audience, to whoever saw the local code in the log."""
    path = tmp_path / "jwks.json"
    path.write_text(jwks(rsa))
    s = start_server("--jwks", str(path), "--jwt-issuer", "https://idp.example", "--jwt-audience", "gavel",
                     secret=None)
    assert "local mode" not in s.log_tail(100)
    assert not os.path.exists(os.path.join(s.data_dir, "local-code"))
    assert s.http_get("/token")[0] == 404
    status, _ = s.http_post_json("/token", {"sub": "user-4711", "role": "seller"},
                                 headers={"X-Gavel-Local-Code": "0" * 32})
    assert status == 404
    # The provider's tokens still work.
    status, hello = upgrade(s, rsa.sign(idp_claims(sub="user-4711", role="bidder")))
    assert status == 101 and hello["principal"] == "user-4711"
