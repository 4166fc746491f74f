"""TLS on the WebSocket/page port and on the admin port: certificates made here with `openssl`, real `websockets`
clients over wss://, a wrong CA and TLS 1.1 refused, reload on SIGHUP without dropping connections."""

import signal
import shutil
import socket
import ssl

import pytest
from websockets.sync.client import connect

from conftest import run_gavel
from test_page import Browser, chromium_binary
from keys import CA
from support import SECRET, Server, eventually, mint_token


@pytest.fixture
def ca(tmp_path):
    return CA(tmp_path / "pki", "Gavel Test CA")


def tls_server(gavel_bin, tmp_path, cert, key, *extra, client=None, admin_client=None):
    s = Server(gavel_bin, tmp_path / "data", tmp_path / "serve.log",
               ["--tls-cert", str(cert), "--tls-key", str(key), *extra], SECRET)
    s.tls = client
    s.admin_tls = admin_client
    return s


@pytest.fixture
def served(gavel_bin, tmp_path, ca):
    cert, key = ca.issue("gavel-one", 1)
    s = tls_server(gavel_bin, tmp_path, cert, key, client=ca.client_context()).start()
    yield s
    s.stop()


def peer_certificate(port, context):
    """The certificate the server shows a new TLS connection on `port`, decoded by `ssl`."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.getpeercert()


def common_name(certificate):
    return dict(pair[0] for pair in certificate["subject"])["commonName"]


def test_wss_client_trusting_the_ca_gets_hello_and_the_page_over_https(served):
    with served.connect(mint_token("alice", "bidder")) as client:
        assert client.hello["principal"] == "alice"
        client.send({"type": "list", "id": "q1"})
        client.expect(lambda m: m.get("id") == "q1")
    status, body = served.http_get("/", tls=served.tls)
    assert status == 200 and b"<" in body


def test_plain_ws_on_a_tls_port_is_not_served(served):
    with pytest.raises(Exception):
        with connect(f"ws://127.0.0.1:{served.port}/ws", open_timeout=5):
            pass


def test_client_trusting_another_ca_is_refused(served, tmp_path):
    other = CA(tmp_path / "other", "Someone Else's CA")
    with pytest.raises(ssl.SSLCertVerificationError):
        with connect(served.ws_url(), ssl=other.client_context(), open_timeout=5):
            pass


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_1_is_refused_and_1_2_and_1_3_are_served(served, ca):
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        context = ca.client_context()
        context.minimum_version = version
        context.maximum_version = version
        assert peer_certificate(served.port, context)
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
    old.minimum_version = ssl.TLSVersion.TLSv1_1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError):
        peer_certificate(served.port, old)


def live_pair(tmp_path, cert, key):
    """Copies of `cert` and `key` that the server reads, for the test to replace: (cert, key) paths."""
    live_cert, live_key = tmp_path / "live.crt", tmp_path / "live.key"
    shutil.copy(cert, live_cert)
    shutil.copy(key, live_key)
    return live_cert, live_key


def test_sighup_reload_keeps_open_connections_and_new_ones_see_the_new_certificate(gavel_bin, tmp_path, ca):
    live_cert, live_key = live_pair(tmp_path, *ca.issue("gavel-one", 1))
    cert_two, key_two = ca.issue("gavel-two", 2)
    s = tls_server(gavel_bin, tmp_path, live_cert, live_key, client=ca.client_context()).start()
    try:
        assert common_name(peer_certificate(s.port, ca.client_context())) == "gavel-one"
        with s.connect(mint_token("alice", "bidder")) as old:
            shutil.copy(cert_two, live_cert)
            shutil.copy(key_two, live_key)
            s.process.send_signal(signal.SIGHUP)
            assert eventually(lambda: common_name(peer_certificate(s.port, ca.client_context())) == "gavel-two")
            seen = peer_certificate(s.port, ca.client_context())
            assert seen["serialNumber"] == "02"
            # The connection opened before the reload still works.
            old.send({"type": "list", "id": "after-reload"})
            old.expect(lambda m: m.get("id") == "after-reload")
            with s.connect(mint_token("bob", "bidder")) as new:
                assert new.hello["principal"] == "bob"
    finally:
        s.stop()


def test_failed_reload_keeps_the_pair_in_use_and_says_why(gavel_bin, tmp_path, ca):
    live_cert, live_key = live_pair(tmp_path, *ca.issue("gavel-one", 1))
    s = tls_server(gavel_bin, tmp_path, live_cert, live_key, client=ca.client_context()).start()
    try:
        live_cert.write_text("not a certificate\n")
        s.process.send_signal(signal.SIGHUP)
        assert eventually(lambda: "not reloaded" in s.log_tail())
        assert str(live_cert) in s.log_tail()
        assert common_name(peer_certificate(s.port, ca.client_context())) == "gavel-one"
        with s.connect(mint_token("alice", "bidder")) as client:
            assert client.hello["principal"] == "alice"
    finally:
        s.stop()


def test_admin_port_serves_metrics_over_its_own_tls(gavel_bin, tmp_path, ca):
    cert, key = ca.issue("gavel-one", 1)
    admin_cert, admin_key = ca.issue("gavel-admin", 3)
    s = tls_server(gavel_bin, tmp_path, cert, key, "--admin-tls-cert", str(admin_cert), "--admin-tls-key",
                   str(admin_key), client=ca.client_context(), admin_client=ca.client_context()).start()
    try:
        status, body = s.admin_get("/metrics")
        assert status == 200 and b"gavel_" in body
        assert common_name(peer_certificate(s.admin_port, ca.client_context())) == "gavel-admin"
    finally:
        s.stop()


def test_start_errors_name_the_file(gavel_bin, tmp_path, ca):
    cert, key = ca.issue("gavel-one", 1)
    _, other_key = ca.issue("gavel-two", 2)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello\n")
    missing = tmp_path / "missing.pem"
    data = str(tmp_path / "data")
    cases = [
        (["--tls-cert", str(missing), "--tls-key", str(key)], str(missing)),
        (["--tls-cert", str(cert), "--tls-key", str(missing)], str(missing)),
        (["--tls-cert", str(garbage), "--tls-key", str(key)], str(garbage)),
        (["--tls-cert", str(cert), "--tls-key", str(garbage)], str(garbage)),
        (["--tls-cert", str(cert), "--tls-key", str(other_key)], str(other_key)),
        (["--admin-tls-cert", str(cert), "--admin-tls-key", str(other_key)], str(other_key)),
        (["--tls-cert", str(cert)], "--tls-key"),
    ]
    for args, named in cases:
        result = run_gavel(gavel_bin, "serve", "--port", "0", "--admin-port=-1", "--data-dir", data,
                           "--jwt-secret", SECRET, *args)
        assert result.returncode != 0, args
        assert named in result.stderr, (args, result.stderr)


def test_page_served_over_https_connects_with_wss(served, tmp_path):
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no chromium on PATH (scripts/test installs Debian's chromium package)")
    # The test's CA is not in Chromium's store; the certificate itself is checked by the tests above.
    browser = Browser(binary, str(tmp_path / "chromium-profile"), ["--ignore-certificate-errors"])
    try:
        page = browser.page(f"https://127.0.0.1:{served.port}/")
        page.wait("document.getElementById('conn-status').textContent === 'live'", what="connected over wss://")
        assert page.js("location.protocol") == "https:"
    finally:
        browser.close()
