"""Fixtures for the projector's tests: a throwaway PostgreSQL 15 (scripts/postgres), the projector binary, free ports.

Every process runs on 127.0.0.1 and every wait is bounded.
"""

import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import psycopg
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
PROJECTOR = os.environ.get("GAVEL_PROJECTOR_BIN", str(ROOT / "projector/.build/debug/gavel-projector"))
SECRET = "gavel-projector-tests-secret-0123456789"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eventually(predicate, seconds=20.0, interval=0.05):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


@pytest.fixture(scope="session")
def postgres_cluster():
    """One PostgreSQL server for the session (in a directory of /tmp the `postgres` user can reach when run as
    root); each test gets its own database."""
    cluster = tempfile.mkdtemp(prefix="gavel-postgres-test.")
    url = subprocess.run([str(ROOT / "scripts/postgres"), "start", cluster], check=True, capture_output=True,
                         text=True, timeout=120).stdout.strip().splitlines()[-1]
    yield url
    subprocess.run([str(ROOT / "scripts/postgres"), "stop", cluster], timeout=60)


_databases = iter(range(1, 10_000))


@pytest.fixture
def database(postgres_cluster):
    """A fresh, empty database: its URL."""
    name = f"t{os.getpid()}_{next(_databases)}"
    with psycopg.connect(postgres_cluster, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_cluster.rsplit("/", 1)[0] + "/" + name


def query(url, sql, *params):
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def position(url):
    try:
        return query(url, "SELECT lsn FROM feed_position")[0][0]
    except (psycopg.Error, IndexError):
        return None


class Projector:
    """One gavel-projector process."""

    def __init__(self, log_path, gavel_url, postgres_url, extra=(), secret=SECRET, env=None):
        self.log_path = log_path
        self.admin_port = free_port()
        self.args = [PROJECTOR, "--gavel-url", gavel_url, "--postgres-url", postgres_url,
                     "--admin-port", str(self.admin_port), "--backoff-min-ms", "20", "--backoff-max-ms", "200",
                     *extra]
        # The server's key in the environment, where other local users cannot read it (they can read argv).
        self.env = {**({"GAVEL_PROJECTOR_JWT_SECRET": secret} if secret else {}), **(env or {})}
        self.process = None

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("GAVEL_")}
        env.update(self.env)
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        return self

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=2) as r:
            return r.read().decode()

    def metric(self, name):
        """The value of metric `name` (with its labels, if any), or None when the admin port is not up yet."""
        try:
            text = self.metrics()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None

    def kill9(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.log.close()

    def stop(self, timeout=10):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if not self.log.closed:
            self.log.close()
        return self.process.returncode

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


@pytest.fixture
def projectors(tmp_path):
    started = []

    def make(gavel_url, postgres_url, extra=(), secret=SECRET, env=None):
        p = Projector(tmp_path / f"projector{len(started)}.log", gavel_url, postgres_url, extra, secret, env)
        started.append(p)
        return p

    yield make
    for p in started:
        if p.process and p.process.poll() is None:
            p.stop()
