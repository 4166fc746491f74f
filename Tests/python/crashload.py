"""Crash cycles of `gavel serve --fsync always` under load: many connections pipeline opens and bids, the server is
killed with SIGKILL at a random moment, restarted on the same data directory, and the recovered state is checked
against what the clients were told.

After each restart, for every command of the killed run:
- acknowledged (`ok` or refused by the rules, the result reached its client): sent again with the same id and
  content, it is answered `duplicate: true` with the same result, so it is in the recovered state exactly as
  acknowledged;
- refused by the gateway before the engine (`rate_limited`, `overloaded`: not remembered): sent again, it is not a
  duplicate;
- unacknowledged (sent, no result before the kill): sent again, it is either a duplicate (it was durable before the
  kill) or applied now, never both;
- each listing's bid count, read before the unacknowledged bids are sent again, equals the acknowledged accepted bids
  plus the unacknowledged ones found durable: nothing acknowledged is lost and nothing is applied twice.

Used by Tests/python/test_crash_under_load.py (5 cycles) and scripts/crash-loop (N cycles).
"""

import asyncio
import json
import random
import time

from websockets.asyncio.client import connect

from support import Server, mint_token, unique

LIMITS = ("--fsync", "always", "--rate", "100000", "--rate-burst", "100000", "--principal-rate", "100000",
          "--principal-rate-burst", "100000", "--max-connections-per-user", "100", "--opens-per-minute", "100000")
# Refusals by the gateway, before the engine: not remembered (docs/PROTOCOL.md, Idempotency), never in the state.
GATEWAY_REFUSALS = {"rate_limited", "overloaded"}
BIDDERS = 12
LISTINGS = 3
WINDOW = 8  # bids each connection keeps in flight


class CycleError(AssertionError):
    pass


def _connect(server, sub, role):
    token = mint_token(sub, role, secret=server.secret)
    return connect(server.ws_url(), additional_headers={"Authorization": f"Bearer {token}"}, compression=None,
                   proxy=None, open_timeout=10, close_timeout=2, ping_interval=None, max_size=None)


async def _hello(ws):
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message.get("type") == "hello":
            return message


class Ledger:
    """Every command a run sent, by id: (who, message), and the result when one came back."""

    def __init__(self):
        self.sent = {}
        self.results = {}

    def acknowledged(self):
        """Results the engine gave (accepted or refused by the rules): remembered, so in the recovered state."""
        return {rid: r for rid, r in self.results.items() if r.get("error") not in GATEWAY_REFUSALS}

    def refused_by_gateway(self):
        return [rid for rid, r in self.results.items() if r.get("error") in GATEWAY_REFUSALS]

    def unacknowledged(self):
        return [rid for rid in self.sent if rid not in self.results]


async def _bidder(server, index, listings, ledger, stop, rng):
    """Pipelines bids of rising amounts on the listings, WINDOW at a time, recording every result."""
    sub = f"bidder{index}"
    try:
        async with _connect(server, sub, "bidder") as ws:
            await _hello(ws)
            step = 0
            while not stop.is_set():
                pending = set()
                for _ in range(WINDOW):
                    step += 1
                    rid = f"{sub}-{unique('b')}"
                    amount = 200 + step * 40 + index + rng.randrange(0, 30)
                    message = {"type": "bid", "id": rid, "listing": rng.choice(listings), "amount": amount}
                    ledger.sent[rid] = (sub, message)
                    await ws.send(json.dumps(message))
                    pending.add(rid)
                while pending:
                    message = json.loads(await ws.recv())
                    if message.get("type") == "result" and message.get("id") in pending:
                        ledger.results[message["id"]] = message
                        pending.discard(message["id"])
    except Exception:  # the kill closes the connection mid-flight; what was acknowledged is in the ledger
        return


async def _seller(server, listings, ledger, stop):
    """Opens more listings while the bidders run, recording each result (the opens are checked like bids)."""
    try:
        async with _connect(server, "seller", "seller") as ws:
            hello = await _hello(ws)
            while not stop.is_set():
                rid = unique("o")
                listing = unique("C")
                message = {"type": "open", "id": rid, "listing": listing, "format": "english", "start": 100,
                           "closes_at": hello["server_time"] + 3_600_000, "increments": [[0, 1]]}
                ledger.sent[rid] = ("seller", message)
                await ws.send(json.dumps(message))
                while rid not in ledger.results:
                    answer = json.loads(await ws.recv())
                    if answer.get("type") == "result":
                        ledger.results[answer["id"]] = answer
    except Exception:
        return


async def _open_listings(server, count):
    listings = [unique("C") for _ in range(count)]
    async with _connect(server, "seller", "seller") as ws:
        hello = await _hello(ws)
        for listing in listings:
            message = {"type": "open", "id": unique("o"), "listing": listing, "format": "english", "start": 100,
                       "closes_at": hello["server_time"] + 3_600_000, "increments": [[0, 1]]}
            await ws.send(json.dumps(message))
            while True:
                answer = json.loads(await ws.recv())
                if answer.get("type") == "result":
                    if not answer.get("ok"):
                        raise CycleError(f"open failed: {answer}")
                    break
    return listings


async def _load(server, rng, kill_after):
    """Opens listings, drives them with BIDDERS connections and a seller, and kills the server after
    `kill_after` seconds of load. Returns the listings and the ledger."""
    listings = await _open_listings(server, LISTINGS)
    ledger = Ledger()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_bidder(server, i, listings, ledger, stop, random.Random(rng.random())))
             for i in range(BIDDERS)]
    tasks.append(asyncio.create_task(_seller(server, listings, ledger, stop)))
    await asyncio.sleep(kill_after)
    server.process.kill()  # SIGKILL, at once, while commands are in flight
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    _kill(server)
    return listings, ledger


async def _resend(server, ledger, rids):
    """Sends the commands `rids` again, each on a connection of its principal; returns their new results."""
    by_sub = {}
    for rid in rids:
        sub, message = ledger.sent[rid]
        by_sub.setdefault(sub, []).append(message)
    results = {}

    async def one(sub, messages):
        role = "seller" if sub == "seller" else "bidder"
        async with _connect(server, sub, role) as ws:
            await _hello(ws)
            for start in range(0, len(messages), 64):
                chunk = messages[start:start + 64]
                wanted = {m["id"] for m in chunk}
                for m in chunk:
                    await ws.send(json.dumps(m))
                while wanted:
                    answer = json.loads(await asyncio.wait_for(ws.recv(), 20))
                    if answer.get("type") == "result" and answer.get("id") in wanted:
                        results[answer["id"]] = answer
                        wanted.discard(answer["id"])

    await asyncio.gather(*(one(sub, messages) for sub, messages in by_sub.items()))
    return results


async def _bid_counts(server, listings):
    async with connect(server.ws_url(), compression=None, proxy=None, open_timeout=10, max_size=None) as ws:
        await _hello(ws)
        counts = {}
        for listing in listings:
            await ws.send(json.dumps({"type": "subscribe", "listing": listing}))
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if message.get("type") == "snapshot" and message.get("listing") == listing:
                    state = message["state"]
                    if state is None:
                        raise CycleError(f"listing {listing} (acknowledged open) is missing after recovery")
                    counts[listing] = state["bids"]
                    break
        return counts


def _same_result(first, again):
    keys = set(first) | set(again)
    keys -= {"duplicate", "ts"}  # ts: when the answer was written
    return all(first.get(k) == again.get(k) for k in keys)


async def _verify(server, listings, ledger):
    """Checks the recovered state against `ledger`; returns (acknowledged, unacknowledged found durable,
    unacknowledged applied now)."""
    acknowledged = ledger.acknowledged()
    counts = await _bid_counts(server, listings)
    again = await _resend(server, ledger, list(acknowledged))
    for rid, first in acknowledged.items():
        second = again[rid]
        if second.get("duplicate") is not True or not _same_result(first, second):
            raise CycleError(f"acknowledged {rid} {ledger.sent[rid][1]} was {first}, after recovery {second}")
    refused = ledger.refused_by_gateway()
    for rid, second in (await _resend(server, ledger, refused)).items():
        if second.get("duplicate"):
            raise CycleError(f"{rid}, refused by the gateway with {ledger.results[rid]['error']}, is in the state")
    unacknowledged = ledger.unacknowledged()
    late = await _resend(server, ledger, unacknowledged)
    durable = {rid for rid, r in late.items() if r.get("duplicate") is True}
    for listing in listings:
        def accepted(rids):
            return sum(1 for rid in rids
                       if ledger.sent[rid][1].get("listing") == listing and ledger.sent[rid][1]["type"] == "bid"
                       and (acknowledged.get(rid) or late.get(rid, {})).get("ok"))
        expected = accepted(acknowledged) + accepted(durable)
        if counts[listing] != expected:
            raise CycleError(
                f"listing {listing} holds {counts[listing]} bids after recovery; acknowledged accepted bids and "
                f"unacknowledged ones found durable add up to {expected}")
    return len(acknowledged), len(durable), len(unacknowledged) - len(durable)


def _kill(server):
    """SIGKILL and reap (a process blocked in an fsync on a busy disk takes the signal when the fsync returns)."""
    if server.process.poll() is None:
        server.process.kill()
    server.process.wait(60)
    server.log.close()


def run_cycles(binary, data_dir, log_path, cycles, seed, report=print):
    """Runs `cycles` crash cycles on `data_dir`; raises CycleError at the first violation. Returns the totals.

    Each server started after a kill first checks the killed run's commands, then takes the next load and is killed
    in turn; the last one checks and then stops gracefully (SIGTERM)."""
    rng = random.Random(seed)
    totals = {"cycles": 0, "acknowledged": 0, "durable_unacknowledged": 0, "lost_unacknowledged": 0}
    server = Server(binary, data_dir, log_path, LIMITS).start()
    killed = None
    try:
        for cycle in range(1, cycles + 2):
            if killed is not None:
                listings, ledger, kill_after = killed
                acked, durable, lost = asyncio.run(_verify(server, listings, ledger))
                totals["cycles"] += 1
                totals["acknowledged"] += acked
                totals["durable_unacknowledged"] += durable
                totals["lost_unacknowledged"] += lost
                report(f"cycle {cycle - 1}: killed after {kill_after:.2f} s; {acked} acknowledged commands all "
                       f"recovered; {durable} unacknowledged found durable, {lost} never applied; none twice")
            if cycle > cycles:
                break
            kill_after = rng.uniform(0.2, 1.0)
            listings, ledger = asyncio.run(_load(server, rng, kill_after))
            killed = (listings, ledger, kill_after)
            server = Server(binary, data_dir, log_path, LIMITS).start()
        code = server.stop(timeout=60)
        if code != 0:
            raise CycleError(f"the last server exited with {code} on SIGTERM:\n{server.log_tail()}")
    finally:
        if server.process is not None and server.process.poll() is None:
            _kill(server)
    return totals


if __name__ == "__main__":
    import argparse
    import os
    import shutil
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cycles", type=int)
    parser.add_argument("--binary", required=True)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else int(time.time())
    work = tempfile.mkdtemp(prefix="gavel-crash-loop-")
    started = time.monotonic()
    print(f"crash-loop: {args.cycles} cycles, seed {seed}, binary {args.binary}", flush=True)
    try:
        totals = run_cycles(args.binary, os.path.join(work, "data"), os.path.join(work, "serve.log"),
                            args.cycles, seed, report=lambda line: print(line, flush=True))
    except Exception as error:
        print(f"crash-loop: FAILED (seed {seed}; data and serve.log kept in {work}): {error!r}", flush=True)
        raise SystemExit(1)
    shutil.rmtree(work)
    print(f"crash-loop: {totals['cycles']} cycles passed in {time.monotonic() - started:.0f} s: "
          f"{totals['acknowledged']} acknowledged commands all recovered exactly once; "
          f"{totals['durable_unacknowledged']} unacknowledged found durable, "
          f"{totals['lost_unacknowledged']} never applied", flush=True)
