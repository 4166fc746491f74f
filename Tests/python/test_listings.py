"""`list` over the WebSocket, and `POST /token` in local mode."""

from support import now_ms, open_english, request_id


def listing_ids(answer):
    return [item["listing"] for item in answer["listings"]]


def ask(client, **fields):
    rid = request_id("q")
    client.send({"type": "list", "id": rid, **fields})
    return client.expect(lambda m: m.get("id") == rid and m.get("type") in ("listings", "result"), what=f"list {rid}")


def test_list_after_opening_three_listings_one_of_them_closed(start_server):
    server = start_server()
    with server.user("sam", "seller") as sam:
        assert open_english(sam, "A1", start=100)["ok"]
        assert open_english(sam, "A3", start=300)["ok"]
        sam.subscribe("A2")
        assert open_english(sam, "A2", start=200, closes_in_ms=300)["ok"]
        closed = sam.event("A2", "closed", timeout=10)
        assert closed["winner"] is None

        answer = ask(sam)
        assert answer["type"] == "listings" and answer["status"] == "open" and answer["next"] is None
        assert listing_ids(answer) == ["A1", "A3"]
        first = answer["listings"][0]
        assert first["format"] == "english" and first["seller"] == "sam" and first["status"] == "open"
        assert first["price"] == 100 and first["bids"] == 0 and first["seq"] == 1
        assert first["closes_at"] > now_ms() and isinstance(answer["ts"], int)

        everything = ask(sam, status="all")
        assert listing_ids(everything) == ["A1", "A2", "A3"]
        assert [item["status"] for item in everything["listings"]] == ["open", "closed", "open"]

        # Paging: `next` is the cursor for `after`, null on the last page.
        page = ask(sam, status="all", limit=2)
        assert listing_ids(page) == ["A1", "A2"] and page["next"] == "A2"
        page = ask(sam, status="all", limit=2, after=page["next"])
        assert listing_ids(page) == ["A3"] and page["next"] is None


def test_anonymous_watcher_can_list_and_sealed_listings_show_no_amounts(start_server):
    server = start_server()
    with server.user("sam", "seller") as sam:
        closes = sam.hello["server_time"] + 600_000
        assert sam.command({"type": "open", "listing": "S1", "format": "sealed", "pricing": "second", "start": 100,
                            "reserve": 4321, "closes_at": closes})["ok"]
        assert open_english(sam, "E1", start=100, reserve=9876)["ok"]
    with server.user("ann") as ann:
        assert ann.command({"type": "bid", "listing": "S1", "amount": 7777})["ok"]
        assert ann.command({"type": "bid", "listing": "E1", "amount": 5555})["ok"]
    with server.connect() as anonymous:
        assert anonymous.hello["role"] == "watcher"
        answer = ask(anonymous)
        assert listing_ids(answer) == ["E1", "S1"]
        english, sealed = answer["listings"]
        assert english["price"] == 100 and english["bids"] == 1
        assert sealed["price"] is None and sealed["bids"] == 1
        # The clock fields (`ts`, `closes_at`, `opens_at`) may hold any digits, so only the other values are searched.
        clock = {"ts", "closes_at", "opens_at"}
        text = str([{k: v for k, v in item.items() if k not in clock} for item in answer["listings"]])
        for secret in ("7777", "5555", "4321", "9876", "ann"):
            assert secret not in text


def test_list_bad_fields_are_bad_requests_naming_the_field(server):
    with server.connect() as client:
        for fields, name in [({"status": "closed"}, "status"), ({"limit": 0}, "limit"), ({"limit": 101}, "limit"),
                             ({"after": "no spaces"}, "after")]:
            answer = ask(client, **fields)
            assert answer["type"] == "result" and answer["error"] == "bad_request", answer
            assert answer["message"].startswith(name), answer
        assert ask(client, limit=100)["type"] == "listings"  # the connection stays open


def test_a_read_with_an_id_that_is_not_a_string_is_a_bad_request_as_a_command_is(server):
    with server.user("ann") as client:
        for message in ({"type": "list", "id": 7}, {"type": "subscribe", "listing": "L", "id": [1]},
                        {"type": "bid", "id": 7, "listing": "L", "amount": 500}):
            client.send(message)
            answer = client.expect(lambda m: m.get("type") == "result", what=f"the answer to {message}")
            assert answer["id"] is None and answer["error"] == "bad_request", answer
            assert answer["message"].startswith("id must be a string, not "), answer
        client.send({"type": "list", "id": None})  # null: as if absent
        answer = client.expect(lambda m: m.get("type") in ("listings", "result"), what="the list's answer")
        assert answer["type"] == "listings" and "id" not in answer, answer


def test_list_counts_against_the_rate_limit(start_server):
    server = start_server("--rate", "1", "--rate-burst", "2")
    with server.connect() as client:
        for _ in range(3):
            client.send({"type": "list", "id": "same"})
        kinds = [client.expect(lambda m: m.get("id") == "same", what="answer")["type"] for _ in range(3)]
        assert kinds == ["listings", "listings", "result"]


def test_token_from_the_page_port_in_local_mode_can_bid(start_server):
    server = start_server(secret=None)  # no --jwt-secret: local mode
    status, info = server.http_get("/token")
    assert status == 200
    sam_token = server.local_token("sam", "seller")
    status, answer = server.http_post_json("/token", {"sub": "ann", "role": "bidder"}, headers=server.code_header())
    assert status == 200 and answer["sub"] == "ann" and answer["role"] == "bidder"
    expires_in = answer["expires_at"] - now_ms()
    assert 3590_000 <= expires_in <= 3600_000
    with server.connect(sam_token) as sam, server.connect(answer["token"]) as ann:
        assert sam.hello["principal"] == "sam" and sam.hello["role"] == "seller"
        assert ann.hello["principal"] == "ann" and ann.hello["role"] == "bidder"
        assert open_english(sam, "T1", start=100)["ok"]
        result = ann.command({"type": "bid", "listing": "T1", "amount": 500})
        assert result["ok"] and result["leading"]
    # The token is signed with the key `gavel token` also uses.
    with open(server.data_dir + "/jwt-secret") as f:
        assert f.read().strip()


def test_token_refuses_service_and_watcher_roles_and_bad_names(start_server):
    server = start_server(secret=None)
    for role in ("service", "watcher"):
        status, answer = server.http_post_json("/token", {"sub": "ops", "role": role}, headers=server.code_header())
        assert status == 400 and f"role {role} is not issued here" in answer["error"]
    for body in ({"sub": "a b", "role": "bidder"}, {"sub": "x" * 65, "role": "bidder"}, {"role": "seller"},
                 {"sub": "ann", "role": "king"}, "not json"):
        status, answer = server.http_post_json("/token", body, headers=server.code_header())
        assert status == 400, body
    status, _ = server.http_post_json("/token", {"sub": "ann", "role": "bidder"}, headers={"Host": "evil.example"})
    assert status == 404


def test_token_ttl_is_configurable(start_server):
    server = start_server("--local-token-ttl-seconds", "120", secret=None)
    status, answer = server.http_post_json("/token", {"sub": "ann", "role": "bidder"}, headers=server.code_header())
    assert status == 200 and 110_000 <= answer["expires_at"] - now_ms() <= 120_000


def test_token_is_404_when_a_secret_is_given(server, start_server):
    status, _ = server.http_post_json("/token", {"sub": "ann", "role": "bidder"})
    assert status == 404
    assert server.http_get("/token")[0] == 404
    from_env = start_server(secret=None, env={"GAVEL_JWT_SECRET": "from-the-environment-0123456789abcdef"})
    assert from_env.http_post_json("/token", {"sub": "ann", "role": "bidder"})[0] == 404
