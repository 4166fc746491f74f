"""The page's "My transactions" panel in headless Chromium: a buyer and a seller, each in a browser context of their
own, take a sale from the buy-now to completion, with `gavel send --role service` playing the payment backend."""

import json
import subprocess

from support import mint_token, open_english, unique
from test_page import browser  # noqa: F401 (the fixture)


def signed_in(page, sub, role, secret):
    page.wait("document.getElementById('conn-status').textContent === 'live'", what="connected")
    page.fill("token-input", mint_token(sub, role, secret=secret))
    page.click("token-save")
    page.wait(f"document.getElementById('who').textContent.startsWith({json.dumps(sub)})", what=f"signed in as {sub}")
    page.wait("!document.getElementById('tx-card').classList.contains('hidden')", what="the transactions panel")


def item(settlement):
    return f"document.querySelector('#tx-list li[data-settlement={json.dumps(settlement)}]')"


def wait_state(page, settlement, state):
    page.wait(f"{item(settlement)} && {item(settlement)}.dataset.state === {json.dumps(state)}",
              what=f"{settlement} {state} on the page")


def send(gavel_bin, server, role, sub, message):
    """`gavel send` with a token it signs for `sub` in `role`; returns its exit status and output."""
    run = subprocess.run(
        [gavel_bin, "send", "--role", role, "--sub", sub, "--jwt-secret", server.secret, "--url", server.ws_url(),
         "--timeout-ms", "200", json.dumps(message)], capture_output=True, text=True, timeout=30)
    return run.returncode, run.stdout + run.stderr


def test_buyer_and_seller_take_a_sale_to_completion_from_the_page(server, browser, gavel_bin):  # noqa: F811
    listing, seller_name, buyer_name = unique(), unique("sam"), unique("ann")  # the server is shared
    sid = f"{listing}:1"
    with server.user(seller_name, "seller") as sam:
        assert open_english(sam, listing, start=100, buy_now=2500, complaint_window_ms=2000)["ok"]
    url = f"http://127.0.0.1:{server.port}/#{listing}"
    seller, buyer = browser.page(url), browser.page(url)
    signed_in(seller, seller_name, "seller", server.secret)
    signed_in(buyer, buyer_name, "bidder", server.secret)
    assert buyer.js("document.getElementById('tx-list').children.length") == 0

    buyer.wait("!document.getElementById('buy-now-button').classList.contains('hidden')", what="the buy-now button")
    buyer.click("buy-now-button")
    for page in (seller, buyer):
        wait_state(page, sid, "awaiting_payment")
    assert f"you buy from {seller_name}" in buyer.js(f"{item(sid)}.textContent")
    assert f"you sell to {buyer_name}" in seller.js(f"{item(sid)}.textContent")
    assert "due in" in buyer.wait(f"{item(sid)}.querySelector('.due').textContent", what="a countdown")

    status, output = send(gavel_bin, server, "service", "payments",
                          {"type": "confirm_payment", "settlement": sid, "payment_ref": "pay-web-1"})
    assert status == 0, output
    for page in (seller, buyer):
        wait_state(page, sid, "paid")
    assert buyer.js(f"{item(sid)}.querySelector('button')") is None  # nothing for the buyer to do now

    seller.js(f"{item(sid)}.querySelector('input[data-field=tracking]').value = 'TRK-77'")
    seller.js(f"{item(sid)}.querySelector('button[data-action=mark_shipped]').click()")
    for page in (seller, buyer):
        wait_state(page, sid, "shipped")
    assert "tracking TRK-77" in buyer.js(f"{item(sid)}.textContent")

    buyer.js(f"{item(sid)}.querySelector('button[data-action=confirm_delivery]').click()")
    for page in (seller, buyer):
        wait_state(page, sid, "delivered")
    assert buyer.js(f"!!{item(sid)}.querySelector('button[data-action=open_dispute]')")
    for page in (seller, buyer):
        wait_state(page, sid, "completed")
    steps = buyer.js(f"{item(sid)}.querySelectorAll('ol li').length")
    assert steps == 5
    buyer.wait("document.getElementById('toast').textContent.includes('completed')", what="a live toast")


def test_a_buyer_disputes_from_the_page_and_the_dispute_desk_refunds_with_gavel_send(server, browser, gavel_bin):  # noqa: F811
    listing, seller_name, buyer_name = unique(), unique("sam"), unique("ann")
    sid = f"{listing}:1"
    with server.user(seller_name, "seller") as sam, server.user(buyer_name) as ann:
        assert open_english(sam, listing, start=100, buy_now=900)["ok"]
        assert ann.command({"type": "buy_now", "listing": listing})["ok"]
    status, output = send(gavel_bin, server, "service", "payments",
                          {"type": "confirm_payment", "settlement": sid, "payment_ref": "pay-web-2"})
    assert status == 0, output
    with server.user(seller_name, "seller") as sam, server.user(buyer_name) as ann:
        assert sam.command({"type": "mark_shipped", "settlement": sid, "tracking": "TRK-8"})["ok"]
        assert ann.command({"type": "confirm_delivery", "settlement": sid})["ok"]
    url = f"http://127.0.0.1:{server.port}/"
    seller, buyer = browser.page(url), browser.page(url)
    signed_in(seller, seller_name, "seller", server.secret)
    signed_in(buyer, buyer_name, "bidder", server.secret)
    # Both pages: each loads its list on its own, and the seller's may come second.
    for page in (buyer, seller):
        wait_state(page, sid, "delivered")
    assert seller.js(f"{item(sid)}.querySelector('button')") is None  # the seller has nothing to press

    buyer.js(f"{item(sid)}.querySelector('button[data-action=open_dispute]').click()")
    buyer.wait("document.getElementById('tx-status').textContent.includes('reason')", what="asks for a reason")
    buyer.js(f"{item(sid)}.querySelector('input[data-field=reason]').value = 'the box was empty'")
    buyer.js(f"{item(sid)}.querySelector('button[data-action=open_dispute]').click()")
    for page in (seller, buyer):
        wait_state(page, sid, "disputed")
    assert "the box was empty" in seller.js(f"{item(sid)}.textContent")

    status, output = send(gavel_bin, server, "admin", "desk",
                          {"type": "resolve_dispute", "settlement": sid, "outcome": "refund"})
    assert status == 0, output
    for page in (seller, buyer):
        wait_state(page, sid, "refunded")
    assert "refunded by desk (refund)" in buyer.js(f"{item(sid)}.textContent")


def test_the_seller_offers_a_second_chance_from_the_page_and_the_runner_up_accepts_it(server, browser):  # noqa: F811
    listing, seller_name, winner_name, runner_name = unique(), unique("sam"), unique("ann"), unique("bob")
    with server.user(seller_name, "seller") as sam, server.user(winner_name) as ann, server.user(runner_name) as bob:
        assert open_english(sam, listing, start=100, closes_in_ms=1500, payment_due_ms=300,
                            increments=[[0, 1]])["ok"]
        assert bob.command({"type": "bid", "listing": listing, "amount": 450})["ok"]
        assert ann.command({"type": "bid", "listing": listing, "amount": 900})["ok"]
    url = f"http://127.0.0.1:{server.port}/"
    seller, runner = browser.page(url), browser.page(url)
    signed_in(seller, seller_name, "seller", server.secret)
    signed_in(runner, runner_name, "bidder", server.secret)
    wait_state(seller, f"{listing}:1", "payment_expired")
    seller.js(f"{item(f'{listing}:1')}.querySelector('button[data-action=offer_second_chance]').click()")
    offer = f"document.querySelector('#tx-list li[data-offer={json.dumps(listing)}]')"
    runner.wait(f"!!{offer} && {offer}.textContent.includes('4.50')", what="the offer on the runner-up's page")
    runner.js(f"{offer}.querySelector('button[data-action=accept_offer]').click()")
    for page in (seller, runner):
        wait_state(page, f"{listing}:2", "awaiting_payment")
    assert f"you buy from {seller_name}" in runner.js(f"{item(f'{listing}:2')}.textContent")
    assert runner.js(f"{item(f'{listing}:1')}") is None  # the first sale was never the runner-up's
