"""The omnichannel store over HTTP: real-time stock, where items are available, the open cart on
every channel, trending for walk-in customers."""

from __future__ import annotations

import math
import time
from typing import Any

import pyarrow.parquet as pq
import pytest

from features.dataset import load_dataset
from tests.deploy import Deployment
from tests.waiting import wait_until


def get(dep: Deployment, path: str, scope: str = "recommend", **params: object) -> Any:
    with dep.client(scope) as c:
        r = c.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def post_stock(dep: Deployment, updates: list[dict[str, object]]) -> Any:
    with dep.client("admin") as c:
        r = c.post("/v1/stock", json={"updates": updates})
    assert r.status_code == 200, r.text
    return r.json()


def post_events(dep: Deployment, events: list[dict[str, object]]) -> None:
    with dep.client("events") as c:
        r = c.post("/v1/events/bulk", json={"events": events})
    assert r.status_code == 202 and r.json()["rejected"] == 0, r.text


def listed_at(dep: Deployment, item: str) -> list[str]:
    stock = load_dataset(dep.data).stock
    assert stock is not None
    return [
        s
        for s, i in zip(stock["store_id"].to_pylist(), stock["item_id"].to_pylist(), strict=True)
        if i == item
    ]


def test_a_stock_change_shows_on_the_next_request(deployment: Deployment) -> None:
    customer = "C00000140"
    before = get(deployment, f"/v1/customers/{customer}/recommendations", store_id="S001", limit=10)
    top = before["items"][0]["item_id"]
    answer = post_stock(
        deployment,
        [
            {"store_id": "S001", "item_id": top, "quantity": 0},
            {"store_id": "S001", "item_id": "I000001", "quantity": 4, "delta": 1},  # both: refused
            {"store_id": "S 1", "item_id": "I000001", "delta": 1},  # bad id: refused
            {"store_id": "S001", "item_id": "I000002", "quantity": -3},  # negative level: refused
            {"store_id": "S999", "item_id": "I000001", "quantity": 5},  # no such store: refused
            {"store_id": "S001", "item_id": "I999999", "quantity": 5},  # no such item: refused
        ],
    )
    assert answer["applied"] == 1 and answer["rejected"] == 5
    assert [(e["index"], e["field"]) for e in answer["errors"]] == [
        (1, "quantity"),
        (2, "store_id"),
        (3, "quantity"),
        (4, "store_id"),
        (5, "item_id"),
    ]
    with deployment.client("tablet") as c:  # the feed never adds a store
        assert "S999" not in c.get("/v1/stores").text
    after = get(deployment, f"/v1/customers/{customer}/recommendations", store_id="S001", limit=10)
    assert top not in {i["item_id"] for i in after["items"]}
    similar = get(
        deployment, f"/v1/items/{before['items'][1]['item_id']}/similar", store_id="S001", limit=50
    )
    assert top not in {i["item_id"] for i in similar["items"]}
    # a delta brings it back, and the level shows where it is available
    post_stock(deployment, [{"store_id": "S001", "item_id": top, "delta": 7}])
    back = get(
        deployment,
        f"/v1/customers/{customer}/recommendations",
        store_id="S001",
        limit=10,
        availability="true",
    )
    here = [i for i in back["items"] if i["item_id"] == top]
    assert here and here[0]["availability"][0] == {"store_id": "S001", "quantity": 7, "here": True}
    # deltas never take a level below zero
    assert (
        post_stock(deployment, [{"store_id": "S001", "item_id": top, "delta": -100}])["applied"]
        == 1
    )
    gone = get(deployment, f"/v1/customers/{customer}/recommendations", store_id="S001", limit=10)
    assert top not in {i["item_id"] for i in gone["items"]}


def test_an_item_sold_out_everywhere_is_never_suggested(deployment: Deployment) -> None:
    customer = "C00000141"
    top = get(deployment, f"/v1/customers/{customer}/recommendations", limit=5)["items"][0][
        "item_id"
    ]
    stores = listed_at(deployment, top)
    assert "online" in stores or len(stores) > 1
    post_stock(deployment, [{"store_id": s, "item_id": top, "quantity": 0} for s in stores])
    for path, params in (
        (f"/v1/customers/{customer}/recommendations", {"limit": 30}),
        ("/v1/customers/nobody-at-all/recommendations", {"limit": 100}),
        ("/v1/trending", {"limit": 100}),
    ):
        items = get(deployment, path, **params)["items"]
        assert items and top not in {i["item_id"] for i in items}, path
    post_stock(deployment, [{"store_id": stores[0], "item_id": top, "quantity": 2}])
    assert top in {
        i["item_id"]
        for i in get(deployment, "/v1/customers/nobody-at-all/recommendations", limit=100)["items"]
    }


def test_the_open_cart_across_channels_with_availability(deployment: Deployment) -> None:
    """Added in the app a minute ago, on the web, in store; one removed, one bought: the cart holds
    the rest, each with where it can be had from the tablet's store (against a hand-made table)."""
    customer, now = "C00000142", time.time()
    item, web_item, store_item = "I000150", "I000151", "I000152"
    levels = {"S000": 3, "S002": 12, "S004": 7, "online": 5}  # the tablet test checks S001, S003
    stores = pq.read_table(deployment.data / "stores.parquet").to_pylist()
    post_stock(
        deployment,
        [
            {"store_id": s["store_id"], "item_id": item, "quantity": levels.get(s["store_id"], 0)}
            for s in stores
        ]
        + [{"store_id": "online", "item_id": item, "quantity": 5}],
    )
    post_events(
        deployment,
        [
            {
                "customer_id": customer,
                "item_id": item,
                "event_type": "add_to_cart",
                "channel": "app",
                "timestamp": now - 60,
            },
            {
                "customer_id": customer,
                "item_id": web_item,
                "event_type": "add_to_cart",
                "channel": "web",
                "timestamp": now - 50,
            },
            {
                "customer_id": customer,
                "item_id": store_item,
                "event_type": "add_to_cart",
                "channel": "store",
                "store_id": "S001",
                "timestamp": now - 40,
            },
            {
                "customer_id": customer,
                "item_id": web_item,
                "event_type": "remove_from_cart",
                "channel": "app",
                "timestamp": now - 30,
            },
            {
                "customer_id": customer,
                "item_id": store_item,
                "event_type": "purchase",
                "channel": "store",
                "store_id": "S001",
                "timestamp": now - 20,
            },
        ],
    )
    profile = get(deployment, f"/v1/customers/{customer}/profile", scope="tablet", store_id="S000")
    assert [(c["item_id"], c["channel"]) for c in profile["cart"]] == [(item, "app")]
    where = {s["store_id"]: (s["latitude"], s["longitude"]) for s in stores}

    def km(a: str, b: str) -> float:
        (la1, lo1), (la2, lo2) = (map(math.radians, where[a]), map(math.radians, where[b]))
        h = (
            math.sin((la2 - la1) / 2) ** 2
            + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
        )
        return 2 * 6371.0 * math.asin(math.sqrt(h))

    expected = [{"store_id": "S000", "quantity": 3, "here": True}]
    expected += [
        {"store_id": s, "quantity": levels[s], "distance_km": round(km("S000", s), 1)}
        for s in sorted(("S002", "S004"), key=lambda s: km("S000", s))
    ]
    expected.append({"store_id": "online", "quantity": 5})
    assert profile["cart"][0]["availability"] == expected
    completes = get(
        deployment, f"/v1/customers/{customer}/cart/complements", scope="tablet", limit=5
    )
    assert completes["items"] and item not in {i["item_id"] for i in completes["items"]}


def test_walk_in_customers_see_what_is_trending_at_the_store(deployment: Deployment) -> None:
    hot = next(
        i for i in (f"I{k:06d}" for k in range(170, 200)) if "S004" in listed_at(deployment, i)
    )
    post_events(
        deployment,
        [
            {
                "customer_id": f"walker-{k}",
                "item_id": hot,
                "event_type": "purchase",
                "channel": "store",
                "store_id": "S004",
            }
            for k in range(30)
        ],
    )
    answer = get(deployment, "/v1/trending", store_id="S004", limit=8)
    assert answer["source"] == "trending" and len(answer["items"]) == 8
    assert answer["items"][0]["item_id"] == hot
    assert answer["items"][0]["reasons"] == ["trending at this store now"]
    unknown = get(deployment, "/v1/customers/walk-in-zz/recommendations", store_id="S004", limit=8)
    assert unknown["items"][0]["item_id"] == hot and unknown["source"] == "trending"
    assert all(i["reasons"] for i in unknown["items"])  # every item says why: trending or popular


def test_one_visitors_views_do_not_trend_and_a_stores_trends_stay_in_the_store(
    deployment: Deployment,
) -> None:
    fad, liked = "I000161", "I000162"
    views = [
        {"customer_id": "visitor-x", "item_id": fad, "event_type": "view", "channel": "app"}
        for _ in range(8)
    ] + [
        {"customer_id": f"fan-{k}", "item_id": liked, "event_type": "view", "channel": "app"}
        for k in range(3)
    ]
    post_events(deployment, views)
    answer = get(deployment, "/v1/trending", channel="app", limit=20)
    trending = [i["item_id"] for i in answer["items"] if i["source"] == "trending"]
    assert liked in trending and fad not in trending
    reason = next(i["reasons"] for i in answer["items"] if i["item_id"] == liked)
    assert reason == ["trending in the app now"]
    # at a store, only what trends at that store is "trending at this store"
    at_store = get(deployment, "/v1/trending", store_id="S002", limit=20)
    for item in at_store["items"]:
        if item["source"] == "trending":
            assert item["reasons"] == ["trending at this store now"]
    assert liked not in [i["item_id"] for i in at_store["items"] if i["source"] == "trending"]


@pytest.mark.parametrize("scope", ["recommend", "events"])
def test_the_stock_feed_needs_the_stock_scope(deployment: Deployment, scope: str) -> None:
    with deployment.client(scope) as c:
        r = c.post(
            "/v1/stock",
            json={"updates": [{"store_id": "S001", "item_id": "I000001", "quantity": 1}]},
        )
    assert r.status_code == 403


def test_a_worker_behind_the_trimmed_change_log_reads_every_level_again(
    deployment: Deployment,
) -> None:
    """Updates written straight into Redis and the change log trimmed past what the service
    read: the next requests see the gap, read all levels again (in a thread) and then the change."""
    import redis

    from features.stock import LiveStock, StockUpdate

    customer = "C00000143"
    top = get(deployment, f"/v1/customers/{customer}/recommendations", store_id="S003", limit=5)[
        "items"
    ][0]["item_id"]
    client = redis.Redis.from_url(deployment.env["REDIS_URL"])
    live = LiveStock(deployment.env["OMNIREC_REDIS_PREFIX"])
    live.apply(client, [StockUpdate("S003", top, 0)])
    live.apply(client, [StockUpdate("S003", "I000001", 5)])
    client.xtrim(live.changes_key, maxlen=1, approximate=False)  # the first update's entry is gone
    path = f"/v1/customers/{customer}/recommendations"
    wait_until(
        lambda: (
            top
            not in {i["item_id"] for i in get(deployment, path, store_id="S003", limit=5)["items"]}
        ),
        "the service read the levels again",
        every=0.1,
    )


def test_the_channel_implies_its_stock(deployment: Deployment) -> None:
    """A web or app request without a store is answered from the online warehouse's stock: an
    item sold out online is not suggested there; naming a store (click and collect) wins."""
    customer = "C00000144"
    before = get(deployment, f"/v1/customers/{customer}/recommendations", channel="web", limit=10)
    top = before["items"][0]["item_id"]
    levels = {s: 5 for s in listed_at(deployment, top) if s != "online"}
    post_stock(
        deployment,
        [{"store_id": "online", "item_id": top, "quantity": 0}]
        + [{"store_id": s, "item_id": top, "quantity": q} for s, q in levels.items()],
    )
    for channel in ("web", "app"):
        after = get(
            deployment, f"/v1/customers/{customer}/recommendations", channel=channel, limit=10
        )
        assert top not in {i["item_id"] for i in after["items"]}, channel
    if levels:  # in stock at a store: asked for that store, it may come back
        store = sorted(levels)[0]
        there = get(
            deployment,
            f"/v1/customers/{customer}/recommendations",
            channel="web",
            store_id=store,
            limit=50,
        )
        assert top in {i["item_id"] for i in there["items"]}
    post_stock(deployment, [{"store_id": "online", "item_id": top, "quantity": 9}])


def test_nothing_in_the_open_cart_is_suggested(deployment: Deployment) -> None:
    """The first suggestion was once an item already in the cart: what sits in the open cart is
    not suggested again until it leaves it."""
    customer = "C00000146"
    first = get(deployment, f"/v1/customers/{customer}/recommendations", limit=10)["items"]
    item = first[0]["item_id"]
    added = {
        "customer_id": customer,
        "item_id": item,
        "event_type": "add_to_cart",
        "channel": "app",
    }
    post_events(deployment, [added])
    after = get(deployment, f"/v1/customers/{customer}/recommendations", limit=10)["items"]
    assert item not in {i["item_id"] for i in after}
    post_events(deployment, [{**added, "event_type": "remove_from_cart"}])
    back = get(deployment, f"/v1/customers/{customer}/recommendations", limit=50)["items"]
    assert item in {i["item_id"] for i in back}


def test_an_event_at_a_store_the_data_does_not_know_is_refused_naming_the_field(
    deployment: Deployment,
) -> None:
    events = [
        {
            "customer_id": "C00000041",
            "item_id": "I000001",
            "event_type": "purchase",
            "channel": "store",
            "store_id": store,
        }
        for store in ("S001", "S999", "online")
    ]
    with deployment.client("events") as c:
        r = c.post("/v1/events/bulk", json={"events": events})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["accepted"] == 2
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, "store_id")]
