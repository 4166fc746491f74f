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

    pay = subprocess.run(
        [gavel_bin, "send", "--role", "service", "--sub", "payments", "--jwt-secret", server.secret,
         "--url", server.ws_url(), "--timeout-ms", "200",
         json.dumps({"type": "confirm_payment", "settlement": sid, "payment_ref": "pay-web-1"})],
        capture_output=True, text=True, timeout=30)
    assert pay.returncode == 0, pay.stderr
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
