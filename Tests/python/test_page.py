"""The page at `/` in a real browser: headless Chromium driven over the DevTools protocol (CDP)."""

import json
import os
import shutil
import subprocess
import time

import pytest

from support import mint_token, open_english, raw_connect, unique


def chromium_binary():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium; each `page()` lives in its own browser context (its own localStorage)."""

    def __init__(self, binary, profile, extra_args=()):
        self.process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", *extra_args, "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.monotonic() + 30
        while True:
            if os.path.exists(port_file):
                lines = open(port_file).read().split()
                if len(lines) >= 2:
                    break
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.05)
        self.ws = raw_connect(f"ws://127.0.0.1:{lines[0]}{lines[1]}")
        self.next_id = 0

    def call(self, method, params=None, session=None, timeout=15):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def page(self, url):
        context = self.call("Target.createBrowserContext")["browserContextId"]
        target = self.call("Target.createTarget", {"url": url, "browserContextId": context})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        return Page(self, session)

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Page:
    def __init__(self, browser, session):
        self.browser = browser
        self.session = session

    def js(self, expression):
        result = self.browser.call("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": True}, self.session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, expression, timeout=15, what=None):
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.js(expression)
            except RuntimeError:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or expression}; page: {self.summary()}")
            time.sleep(0.1)

    def text(self, element_id):
        return self.js(f"document.getElementById({json.dumps(element_id)}).textContent")

    def summary(self):
        ids = ["conn-status", "who", "price", "leader", "bids", "countdown", "bid-status", "token-status"]
        try:
            return {i: self.text(i) for i in ids}
        except RuntimeError as e:
            return str(e)

    def fill(self, element_id, value):
        self.js(f"document.getElementById({json.dumps(element_id)}).value = {json.dumps(value)}")

    def click(self, element_id):
        self.js(f"document.getElementById({json.dumps(element_id)}).click()")


@pytest.fixture
def browser(tmp_path):
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no chromium on PATH (scripts/test installs Debian's chromium package)")
    b = Browser(binary, str(tmp_path / "chromium-profile"))
    yield b
    b.close()


def pick_from_list(page, listing):
    """Clicks `listing` in the page's list of open listings."""
    item = f"document.querySelector('#open-listings li[data-listing={json.dumps(listing)}]')"
    page.wait(f"!!{item}", what=f"{listing} in the list of open listings")
    page.js(f"{item}.click()")
    page.wait(f"document.getElementById('live-id').textContent === {json.dumps(listing)}", what=f"{listing} shown")


def test_bid_on_one_page_updates_the_other_live_and_survives_a_drop(start_server, browser):
    server = start_server(secret=None)  # local mode: the page gets its token from /token, with the local code
    listing = unique()
    with server.connect(server.local_token("sam", "seller")) as sam:
        assert open_english(sam, "A-other", start=300, closes_in_ms=300_000)["ok"]
        assert open_english(sam, listing, start=100, closes_in_ms=300_000)["ok"]
    url = f"http://127.0.0.1:{server.port}/"
    bidder = browser.page(url + "#code=" + server.local_code())  # the address gavel serve prints
    watcher = browser.page(url)

    watcher.wait("document.getElementById('conn-status').textContent === 'live'", what="watcher connected")
    # Without the code in its address, the page asks for it and gets no token without it.
    watcher.wait("!document.getElementById('token-form').classList.contains('hidden')", what="the token form")
    assert not watcher.js("document.getElementById('token-code-row').classList.contains('hidden')")
    watcher.fill("token-name", "eve")
    watcher.js("document.getElementById('token-form').requestSubmit()")
    watcher.wait("document.getElementById('token-status').textContent.includes('local code')", what="asks for the code")
    pick_from_list(watcher, listing)
    assert watcher.js("document.querySelectorAll('#open-listings li').length") == 2
    watcher.wait("document.getElementById('bids').textContent === '0'", what="watcher snapshot")
    assert watcher.text("price") == "1.00"
    countdown = watcher.wait("/^[45]:\\d\\d$/.test(document.getElementById('countdown').textContent) && "
                             "document.getElementById('countdown').textContent", what="countdown near 5:00")
    minutes, seconds = countdown.split(":")
    assert 270 <= int(minutes) * 60 + int(seconds) <= 300, countdown  # in step with the server's clock

    bidder.wait("document.getElementById('conn-status').textContent === 'live'", what="bidder connected")
    bidder.wait("!document.getElementById('token-form').classList.contains('hidden')", what="the token form")
    assert bidder.js("document.getElementById('token-entry').classList.contains('hidden')")
    # The code left the address bar for this tab's sessionStorage, so the form does not ask for it.
    assert bidder.js("location.hash") == ""
    assert bidder.js("document.getElementById('token-code-row').classList.contains('hidden')")
    bidder.fill("token-name", "ann")
    bidder.fill("token-role", "bidder")
    bidder.js("document.getElementById('token-form').requestSubmit()")
    bidder.wait("document.getElementById('who').textContent.startsWith('ann')", what="signed in as ann")
    pick_from_list(bidder, listing)
    bidder.wait("!document.getElementById('bid-button').disabled", what="bidding enabled")

    bidder.fill("bid-amount", "7.50")
    bidder.click("bid-button")
    bidder.wait("document.getElementById('bid-status').textContent.includes('You lead')", what="bid accepted")

    watcher.wait("document.getElementById('leader').textContent === 'ann'", what="leader on the other page")
    assert watcher.text("bids") == "1" and watcher.text("price") == "1.00"
    assert "bid placed" in watcher.js("document.getElementById('history').textContent")

    # A bid below the minimum shows the minimum and offers it.
    bidder.fill("bid-amount", "7.50")
    bidder.click("bid-button")
    bidder.wait("document.getElementById('bid-status').textContent.includes('minimum bid is 7.51')",
                what="min_bid shown")
    assert bidder.js("document.getElementById('bid-amount').value") == "7.51"

    # The watcher drops; a bid lands meanwhile; it reconnects and resumes from its last seq.
    watcher.js("window.gavel.ws.close()")
    with server.connect(server.local_token("bob", "bidder")) as bob:
        assert bob.command({"type": "bid", "listing": listing, "amount": 2000})["ok"]
    watcher.wait("document.getElementById('leader').textContent === 'bob'", what="resumed after a drop")
    assert watcher.text("bids") == "2" and watcher.js("window.gavel.lastSeq") == 3
    assert watcher.js("document.querySelectorAll('#history li').length") == 2
    bidder.wait("document.getElementById('toast').textContent.includes('Outbid')", what="outbid notice")


def test_seller_opens_a_listing_from_the_page_on_a_phone_screen(server, browser):
    listing = unique()
    phone = browser.page(f"http://127.0.0.1:{server.port}/")
    browser.call("Emulation.setDeviceMetricsOverride",
                 {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}, phone.session)
    phone.wait("document.getElementById('conn-status').textContent === 'live'", what="connected")
    # This server has --jwt-secret: no /token, so the page asks for a pasted token.
    assert server.http_get("/token")[0] == 404
    time.sleep(0.3)
    assert phone.js("document.getElementById('token-form').classList.contains('hidden')")
    assert not phone.js("document.getElementById('token-entry').classList.contains('hidden')")
    phone.fill("token-input", mint_token("sue", "seller", secret=server.secret))
    phone.click("token-save")
    phone.wait("!document.getElementById('sell-card').classList.contains('hidden')", what="the sell form")
    phone.fill("sell-id", listing)
    phone.fill("sell-start", "2.50")
    phone.fill("sell-minutes", "10")
    phone.js("document.getElementById('sell-form').requestSubmit()")
    phone.wait(f"document.getElementById('live-id').textContent === {json.dumps(listing)} && "
               "document.getElementById('live-status').textContent === 'open'", what="the new listing shown live")
    assert phone.text("price") == "2.50" and phone.text("leader") == "–"
    # One column: the live listing comes first, and nothing is wider than the screen.
    assert phone.js("document.getElementById('live').getBoundingClientRect().top < "
                    "document.getElementById('listings').getBoundingClientRect().top")
    assert phone.js("document.documentElement.scrollWidth") <= 390
    # The list of open listings is refreshed after the open (the shared server may hold more than one page).
    phone.wait("document.querySelectorAll('#open-listings li').length > 0", what="open listings listed")
    with server.connect() as watcher:
        state = watcher.subscribe(listing)["state"]
        assert state["seller"] == "sue" and state["terms"]["start"] == 250 and state["status"] == "open"
