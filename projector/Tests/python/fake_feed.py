"""A stand-in for `gavel serve`'s feed, for the projector's own logic: canned events in journal order.

Speaks the feed's wire format (hello, subscribe_feed with since_lsn, events with lsn and last, feed_live) over a real
WebSocket on 127.0.0.1, so the projector's batching, resume and reconnection run for real. Tests against the real
server live in test_projector_gavel.py.

    python fake_feed.py --port P --listings N [--bids K] [--pace-ms MS] [--drop-after M] [--oldest L] [--log FILE]
                        [--awkward] [--reopen R]
"""

import argparse
import asyncio
import json

from websockets.asyncio.server import serve


# Text that COPY's text format must escape (tab, newline, carriage return, backslash, its null marker) and more.
AWKWARD = 'tab\there\nnew line\r\\ back \\N "quoted" \'single\' \u00e9\u20ac\U0001F600'


def canned_feed(listings, bids, awkward=False, reopen=0):
    """[(lsn, [event, ...])]: per listing an open, `bids` bids (each with an outbid), a close with the sale's
    settlement, then its payment and its shipping. `awkward`: the open's terms have a `title` and the payment a
    `payment_ref` made of AWKWARD. `reopen`: then the same again `reopen` more times with the same listing ids (as
    `gavel serve` allows once a listing is evicted), each with its settlement `L<i>:1` again."""
    out = []
    lsn = 0
    at = 1_800_000_000_000

    def step(events):
        nonlocal lsn, at
        lsn += 1
        at += 3
        for e in events:
            e.setdefault("at", at)
        out.append((lsn, events))

    for i in [i for _ in range(reopen + 1) for i in range(1, listings + 1)]:
        lid = f"L{i}"
        step([{"type": "opened", "listing": lid, "seq": 1, "format": "english", "seller": f"s{i % 7}",
               "start": 100, "opens_at": at, "closes_at": at + 60000, "has_reserve": False, "buy_now": None,
               "increments": [[0, 5], [100, 25]], "payment_due_ms": 1000, "ship_due_ms": 2000,
               "complaint_window_ms": 3000, "offer_due_ms": 4000, **({"title": AWKWARD} if awkward else {})}])
        for b in range(1, bids + 1):
            price = 100 + 25 * b
            events = [{"type": "bid_placed", "listing": lid, "seq": 1 + b, "price": price,
                       "leader": f"u{(i + b) % 11}", "bids": b, "closes_at": at + 60000, "reserve_met": True}]
            if b > 1:
                events.append({"type": "outbid", "listing": lid, "bidder": f"u{(i + b - 1) % 11}", "price": price})
            step(events)
        winner = f"u{(i + bids) % 11}"
        final = 100 + 25 * bids
        sid = f"{lid}:1"
        base = {"type": "settlement", "listing": lid, "settlement": sid, "buyer": winner, "seller": f"s{i % 7}",
                "price": final, "quantity": 1}
        step([{"type": "closed", "listing": lid, "seq": 2 + bids, "winner": winner, "price": final,
               "reserve_met": True},
              dict(base, state="awaiting_payment", due_at=at + 1000, by=None, role=None)])
        step([dict(base, state="paid", due_at=at + 2000, by="payments", role="service",
                   payment_ref=f"{AWKWARD}-{i}" if awkward else f"PAY-{i}")])
        step([dict(base, state="shipped", due_at=None, by=f"s{i % 7}", role="seller", tracking=f"TRK-{i}")])
    return out


def frames(listings, bids, awkward=False, reopen=0):
    """[(lsn, [frame text, ...])]: the canned feed as the stand-in sends it."""
    return [(lsn, [json.dumps(dict(e, lsn=lsn, last=n == len(events) - 1)) for n, e in enumerate(events)])
            for lsn, events in canned_feed(listings, bids, awkward, reopen)]


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--listings", type=int, default=10)
    parser.add_argument("--bids", type=int, default=3)
    parser.add_argument("--pace-ms", type=float, default=0.0, help="a pause after each lsn")
    parser.add_argument("--drop-after", type=int, default=0, help="close the first connection after M messages")
    parser.add_argument("--oldest", type=int, default=1, help="refuse since_lsn below this")
    parser.add_argument("--log", default=None, help="append each since_lsn asked for")
    parser.add_argument("--awkward", action="store_true", help="text that COPY must escape in terms and payment_ref")
    parser.add_argument("--reopen", type=int, default=0, help="open every listing id again R more times")
    args = parser.parse_args()
    # The frames are made once: the stand-in must not be slower than the projector it measures.
    feed = frames(args.listings, args.bids, args.awkward, args.reopen)
    head = feed[-1][0]
    connections = 0

    async def handler(ws):
        nonlocal connections
        connections += 1
        this = connections
        auth = ws.request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or len(auth) < 20:
            await ws.close(1008, "no token")
            return
        await ws.send(json.dumps({"type": "hello", "principal": "projector", "role": "service"}))
        request = json.loads(await ws.recv())
        assert request["type"] == "subscribe_feed", request
        since = request.get("since_lsn", head + 1)
        if args.log:
            with open(args.log, "a") as f:
                f.write(f"{since}\n")
        if since < args.oldest:
            await ws.send(json.dumps({"type": "result", "id": request.get("id"), "ok": False,
                                      "error": "feed_not_retained",
                                      "message": f"lsn {since} is no longer retained; the oldest is {args.oldest}",
                                      "oldest_lsn": args.oldest}))
            await ws.wait_closed()
            return
        sent = 0
        for lsn, frames in feed:
            if lsn < since:
                continue
            for frame in frames:
                if this == 1 and args.drop_after and sent >= args.drop_after:
                    await ws.close(1001, "going away")
                    return
                await ws.send(frame)
                sent += 1
            if args.pace_ms:
                await asyncio.sleep(args.pace_ms / 1000)
        await ws.send(json.dumps({"type": "feed_live", "lsn": head}))
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", args.port):
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
