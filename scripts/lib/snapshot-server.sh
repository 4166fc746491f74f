# Sourced by scripts/snapshot-latency and scripts/snapshot-trace: a `gavel serve --fsync always` with a snapshot
# every few seconds and its client limits lifted, the way both measure it.

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_snapshot_server EVERY DATA [PIN...]: starts "$gavel" serve (with PIN before it, e.g. `taskset -c 0`) on free
# ports with its data directory, log and nothing else in DATA, a snapshot every EVERY seconds (0: none); sets
# `port`, `admin` and `server` (its pid), exports the key as GAVEL_JWT_SECRET (for gavel-load too: other local
# users can read a command line), and returns once it answers /readyz.
start_snapshot_server() {
    local every=$1 dir=$2
    shift 2
    port=$(free_port)
    admin=$(free_port)
    GAVEL_JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
    export GAVEL_JWT_SECRET
    "$@" "$gavel" serve --port "$port" --admin-port "$admin" --data-dir "$dir/dd" \
        --fsync always --snapshot-every 0 --snapshot-every-seconds "$every" \
        --rate 1000000 --rate-burst 1000000 --max-connections 100000 \
        --max-connections-per-address 100000 --max-anonymous-connections 100000 --max-handshakes 100000 \
        --max-handshakes-per-address 100000 \
        --principal-rate 1000000 --principal-rate-burst 1000000 --opens-per-minute 1000000 \
        --max-read-bytes-per-second 1073741824 --max-outbound-bytes-total 1099511627776 \
        --max-open-listings-per-seller 100000000 >"$dir/server.log" 2>&1 &
    server=$!
    python3 - "$admin" <<'PY'
import sys, time, urllib.request
for _ in range(300):
    try:
        if urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=1).status == 200:
            break
    except OSError:
        pass
    time.sleep(0.1)
else:
    sys.exit("gavel serve did not become ready within 30 s")
PY
}
