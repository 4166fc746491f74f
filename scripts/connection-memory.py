#!/usr/bin/env python3
"""Measures whether `gavel serve` returns the memory of connections that went away.

Starts the binary on free loopback ports with a fresh data directory, then runs cycles of: open N WebSocket
connections (bidders u0..uN-1, or anonymous), subscribe each to S made-up listings (new ids every cycle), close them
all. Prints the server's resident memory (process_resident_memory_bytes from the admin port's /metrics) while they
are open and after they closed, once per cycle; stops the server and deletes its data directory at the end. Bounded:
loopback only, at most 2000 connections and 200 cycles, and it stops by itself after --max-seconds.

    swift build --product gavel
    .build/python-venv/bin/python scripts/connection-memory.py --cycles 40      # the venv ./scripts/test makes

MALLOC_CONF reaches the server (the binary is linked with jemalloc): --malloc-conf stats_print:true prints
jemalloc's statistics into the server log at exit, dirty_decay_ms:0,muzzy_decay_ms:0 returns freed pages at once.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "Tests", "python"))
from support import Server, mint_token, raw_connect  # noqa: E402


def bounded(low, high):
    def parse(text):
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}")
        return value
    return parse


parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--binary", default=os.path.join(ROOT, ".build", "debug", "gavel"))
parser.add_argument("--cycles", type=bounded(1, 200), default=40)
parser.add_argument("--connections", type=bounded(1, 2000), default=400)
parser.add_argument("--subscriptions", type=bounded(0, 100), default=50, help="per connection")
parser.add_argument("--anonymous", action="store_true", help="connect without a token")
parser.add_argument("--malloc-conf", help="MALLOC_CONF for the server (jemalloc)")
parser.add_argument("--max-seconds", type=float, default=600, help="stop after this long, finished or not")
args = parser.parse_args()

data = tempfile.mkdtemp(prefix="gavel-connection-memory-")
limit = str(args.connections + 100)
server = Server(
    os.path.abspath(args.binary), os.path.join(data, "data"), os.path.join(data, "server.log"),
    env={"MALLOC_CONF": args.malloc_conf} if args.malloc_conf else None,
    extra_args=["--fsync", "none", "--rate", "100000", "--rate-burst", "100000", "--max-connections", limit,
                "--max-connections-per-address", limit, "--max-anonymous-connections", limit,
                "--max-handshakes", limit, "--max-handshakes-per-address", limit],
).start()
deadline = time.monotonic() + args.max_seconds


def resident_mb():
    time.sleep(0.5)
    return server.metric("process_resident_memory_bytes") / 1e6


try:
    print(f"start: {resident_mb():.1f} MB", flush=True)
    for cycle in range(args.cycles):
        if time.monotonic() > deadline:
            print(f"stopped after {args.max_seconds:.0f} s", flush=True)
            break
        clients = []
        for c in range(args.connections):
            headers = {} if args.anonymous else {
                "Authorization": "Bearer " + mint_token(f"u{c}", "bidder", secret=server.secret)}
            ws = raw_connect(server.ws_url(), headers)
            ws.recv(timeout=5)  # hello
            for s in range(args.subscriptions):
                ws.send(json.dumps({"type": "subscribe", "listing": f"c{cycle}-x{c}-{s}"}))
            for s in range(args.subscriptions):
                ws.recv(timeout=5)
            clients.append(ws)
        during = resident_mb()
        for ws in clients:
            ws.close()
        time.sleep(1.0)
        print(f"cycle {cycle}: {args.connections} open: {during:.1f} MB, all closed: {resident_mb():.1f} MB, "
              f"connections {server.metric('gavel_connections'):.0f}, "
              f"subscriptions {server.metric('gavel_subscriptions'):.0f}", flush=True)
finally:
    server.stop()
    if args.malloc_conf and "stats_print" in args.malloc_conf:
        with open(os.path.join(data, "server.log"), errors="replace") as log:
            print("\n".join(line for line in log.read().splitlines() if line.startswith(("Allocated", "Arenas"))))
    shutil.rmtree(data, ignore_errors=True)
