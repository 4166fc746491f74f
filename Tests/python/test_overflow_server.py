"""The audit's overflow through a real server: 9,224 resting buy orders of 10^15 at one price would take the level's
total past Int64.max. The order that would pass it is refused with `limit_exceeded`, the server stays up, and after
a `kill -9` it recovers the same level and refuses the same way again."""

from support import now_ms, unique

QUANTITY = 10**15
INT64_MAX = 2**63 - 1
FITS = INT64_MAX // QUANTITY  # 9,223 orders of 10^15 fit at one price; the 9,224th does not
TRADERS = 4
WAVE = 2_048

# Limits that admit the burst: every order counts against the connection's and the principal's rate, and rests
# (each trader holds about 2,300 orders on the listing, past the default cap of 1,000 per trader).
RAISED = ("--rate", "100000", "--rate-burst", "100000", "--principal-rate", "100000",
          "--principal-rate-burst", "100000", "--max-resting-orders-per-trader", "10000", "--fsync", "none")


def book(client, listing):
    state = client.subscribe(listing)["state"]
    assert state is not None and state["format"] == "market", state
    return state


def test_the_order_that_would_take_a_level_past_int64_max_is_refused_and_survives_kill_9(start_server, tmp_path):
    data = tmp_path / "overflow"
    srv = start_server(*RAISED, data_dir=data)
    listing = unique("M")
    traders = [srv.user(f"trader{n}") for n in range(TRADERS)]
    try:
        with srv.user("svc", "service") as svc:
            opened = svc.command({"type": "open", "listing": listing, "seller": "exchange", "format": "market",
                                  "closes_at": now_ms() + 3_600_000})
            assert opened["ok"], opened
        # Pipelined in waves of WAVE: every connection sends its share of a wave before any answer is read. A wave
        # stays within the listing's queue (4,096 commands), so no order is refused `overloaded` however slowly the
        # writer drains it on a busy machine.
        total = FITS + 1
        answers = []
        for start in range(0, total, WAVE):
            sent = {n: [] for n in range(TRADERS)}
            for i in range(start, min(start + WAVE, total)):
                n = i % TRADERS
                rid = f"q{i}"
                traders[n].send({"type": "order", "id": rid, "listing": listing, "side": "buy", "price": 1,
                                 "quantity": QUANTITY})
                sent[n].append(rid)
            answers += [traders[n].result(rid, timeout=60) for n in range(TRADERS) for rid in sent[n]]
        accepted = [a for a in answers if a["ok"]]
        refused = [a for a in answers if not a["ok"]]
        assert len(accepted) == FITS, [a for a in refused if a["error"] != "limit_exceeded"][:3]
        assert len(refused) == 1 and refused[0]["error"] == "limit_exceeded", refused[:3]
        assert str(FITS * QUANTITY) in refused[0]["message"], refused[0]
        # Still alive: it answers a subscribe with the level's total, the largest that fits.
        with srv.connect() as watcher:
            state = book(watcher, listing)
            assert state["best_bid"] == 1 and state["bid_quantity"] == FITS * QUANTITY, state
    finally:
        for trader in traders:
            trader.close()
    assert srv.process.poll() is None, "the server died"

    srv.kill9()
    again = start_server(*RAISED, data_dir=data)
    with again.connect() as watcher, again.user("trader0") as trader:
        state = book(watcher, listing)
        assert state["best_bid"] == 1 and state["bid_quantity"] == FITS * QUANTITY, state
        retry = trader.command({"type": "order", "listing": listing, "side": "buy", "price": 1,
                                "quantity": QUANTITY})
        assert retry["error"] == "limit_exceeded" and str(INT64_MAX - FITS * QUANTITY) in retry["message"], retry
        elsewhere = trader.command({"type": "order", "listing": listing, "side": "buy", "price": 2,
                                    "quantity": QUANTITY})
        assert elsewhere["ok"], elsewhere
        update = watcher.event(listing, "book")
        assert update["best_bid"] == 2 and update["bid_quantity"] == QUANTITY, update
    assert again.process.poll() is None, "the recovered server died"
