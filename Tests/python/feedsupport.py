"""Helpers for the durable event feed tests: a feed client, and what an independent replay of the journal says.

The reference is `gavel dump --format json` (the journal's commands, with their lsn and engine time) fed to
`gavel simulate`, a fresh engine: each entry's events, as docs/PROTOCOL.md writes them, grouped by lsn. The feed
must carry exactly those, with `lsn` and `last` added.
"""

import json
import subprocess

from support import mint_token

MARK = "feed-mark-"


def replay_by_lsn(gavel_bin, data_dir, archive_dir=None):
    """{lsn: {"events": [event lines], "result": result or None}} from dump + simulate, for every journal entry."""
    args = [gavel_bin, "dump", "--data-dir", str(data_dir), "--format", "json"]
    if archive_dir is not None:
        args += ["--archive-dir", str(archive_dir)]
    dump = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    entries = [json.loads(line) for line in dump.stdout.splitlines() if line.strip()]
    entries = [e for e in entries if "lsn" in e]
    lines = []
    for entry in entries:
        command = {k: v for k, v in entry.items() if k not in ("lsn", "principal")}
        if command.get("type") == "tick":
            command = {"type": "advance", "at": entry["at"]}
        lines.append(json.dumps(command))
        # An unknown type changes nothing and is answered at once: it marks where the entry's output ends.
        lines.append(json.dumps({"type": "mark", "id": f"{MARK}{entry['lsn']}"}))
    out = subprocess.run([gavel_bin, "simulate"], input="\n".join(lines) + "\n", capture_output=True, text=True,
                         timeout=120, check=True)
    by_lsn = {}
    current = {"events": [], "result": None}
    for line in out.stdout.splitlines():
        message = json.loads(line)
        if message.get("type") == "result" and str(message.get("id", "")).startswith(MARK):
            by_lsn[int(message["id"][len(MARK):])] = current
            current = {"events": [], "result": None}
        elif message.get("type") == "result":
            current["result"] = message
        else:
            current["events"].append(message)
    assert len(by_lsn) == len(entries)
    return by_lsn, {e["lsn"]: e for e in entries}


def expected_feed(by_lsn, since, through, types=None, listings=None):
    """The feed messages for lsn `since`..`through` (events only), filtered, as (lsn, message without lsn/last)."""
    out = []
    for lsn in range(since, through + 1):
        for event in by_lsn[lsn]["events"]:
            if types is not None and event["type"] not in types:
                continue
            if listings is not None and event["listing"] not in listings:
                continue
            out.append((lsn, event))
    return out


def strip(messages):
    """(lsn, message without lsn and last) for feed event messages."""
    return [(m["lsn"], {k: v for k, v in m.items() if k not in ("lsn", "last")}) for m in messages]


def check_last_flags(messages):
    """Each lsn's messages are contiguous and exactly its final one has `last: true`; lsns strictly increase."""
    previous = None
    for i, m in enumerate(messages):
        if previous is not None:
            assert m["lsn"] >= previous, f"lsn went back at {m}"
        last_of_lsn = i + 1 == len(messages) or messages[i + 1]["lsn"] != m["lsn"]
        assert m["last"] is last_of_lsn, f"wrong last flag at {m}"
        if previous is not None and m["lsn"] != previous:
            assert messages[i - 1]["last"] is True
        previous = m["lsn"]


def feed_client(server, sub="feeder", role="service"):
    return server.connect(mint_token(sub, role, secret=server.secret))


def read_feed_until(client, predicate, timeout=30.0):
    """Feed messages (not feed_live) until one matches `predicate`; returns (messages, feed_live or None)."""
    messages, live = [], None
    while True:
        m = client.expect(lambda m: "lsn" in m, timeout=timeout, what="a feed message")
        if m["type"] == "feed_live":
            live = m
            if predicate(m):
                return messages, live
            continue
        messages.append(m)
        if predicate(m):
            return messages, live


def read_feed_through(client, predicate, timeout=30.0):
    """Feed messages until one matches `predicate` and then to the end of its lsn (its message with last: true)."""
    messages, _ = read_feed_until(client, predicate, timeout)
    while not messages[-1]["last"]:
        more, _ = read_feed_until(client, lambda m: True, timeout)
        messages += more
    return messages
