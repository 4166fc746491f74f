#!/usr/bin/env bash
# What one durable bid costs the server: starts `gavel serve --fsync always` on a fresh data directory, drives it
# with gavel-load's steady preset at RATE bids/s for 10 s (after a 2 s warm-up), and prints the driver's ack
# latencies, the server's CPU time, context switches (all its threads, voluntary and not) and system calls per
# bid, and commands per writer batch and per fdatasync (from /metrics). Counters are read over 5 s in the middle
# of the run. Needs `perf` for the system calls (they are left out without it).
#
#   loadtest/compare/costs.sh .build/release/gavel 5000 [more gavel serve options]
#
# Run it alternately for two builds (A, B, A, B, ...): on a shared machine single runs move by 10 % or more.
set -euo pipefail
bin=$1
rate=$2
shift 2
here="$(cd "$(dirname "$0")" && pwd)"
load="$here/../.build/release/gavel-load"
data=$(mktemp -d /tmp/gavel-costs.XXXXXX)
port=$((20000 + RANDOM % 5000))
admin=$((port + 5000))
# The key, for the server and the driver, in the environment rather than in their command lines.
export GAVEL_JWT_SECRET=costs-secret-of-at-least-32-bytes
"$bin" serve --data-dir "$data/dd" --port "$port" --admin-port "$admin" --fsync always \
    --rate 1000000 --rate-burst 1000000 --principal-rate 1000000 --principal-rate-burst 1000000 \
    --opens-per-minute 1000000 --max-read-bytes-per-second 1073741824 "$@" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$admin/metrics" && break; sleep 0.1; done

switches() { cat /proc/"$server"/task/*/status | awk '/ctxt_switches/ { s += $2 } END { print s }'; }
cpu() { awk '{ print $14 + $15 }' /proc/"$server"/stat; }
batches() {
    curl -s "http://127.0.0.1:$admin/metrics" | awk '/^gavel_batch_entries_sum/ { e = $2 }
        /^gavel_batch_entries_count/ { b = $2 } /^gavel_fsync_seconds_count/ { f = $2 } END { print e, b, f }'
}

"$load" --url "ws://127.0.0.1:$port/ws" --connections 16 --watchers 0 --listings 1000 --zipf 0 \
    --rate "$rate" --duration 10 --warmup 2 --quiet --json "$data/load.json" >/dev/null 2>&1 &
driver=$!
sleep 4
c0=$(cpu) s0=$(switches)
read -r e0 b0 f0 < <(batches)
syscalls="syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_poll"
syscalls="$syscalls,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex"
if command -v perf >/dev/null; then
    perf stat -x, -e "$syscalls" -p "$server" -o "$data/syscalls" -- sleep 5 >/dev/null 2>&1 || sleep 5
else
    sleep 5
fi
c1=$(cpu) s1=$(switches)
read -r e1 b1 f1 < <(batches)
wait $driver
python3 - "$data" "$rate" "$(getconf CLK_TCK)" "$c0" "$c1" "$s0" "$s1" "$e0" "$e1" "$b0" "$b1" "$f0" "$f1" <<'PY'
import json, os, sys
data, rate, hz = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
c0, c1, s0, s1, e0, e1, b0, b1, f0, f1 = map(float, sys.argv[4:])
report = json.load(open(os.path.join(data, "load.json")))
ack = report["ack_latency"]
bids = max(e1 - e0, 1)
print(f"{rate}/s: {report['results']} of {report['sent']} answered; ack p50 {ack['p50_us'] / 1000:.2f} ms, "
      f"p99 {ack['p99_us'] / 1000:.2f} ms, max {ack['max_us'] / 1000:.1f} ms")
print(f"  server CPU {(c1 - c0) / hz * 1e6 / bids:.0f} µs a bid, {(s1 - s0) / bids:.2f} context switches a bid, "
      f"{bids / max(b1 - b0, 1):.2f} commands a batch, {bids / max(f1 - f0, 1):.2f} an fdatasync")
path = os.path.join(data, "syscalls")
if os.path.exists(path):
    calls = []
    for line in open(path):
        fields = line.strip().split(",")
        if len(fields) > 2 and fields[2].startswith("syscalls:sys_enter_") and fields[0].isdigit():
            calls.append(f"{fields[2][len('syscalls:sys_enter_'):]} {int(fields[0]) / bids:.2f}")
    print("  system calls a bid: " + ", ".join(calls))
PY
