"""What scripts/snapshot-latency and scripts/snapshot-trace read from a run: the server's fsync histogram, the
driver's per-second worst acks, and the server's snapshot lines."""
import datetime
import re


def fsync_p999(metrics):
    """The run's fsync p99.9 (the bound of the histogram bucket that reaches it, in seconds) and its sync count,
    from the text of the server's /metrics."""
    buckets, total = [], 0.0
    for line in metrics.splitlines():
        if line.startswith("gavel_fsync_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
        elif line.startswith("gavel_fsync_seconds_count"):
            total = float(line.rsplit(" ", 1)[1])
    p999 = next((le for le, count in sorted(buckets) if total and count >= 0.999 * total), float("nan"))
    return p999, total


def worst_acks(progress):
    """The driver's progress lines (its stderr) as {N: worst ack in ms}, N the second its line ends."""
    worst = {}
    for line in open(progress):
        m = re.match(r"t=\s*(\d+)s .* max\s+([\d.]+) ms", line)
        if m:
            worst[int(m.group(1))] = float(m.group(2))
    return worst


def snapshots(server_log):
    """Each snapshot of the server's log as (when it was logged, in Unix seconds to the second; its catch-up and its
    write, in seconds)."""
    out = []
    for line in open(server_log):
        m = re.match(r"(\S+) .*snapshot at lsn \d+: .*caught up in (\d+) ms and wrote it in (\d+) ms", line)
        if m:
            logged = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S%z").timestamp()
            out.append((logged, int(m.group(2)) / 1000, int(m.group(3)) / 1000))
    return out
