"""What a shop's pages and e-mails reach without an integration, over HTTP: the widget's public
key and CORS, the widget script, and the e-mail's tracking links."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from tests.deploy import KEYS, SHOP, Deployment

CUSTOMER = "C00000031"


def test_a_public_key_asks_and_posts_impressions_and_clicks_only(deployment: Deployment) -> None:
    with deployment.client("public") as c:
        answer = c.get(
            f"/v1/customers/{CUSTOMER}/recommendations", params={"limit": 3, "channel": "web"}
        )
        assert answer.status_code == 200
        rid, item = answer.json()["recommendation_id"], answer.json()["items"][0]["item_id"]
        assert rid.endswith(".web")
        assert c.get(f"/v1/items/{item}/similar").status_code == 200
        records = [
            {"type": kind, "customer_id": CUSTOMER, "item_id": item, "recommendation_id": rid}
            for kind in ("impression", "click", "purchase", "add_to_cart")
        ]
        posted = c.post("/v1/feedback", json={"feedback": records})
        assert posted.status_code == 202
        body = posted.json()
        assert body["accepted"] == 2
        assert [(e["index"], e["field"]) for e in body["errors"]] == [(2, "type"), (3, "type")]
        # nothing else: not the profile, not the events, not the batch
        assert c.get(f"/v1/customers/{CUSTOMER}/profile").status_code == 403
        event = {"customer_id": CUSTOMER, "item_id": item, "event_type": "view", "channel": "web"}
        assert c.post("/v1/events", json=event).status_code == 403
        batch = c.post("/v1/recommendations/batch", json={"customer_ids": [CUSTOMER]})
        assert batch.status_code == 403
    # a key with the events scope posts purchases as before
    with deployment.client("events") as c:
        records[2]["event_id"] = "storefront-purchase-1"
        assert c.post("/v1/feedback", json={"feedback": [records[2]]}).json()["accepted"] == 1


def test_the_browser_may_call_from_the_shops_origin_only(deployment: Deployment) -> None:
    url = f"{deployment.base_url}/v1/customers/{CUSTOMER}/recommendations"
    preflight = {
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "x-api-key",
    }
    allowed = httpx.options(url, headers={"Origin": SHOP, **preflight})
    assert allowed.status_code in (200, 204)
    assert allowed.headers["access-control-allow-origin"] == SHOP
    assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
    refused = httpx.options(url, headers={"Origin": "http://elsewhere.test", **preflight})
    assert refused.headers.get("access-control-allow-origin") != "http://elsewhere.test"
    # the answer itself (fast path included) carries the header for the shop
    got = httpx.get(url, headers={"Origin": SHOP, "X-API-Key": KEYS["public"]})
    assert got.status_code == 200 and got.headers["access-control-allow-origin"] == SHOP
    script = httpx.get(f"{deployment.base_url}/widget.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "customElements.define" in script.text


def test_an_emails_tracking_link_records_the_click_and_leads_to_the_item(
    deployment: Deployment,
) -> None:
    with deployment.client("recommend") as c:
        batch = c.post(
            "/v1/recommendations/batch",
            json={"customer_ids": [CUSTOMER], "limit": 2, "channel": "email"},
        )
    answer = batch.json()["results"][0]
    item = answer["items"][0]
    assert item["link"].startswith(f"{deployment.base_url}/v1/r/")
    assert answer["recommendation_id"].endswith(".email")
    clicks = deployment.metric("omnirec_feedback_total", type="click", channel="email")
    recorded = deployment.metric("omnirec_tracking_link_clicks_total", outcome="recorded")
    followed = httpx.get(item["link"], follow_redirects=False)
    assert followed.status_code == 302
    assert followed.headers["location"] == f"{SHOP}/p/{quote(item['item_id'], safe='')}"
    assert followed.headers["cache-control"] == "no-store"
    assert deployment.metric("omnirec_feedback_total", type="click", channel="email") == clicks + 1
    assert (
        deployment.metric("omnirec_tracking_link_clicks_total", outcome="recorded") == recorded + 1
    )
    # a link the service did not sign (another item, another target) leads nowhere
    token = item["link"].rsplit("/", 1)[1]
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    assert httpx.get(f"{deployment.base_url}/v1/r/{forged}").status_code == 404
    assert httpx.get(f"{deployment.base_url}/v1/r/not-a-token").status_code == 404


def test_many_orders_complements_at_once_for_the_nightly_emails(deployment: Deployment) -> None:
    orders = [
        {"customer_id": "C00000032", "item_ids": ["I000010", "I000011"], "limit": 4},
        {"customer_id": "C00000033", "item_ids": ["I000020"], "limit": 3},
    ]
    with deployment.client("recommend") as c:
        one = c.post("/v1/orders/complements", json=orders[1]).json()
        batch = c.post("/v1/orders/complements/batch", json={"orders": orders})
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert len(results) == 2
    for k, (order, answer) in enumerate(zip(orders, results, strict=True)):
        items = [i["item_id"] for i in answer["items"]]
        assert items and not set(items) & set(order["item_ids"])  # never what was ordered
        assert answer["recommendation_id"].split(".")[0].endswith(f"-{k}")
        assert answer["recommendation_id"].endswith(".email")
        assert all(i["link"].startswith(f"{deployment.base_url}/v1/r/") for i in answer["items"])
    # the same answer as one order asked alone
    assert [i["item_id"] for i in results[1]["items"]] == [i["item_id"] for i in one["items"]]
    with deployment.client("public") as c:
        assert c.post("/v1/orders/complements/batch", json={"orders": orders}).status_code == 403
