"""Consumes gavel's durable event feed and resumes where it stopped, after any outage or restart.

    python3 feed_consumer.py ws://127.0.0.1:8080/ws SERVICE_TOKEN position.txt [--once]
Keeps in position.txt the last lsn whose messages were all handled ("last": true), written atomically, and
reconnects with since_lsn = that + 1. Put your handling in handle(). --once stops at feed_live.
"""

import asyncio, json, os, sys

import websockets


def handle(event):
    print(json.dumps(event), flush=True)  # index it, notify, write it to your database...


def load(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except FileNotFoundError:
        return 0


def store(path, lsn):
    with open(path + ".tmp", "w") as f:
        f.write(str(lsn))
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


async def consume(url, token, path, once):
    while True:
        try:
            async with websockets.connect(url, additional_headers={"Authorization": "Bearer " + token},
                                          max_size=None) as ws:
                await ws.send(json.dumps({"type": "subscribe_feed", "since_lsn": load(path) + 1}))
                async for raw in ws:
                    message = json.loads(raw)
                    if message["type"] == "result" and not message["ok"]:
                        raise SystemExit(f"feed refused: {message['error']}: {message['message']}")
                    if message["type"] == "feed_live":
                        if message["lsn"] > load(path):
                            store(path, message["lsn"])  # entries up to it had nothing for this consumer
                        if once:
                            return
                    elif "lsn" in message:
                        handle(message)
                        if message["last"]:
                            store(path, message["lsn"])
        except (OSError, websockets.ConnectionClosed) as error:
            print(f"feed: {error}; reconnecting in 1 s", file=sys.stderr)
            await asyncio.sleep(1)


if __name__ == "__main__":
    asyncio.run(consume(sys.argv[1], sys.argv[2], sys.argv[3], "--once" in sys.argv[4:]))
