"""Secrets at start: the HS256 key given as a file (--jwt-secret-file, GAVEL_JWT_SECRET_FILE), and the key given as
--jwt-secret overwritten in the command line that every local user can read (/proc/PID/cmdline), with a warning."""

import json
import os
import pwd
import shutil
import subprocess

import pytest
from websockets.exceptions import InvalidStatus

from conftest import run_gavel
from support import SECRET, mint_token, raw_connect

KEY = "python-tests-key-file-0123456789abcdef"


def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read()


def upgrade_status(server, token):
    try:
        with raw_connect(server.ws_url(), {"Authorization": f"Bearer {token}"}) as ws:
            ws.recv(timeout=5)
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


def key_file(tmp_path, text, mode=0o600):
    path = tmp_path / "jwt-key"
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


def test_jwt_secret_option_is_gone_from_the_command_line_once_the_server_answers_and_it_warns(start_server):
    srv = start_server("--jwt-secret", SECRET, secret=None)
    srv.secret = SECRET
    seen = cmdline(srv.process.pid)
    assert b"--jwt-secret\0" in seen and SECRET.encode() not in seen
    assert b"x" * len(SECRET) in seen
    log = srv.log_tail(200)
    assert ("gavel serve: warning: --jwt-secret on the command line can be read by other local users" in log), log
    assert "give GAVEL_JWT_SECRET or --jwt-secret-file instead" in log
    assert SECRET not in log
    with srv.user("ann") as ann:  # the key itself is still the one given
        assert ann.hello["principal"] == "ann"


def test_jwt_secret_given_as_option_with_equals_sign_is_overwritten_too(start_server):
    srv = start_server(f"--jwt-secret={SECRET}", secret=None)
    seen = cmdline(srv.process.pid)
    assert SECRET.encode() not in seen and b"--jwt-secret=" + b"x" * len(SECRET) in seen
    srv.secret = SECRET
    with srv.user("ann") as ann:
        assert ann.hello["principal"] == "ann"


def test_the_warning_is_a_json_log_line_with_log_format_json(start_server):
    srv = start_server("--log-format", "json", "--jwt-secret", SECRET, secret=None)
    lines = [json.loads(line) for line in srv.log_tail(200).splitlines() if line.startswith("{")]
    warnings = [line for line in lines if "--jwt-secret on the command line" in line["message"]]
    assert len(warnings) == 1 and warnings[0]["level"] == "warning", lines
    assert not [line for line in srv.log_tail(200).splitlines() if not line.startswith("{")]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None, reason="needs root and runuser")
def test_another_user_reads_no_key_from_the_command_line(start_server):
    srv = start_server("--jwt-secret", SECRET, secret=None)
    nobody = pwd.getpwnam("nobody").pw_name
    seen = subprocess.run(["runuser", "-u", nobody, "--", "cat", f"/proc/{srv.process.pid}/cmdline"],
                          capture_output=True, timeout=20)
    assert seen.returncode == 0 and b"--jwt-secret" in seen.stdout and SECRET.encode() not in seen.stdout


@pytest.mark.parametrize("how", ["option", "environment"])
def test_jwt_secret_file_serves_tokens_signed_with_its_text_less_the_newline(start_server, tmp_path, how):
    path = key_file(tmp_path, KEY + "\n")
    if how == "option":
        srv = start_server("--jwt-secret-file", path, secret=None)
    else:
        srv = start_server(secret=None, env={"GAVEL_JWT_SECRET_FILE": path})
    srv.secret = KEY
    with srv.user("ann") as ann:
        assert ann.hello["principal"] == "ann" and ann.hello["role"] == "bidder"
    assert upgrade_status(srv, mint_token("ann", "bidder", secret=KEY + "\n")) == 401
    assert upgrade_status(srv, mint_token("ann", "bidder", secret=SECRET)) == 401
    # A key is given: no local mode, so no /token and no local code.
    assert srv.http_post_json("/token", {"sub": "ann", "role": "bidder"})[0] == 404
    assert not os.path.exists(os.path.join(srv.data_dir, "local-code"))
    assert "warning" not in srv.log_tail(200)
    printed = run_gavel(srv.binary, "token", "--sub", "bob", "--role", "seller", "--jwt-secret-file", path)
    assert printed.returncode == 0 and printed.stderr == "", printed.stderr
    with srv.connect(printed.stdout.strip()) as bob:
        assert bob.hello["principal"] == "bob"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_key_file_other_users_can_read_or_write_stops_the_start_with_the_chmod(gavel_bin, tmp_path, mode):
    path = key_file(tmp_path, KEY + "\n", mode)
    done = subprocess.run([gavel_bin, "serve", "--data-dir", str(tmp_path / "d"), "--port", "0",
                           "--admin-port=-1", "--jwt-secret-file", path], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert f"is open to other users (mode 0{mode:o})" in done.stderr and f"chmod 600 {path}" in done.stderr
    assert KEY not in done.stderr
    assert not (tmp_path / "d").exists()
