"""Fixtures: the `gavel` binary (built beforehand, named by GAVEL_BIN) and `gavel serve` processes on loopback."""

import os
import pathlib
import subprocess

import pytest

from support import SECRET, Server

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def gavel_bin():
    path = pathlib.Path(os.environ.get("GAVEL_BIN", ROOT / ".build" / "debug" / "gavel"))
    if not path.is_absolute():
        path = ROOT / path
    if not os.access(path, os.X_OK):
        pytest.fail(f"no gavel binary at {path}: build it first (swift build) or set GAVEL_BIN")
    return str(path)


@pytest.fixture(scope="session")
def server(gavel_bin, tmp_path_factory):
    """One server with default limits shared by the tests that only need a plain server (distinct listing ids)."""
    base = tmp_path_factory.mktemp("shared-server")
    s = Server(gavel_bin, base / "data", base / "serve.log").start()
    yield s
    s.stop()


@pytest.fixture
def start_server(gavel_bin, tmp_path):
    """Starts a server of the test's own: `start_server(*extra_args, data_dir=..., secret=...)`; stopped afterwards."""
    started = []

    def start(*extra_args, data_dir=None, secret=SECRET, env=None):
        index = len(started)
        s = Server(gavel_bin, data_dir or tmp_path / f"data{index}", tmp_path / f"serve{index}.log",
                   extra_args, secret, env)
        started.append(s)
        return s.start()

    yield start
    for s in started:
        if s.process is not None and s.process.poll() is None:
            s.stop()


def run_gavel(gavel_bin, *args, timeout=30):
    return subprocess.run([gavel_bin, *args], capture_output=True, text=True, timeout=timeout)
