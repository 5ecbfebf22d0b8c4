"""The storefront widget in a real headless chromium (Debian's), on a shop page of another origin
(`http://shop.test`, served by the browser's request routing) against the running service:
it renders, counts an impression once its card is in view and not before, counts a click, and a
purchase at the till afterwards is attributed to the web answer; markup in catalogue fields stays
text; a page of an origin the service does not allow gets nothing."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from features.dataset import load_dataset
from tests.deploy import KEYS, MARKUP_ITEM, MARKUP_NAME, SHOP, Deployment
from tests.serving.conftest import ARTIFACTS
from tests.waiting import wait_until

SHOTS = ARTIFACTS / "widget"
SHOTS.mkdir(parents=True, exist_ok=True)

pytestmark = pytest.mark.browser


def _page(base: str, body: str) -> str:
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Shop</title>
<style>body {{ font-family: sans-serif; margin: 0 24px; }} .fold {{ height: 1500px; }}
omnirec-recommendations {{ --omnirec-accent: #7a2bd6; --omnirec-columns: 4; }}</style></head>
<body><h1>The shop</h1>{body}
<script>window.__posted = []; window.__errors = [];
for (const el of document.querySelectorAll("omnirec-recommendations, omnirec-similar")) {{
  el.addEventListener("omnirec-feedback", (e) => window.__posted.push(...e.detail.feedback));
  el.addEventListener("omnirec-error", (e) => window.__errors.push(e.detail));
}}</script>
<script src="{base}/widget.js"></script></body></html>"""


def _serve(page, origin: str, html: str) -> None:  # type: ignore[no-untyped-def]
    page.route(
        f"{origin}/**",
        lambda route: route.fulfill(status=200, content_type="text/html", body=html),
    )


def _posted(page, kind: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(r["item_id"]) for r in page.evaluate("window.__posted") if r["type"] == kind]


def _customer_with_card(dep: Deployment) -> tuple[str, str]:
    identities = load_dataset(dep.data).identities
    for customer in (f"C{i:08d}" for i in range(40, 200)):
        cards = [a for t, a in identities.aliases_of(customer) if t == "loyalty_card"]
        if cards:
            return customer, cards[0]
    raise AssertionError("no customer with a loyalty card")


def test_the_widget_renders_counts_views_and_clicks_and_a_till_purchase_is_attributed(
    browser, deployment: Deployment
) -> None:  # type: ignore[no-untyped-def]
    customer, card = _customer_with_card(deployment)
    key = KEYS["public"]
    html = _page(
        deployment.base_url,
        f'<p>Scroll for suggestions.</p><div class="fold"></div>'
        f'<omnirec-recommendations id="recs" api-key="{key}" customer="{customer}" '
        f'limit="4" currency="EUR" item-href="#item-{{item_id}}"></omnirec-recommendations>'
        f'<div style="height: 1200px"></div>',
    )
    page = browser.new_page(viewport={"width": 1024, "height": 700})
    _serve(page, SHOP, html)
    impressions = deployment.metric("omnirec_feedback_total", type="impression", channel="web")
    clicks = deployment.metric("omnirec_feedback_total", type="click", channel="web")
    page.goto(f"{SHOP}/")
    cards = page.locator("#recs li")
    expect(cards).to_have_count(4)
    items = [str(i) for i in cards.evaluate_all("els => els.map(e => e.dataset.item)")]
    # rendered below the fold: nothing counted yet
    page.wait_for_timeout(800)
    assert _posted(page, "impression") == []
    assert (
        deployment.metric("omnirec_feedback_total", type="impression", channel="web") == impressions
    )
    page.screenshot(path=str(SHOTS / "1-above-the-fold.png"))
    page.locator("#recs").scroll_into_view_if_needed()
    wait_until(lambda: len(_posted(page, "impression")) == 4, "the impressions posted")
    assert sorted(_posted(page, "impression")) == sorted(items)
    page.screenshot(path=str(SHOTS / "2-in-view.png"))
    # away and back: no second impression
    page.mouse.wheel(0, -3000)
    page.wait_for_timeout(300)
    page.locator("#recs").scroll_into_view_if_needed()
    page.wait_for_timeout(600)
    assert len(_posted(page, "impression")) == 4
    wait_until(
        lambda: (
            deployment.metric("omnirec_feedback_total", type="impression", channel="web")
            == impressions + 4
        ),
        "the impressions counted by the service",
    )
    # a click on the second card: posted once, with the answer's recommendation id
    page.locator("#recs li").nth(1).locator("a").click()
    wait_until(lambda: _posted(page, "click") == [items[1]], "the click posted")
    assert page.url.endswith(f"#item-{items[1]}")
    rid = page.locator("#recs").get_attribute("data-recommendation-id")
    assert rid and rid.endswith(".web")
    assert all(r["recommendation_id"] == rid for r in page.evaluate("window.__posted"))
    wait_until(
        lambda: (
            deployment.metric("omnirec_feedback_total", type="click", channel="web") == clicks + 1
        ),
        "the click counted by the service",
    )
    # the customer buys the clicked item at the till with the loyalty card
    attributed = deployment.metric(
        "omnirec_attributed_purchases_by_channel_total", shown_on="web", bought_on="store"
    )
    till = {
        "customer_id": card,
        "item_id": items[1],
        "event_type": "purchase",
        "channel": "store",
        "store_id": "S001",
        "price": 4.5,
    }
    posted = httpx.post(
        f"{deployment.base_url}/v1/events", json=till, headers={"X-API-Key": KEYS["events"]}
    )
    assert posted.status_code == 202, posted.text
    assert (
        deployment.metric(
            "omnirec_attributed_purchases_by_channel_total", shown_on="web", bought_on="store"
        )
        == attributed + 1
    )
    # themed by the page: the accent colour reaches the price inside the widget
    colour = page.locator("#recs li .price").first.evaluate("e => getComputedStyle(e).color")
    assert colour == "rgb(122, 43, 214)"
    assert page.evaluate("window.__errors") == []
    page.screenshot(path=str(SHOTS / "3-clicked.png"))
    page.close()


def test_markup_in_catalogue_fields_stays_text(browser, deployment: Deployment) -> None:  # type: ignore[no-untyped-def]
    # an item whose similar items hold the one named with markup
    with deployment.client("public") as c:
        anchor = next(
            item
            for item in (f"I{i:06d}" for i in range(200))
            if item != MARKUP_ITEM
            and MARKUP_ITEM
            in [x["item_id"] for x in c.get(f"/v1/items/{item}/similar?limit=8").json()["items"]]
        )
    html = _page(
        deployment.base_url,
        f'<omnirec-similar id="similar" api-key="{KEYS["public"]}" item="{anchor}" '
        f'limit="8"></omnirec-similar>',
    )
    page = browser.new_page(viewport={"width": 1024, "height": 900})
    _serve(page, SHOP, html)
    page.goto(f"{SHOP}/")
    expect(page.locator("#similar li")).to_have_count(8)
    names = page.locator("#similar li .name").all_inner_texts()
    assert MARKUP_NAME in names
    assert page.evaluate("window.__xss") is None
    assert page.locator("#similar li b").count() == 0
    assert page.locator("#similar li img:not(.image)").count() == 0
    # no customer named: nothing is posted about the visitor
    page.wait_for_timeout(600)
    assert page.evaluate("window.__posted") == []
    page.screenshot(path=str(SHOTS / "4-markup-as-text.png"))
    page.close()


def test_a_page_of_another_origin_gets_nothing(browser, deployment: Deployment) -> None:  # type: ignore[no-untyped-def]
    other = "http://elsewhere.test"
    html = _page(
        deployment.base_url,
        f'<omnirec-recommendations id="recs" api-key="{KEYS["public"]}" customer="C00000031">'
        f"</omnirec-recommendations>",
    )
    page = browser.new_page()
    _serve(page, other, html)
    page.goto(f"{other}/")
    wait_until(lambda: page.evaluate("window.__errors.length") > 0, "the widget's error")
    assert page.locator("#recs li").count() == 0
    page.close()
