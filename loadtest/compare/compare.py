#!/usr/bin/env python3
"""Side-by-side: the same english proxy bid, made durable before it is acknowledged, in Gavel, Redis and
PostgreSQL, on this machine, in one run.

Closed loop, pinned (the default, `--mode closed`): every server on core 0 (`taskset -c 0`), every driver on core 1
(`taskset -c 1`), each system at the same concurrency, by default 16 connections × 16 requests in flight and
1,000 connections × 1 (`--concurrency 16x16,1000x1`), --duration seconds measured after --warmup:

- Gavel: `gavel serve --fsync always`, driven by `gavel-load --in-flight` (plain sockets and epoll on one thread);
- Redis 7: english_bid.lua via `redis-benchmark -c C -P P` running EVALSHA on random listings, `appendonly yes`,
  `appendfsync always`;
- PostgreSQL 15: the english_bid.sql function via `pgbench -c C×P -j 1 -M prepared` (pgbench keeps one transaction
  in flight a connection, so P in flight take C×P connections), `synchronous_commit on`.

For each: operations/s in the measured window, the server's CPU time per operation (the scheduler's run time of
all its threads, /proc/<pid>/task/*/schedstat; for PostgreSQL the postmaster and all its children), the driver's
CPU per operation, the ack latency p50/p99, and how many bids were accepted; then the ratios Gavel/Redis and Gavel/PostgreSQL,
and how Gavel's CPU divides between its threads over the whole run (event loops, writer, journal, checkpointer).

    python3 loadtest/compare/compare.py --json /tmp/compare.json

The earlier open-loop comparison (`--mode open`; Gavel at stepped rates, Redis and PostgreSQL closed loop,
unpinned):

- Gavel: `gavel serve --fsync always`, driven over WebSocket by `gavel-load --in-flight 4096 --rate R` (the lean
  driver paced: an open loop at stepped rates, each bid's latency from when it was due).
- Redis 7: the bid logic in a Lua script (english_bid.lua), `appendonly yes`, `appendfsync always`, driven by
  `redis-benchmark` (C, pipelining off).
- PostgreSQL 15: the bid logic in a PL/pgSQL function with `SELECT ... FOR UPDATE` (english_bid.sql),
  `synchronous_commit on`, driven by `pgbench` (C, prepared statements).

Every server is started by this script in a temporary directory and stopped at the end. Needs Debian's
redis-server, redis-tools and postgresql-15 (`apt-get install -y redis-server redis-tools postgresql-15`) and
release builds of gavel
and gavel-load.

    python3 loadtest/compare/compare.py --mode open --duration 10 --clients 16 --listings 1000 --json /tmp/compare.json

Fan-out (`--only fanout`), pinned like the closed loop (server on --server-cpu, gavel-load on --driver-cpu): for
each watcher count (`--fanout-watchers`, default 100,1000) and message rate (`--fanout-rates`), three systems with
the same watchers, measured by gavel-load's same watcher code (fan-out latency from the message's intended send
time to its arrival on each watcher):

- Gavel: `gavel serve --fsync always` with gavel-load's hot preset (one listing, two bidders in a war, every bid
  durable before its bid_placed goes out);
- uWebSockets: uws_relay.cpp, a relay on uWebSockets' corked pub/sub, driven by `gavel-load --broadcast` (one
  publisher sending bid_placed frames of the same shape);
- Node ws: broadcast.js on Debian's node-ws, driven the same way.

For each: messages/s, deliveries/s, the server's CPU seconds per second and deliveries per server CPU-second in
the measured window (the server's CPU from /proc/<pid>/task/*/schedstat, read each time gavel-load prints its
progress line; the window runs from the line at the end of the warm-up to the last one within the duration), the
fan-out latency p50/p99/max of gavel-load's report, and Gavel's deliveries per CPU-second over each relay's.
`--fanout-systems` picks some of gavel, uws and ws.

uWebSockets and uSockets (github.com/uNetworking) are not part of this repository and never committed: the relay
is built once under /tmp/gavel-uws-relay (uSockets by its Makefile without TLS, then g++ -O3 -march=native -flto,
clang++ if g++ fails) from checkouts given with `--uws-src DIR` and `--usockets-src DIR`, or else from exports of
bare mirrors under /work/.mirror (uNetworking+uWebSockets/repo, uNetworking+uSockets/repo); without either it is
skipped with a message saying so. The binary is cached and rebuilt only when it is missing or uws_relay.cpp changed.

    python3 loadtest/compare/compare.py --only fanout --fanout-watchers 100,1000 --fanout-rates 20,100 --duration 8
"""

import argparse
import hashlib
import json
import os
import re
import resource
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


HZ = os.sysconf("SC_CLK_TCK")
SECRET = "compare-secret-of-at-least-32-bytes"
# gavel serve and gavel-load read the key from the environment, which other local users cannot read, unlike a
# command line.
os.environ["GAVEL_JWT_SECRET"] = SECRET
PG_BIN = "/usr/lib/postgresql/15/bin"


def proc_stat(pid):
    """The fields of /proc/<pid>/stat after the command name (field 3 first), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def cpu_by_thread(pid):
    """The CPU seconds of a process's threads by thread name (every event loop under "event loops"), from the
    scheduler's run time (/proc/<pid>/task/*/schedstat, in ns); None if the process is gone. Threads that ended are
    not counted."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    shares = {}
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                seconds = int(f.read().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            continue
        name = "event loops" if name.startswith("NIO-ELT") else name
        shares[name] = shares.get(name, 0.0) + seconds
    return shares


def cpu_seconds(pid):
    """The CPU time of one process, all its threads, in seconds; None if it is gone (see cpu_by_thread): utime +
    stime of /proc/<pid>/stat are the same time in clock ticks, which a process that runs a little at a time (one of
    PostgreSQL's 1,000 backends) gains too coarsely."""
    threads = cpu_by_thread(pid)
    return None if threads is None else sum(threads.values())


def thread_shares(before, after):
    """Each thread name's share of the CPU the process used between two cpu_by_thread readings, largest first."""
    used = {name: after[name] - before.get(name, 0.0) for name in after}
    total = sum(v for v in used.values() if v > 0)
    if total <= 0:
        return []
    return sorted(((name, v / total) for name, v in used.items() if v > 0), key=lambda x: -x[1])


def tree_cpu_seconds(root):
    """The CPU time of `root` and every process below it (see cpu_seconds), plus what its reaped children used
    (cutime + cstime of /proc/<root>/stat)."""
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = proc_stat(name)
            if fields:
                children.setdefault(int(fields[1]), []).append(int(name))
    total = 0.0
    todo = [root]
    while todo:
        pid = todo.pop()
        total += cpu_seconds(pid) or 0.0
        if pid == root:
            fields = proc_stat(pid)
            total += (int(fields[13]) + int(fields[14])) / HZ if fields else 0.0
        todo.extend(children.get(pid, []))
    return total


def raise_file_limit():
    """For the drivers: as many open files as the hard limit allows (1,000 connections)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


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


AS_POSTGRES = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def postgres_cluster(work, name):
    """A throwaway cluster made by initdb in work/name (owned by postgres when this runs as root): (data, log)."""
    data = os.path.join(work, name)
    os.makedirs(data)
    if os.geteuid() == 0:
        shutil.chown(work, "postgres")
        shutil.chown(data, "postgres")
    subprocess.run(AS_POSTGRES + [f"{PG_BIN}/initdb", "-D", data, "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    return data, os.path.join(data, "server.log")


def bid_schema(port, listings):
    """Loads english_bid.sql and the listings; returns the psql command line for more."""
    psql = AS_POSTGRES + ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-q", "-v", "ON_ERROR_STOP=1"]
    subprocess.run(psql + ["-f", os.path.join(HERE, "english_bid.sql")], check=True, capture_output=True)
    subprocess.run(psql + ["-c", f"INSERT INTO listings (id) SELECT g FROM generate_series(0, {listings - 1}) g"],
                   check=True, capture_output=True)
    return psql


def pgbench_log(logdir, window=None):
    """pgbench's per-transaction logs (`client transaction latency_us script epoch_s us`): the latencies in ms,
    sorted, of the transactions that ended within `window` (start, end in epoch seconds; all without one), how many
    failed or were skipped, and how many lines there were in all."""
    latencies = []
    failures = 0
    total = 0
    for name in os.listdir(logdir):
        with open(os.path.join(logdir, name)) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                total += 1
                if parts[2] in ("failed", "skipped"):
                    failures += 1
                elif window is None or (len(parts) >= 6 and window[0] <= int(parts[4]) + int(parts[5]) / 1e6 < window[1]):
                    latencies.append(int(parts[2]) / 1000)
    latencies.sort()
    return latencies, failures, total


def run_postgres(args, work):
    port = free_port()
    bindir = PG_BIN
    as_postgres = AS_POSTGRES
    data, log = postgres_cluster(work, "pg")
    subprocess.run(as_postgres + [f"{bindir}/pg_ctl", "-D", data, "-l", log, "-w", "-o",
                                  f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c synchronous_commit=on "
                                  f"-c fsync=on -c max_connections={args.clients + 10} -c shared_buffers=256MB",
                                  "start"], check=True, capture_output=True)
    try:
        bid_schema(port, args.listings)
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
        latencies, failures, _ = pgbench_log(logdir)
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
               "--max-handshakes", "100000", "--max-handshakes-per-address", "100000",
               "--principal-rate", "1000000", "--principal-rate-burst", "1000000",
               "--opens-per-minute", "1000000", "--max-read-bytes-per-second", "1073741824",
               "--max-outbound-bytes-total", str(1 << 40), "--max-open-listings-per-seller", "100000000"]


def run_gavel(args, work):
    port = free_port()
    data = os.path.join(work, "gavel")
    server = subprocess.Popen(
        [args.gavel, "serve", "--port", str(port), "--admin-port", "0", "--data-dir", data, "--fsync", "always",
         *LOAD_LIMITS, "--max-outbound-bytes",
         str(64 << 20)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    best = None
    steps = []
    try:
        wait_port(port)
        for rate in args.gavel_rates:
            report = os.path.join(work, f"gavel-{rate}.json")
            subprocess.run(
                [args.gavel_load, "--url", f"ws://127.0.0.1:{port}/ws", "--connections",
                 str(args.clients), "--watchers", "0", "--listings", str(args.listings), "--zipf", "0",
                 "--in-flight", "4096", "--rate", str(rate), "--duration", str(args.duration), "--warmup", "2",
                 "--quiet", "--json", report],
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
            "note": f"gavel-load -c {args.clients}, paced open loop; highest sustained of {[s['target'] for s in steps]}",
            "steps": steps}


# ---- fan-out, pinned (--only fanout) ----

# Where uWebSockets and uSockets are found when --uws-src / --usockets-src are not given: bare git mirrors
# (`git clone --mirror https://github.com/uNetworking/uWebSockets` into .../uNetworking+uWebSockets/repo).
UWS_MIRRORS = "/work/.mirror"
UWS_BUILD = "/tmp/gavel-uws-relay"
# Compilers tried in turn for the relay and uSockets (C compiler, C++ compiler): Debian's GCC, then the clang that
# comes with the Swift toolchain.
UWS_COMPILERS = [("gcc", "g++"), ("/opt/swift/usr/bin/clang", "/opt/swift/usr/bin/clang++")]


def uws_sources(args, into):
    """Puts uWebSockets' src/ and a uSockets tree under `into` (uWebSockets in into/uWebSockets with uSockets inside
    it, as its own build expects): copies of --uws-src and --usockets-src, or exports of the bare mirrors. Returns a
    description of what was used, or None and says why on stderr."""
    tree = os.path.join(into, "uWebSockets")
    usockets_src = args.usockets_src or (os.path.join(args.uws_src, "uSockets") if args.uws_src else None)
    if args.uws_src:
        if not os.path.exists(os.path.join(args.uws_src, "src", "App.h")):
            print(f"  uWebSockets skipped: {args.uws_src}/src/App.h is missing (--uws-src takes a checkout of "
                  "github.com/uNetworking/uWebSockets)", file=sys.stderr)
            return None
        if not usockets_src or not os.path.exists(os.path.join(usockets_src, "src", "libusockets.h")):
            print(f"  uWebSockets skipped: no uSockets sources at {usockets_src} (--usockets-src takes a checkout "
                  "of github.com/uNetworking/uSockets)", file=sys.stderr)
            return None
        shutil.copytree(os.path.join(args.uws_src, "src"), os.path.join(tree, "src"))
        shutil.copytree(usockets_src, os.path.join(tree, "uSockets"),
                        ignore=shutil.ignore_patterns(".git", "boringssl", "lsquic", "*.o", "*.a"))
        return f"{args.uws_src} and {usockets_src}"
    mirrors = [os.path.join(UWS_MIRRORS, f"uNetworking+{name}", "repo") for name in ("uWebSockets", "uSockets")]
    if not all(os.path.isdir(m) for m in mirrors):
        print("  uWebSockets skipped: no sources. Fetch github.com/uNetworking/uWebSockets and "
              "github.com/uNetworking/uSockets and pass the checkouts with --uws-src DIR --usockets-src DIR, or put "
              f"bare mirrors (git clone --mirror) at {mirrors[0]} and {mirrors[1]}", file=sys.stderr)
        return None
    described = []
    for mirror, target in zip(mirrors, (tree, os.path.join(tree, "uSockets"))):
        os.makedirs(target, exist_ok=True)
        commit = subprocess.check_output(["git", "--git-dir", mirror, "rev-parse", "--short", "HEAD"],
                                         text=True).strip()
        archive = subprocess.Popen(["git", "--git-dir", mirror, "archive", "HEAD"], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", target], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            raise RuntimeError(f"git archive failed in {mirror}")
        described.append(f"{os.path.basename(os.path.dirname(mirror)).split('+')[1]} {commit}")
    return " and ".join(described)


def build_uws_relay(args):
    """The uWebSockets relay (uws_relay.cpp), built once under /tmp (UWS_BUILD) and cached there: the binary's name
    carries a hash of uws_relay.cpp and of where the sources came from, so it is rebuilt only when it is missing.
    Returns (path, how it was built), or None after saying on stderr why it was skipped."""
    with open(os.path.join(HERE, "uws_relay.cpp"), "rb") as f:
        source = f.read()
    origin = f"{args.uws_src}|{args.usockets_src}"
    key = hashlib.sha256(source + origin.encode()).hexdigest()[:12]
    binary = os.path.join(UWS_BUILD, f"uws_relay-{key}")
    if os.access(binary, os.X_OK) and os.path.exists(binary + ".how"):
        with open(binary + ".how") as f:
            return binary, f.read().strip()
    os.makedirs(UWS_BUILD, exist_ok=True)
    build = tempfile.mkdtemp(prefix="build-", dir=UWS_BUILD)
    try:
        sources = uws_sources(args, build)
        if not sources:
            return None
        tree = os.path.join(build, "uWebSockets")
        # uSockets' Makefile without WITH_OPENSSL / WITH_BORINGSSL: no TLS (LIBUS_NO_SSL), epoll, LTO objects.
        env = {k: v for k, v in os.environ.items() if k not in ("WITH_OPENSSL", "WITH_BORINGSSL", "WITH_WOLFSSL",
                                                                   "WITH_IO_URING", "WITH_LIBUV", "WITH_ASIO")}
        errors = []
        for cc, cxx in UWS_COMPILERS:
            if not shutil.which(cc) or not shutil.which(cxx):
                continue
            print(f"  building the uWebSockets relay with {cxx} ({sources}) ...", file=sys.stderr)
            steps = [["make", "-C", os.path.join(tree, "uSockets"), f"CC={cc}", "CFLAGS=-march=native"],
                     [cxx, "-std=c++2b", "-O3", "-march=native", "-flto", "-DUWS_NO_ZLIB", "-Isrc", "-IuSockets/src",
                      os.path.join(HERE, "uws_relay.cpp"), "uSockets/uSockets.a", "-o", binary]]
            for step in steps:
                done = subprocess.run(["nice"] + step, cwd=tree, env=env, capture_output=True, text=True)
                if done.returncode != 0:
                    errors.append(f"{cxx}: {' '.join(step[:3])} ...: {(done.stdout + done.stderr)[-600:]}")
                    break
            else:
                version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
                how = f"uWebSockets relay (uws_relay.cpp, {sources}, {version}, -O3 -march=native -flto)"
                with open(binary + ".how", "w") as f:
                    f.write(how + "\n")
                return binary, how
        print("  uWebSockets skipped: the relay did not build:\n    " + "\n    ".join(errors or ["no compiler"]),
              file=sys.stderr)
        return None
    finally:
        shutil.rmtree(build, ignore_errors=True)


PROGRESS = re.compile(r"t=\s*(\d+)s .* deliveries (\d+)")


def fanout_window(args, server_pid, command):
    """Runs gavel-load (pinned to --driver-cpu) and reads the server's CPU time (cpu_seconds) each time the driver
    prints its progress line, once a second: the line gives the seconds since the schedule started and the
    deliveries so far (of messages due after the warm-up). The measured window runs from the first line at or after
    the warm-up to the last one up to warm-up + duration (the driver may stop before it prints the line at the
    end), on this script's clock. Returns the window: its seconds, the server's and the driver's CPU seconds and
    the deliveries within it."""
    driver = subprocess.Popen(pinned(args.driver_cpu, command), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, preexec_fn=raise_file_limit)
    marks = []
    other = []
    try:
        for line in driver.stderr:
            match = PROGRESS.search(line)
            if match:
                marks.append((time.time(), int(match.group(1)), int(match.group(2)), cpu_seconds(server_pid),
                              cpu_seconds(driver.pid)))
            else:
                other.append(line.rstrip())
        driver.wait(timeout=args.duration + 180)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    for line in other:
        print("  " + line, file=sys.stderr)
    if driver.returncode != 0:
        raise RuntimeError(f"gavel-load failed ({driver.returncode}): {' '.join(other[-5:])}")
    first = next((m for m in marks if m[1] >= args.warmup), None)
    last = ([m for m in marks if m[1] <= args.warmup + args.duration] or [None])[-1]
    if not first or not last or last[1] <= first[1] or None in first + last:
        raise RuntimeError(f"no measured window in gavel-load's progress ({len(marks)} lines)")
    return {"seconds": last[0] - first[0], "server_cpu_s": last[3] - first[3], "driver_cpu_s": last[4] - first[4],
            "deliveries": last[2] - first[2]}


# Debian's node-ws lives outside Node's default module path.
NODE_ENV = dict(os.environ, NODE_PATH="/usr/share/nodejs")


def node_ws():
    """How broadcast.js runs (Node's and ws's versions), or None after saying on stderr what is missing."""
    if not shutil.which("node"):
        return missing("node", "apt-get install -y nodejs node-ws")
    found = subprocess.run(["node", "-e", "console.log(process.version, require('ws/package.json').version)"],
                           capture_output=True, text=True, env=NODE_ENV)
    if found.returncode != 0:
        return missing("Node's ws module", "apt-get install -y node-ws")
    node, ws = found.stdout.split()
    return f"broadcast.js on Node {node} and ws {ws}"


def fanout_run(args, work, system, watchers, rate, relays):
    """One system at one watcher count and message rate, the server on --server-cpu and gavel-load on
    --driver-cpu: Gavel's hot preset (durable bids, one listing, two bidders in a war) or a relay driven by
    gavel-load --broadcast (one publisher sending bid_placed frames). `relays` has what node_ws and
    build_uws_relay found."""
    port = free_port()
    report = os.path.join(work, f"fanout-{system}-{watchers}-{rate}.json")
    if system == "gavel":
        data = os.path.join(work, f"fanout-gavel-{watchers}-{rate}")
        command = [args.gavel, "serve", "--port", str(port), "--admin-port", "0", "--data-dir", data, "--fsync",
                   "always", *LOAD_LIMITS, "--max-outbound-bytes", str(64 << 20)]
        extra, env = [], None
        name, how = "Gavel", "gavel serve --fsync always; gavel-load --preset hot (durable bids)"
    elif system == "uws":
        command, extra, env = [relays["uws"][0], str(port)], ["--broadcast"], None
        name, how = "uWebSockets", relays["uws"][1] + "; gavel-load --broadcast"
    else:
        command = ["node", os.path.join(HERE, "broadcast.js"), "--port", str(port)]
        extra, env = ["--broadcast"], NODE_ENV
        name, how = "Node ws", relays["ws"] + "; gavel-load --broadcast"
    server = subprocess.Popen(pinned(args.server_cpu, command), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=env)
    try:
        wait_port(port)
        window = fanout_window(args, server.pid, [
            args.gavel_load, "--url", f"ws://127.0.0.1:{port}/ws", "--preset", "hot", "--watchers", str(watchers),
            "--rate", str(rate), "--duration", str(args.duration), "--warmup", str(args.warmup), "--json",
            report] + extra)
        with open(report) as f:
            r = json.load(f)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    fan = r["fanout_latency"]
    cpu_per_s = window["server_cpu_s"] / window["seconds"]
    return {"system": name, "watchers": watchers, "rate": rate,
            "messages_per_s": r["achieved_rate"] if system == "gavel" else r["sent"] / r["duration_s"],
            "deliveries_per_s": r["deliveries_per_s"], "expected_per_s": rate * watchers,
            "window_s": window["seconds"], "window_deliveries_per_s": window["deliveries"] / window["seconds"],
            "server_cpu_per_s": cpu_per_s, "driver_cpu_per_s": window["driver_cpu_s"] / window["seconds"],
            "deliveries_per_cpu_s": window["deliveries"] / window["server_cpu_s"] if window["server_cpu_s"] > 0
            else None,
            "p50_ms": fan["p50_us"] / 1000, "p99_ms": fan["p99_us"] / 1000, "max_ms": fan["max_us"] / 1000,
            "errors": r["errors"], "closed_by_server": r["closed_by_server"], "how": how}


FANOUT_SYSTEMS = {"gavel": "Gavel", "uws": "uWebSockets", "ws": "Node ws"}


def main_fanout(args):
    """Every fan-out row: each watcher count, each rate, each system, pinned; prints the table and writes --json."""
    require_pinning(args, gavel_load=True)
    relays = {}
    if "uws" in args.fanout_systems:
        relays["uws"] = build_uws_relay(args)
    if "ws" in args.fanout_systems:
        relays["ws"] = node_ws()
    systems = [s for s in args.fanout_systems if s == "gavel" or relays.get(s)]

    def step(system, watchers, rate):
        def measure(work):
            print(f"measuring fan-out: {FANOUT_SYSTEMS[system]}, {rate} messages/s × {watchers} watchers ...",
                  file=sys.stderr)
            row = fanout_run(args, work, system, watchers, rate, relays)
            print(f"  {row['deliveries_per_s']:,.0f} deliveries/s, server {row['server_cpu_per_s']:.2f} CPU-s/s, "
                  f"{fmt(row['deliveries_per_cpu_s'], ',.0f')} deliveries a CPU-second, driver "
                  f"{row['driver_cpu_per_s']:.2f} CPU-s/s, p99 {row['p99_ms']:.2f} ms",
                  file=sys.stderr)
            return row
        return measure

    rows, started, load_before, load_after = in_work_dir(
        step(system, watchers, rate) for watchers in args.fanout_watchers for rate in args.fanout_rates
        for system in systems)
    print(f"fan-out, servers on CPU {args.server_cpu}, drivers on CPU {args.driver_cpu}, {args.duration} s measured "
          f"after {args.warmup} s; started {started}, load average {load_before:.2f} before, {load_after:.2f} after")
    print_fanout(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"mode": "fanout", "started": started, "load_average": [load_before, load_after],
                       "server_cpu": args.server_cpu, "driver_cpu": args.driver_cpu, "rows": rows}, f, indent=2)


def print_fanout(rows):
    print("| watchers | messages/s (target) | system | messages/s | deliveries/s | in the window | server CPU s/s | "
          "driver CPU s/s | deliveries per server CPU-s | fan-out p50 ms | p99 ms | max ms | Gavel ÷ uWebSockets | "
          "Gavel ÷ ws |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        peers = {r["system"]: r for r in rows if (r["watchers"], r["rate"]) == (row["watchers"], row["rate"])}
        ratios = ["", ""]
        if row["system"] == "Gavel" and row["deliveries_per_cpu_s"]:
            ratios = [f"{row['deliveries_per_cpu_s'] / peers[other]['deliveries_per_cpu_s']:.2f}x"
                      if peers.get(other, {}).get("deliveries_per_cpu_s") else "—"
                      for other in ("uWebSockets", "Node ws")]
        short = f" (of {row['expected_per_s']:,})" if row["deliveries_per_s"] < 0.99 * row["expected_per_s"] else ""
        print(f"| {row['watchers']:,} | {row['rate']:,} | {row['system']} | {row['messages_per_s']:,.0f} | "
              f"{row['deliveries_per_s']:,.0f}{short} | {row['window_deliveries_per_s']:,.0f} | "
              f"{row['server_cpu_per_s']:.3f} | {row['driver_cpu_per_s']:.2f} | "
              f"{fmt(row['deliveries_per_cpu_s'], ',.0f')} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
              f"{row['max_ms']:.1f} | {ratios[0]} | {ratios[1]} |")


# ---- closed loop, pinned (--mode closed) ----

def pinned(cpu, command):
    return ["taskset", "-c", str(cpu)] + command


def missing(tool, how):
    print(f"  {tool} not found: {how}; skipped", file=sys.stderr)
    return None


def closed_gavel(args, work, clients, in_flight):
    port = free_port()
    data = os.path.join(work, f"gavel-{clients}x{in_flight}")
    server = subprocess.Popen(
        pinned(args.server_cpu, [args.gavel, "serve", "--port", str(port), "--admin-port", "0", "--data-dir", data,
                                 "--fsync", "always", *LOAD_LIMITS,
                                 "--max-outbound-bytes", str(64 << 20)]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        report = os.path.join(work, f"gavel-{clients}x{in_flight}.json")
        threads_before = cpu_by_thread(server.pid)
        out = subprocess.run(
            pinned(args.driver_cpu, [args.gavel_load, "--url", f"ws://127.0.0.1:{port}/ws",
                                     "--connections", str(clients), "--in-flight", str(in_flight), "--watchers", "0",
                                     "--listings", str(args.listings), "--zipf", "0", "--duration",
                                     str(args.duration), "--warmup", str(args.warmup), "--server-pid",
                                     str(server.pid), "--quiet", "--json", report]),
            capture_output=True, text=True, timeout=args.duration + args.warmup + 180, preexec_fn=raise_file_limit)
        for line in out.stderr.splitlines():
            print("  " + line, file=sys.stderr)
        threads = thread_shares(threads_before or {}, cpu_by_thread(server.pid) or {})
        if out.returncode != 0:
            raise RuntimeError(f"gavel-load failed ({out.returncode}): {out.stderr[-800:]}")
        with open(report) as f:
            r = json.load(f)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    errors = sum(r["errors"].values())
    return {"system": "Gavel", "ops_per_s": r["achieved_rate"], "threads": threads,
            "server_cpu_us_per_op": r.get("server_cpu_us_per_result"),
            "driver_cpu_us_per_op": r.get("driver_cpu_us_per_result"),
            "p50_ms": r["ack_latency"]["p50_us"] / 1000, "p99_ms": r["ack_latency"]["p99_us"] / 1000,
            "accepted": r["results"] - errors, "answered": r["results"], "errors": r["errors"],
            "closed_by_server": r["closed_by_server"],
            "how": f"gavel serve --fsync always; gavel-load --connections {clients} --in-flight {in_flight}"}


def redis_cli(port, *command):
    return subprocess.check_output(["redis-cli", "-p", str(port), *command], text=True).strip()


def evalsha_calls(port):
    match = re.search(r"cmdstat_evalsha:calls=(\d+)", redis_cli(port, "INFO", "commandstats"))
    return int(match.group(1)) if match else 0


def closed_redis(args, work, clients, in_flight):
    if not shutil.which("redis-server") or not shutil.which("redis-benchmark"):
        return missing("redis-server or redis-benchmark", "apt-get install -y redis-server redis-tools")
    port = free_port()
    data = os.path.join(work, f"redis-{clients}x{in_flight}")
    os.makedirs(data)
    server = subprocess.Popen(
        pinned(args.server_cpu, ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", data,
                                 "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                                 "--protected-mode", "no", "--maxclients", str(clients + 100)]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        with open(os.path.join(HERE, "english_bid.lua")) as f:
            sha = redis_cli(port, "SCRIPT", "LOAD", f.read())

        def bench(requests):
            return pinned(args.driver_cpu, ["redis-benchmark", "-p", str(port), "-c", str(clients), "-P",
                                            str(in_flight), "-n", str(requests), "-r", str(args.listings), "--csv",
                                            "EVALSHA", sha, "1", "listing:__rand_int__", "u__rand_int__"])

        # redis-benchmark runs a number of requests, not a time: a short first run sizes the measured one so that
        # it outlasts the warm-up and the window.
        calibration = subprocess.run(bench(max(50_000, clients * in_flight * 50)), capture_output=True, text=True,
                                     timeout=120, preexec_fn=raise_file_limit)
        rows = [line for line in calibration.stdout.splitlines() if line.startswith('"EVALSHA')]
        if not rows:
            raise RuntimeError("redis-benchmark printed no result: " + calibration.stdout[-500:] +
                               calibration.stderr[-500:])
        estimate = float(rows[-1].split(",")[1].strip('"'))
        requests = int(estimate * (args.warmup + args.duration) * 1.6) + clients * in_flight
        driver = subprocess.Popen(bench(requests), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  preexec_fn=raise_file_limit)
        try:
            time.sleep(args.warmup)
            t0, calls0 = time.time(), evalsha_calls(port)
            server0, driver0 = cpu_seconds(server.pid), cpu_seconds(driver.pid)
            while time.time() < t0 + args.duration and driver.poll() is None:
                time.sleep(0.02)
            server1, driver1 = cpu_seconds(server.pid), cpu_seconds(driver.pid)
            t1, calls1 = time.time(), evalsha_calls(port)
            stdout, stderr = driver.communicate(timeout=args.duration * 3 + 120)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
        rows = [line for line in stdout.splitlines() if line.startswith('"EVALSHA')]
        if not rows:
            raise RuntimeError("redis-benchmark printed no result: " + stdout[-500:] + stderr[-500:])
        # CSV: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
        _, _, _, p50, _, p99, _ = [float(x.strip('"')) for x in rows[-1].split(",")[1:]]
        # Every bid since the start, the sizing run's too: the listings' bid counts cover them all.
        calls = evalsha_calls(port)
        accepted = int(redis_cli(port, "EVAL", "local s = 0 for _, k in ipairs(redis.call('KEYS', 'listing:*')) do "
                                 "s = s + tonumber(redis.call('HGET', k, 'bids') or 0) end return s", "0"))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    ops = calls1 - calls0
    window = t1 - t0
    return {"system": "Redis", "ops_per_s": ops / window,
            "server_cpu_us_per_op": (server1 - server0) * 1e6 / max(ops, 1),
            "driver_cpu_us_per_op": None if driver1 is None else (driver1 - driver0) * 1e6 / max(ops, 1),
            "p50_ms": p50, "p99_ms": p99, "accepted": accepted, "answered": calls, "errors": {},
            "how": f"redis-server appendfsync always; redis-benchmark -c {clients} -P {in_flight} EVALSHA "
                   f"english_bid.lua ({calls} bids in all with the sizing run, {accepted} accepted; latency over the whole run)"
                   + ("" if window >= args.duration * 0.95 else f"; window cut to {window:.1f} s")}


def closed_postgres(args, work, clients, in_flight):
    if not os.path.exists(f"{PG_BIN}/pg_ctl") or not shutil.which("pgbench"):
        return missing("PostgreSQL 15", "apt-get install -y postgresql-15 postgresql-client-15")
    connections = clients * in_flight
    port = free_port()
    as_postgres = AS_POSTGRES
    data, log = postgres_cluster(work, f"pg-{clients}x{in_flight}")
    started = subprocess.run(
        pinned(args.server_cpu, as_postgres + [
            f"{PG_BIN}/pg_ctl", "-D", data, "-l", log, "-w", "-o",
            f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c synchronous_commit=on -c fsync=on "
            f"-c max_connections={connections + 10} -c shared_buffers=256MB -c track_functions=pl", "start"]),
        capture_output=True, text=True)
    if started.returncode != 0:
        tail = open(log).read()[-600:] if os.path.exists(log) else started.stderr[-600:]
        print(f"  PostgreSQL did not start with max_connections={connections + 10}: {tail}", file=sys.stderr)
        return None
    try:
        with open(os.path.join(data, "postmaster.pid")) as f:
            postmaster = int(f.readline())
        psql = bid_schema(port, args.listings)
        bench = os.path.join(work, f"bid-{clients}x{in_flight}.pgbench")
        with open(bench, "w") as f:
            f.write(f"\\set listing random(0, {args.listings - 1})\n\\set bidder random(0, {args.listings - 1})\n"
                    "SELECT bid(:listing, 'u' || :bidder);\n")
        logdir = os.path.join(work, f"pglog-{clients}x{in_flight}")
        os.makedirs(logdir)
        driver = subprocess.Popen(
            pinned(args.driver_cpu, ["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-n", "-M",
                                     "prepared", "-c", str(connections), "-j", "1", "-T",
                                     str(int(args.warmup + args.duration + 10 + connections // 50)), "-f", bench,
                                     "-l", "--log-prefix",
                                     os.path.join(logdir, "tx"), "postgres"]),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=logdir, preexec_fn=raise_file_limit)
        try:
            # pgbench connects every client first (with 1,000 of them the first bids follow seconds later); the
            # warm-up starts once 64 KiB of its transaction log (about 1,500 bids) is written.
            deadline = time.time() + 120
            while driver.poll() is None and time.time() < deadline and sum(
                    os.path.getsize(os.path.join(logdir, n)) for n in os.listdir(logdir)) < 65_536:
                time.sleep(0.02)
            time.sleep(args.warmup)
            t0 = time.time()
            server0, driver0 = tree_cpu_seconds(postmaster), cpu_seconds(driver.pid)
            while time.time() < t0 + args.duration and driver.poll() is None:
                time.sleep(0.02)
            server1, driver1 = tree_cpu_seconds(postmaster), cpu_seconds(driver.pid)
            if os.environ.get("COMPARE_DEBUG"):
                print(f"  debug: t0 {t0:.2f} t1 {time.time():.2f} server {server0:.2f} -> {server1:.2f} driver "
                      f"{driver0} -> {driver1}", file=sys.stderr)
            t1 = time.time()
            # -T counts pgbench's connecting too, so it is given time to spare; a second after the window it is
            # stopped (what its log buffer loses then ended after the window).
            try:
                stdout, stderr = driver.communicate(timeout=1)
            except subprocess.TimeoutExpired:
                driver.terminate()
                stdout, stderr = driver.communicate(timeout=30)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
        latencies, failures, _ = pgbench_log(logdir, (t0, t1))
        if not latencies:
            print(f"  pgbench -c {connections} completed no transaction in the window: {stderr[-600:]}",
                  file=sys.stderr)
            return None
        accepted = int(subprocess.check_output(psql + ["-At", "-c", "SELECT sum(bids) FROM listings"], text=True))
        # Every call of bid() (track_functions); the backends' counts reach the statistics as they exit (pgbench's
        # log may miss its last lines when it is stopped).
        time.sleep(1)
        total = int(subprocess.check_output(psql + [
            "-At", "-c", "SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions WHERE funcname = 'bid'"],
            text=True))
    finally:
        subprocess.run(as_postgres + [f"{PG_BIN}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"],
                       capture_output=True)
    ops = len(latencies)
    window = t1 - t0
    return {"system": "PostgreSQL", "ops_per_s": ops / window,
            "server_cpu_us_per_op": (server1 - server0) * 1e6 / max(ops, 1),
            "driver_cpu_us_per_op": None if driver1 is None else (driver1 - driver0) * 1e6 / max(ops, 1),
            "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99), "accepted": accepted,
            "answered": total, "errors": {"failed": failures} if failures else {},
            "how": f"synchronous_commit on; pgbench -c {connections} -j 1 -M prepared ({clients} × {in_flight}: one "
                   f"transaction in flight a connection; {total} bids in all, {accepted} accepted)"
                   + ("" if window >= args.duration * 0.95 else f"; window cut to {window:.1f} s")}


def concurrency(text):
    levels = []
    for item in text.split(","):
        clients, _, in_flight = item.partition("x")
        if not clients.isdigit() or not in_flight.isdigit() or int(clients) < 1 or int(in_flight) < 1:
            raise argparse.ArgumentTypeError(f"--concurrency takes CLIENTSxIN_FLIGHT,... (e.g. 16x16,1000x1), got {text}")
        levels.append((int(clients), int(in_flight)))
    return levels


def require_pinning(args, gavel_load):
    """Stops the script when taskset is missing, or gavel and gavel-load when `gavel_load` says they are needed."""
    if not shutil.which("taskset"):
        sys.exit("taskset not found (util-linux): it pins the servers and the drivers")
    for path in (args.gavel, args.gavel_load) if gavel_load else ():
        if not os.access(path, os.X_OK):
            sys.exit(f"{path} is missing: swift build -c release --product gavel, and gavel-load in loadtest/ "
                     "(see loadtest/README.md)")


def in_work_dir(steps):
    """Calls each step (a function of the directory it may write in, returning a result or None) in one throwaway
    directory, removed at the end; returns the results that are not None, when the first step started (UTC) and
    the one-minute load average before and after."""
    work = tempfile.mkdtemp(prefix="gavel-compare-")
    results = []
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load_before = os.getloadavg()[0]
    try:
        for step in steps:
            result = step(work)
            if result:
                results.append(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results, started, load_before, os.getloadavg()[0]


def numbers(text):
    """A comma-separated list of positive integers (--fanout-watchers, --fanout-rates)."""
    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"takes positive integers, comma-separated (e.g. 100,1000), got {text}")
    return values


def fmt(value, spec):
    return "—" if value is None else format(value, spec)


def main_closed(args):
    systems = [("gavel", closed_gavel), ("redis", closed_redis), ("postgres", closed_postgres)]
    chosen = [s for s in systems if not args.only or s[0] in args.only]
    require_pinning(args, gavel_load=any(name == "gavel" for name, _ in chosen))

    def step(clients, in_flight, name, run):
        def measure(work):
            print(f"measuring {name} at {clients} × {in_flight} ...", file=sys.stderr)
            r = run(args, work, clients, in_flight)
            if r:
                r.update({"clients": clients, "in_flight": in_flight})
                print(f"  {r['ops_per_s']:,.0f} ops/s, server {fmt(r['server_cpu_us_per_op'], '.1f')} µs/op, "
                      f"driver {fmt(r['driver_cpu_us_per_op'], '.2f')} µs/op", file=sys.stderr)
            return r
        return measure

    results, started, load_before, load_after = in_work_dir(
        step(clients, in_flight, name, run) for clients, in_flight in args.concurrency for name, run in chosen)
    print(f"closed loop, servers on CPU {args.server_cpu}, drivers on CPU {args.driver_cpu}, {args.listings} "
          f"listings, {args.duration} s measured after {args.warmup} s; started {started}, load average "
          f"{load_before:.2f} before, {load_after:.2f} after")
    print("| clients × in flight | system | durable bids/s | server CPU µs/bid | driver CPU µs/bid | p50 ms | p99 ms | "
          "accepted | how |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        accepted = f"{r['accepted'] / r['answered']:.1%}" if r["answered"] else "—"
        print(f"| {r['clients']} × {r['in_flight']} | {r['system']} | {r['ops_per_s']:,.0f} | "
              f"{fmt(r['server_cpu_us_per_op'], '.1f')} | {fmt(r['driver_cpu_us_per_op'], '.2f')} | "
              f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {accepted} | {r['how']} |")
    for clients, in_flight in args.concurrency:
        level = {r["system"]: r for r in results if (r["clients"], r["in_flight"]) == (clients, in_flight)}
        gavel = level.get("Gavel")
        if not gavel:
            continue
        parts = []
        for other in ("Redis", "PostgreSQL"):
            if other in level and level[other]["ops_per_s"] > 0:
                r = level[other]
                cpu = ""
                if gavel["server_cpu_us_per_op"] and r["server_cpu_us_per_op"]:
                    cpu = (f", server CPU a bid Gavel {gavel['server_cpu_us_per_op']:.1f} µs, {other} "
                           f"{r['server_cpu_us_per_op']:.1f} µs ({other}/Gavel "
                           f"{r['server_cpu_us_per_op'] / gavel['server_cpu_us_per_op']:.2f}x)")
                parts.append(f"Gavel/{other} throughput {gavel['ops_per_s'] / r['ops_per_s']:.2f}x{cpu}")
        if parts:
            print(f"{clients} × {in_flight}: " + "; ".join(parts))
        if gavel.get("threads"):
            print(f"{clients} × {in_flight}: Gavel's server CPU by thread over the whole run (warm-up included): "
                  + ", ".join(f"{name} {share:.0%}" for name, share in gavel["threads"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"mode": "closed", "started": started, "load_average": [load_before, load_after],
                       "server_cpu": args.server_cpu, "driver_cpu": args.driver_cpu, "results": results}, f,
                      indent=2)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["closed", "open"], default="closed",
                        help="closed: closed loop, pinned, same concurrency for all (default); open: the earlier "
                             "comparison (Gavel open loop at stepped rates); --only fanout goes with either")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2,
                        help="closed and fanout: seconds before each measured window")
    parser.add_argument("--concurrency", type=concurrency, default=[(16, 16), (1000, 1)],
                        help="closed: CLIENTSxIN_FLIGHT levels, comma-separated (default 16x16,1000x1)")
    parser.add_argument("--server-cpu", default="0",
                        help="closed and fanout: the CPU every server is pinned to (taskset -c)")
    parser.add_argument("--driver-cpu", default="1",
                        help="closed and fanout: the CPU every driver is pinned to (taskset -c)")
    parser.add_argument("--clients", type=int, default=16, help="open: concurrent connections per system")
    parser.add_argument("--listings", type=int, default=1000)
    parser.add_argument("--gavel", default=os.path.join(ROOT, ".build/release/gavel"))
    # Either build directory may hold one (loadtest's own, or the server's with --scratch-path): the newer one, so
    # that a stale build in the other is never measured instead of the one just made.
    drivers = [p for p in (os.path.join(ROOT, ".build/release/gavel-load"),
                           os.path.join(ROOT, "loadtest/.build/release/gavel-load")) if os.path.exists(p)]
    parser.add_argument("--gavel-load", default=max(drivers, key=os.path.getmtime) if drivers else
                        os.path.join(ROOT, "loadtest/.build/release/gavel-load"),
                        help="the gavel-load binary (default: the newer of .build/release and loadtest/.build/release)")
    parser.add_argument("--gavel-rates", type=lambda s: [int(x) for x in s.split(",")],
                        default=[2000, 5000, 10000, 20000, 40000, 80000, 120000, 160000])
    parser.add_argument("--only", choices=["gavel", "redis", "postgres", "fanout"], action="append",
                        help="run only these systems; fanout runs the fan-out comparison instead, on its own")
    parser.add_argument("--fanout-watchers", "--watchers", type=numbers, default=[100, 1000],
                        help="fanout: watcher connections, comma-separated (default 100,1000)")
    parser.add_argument("--fanout-rates", type=numbers, default=[20, 100],
                        help="fanout: messages (bids) per second, comma-separated (default 20,100)")
    parser.add_argument("--fanout-systems", type=lambda s: [x for x in s.split(",") if x],
                        default=["gavel", "uws", "ws"],
                        help="fanout: which of gavel, uws (the uWebSockets relay) and ws (Node's ws relay) to run, "
                             "comma-separated (default all three)")
    parser.add_argument("--uws-src", help="fanout: a checkout of github.com/uNetworking/uWebSockets to build the "
                                          f"relay from (default: exports of the bare mirrors under {UWS_MIRRORS})")
    parser.add_argument("--usockets-src", help="fanout: a checkout of github.com/uNetworking/uSockets (default: "
                                               "uSockets/ inside --uws-src, or the bare mirror)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    unknown = [s for s in args.fanout_systems if s not in FANOUT_SYSTEMS]
    if unknown:
        parser.error(f"--fanout-systems takes gavel, uws and ws, not {', '.join(unknown)}")
    if args.only and "fanout" in args.only and len(set(args.only)) > 1:
        parser.error("--only fanout runs the fan-out comparison on its own; run the other systems separately")
    # Ctrl-C or a TERM: every server is stopped by the finally blocks on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.only and "fanout" in args.only:
        main_fanout(args)
        return
    if args.mode == "closed":
        main_closed(args)
        return
    work = tempfile.mkdtemp(prefix="gavel-compare-")
    results = []
    try:
        for name, run in [("gavel", run_gavel), ("redis", run_redis), ("postgres", run_postgres)]:
            if args.only and name not in args.only:
                continue
            print(f"measuring {name} ...", file=sys.stderr)
            results.append(run(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
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
