"""`gavel serve` starts one event loop per core it may run on: its CPU affinity (as `taskset` sets it) counts."""

import os
import pathlib

import pytest


def event_loop_threads(pid):
    names = [(p / "comm").read_text().strip() for p in pathlib.Path(f"/proc/{pid}/task").iterdir()]
    return [n for n in names if n.startswith("NIO-ELT")]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_a_server_pinned_to_one_core_starts_one_event_loop(start_server):
    allowed = os.sched_getaffinity(0)
    one = {min(allowed)}
    os.sched_setaffinity(0, one)  # inherited by the server started now
    try:
        pinned = start_server()
    finally:
        os.sched_setaffinity(0, allowed)
    assert len(event_loop_threads(pinned.process.pid)) == 1


def test_an_explicit_thread_count_is_kept(start_server):
    s = start_server("--threads", "3")
    assert len(event_loop_threads(s.process.pid)) == 3
