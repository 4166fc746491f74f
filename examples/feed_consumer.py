"""Consumes gavel's durable event feed and resumes where it stopped, after any outage or restart.

    python3 feed_consumer.py ws://127.0.0.1:8080/ws SERVICE_TOKEN position.txt [--once]
Keeps in position.txt the last lsn whose messages were all handled ("last": true) and the feed_mark of its journal
batch ("LSN MARK_LSN CHAIN", written atomically), and reconnects with since_lsn = that lsn + 1 and the mark as
expect: a server whose journal no longer holds that history (restored from a backup, or entries lost to a power
loss) refuses with feed_history_diverged, and what was built from the feed must be rebuilt. Put your handling in
handle(). --once stops at feed_live.
"""

import asyncio, json, os, sys

import websockets


def handle(event):
    print(json.dumps(event), flush=True)  # index it, notify, write it to your database...


def load(path):
    """(lsn, mark): the stored position and its feed_mark (None when not stored: a position file of just an lsn)."""
    try:
        with open(path) as f:
            words = f.read().split()
    except FileNotFoundError:
        return 0, None
    lsn = int(words[0]) if words else 0
    mark = {"lsn": int(words[1]), "chain": words[2]} if len(words) == 3 else None
    return lsn, mark


def store(path, lsn, mark):
    with open(path + ".tmp", "w") as f:
        f.write(f"{lsn} {mark['lsn']} {mark['chain']}" if mark else str(lsn))
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


async def consume(url, token, path, once):
    while True:
        try:
            async with websockets.connect(url, additional_headers={"Authorization": "Bearer " + token},
                                          max_size=None) as ws:
                position, mark = load(path)
                request = {"type": "subscribe_feed", "since_lsn": position + 1, "marks": True}
                if mark and position >= 1:
                    request["expect"] = mark
                await ws.send(json.dumps(request))
                async for raw in ws:
                    message = json.loads(raw)
                    if message["type"] == "result" and not message["ok"]:
                        raise SystemExit(f"feed refused: {message['error']}: {message['message']}")
                    if message["type"] == "feed_mark":
                        mark = {"lsn": message["lsn"], "chain": message["chain"]}  # the batch of what follows
                    elif message["type"] == "feed_live":
                        if message["lsn"] > position:
                            position = message["lsn"]  # entries up to it had nothing for this consumer
                            store(path, position, mark)
                        if once:
                            return
                    elif "lsn" in message:
                        handle(message)
                        if message["last"]:
                            position = message["lsn"]
                            store(path, position, mark)
        except (OSError, websockets.ConnectionClosed) as error:
            print(f"feed: {error}; reconnecting in 1 s", file=sys.stderr)
            await asyncio.sleep(1)


if __name__ == "__main__":
    asyncio.run(consume(sys.argv[1], sys.argv[2], sys.argv[3], "--once" in sys.argv[4:]))
