#!/usr/bin/env python3
"""Side-by-side: the same english proxy bid, made durable before it is acknowledged, in Gavel, Redis and
PostgreSQL, on this machine, in one run.

- Gavel: `gavel serve --fsync always`, driven over WebSocket by `gavel-load` (open loop, stepped rates).
- Redis 7: the bid logic in a Lua script (english_bid.lua), `appendonly yes`, `appendfsync always`, driven by
  `redis-benchmark` (C, pipelining off).
- PostgreSQL 15: the bid logic in a PL/pgSQL function with `SELECT ... FOR UPDATE` (english_bid.sql),
  `synchronous_commit on`, driven by `pgbench` (C, prepared statements).

Every server is started by this script in a temporary directory and stopped at the end. Needs Debian's
redis-server, redis-tools and postgresql-15 (`apt-get install -y redis-server redis-tools postgresql-15`) and
release builds of gavel
and gavel-load.

    python3 loadtest/compare/compare.py --duration 10 --clients 16 --listings 1000 --json /tmp/compare.json

Fan-out (`--only fanout`): Gavel's hot preset (one listing, a bidding war, durable bids) and broadcast.js (a relay
on Debian's node-ws) with the same watchers and message rates, both measured by gavel-load's watcher code.

    python3 loadtest/compare/compare.py --only fanout --watchers 1000 --fanout-rates 30,100 --duration 10
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[index]


def run_redis(args, work):
    port = free_port()
    data = os.path.join(work, "redis")
    os.makedirs(data)
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", data, "--appendonly", "yes",
         "--appendfsync", "always", "--save", "", "--protected-mode", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        with open(os.path.join(HERE, "english_bid.lua")) as f:
            script = f.read()
        sha = subprocess.check_output(["redis-cli", "-p", str(port), "SCRIPT", "LOAD", script], text=True).strip()
        requests = args.duration * 8_000
        out = subprocess.run(
            ["redis-benchmark", "-p", str(port), "-c", str(args.clients), "-n", str(requests),
             "-r", str(args.listings), "--csv", "EVALSHA", sha, "1", "listing:__rand_int__", "u__rand_int__"],
            capture_output=True, text=True, timeout=args.duration * 20 + 120)
        # CSV: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
        rows = [line for line in out.stdout.splitlines() if line.startswith('"EVALSHA')]
        if not rows:
            raise RuntimeError("redis-benchmark printed no result: " + out.stdout[-500:] + out.stderr[-500:])
        fields = [float(x.strip('"')) for x in rows[-1].split(",")[1:]]
        rps, avg, lo, p50, p95, p99, hi = fields
        aof = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(data) for f in fs)
        return {"system": "Redis 7 (Lua, appendfsync always)", "rate": rps, "p50_ms": p50, "p99_ms": p99,
                "max_ms": hi, "errors": 0, "note": f"redis-benchmark -c {args.clients}, {requests} bids, AOF {aof} bytes"}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def run_postgres(args, work):
    port = free_port()
    data = os.path.join(work, "pg")
    bindir = "/usr/lib/postgresql/15/bin"
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    os.makedirs(data)
    if os.geteuid() == 0:
        shutil.chown(work, "postgres")
        shutil.chown(data, "postgres")
    subprocess.run(as_postgres + [f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    log = os.path.join(data, "server.log")
    subprocess.run(as_postgres + [f"{bindir}/pg_ctl", "-D", data, "-l", log, "-w", "-o",
                                  f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c synchronous_commit=on "
                                  f"-c fsync=on -c max_connections={args.clients + 10} -c shared_buffers=256MB",
                                  "start"], check=True, capture_output=True)
    try:
        psql = as_postgres + ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-q", "-v",
                              "ON_ERROR_STOP=1"]
        subprocess.run(psql + ["-f", os.path.join(HERE, "english_bid.sql")], check=True, capture_output=True)
        subprocess.run(psql + ["-c", f"INSERT INTO listings (id) SELECT g FROM generate_series(0, {args.listings - 1}) g"],
                       check=True, capture_output=True)
        bench = os.path.join(work, "bid.pgbench")
        with open(bench, "w") as f:
            f.write(f"\\set listing random(0, {args.listings - 1})\n\\set bidder random(0, {args.listings - 1})\n"
                    "SELECT bid(:listing, 'u' || :bidder);\n")
        os.chmod(bench, 0o644)
        logdir = os.path.join(work, "pglog")
        os.makedirs(logdir)
        if os.geteuid() == 0:
            shutil.chown(logdir, "postgres")
        out = subprocess.run(
            as_postgres + ["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-n", "-M", "prepared",
                           "-c", str(args.clients), "-j", "2", "-T", str(args.duration), "-f", bench, "-l",
                           "--log-prefix", os.path.join(logdir, "tx"), "postgres"],
            capture_output=True, text=True, cwd=logdir, timeout=args.duration + 120)
        match = re.search(r"tps = ([0-9.]+)", out.stdout)
        if not match:
            raise RuntimeError("pgbench printed no tps: " + out.stdout[-800:] + out.stderr[-800:])
        latencies = []
        failures = 0
        for name in os.listdir(logdir):
            with open(os.path.join(logdir, name)) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 3:
                        if parts[2] in ("failed", "skipped"):
                            failures += 1
                        else:
                            latencies.append(int(parts[2]) / 1000)
        latencies.sort()
        return {"system": "PostgreSQL 15 (PL/pgSQL, FOR UPDATE, synchronous_commit on)", "rate": float(match.group(1)),
                "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
                "max_ms": latencies[-1] if latencies else 0, "errors": failures,
                "note": f"pgbench -c {args.clients} -j 2 -T {args.duration}, {len(latencies)} transactions"}
    finally:
        subprocess.run(as_postgres + [f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"], capture_output=True)


# The edge limits that protect a public server (per user, address and principal, opens per minute, read budget)
# would refuse a load driver's own traffic: raised as scripts/load raises them.
LOAD_LIMITS = ["--rate", "1000000", "--rate-burst", "1000000", "--max-connections", "100000",
               "--max-connections-per-address", "100000", "--max-anonymous-connections", "100000",
               "--max-handshakes", "100000", "--principal-rate", "1000000", "--principal-rate-burst", "1000000",
               "--opens-per-minute", "1000000", "--max-read-bytes-per-second", "1073741824"]


def run_gavel(args, work):
    port = free_port()
    data = os.path.join(work, "gavel")
    server = subprocess.Popen(
        [args.gavel, "serve", "--port", str(port), "--admin-port", "0", "--data-dir", data, "--fsync", "always",
         "--jwt-secret", "compare-secret-of-at-least-32-bytes", *LOAD_LIMITS, "--max-outbound-bytes",
         str(64 << 20)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    best = None
    steps = []
    try:
        wait_port(port)
        for rate in args.gavel_rates:
            report = os.path.join(work, f"gavel-{rate}.json")
            subprocess.run(
                [args.gavel_load, "--url", f"ws://127.0.0.1:{port}/ws", "--jwt-secret", "compare-secret-of-at-least-32-bytes", "--connections",
                 str(args.clients), "--watchers", "0", "--listings", str(args.listings), "--zipf", "0", "--rate",
                 str(rate), "--duration", str(args.duration), "--warmup", "2", "--quiet", "--json", report],
                check=True, capture_output=True, timeout=args.duration + 120)
            with open(report) as f:
                r = json.load(f)
            errors = sum(r["errors"].values())
            step = {"target": rate, "rate": r["achieved_rate"], "p50_ms": r["ack_latency"]["p50_us"] / 1000,
                    "p99_ms": r["ack_latency"]["p99_us"] / 1000, "max_ms": r["ack_latency"]["max_us"] / 1000,
                    "errors": errors, "results": r["results"], "sent": r["sent"]}
            steps.append(step)
            print(f"  gavel at {rate}/s: {step}", file=sys.stderr)
            # Sustained: every bid answered, at 95 % of the target or more, p99 under 50 ms.
            if r["results"] == r["sent"] and step["rate"] >= 0.95 * rate and step["p99_ms"] < 50:
                best = step
            else:
                break
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    if best is None:
        best = steps[0]
    return {"system": "Gavel (gavel serve --fsync always, WebSocket)", "rate": best["rate"], "p50_ms": best["p50_ms"],
            "p99_ms": best["p99_ms"], "max_ms": best["max_ms"], "errors": best["errors"],
            "note": f"gavel-load -c {args.clients}, open loop; highest sustained of {[s['target'] for s in steps]}",
            "steps": steps}


def run_fanout(args, work):
    """Gavel's hot preset and the Node ws relay (broadcast.js), each with the same watchers and message rates,
    measured by gavel-load's same watcher code (fan-out from the intended send time)."""
    rows = []
    for rate in args.fanout_rates:
        pair = {}
        for system in ("gavel", "node"):
            port = free_port()
            if system == "gavel":
                data = os.path.join(work, f"fanout-gavel-{rate}")
                server = subprocess.Popen(
                    [args.gavel, "serve", "--port", str(port), "--admin-port", "0", "--data-dir", data,
                     "--jwt-secret", "compare-secret-of-at-least-32-bytes", *LOAD_LIMITS,
                     "--max-outbound-bytes", str(64 << 20)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                extra = ["--jwt-secret", "compare-secret-of-at-least-32-bytes"]
            else:
                env = dict(os.environ, NODE_PATH="/usr/share/nodejs")
                server = subprocess.Popen(["node", os.path.join(HERE, "broadcast.js"), "--port", str(port)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
                extra = ["--broadcast"]
            try:
                wait_port(port)
                report = os.path.join(work, f"fanout-{system}-{rate}.json")
                subprocess.run(
                    [args.gavel_load, "--url", f"ws://127.0.0.1:{port}/ws", "--preset", "hot", "--watchers",
                     str(args.watchers), "--rate", str(rate), "--duration", str(args.duration), "--warmup", "2",
                     "--quiet", "--json", report] + extra,
                    check=True, capture_output=True, timeout=args.duration + 180)
                with open(report) as f:
                    r = json.load(f)
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=60)
            fan = r["fanout_latency"]
            pair[system] = {"deliveries_per_s": r["deliveries_per_s"], "expected_per_s": rate * args.watchers,
                            "p50_ms": fan["p50_us"] / 1000, "p99_ms": fan["p99_us"] / 1000,
                            "max_ms": fan["max_us"] / 1000, "closed_by_server": r["closed_by_server"]}
            print(f"  {system} at {rate}/s: {pair[system]}", file=sys.stderr)
        rows.append({"rate": rate, "watchers": args.watchers, **pair})
    return rows


def print_fanout(rows):
    print("| messages/s × watchers | system | deliveries/s | fan-out p50 ms | p99 ms | max ms | Gavel ÷ ws (p99) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        g, n = row["gavel"], row["node"]
        ratio = f"{g['p99_ms'] / n['p99_ms']:.1f}x" if n["p99_ms"] > 0 else "—"
        for name, r in (("Gavel (hot preset, durable bids)", g), ("Node ws broadcast relay", n)):
            print(f"| {row['rate']} × {row['watchers']:,} | {name} | {r['deliveries_per_s']:,.0f} | "
                  f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.1f} | {ratio if r is g else ''} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections per system")
    parser.add_argument("--listings", type=int, default=1000)
    parser.add_argument("--gavel", default=os.path.join(ROOT, ".build/release/gavel"))
    parser.add_argument("--gavel-load", default=os.path.join(ROOT, "loadtest/.build/release/gavel-load"))
    parser.add_argument("--gavel-rates", type=lambda s: [int(x) for x in s.split(",")],
                        default=[2000, 5000, 10000, 20000, 40000, 80000])
    parser.add_argument("--only", choices=["gavel", "redis", "postgres", "fanout"], action="append",
                        help="run only these steps (fanout is run only when named)")
    parser.add_argument("--watchers", type=int, default=1000, help="fanout: watcher connections")
    parser.add_argument("--fanout-rates", type=lambda s: [int(x) for x in s.split(",")], default=[30, 100],
                        help="fanout: messages (bids) per second, comma-separated")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="gavel-compare-")
    results = []
    fanout = None
    try:
        for name, run in [("gavel", run_gavel), ("redis", run_redis), ("postgres", run_postgres)]:
            if args.only and name not in args.only:
                continue
            print(f"measuring {name} ...", file=sys.stderr)
            results.append(run(args, work))
        if args.only and "fanout" in args.only:
            print("measuring fan-out: gavel and node ws ...", file=sys.stderr)
            fanout = run_fanout(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if fanout:
        print_fanout(fanout)
        if args.json and not results:
            with open(args.json, "w") as f:
                json.dump(fanout, f, indent=2)
            return
    if not results:
        return
    gavel = next((r for r in results if r["system"].startswith("Gavel")), None)
    print("| system | durable bids/s | p50 ms | p99 ms | max ms | vs Gavel (throughput) | how |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        ratio = f"{gavel['rate'] / r['rate']:.1f}x" if gavel and r is not gavel and r["rate"] > 0 else "—"
        print(f"| {r['system']} | {r['rate']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.1f} | "
              f"{ratio} | {r['note']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
