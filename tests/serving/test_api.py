"""End to end over HTTP: each route, fallbacks, auth and bad input against the real server."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import redis

from features.dataset import load_dataset
from features.keys import Keys
from tests.deploy import KEYS, Deployment, make_deployment
from tests.waiting import PATIENCE


def recs(dep: Deployment, customer: str, **params: object) -> dict:  # type: ignore[type-arg]
    with dep.client() as c:
        r = c.get(f"/v1/customers/{customer}/recommendations", params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def in_stock(dep: Deployment, store: str) -> set[str]:
    stock = load_dataset(dep.data).stock
    assert stock is not None
    rows = stock.filter(
        pc.and_(pc.equal(stock["store_id"], store), pc.greater(stock["quantity"], 0))
    )
    return set(rows["item_id"].to_pylist())


def test_personalized_answer_carries_version_source_and_request_id(deployment: Deployment) -> None:
    body = recs(deployment, "C00000003", limit=5)
    assert body["source"] == "personalized" and body["model_version"] == 1
    assert len(body["items"]) == 5 and len(body["request_id"]) == 32
    assert all(i["name"] and i["category"] and i["price"] > 0 for i in body["items"])
    other = recs(deployment, "C00000004", limit=5)
    assert [i["item_id"] for i in other["items"]] != [i["item_id"] for i in body["items"]]


def test_any_alias_resolves_to_the_customer(deployment: Deployment) -> None:
    aliases = load_dataset(deployment.data).identities.aliases_of("C00000003")
    device = next(a for t, a in aliases if t == "device")
    by_alias = recs(deployment, device, limit=5)
    assert by_alias["customer_id"] == "C00000003"
    assert by_alias["items"] == recs(deployment, "C00000003", limit=5)["items"]


def test_unknown_customer_gets_popular_items_not_an_error(deployment: Deployment) -> None:
    body = recs(deployment, "never-seen-before", limit=4, channel="app")
    assert body["source"] == "popular" and len(body["items"]) == 4
    assert all(i["source"] == "popular" for i in body["items"])


def test_store_and_category_filters(deployment: Deployment) -> None:
    stocked = in_stock(deployment, "S002")
    body = recs(deployment, "C00000005", limit=10, store_id="S002")
    assert body["items"] and {i["item_id"] for i in body["items"]} <= stocked
    category = body["items"][0]["category"]
    only = recs(deployment, "C00000005", limit=5, category=category)
    assert {i["category"] for i in only["items"]} == {category}


def test_purchased_items_are_excluded_by_default(deployment: Deployment) -> None:
    events = load_dataset(deployment.data).events
    bought = events.filter(
        pc.and_(
            pc.equal(events["customer_id"].cast("string"), "C00000006"),
            pc.equal(events["event_type"].cast("string"), "purchase"),
        )
    )
    purchased = set(bought["item_id"].cast("string").to_pylist())
    assert purchased
    shown = {i["item_id"] for i in recs(deployment, "C00000006", limit=30)["items"]}
    assert not shown & purchased
    with_bought = {
        i["item_id"]
        for i in recs(deployment, "C00000006", limit=100, exclude_purchased="false")["items"]
    }
    assert with_bought & purchased


def test_explain_gives_reasons_in_plain_words(deployment: Deployment) -> None:
    body = recs(deployment, "C00000007", limit=5, explain="true", store_id="S001")
    assert all(item["reasons"] for item in body["items"])
    words = " ".join(r for item in body["items"] for r in item["reasons"])
    assert any(w in words for w in ("viewed", "often", "popular", "matches", "bought"))


def test_similar_items_and_a_new_item(deployment: Deployment) -> None:
    with deployment.client() as c:
        similar = c.get("/v1/items/I000010/similar", params={"limit": 5}).json()
        new = c.get("/v1/items/BRAND-NEW-ITEM/similar", params={"limit": 3})
    assert similar["source"] == "similar" and "I000010" not in {
        i["item_id"] for i in similar["items"]
    }
    assert (
        new.status_code == 200
        and new.json()["source"] == "popular"
        and len(new.json()["items"]) == 3
    )


def test_order_complements_never_repeat_the_order_and_respect_stock(deployment: Deployment) -> None:
    order = ["I000010", "I000011"]
    with deployment.client() as c:
        r = c.post(
            "/v1/orders/complements",
            json={"customer_id": "C00000008", "item_ids": order, "limit": 8, "store_id": "S001"},
        )
    assert r.status_code == 200, r.text
    body = r.json()
    ids = [i["item_id"] for i in body["items"]]
    assert len(ids) == 8 and not set(ids) & set(order)
    assert set(ids) <= in_stock(deployment, "S001")
    assert body["items"][0]["source"] == "bought_together"


def test_batch_for_the_email_system(deployment: Deployment) -> None:
    customers = [f"C{i:08d}" for i in range(1, 51)] + ["unknown-x"]
    with deployment.client() as c:
        r = c.post("/v1/recommendations/batch", json={"customer_ids": customers, "limit": 3})
        too_many = c.post("/v1/recommendations/batch", json={"customer_ids": ["C1"] * 1001})
    assert r.status_code == 200
    body = r.json()
    assert body["model_version"] == 1 and len(body["results"]) == 51
    assert body["results"][-1]["source"] == "popular"
    assert too_many.status_code == 400 and "customer_ids" in too_many.text


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_omnirec_batch_exports_a_campaign_with_the_version_on_every_row(
    deployment: Deployment, tmp_path: Path, suffix: str
) -> None:
    customers = [f"C{i:08d}" for i in range(1, 31)] + ["unknown-x"]
    listing = tmp_path / "customers.txt"
    listing.write_text("customer_id\n" + "\n".join(customers) + "\n")
    out = tmp_path / f"campaign.{suffix}"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "batch",
            "--customers",
            str(listing),
            "--out",
            str(out),
            "--limit",
            "4",
        ],
        env={**os.environ, **deployment.env},
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "31 customers" in run.stdout
    table = pq.read_table(out) if suffix == "parquet" else pacsv.read_csv(out)
    assert table.num_rows == 31 * 4
    assert set(table["model_version"].to_pylist()) == {1}
    assert len(set(table["snapshot"].to_pylist())) == 1
    rows = table.to_pylist()
    with deployment.client() as c:
        answers = c.post(
            "/v1/recommendations/batch", json={"customer_ids": customers, "limit": 4}
        ).json()
    for customer, answer in zip(customers, answers["results"], strict=True):
        mine = [r for r in rows if r["customer_id"] == customer]
        assert [r["rank"] for r in mine] == [1, 2, 3, 4]
        assert [r["item_id"] for r in mine] == [i["item_id"] for i in answer["items"]]
        assert [r["source"] for r in mine] == [i["source"] for i in answer["items"]]
        # e-mail ready: what the message shows, as the route answers it
        for row, item in zip(mine, answer["items"], strict=True):
            assert (row["name"], row["category"], row["price"]) == (
                item["name"],
                item["category"],
                item["price"],
            )
            assert row["reason"] == "; ".join(item["reasons"]) and row["reason"]


def test_events_are_acknowledged_with_counts_and_change_the_next_answer(
    deployment: Deployment,
) -> None:
    before = recs(deployment, "C00000009", limit=5)
    target = [f"I{i:06d}" for i in range(150, 156)]  # a block of items the customer never touched
    events = [
        {"customer_id": "C00000009", "item_id": t, "event_type": "add_to_cart", "channel": "web"}
        for t in target
    ]
    events.append(
        {"customer_id": "C00000009", "item_id": "<script>", "event_type": "view", "channel": "web"}
    )
    with deployment.client("events") as c:
        r = c.post("/v1/events/bulk", json={"events": events})
        single = c.post(
            "/v1/events",
            json={
                "customer_id": "C00000009",
                "item_id": "I000150",
                "event_type": "view",
                "channel": "app",
            },
        )
    assert r.status_code == 202 and single.status_code == 202
    assert r.json()["accepted"] == 6 and r.json()["errors"] == [
        {"index": 6, "field": "item_id", "message": "invalid characters or longer than 128"}
    ]
    after = recs(deployment, "C00000009", limit=5)
    assert after["items"] != before["items"]  # folded in without retraining


def test_one_posted_event_changes_the_next_recommendation(deployment: Deployment) -> None:
    before = recs(deployment, "C00000012", limit=10)
    assert before["source"] == "personalized"
    event = {
        "customer_id": "C00000012",
        "item_id": "I000180",
        "event_type": "add_to_cart",
        "channel": "app",
    }
    with deployment.client("events") as c:
        assert c.post("/v1/events", json=event).status_code == 202
    after = recs(deployment, "C00000012", limit=10)
    assert [(i["item_id"], i["score"]) for i in after["items"]] != [
        (i["item_id"], i["score"]) for i in before["items"]
    ]
    assert after["model_version"] == before["model_version"]  # no retraining: folded in


def test_profile_and_lookup_for_the_tablet(deployment: Deployment) -> None:
    email = hashlib.sha256(b"customer3@example.com").hexdigest()
    assert email in {a for _, a in load_dataset(deployment.data).identities.aliases_of("C00000003")}
    with deployment.client("tablet") as c:
        by_email = c.get(
            "/v1/customers/lookup", params={"alias_type": "email", "value": "Customer3@Example.com"}
        ).json()
        profile = c.get("/v1/customers/C00000003/profile").json()
        missing = c.get(
            "/v1/customers/lookup", params={"alias_type": "loyalty_card", "value": "L-nope"}
        ).json()
        for typed in ("<b>x</b>", "a\x00b", "two words"):  # never echoed back as a customer
            refused = c.get(
                "/v1/customers/lookup", params={"alias_type": "loyalty_card", "value": typed}
            )
            assert refused.status_code == 400 and refused.json()["field"] == "value"
            assert typed not in refused.text
    assert by_email["customer_id"] == "C00000003" and by_email["known"]
    assert {a["alias_type"] for a in profile["aliases"]} >= {"device", "phone", "email_sha256"}
    assert profile["activity"] and {a["channel"] for a in profile["activity"]} <= {
        "web",
        "app",
        "store",
    }
    assert missing["known"] is False


def test_auth_scopes(deployment: Deployment) -> None:
    url = f"{deployment.base_url}/v1/customers/C00000003/recommendations"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"X-API-Key": "not-a-real-key-at-all"}).status_code == 401
    assert httpx.get(url, headers={"X-API-Key": KEYS["events"]}).status_code == 403
    assert httpx.get(url, headers={"X-API-Key": KEYS["admin"]}).status_code == 200
    ingest = httpx.post(
        f"{deployment.base_url}/v1/events",
        headers={"X-API-Key": KEYS["recommend"]},
        json={"customer_id": "a", "item_id": "b", "event_type": "view", "channel": "web"},
    )
    assert ingest.status_code == 403
    profile = httpx.get(
        f"{deployment.base_url}/v1/customers/C00000003/profile",
        headers={"X-API-Key": KEYS["recommend"]},
    )
    assert profile.status_code == 403
    assert deployment.log_path is not None
    log = deployment.log_path.read_text()
    assert not any(key in log for key in KEYS.values())


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/customers/C1/recommendations", {"limit": 0}, "limit"),
        ("/v1/customers/C1/recommendations", {"limit": "many"}, "limit"),
        ("/v1/customers/C1/recommendations", {"channel": "fax"}, "channel"),
        ("/v1/customers/C1/recommendations", {"store_id": "S 1;DROP"}, "store_id"),
        ("/v1/customers/bad%20id%3Cx%3E/recommendations", {}, "customer_id"),
        ("/v1/items/I1/similar", {"limit": 101}, "limit"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    deployment: Deployment, path: str, params: dict[str, object], field: str
) -> None:
    with deployment.client() as c:
        r = c.get(path, params=params)
    assert r.status_code == 400, r.text
    assert field in r.text


def test_bad_bodies(deployment: Deployment) -> None:
    with deployment.client("events") as c:
        wrong_type = c.post(
            "/v1/events",
            json={"customer_id": 5, "item_id": "x", "event_type": "view", "channel": "web"},
        )
        not_json = c.post(
            "/v1/events", content=b"{nope", headers={"Content-Type": "application/json"}
        )
        huge = c.post(
            "/v1/events/bulk",
            content=b'{"events": [' + b'{"customer_id":"a"},' * 200_000 + b"{}]}",
            headers={"Content-Type": "application/json"},
        )
    assert wrong_type.status_code == 400 and "customer_id" in wrong_type.text
    assert not_json.status_code == 400
    assert huge.status_code == 413


def test_health_metrics_and_openapi(deployment: Deployment) -> None:
    assert httpx.get(f"{deployment.base_url}/health/live").json() == {"status": "ok"}
    ready = httpx.get(f"{deployment.base_url}/health/ready").json()
    assert ready["status"] == "ok" and ready["redis"] and ready["model_version"] == 1
    metrics = httpx.get(f"{deployment.base_url}/metrics").text
    assert "omnirec_fallbacks_total" in metrics and "omnirec_model_version 1.0" in metrics
    assert "omnirec_requests_total" in metrics
    spec = httpx.get(f"{deployment.base_url}/schema/openapi.json").json()
    operations = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    assert {
        "recommendForCustomer",
        "similarItems",
        "orderComplements",
        "batchRecommendations",
        "postEvent",
        "postEvents",
        "lookupCustomer",
        "customerProfile",
        "liveness",
        "readiness",
    } <= operations


def test_a_retried_event_is_stored_once(deployment: Deployment) -> None:
    event = {
        "customer_id": "C00000021",
        "item_id": "I000031",
        "event_type": "add_to_cart",
        "channel": "app",
        "event_id": "app-7f3a-0001",
    }
    before = _stream_length(deployment)
    with deployment.client("events") as c:
        first = c.post("/v1/events", json=event).json()
        retry = c.post("/v1/events", json=event).json()
        bulk = c.post(
            "/v1/events/bulk", json={"events": [event, {**event, "event_id": "app-7f3a-0002"}]}
        ).json()
    assert (first["accepted"], first["duplicates"]) == (1, 0)
    assert (retry["accepted"], retry["duplicates"]) == (1, 1)
    assert (bulk["accepted"], bulk["duplicates"]) == (2, 1)
    assert _stream_length(deployment) == before + 2  # 0001 once, 0002 once


def _stream_length(deployment: Deployment) -> int:
    import redis

    client = redis.Redis.from_url(deployment.env["REDIS_URL"])
    try:
        prefix = deployment.env["OMNIREC_REDIS_PREFIX"]
        return sum(int(client.xlen(Keys(prefix).stream(n))) for n in range(8))
    finally:
        client.close()


def test_timestamps_far_in_the_future_are_refused(deployment: Deployment) -> None:
    base = {
        "customer_id": "C00000022",
        "item_id": "I000031",
        "event_type": "view",
        "channel": "web",
    }
    with deployment.client("events") as c:
        body = c.post(
            "/v1/events/bulk",
            json={
                "events": [
                    {**base, "timestamp": "2100-01-01T00:00:00Z"},
                    {**base, "timestamp": "9999-12-31T23:59:59-14:00"},
                    {**base, "timestamp": "1969-07-20T20:17:00Z"},
                    {**base, "timestamp": time.time() + 3600},  # an hour of clock skew is fine
                ]
            },
        ).json()
    assert body["accepted"] == 1
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (0, "timestamp"),
        (1, "timestamp"),
        (2, "timestamp"),
    ]
    assert "future" in body["errors"][0]["message"]


def test_scopes_per_route_as_documented(deployment: Deployment) -> None:
    tablet = deployment.headers("tablet")
    with httpx.Client(base_url=deployment.base_url, headers=tablet) as c:
        assert c.get("/v1/customers/C00000003/recommendations").status_code == 200
        assert (
            c.post("/v1/recommendations/batch", json={"customer_ids": ["C00000003"]}).status_code
            == 403
        )
        order = {"customer_id": "C00000003", "item_ids": ["I000010"]}
        assert c.post("/v1/orders/complements", json=order).status_code == 403
    with deployment.client() as c:
        assert (
            c.post("/v1/recommendations/batch", json={"customer_ids": ["C00000003"]}).status_code
            == 200
        )


def test_an_unknown_store_or_a_trailing_newline_is_a_400(deployment: Deployment) -> None:
    with deployment.client() as c:
        store = c.get("/v1/customers/C00000003/recommendations", params={"store_id": "S999"})
        similar = c.get("/v1/items/I000010/similar", params={"store_id": "S999"})
        batch = c.post(
            "/v1/recommendations/batch", json={"customer_ids": ["C00000003"], "store_id": "S999"}
        )
        newline = c.get("/v1/customers/C00000003%0A/recommendations")
        known = c.get("/v1/customers/C00000003/recommendations", params={"store_id": "S001"})
    for answer in (store, similar, batch):
        assert answer.status_code == 400 and answer.json()["field"] == "store_id", answer.text
    assert newline.status_code == 400 and "customer_id" in newline.text
    assert known.status_code == 200


def test_deeply_nested_json_is_a_400(deployment: Deployment) -> None:
    nested = b"[" * 1000 + b"]" * 1000
    with deployment.client("events") as c:
        top = c.post("/v1/events", content=nested, headers={"Content-Type": "application/json"})
        inner = c.post(
            "/v1/events/bulk",
            content=b'{"events": [{"customer_id": ' + nested + b"}]}",
            headers={"Content-Type": "application/json"},
        )
    assert top.status_code == 400, top.text
    assert inner.status_code == 400, inner.text


def test_logs_hold_no_personal_data_and_4xx_no_traceback(deployment: Deployment) -> None:
    secret_mail = "jane.doe.logcheck@example.com"
    with deployment.client("tablet") as c:
        c.get("/v1/customers/lookup", params={"alias_type": "email", "value": secret_mail})
        c.get("/v1/customers/C00000777/profile")
        c.get("/v1/customers/C00000778/recommendations", params={"limit": 0})
        c.get("/v1/customers/C00000779/recommendations", params={"store_id": "S999"})
    with httpx.Client(base_url=deployment.base_url) as anonymous:
        anonymous.get("/v1/customers/C00000780/recommendations")
    time.sleep(0.5)
    assert deployment.log_path is not None
    log = deployment.log_path.read_text()
    for personal in (secret_mail, "C00000777", "C00000778", "C00000779", "C00000780"):
        assert personal not in log
    assert "Traceback" not in log
    assert "400 GET /v1/customers/{customer_id}/recommendations" in log


def test_metrics_count_refusals_with_their_status_and_full_routes(deployment: Deployment) -> None:
    httpx.get(f"{deployment.base_url}/v1/customers/C00000003/recommendations")  # 401
    httpx.get(
        f"{deployment.base_url}/v1/customers/C00000003/recommendations",
        headers=deployment.headers("events"),
    )  # 403
    metrics = httpx.get(f"{deployment.base_url}/metrics").text
    lines = [line for line in metrics.splitlines() if line.startswith("omnirec_requests_total{")]
    assert any(
        'status="401"' in line and "/v1/customers/{customer_id}/recommendations" in line
        for line in lines
    )
    assert any('status="403"' in line for line in lines)
    assert not any('status="500"' in line for line in lines), lines
    assert any('route="/v1/events"' in line for line in lines)


def test_openapi_patterns_and_media_types_are_what_the_server_does(
    deployment: Deployment,
) -> None:
    spec = httpx.get(f"{deployment.base_url}/schema/openapi.json")
    assert "\\Z" not in spec.text  # JSON Schema's regexes (ECMA) have no \Z
    metrics = spec.json()["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    served = httpx.get(f"{deployment.base_url}/metrics").headers["content-type"]
    assert [m.split(";")[0] for m in metrics] == [served.split(";")[0]] == ["text/plain"]
    with deployment.client() as c:
        trailing = c.get("/v1/customers/C00000003%0A/recommendations")
    assert trailing.status_code == 400  # the pattern still refuses a trailing newline


def test_openapi_says_202_for_events(deployment: Deployment) -> None:
    spec = httpx.get(f"{deployment.base_url}/schema/openapi.json").json()
    for path in ("/v1/events", "/v1/events/bulk"):
        assert set(spec["paths"][path]["post"]["responses"]) >= {"202"}
        assert "201" not in spec["paths"][path]["post"]["responses"]


def test_readiness_says_when_redis_would_lose_events(deployment: Deployment) -> None:
    ready = httpx.get(f"{deployment.base_url}/health/ready").json()
    # the test Redis runs without an append-only file or a replica
    assert ready["durable"] is False and ready["features"] == "ok"
    assert any("append-only" in w for w in ready["warnings"])
    assert "omnirec_redis_durable 0.0" in httpx.get(f"{deployment.base_url}/metrics").text


def test_half_sent_requests_are_closed_and_real_ones_keep_flowing(deployment: Deployment) -> None:
    import socket

    port = int(deployment.base_url.rsplit(":", 1)[1])
    slow = []
    for _ in range(200):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        slow.append(sock)
    silent = socket.create_connection(("127.0.0.1", port), timeout=10)  # sends nothing at all
    with deployment.client() as c:  # real requests are answered meanwhile
        assert all(
            c.get("/v1/customers/C00000003/recommendations").status_code == 200 for _ in range(20)
        )
    for sock in [*slow, silent]:  # each socket waits 10 s at most (its timeout raises)
        assert sock.recv(1) == b""  # the server closed it (OMNIREC_REQUEST_READ_SECONDS=2 here)
        sock.close()


def test_a_body_that_never_comes_in_full_is_a_quiet_408(deployment: Deployment) -> None:
    """The read deadline closes a request whose body stops half way: logged once at INFO and
    counted as what it is, never a 500 with a traceback."""
    import socket

    assert deployment.log_path is not None
    port = int(deployment.base_url.rsplit(":", 1)[1])
    head = (
        f"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEYS['events']}\r\n"
        "Content-Type: application/json\r\nContent-Length: 500\r\n\r\n"
    )
    sockets = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
        sock.sendall(head.encode() + b'{"customer_id": "C1", ')  # and never the rest
        sockets.append(sock)
    for sock in sockets:  # OMNIREC_REQUEST_READ_SECONDS=2 here: the server ends each
        while sock.recv(1 << 16):
            pass
        sock.close()
    metrics = httpx.get(f"{deployment.base_url}/metrics").text
    assert not re.search(r'omnirec_requests_total\{[^}]*status="500"', metrics)
    log = deployment.log_path.read_text()
    assert "Traceback" not in log and "client disconnected" not in log


def test_a_session_moves_the_list_toward_what_is_viewed_now(deployment: Deployment) -> None:
    """A customer with a long history in their categories views five items of a category they
    never touched: within a second that category fills a share of the top 10, and the reasons
    say which viewed item brought each suggestion."""
    dataset = load_dataset(deployment.data)
    assert dataset.catalogue is not None
    category_of = dict(
        zip(
            dataset.catalogue["item_id"].to_pylist(),
            dataset.catalogue["category"].to_pylist(),
            strict=True,
        )
    )
    events = dataset.events
    counts = pc.value_counts(events["customer_id"].cast("string"))
    # the most active customer the other tests leave alone (they use C00000001-C00000099)
    customer = max(
        (c for c in counts.to_pylist() if c["values"] >= "C00000100"), key=lambda c: c["counts"]
    )["values"]
    touched = {
        category_of[i]
        for i in events.filter(pc.equal(events["customer_id"].cast("string"), customer))["item_id"]
        .cast("string")
        .to_pylist()
    }
    untouched = sorted({c for c in category_of.values()} - touched)
    assert untouched, "the synthetic customer touched every category"
    new_category = untouched[0]
    viewed = [i for i, c in sorted(category_of.items()) if c == new_category][:5]
    before = recs(deployment, customer, limit=10)
    assert all(i["category"] != new_category for i in before["items"])
    with deployment.client("events") as c:
        for item in viewed:
            event = {
                "customer_id": customer,
                "item_id": item,
                "event_type": "view",
                "channel": "web",
            }
            assert c.post("/v1/events", json=event).status_code == 202
    after = recs(deployment, customer, limit=10)
    share = sum(i["category"] == new_category for i in after["items"]) / 10
    assert share >= 0.3, after["items"]
    brought = [
        i for i in after["items"] if any(r.startswith("because you viewed") for r in i["reasons"])
    ]
    assert brought and all(i["category"] == new_category for i in brought)
    names = {
        dataset.catalogue["name"][k].as_py()
        for k, i in enumerate(dataset.catalogue["item_id"].to_pylist())
        if i in viewed
    }
    assert all(
        any(r.endswith(" just now") and any(n in r for n in names) for r in i["reasons"])
        for i in brought
    )
    # an item the session viewed says so about itself, never "because you viewed <itself>"
    for i in after["items"]:
        assert not any(r == f"because you viewed {i['name']} just now" for r in i["reasons"]), i
    # long-term taste still holds the rest of the list
    assert any(i["category"] in touched for i in after["items"])


def test_metric_labels_stay_bounded_whatever_callers_send(deployment: Deployment) -> None:
    """A caller's free text (a feedback channel) never becomes a label value of its own."""
    channels = [f"zz{uuid.uuid4().hex[:6]}" for _ in range(5)]
    records = [
        {"type": "impression", "customer_id": "C00000001", "item_id": "I000001", "channel": c}
        for c in channels
    ]
    with deployment.client("events") as c:
        assert c.post("/v1/feedback", json={"feedback": records}).status_code == 202
        huge = {**records[0], "type": "purchase", "price": 1e308}
        nowhere = {**records[0], "placement": "nowhere"}
        refused = c.post("/v1/feedback", json={"feedback": [huge, nowhere]}).json()
        assert refused["errors"] == [
            {"index": 0, "field": "price", "message": "more than 1,000,000,000"},
            {"index": 1, "field": "placement", "message": "not a placement of this service"},
        ]
    text = httpx.get(f"{deployment.base_url}/metrics").text
    assert not [c for c in channels if c in text]
    assert re.search(r'omnirec_feedback_total\{[^}]*channel="other"[^}]*\} [1-9]', text)


def test_a_full_event_backlog_answers_503_and_loses_nothing(
    tmp_path_factory: pytest.TempPathFactory, redis_server: str
) -> None:
    dep = make_deployment(tmp_path_factory.mktemp("backlog"), redis_server)
    dep.env.update({"OMNIREC_EVENT_BACKLOG_LIMIT": "3", "OMNIREC_EVENT_STREAMS": "1"})
    dep.start_server()
    try:
        event = {"customer_id": "C00000001", "item_id": "I000001", "event_type": "view"}
        with dep.client("events") as c:
            for k in range(3):
                stored = c.post("/v1/events", json={**event, "channel": "web", "event_id": f"b{k}"})
                assert stored.status_code == 202, stored.text
            full = c.post("/v1/events", json={**event, "channel": "web", "event_id": "b3"})
            bulk = c.post("/v1/events/bulk", json={"events": [{**event, "channel": "app"}]})
            feedback = c.post(
                "/v1/feedback", json={"feedback": [{"type": "click", **event, "channel": "web"}]}
            )
        for refused in (full, bulk, feedback):
            assert refused.status_code == 503, refused.text
            assert refused.headers["Retry-After"] == "30"
            assert "wait for export" in refused.json()["detail"]
        ready = httpx.get(f"{dep.base_url}/health/ready").json()
        assert ready["status"] == "ok"  # Redis is fine: only new events wait
        assert any("wait for export" in w for w in ready["warnings"])
        assert "omnirec_event_backlog 3.0" in httpx.get(f"{dep.base_url}/metrics").text
        stream = Keys(dep.settings.redis.prefix).stream(0)
        assert redis.Redis.from_url(redis_server).xlen(stream) == 3  # nothing trimmed
    finally:
        dep.stop_server()


def test_a_number_sent_as_text_is_refused_like_at_every_door(deployment: Deployment) -> None:
    """The request's struct converts loosely ("3" to 3); the event rules see what was sent."""
    event = {"customer_id": "C00000002", "item_id": "I000002", "event_type": "view"}
    as_text = {**event, "channel": "web", "quantity": "3"}
    with deployment.client("events") as c:
        single = c.post("/v1/events", json=as_text).json()
        bulk = c.post(
            "/v1/events/bulk", json={"events": [{**event, "channel": "app"}, as_text]}
        ).json()
    expected = {"index": 0, "field": "quantity", "message": "not a number"}
    assert single["accepted"] == 0 and single["errors"] == [expected]
    assert bulk["accepted"] == 1 and bulk["errors"] == [{**expected, "index": 1}]
