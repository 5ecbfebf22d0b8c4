"""The store tablet page in a real headless chromium (Debian's), against the running service."""

from __future__ import annotations

import httpx
import pyarrow.compute as pc
import pytest
from playwright.sync_api import expect

from features.dataset import load_dataset
from tests.deploy import KEYS, MARKUP_ITEM, MARKUP_NAME, Deployment
from tests.serving.conftest import ARTIFACTS

SHOTS = ARTIFACTS / "tablet"
SHOTS.mkdir(parents=True, exist_ok=True)

pytestmark = pytest.mark.browser


def loyalty_card(dep: Deployment, customer: str) -> str:
    return next(
        a for t, a in load_dataset(dep.data).identities.aliases_of(customer) if t == "loyalty_card"
    )


def stocked(dep: Deployment, store: str) -> set[str]:
    stock = load_dataset(dep.data).stock
    assert stock is not None
    return set(
        stock.filter(pc.and_(pc.equal(stock["store_id"], store), pc.greater(stock["quantity"], 0)))[
            "item_id"
        ].to_pylist()
    )


def shown_items(page, selector: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [
        str(x)
        for x in page.eval_on_selector_all(
            f"{selector} li[data-item]", "els => els.map(e => e.dataset.item)"
        )
    ]


def test_tablet_journey(browser, deployment: Deployment) -> None:  # type: ignore[no-untyped-def]
    customer = next(
        c
        for c in (f"C{i:08d}" for i in range(20, 200))
        if any(
            t == "loyalty_card" for t, _ in load_dataset(deployment.data).identities.aliases_of(c)
        )
    )
    card = loyalty_card(deployment, customer)
    page = browser.new_page(viewport={"width": 1024, "height": 1366})
    page.goto(f"{deployment.base_url}/tablet")

    # nothing about a customer without a key
    page.fill("#alias-value", card)
    page.click("#go")
    assert "key" in page.inner_text("#banner")
    page.fill("#key", KEYS["tablet"])
    page.click("#save-key")
    expect(page.locator("#store option")).not_to_have_count(1)
    page.select_option("#store", "S001")
    page.select_option("#alias-type", "loyalty_card")
    page.fill("#alias-value", card)
    page.click("#go")
    page.wait_for_selector("#recommendations li")
    assert page.inner_text("#customer-id") == customer
    channels = set(
        page.eval_on_selector_all("#activity .chan", "els => els.map(e => e.textContent)")
    )
    assert channels and channels <= {"web", "app", "store"}
    before = shown_items(page, "#recommendations")
    assert before and set(before) <= stocked(deployment, "S001")
    page.screenshot(path=str(SHOTS / "1-customer-found.png"), full_page=True)

    # a web view posted through the API shows up on the tablet a moment later and changes the
    # suggestions
    viewed = [MARKUP_ITEM, "I000150", "I000151", "I000152"]
    events = [
        {"customer_id": card, "item_id": item, "event_type": "view", "channel": "web"}
        for item in viewed
    ]
    posted = httpx.post(
        f"{deployment.base_url}/v1/events/bulk",
        json={"events": events},
        headers={"X-API-Key": KEYS["events"]},
    )
    assert posted.status_code == 202 and posted.json()["accepted"] == 4
    with page.expect_response(lambda r: "/recommendations" in r.url):
        page.click("#go")
    expect(page.locator("#activity li[data-item]").first).to_have_attribute("data-item", viewed[-1])
    page.wait_for_timeout(200)
    first = page.inner_text("#activity li:first-child")
    assert "viewed on the web" in first and "today" in first
    after = shown_items(page, "#recommendations")
    assert after != before
    # the name with markup is shown as text, and its script never ran
    assert MARKUP_NAME in page.inner_text("#activity")
    assert page.evaluate("window.__xss") is None
    assert page.eval_on_selector_all("#activity img, #activity b", "els => els.length") == 0
    page.screenshot(path=str(SHOTS / "2-after-web-view.png"), full_page=True)

    # another store: suggestions are filtered by that store's stock
    with page.expect_response(lambda r: "recommendations" in r.url and "store_id=S003" in r.url):
        page.select_option("#store", "S003")
    expect(page.locator("#who")).to_contain_text("S003")
    page.wait_for_timeout(300)
    other = shown_items(page, "#recommendations")
    assert other and set(other) <= stocked(deployment, "S003")
    if set(after) - stocked(deployment, "S003"):  # something shown at S001 is not stocked at S003
        assert other != after
    page.screenshot(path=str(SHOTS / "3-other-store.png"), full_page=True)

    # not found, clearly
    page.fill("#alias-value", "L-NOT-A-CARD")
    page.click("#go")
    expect(page.locator("#banner")).to_contain_text("not found")
    page.screenshot(path=str(SHOTS / "4-not-found.png"), full_page=True)

    # a new customer with one web view a moment ago: suggestions from that view, which they name
    httpx.post(
        f"{deployment.base_url}/v1/events",
        json={
            "customer_id": "walk-in-42",
            "item_id": "I000007",
            "event_type": "view",
            "channel": "web",
        },
        headers={"X-API-Key": KEYS["events"]},
    )
    page.select_option("#alias-type", "customer")
    page.fill("#alias-value", "walk-in-42")
    page.click("#go")
    page.wait_for_selector("#recommendations li")
    reasons = page.eval_on_selector_all(
        "#recommendations li .meta", "els => els.map(e => e.textContent)"
    )
    assert any("because you viewed" in r and "just now" in r for r in reasons)
    page.screenshot(path=str(SHOTS / "5-new-customer.png"), full_page=True)
    page.close()


def test_tablet_shows_the_cart_filled_in_the_app_first_and_serves_walk_ins(  # type: ignore[no-untyped-def]
    browser, deployment: Deployment
) -> None:
    """A customer put an item in their cart in the app a minute ago and walks into the store: the
    clerk sees that cart first, with where the item is available, then activity, then suggestions
    with availability; a category filter; a walk-in customer gets labelled store trends."""
    dataset = load_dataset(deployment.data)
    customer = next(
        c
        for c in (f"C{i:08d}" for i in range(200, 400))
        if {"loyalty_card", "email_sha256"} <= {t for t, _ in dataset.identities.aliases_of(c)}
    )
    card = loyalty_card(deployment, customer)
    in_cart = sorted(stocked(deployment, "S002"))[3]
    added = httpx.post(
        f"{deployment.base_url}/v1/events",
        json={
            "customer_id": customer,
            "item_id": in_cart,
            "event_type": "add_to_cart",
            "channel": "app",
            "timestamp": __import__("time").time() - 60,
        },
        headers={"X-API-Key": KEYS["events"]},
    )
    assert added.status_code == 202
    page = browser.new_page(viewport={"width": 1024, "height": 1366})
    page.goto(f"{deployment.base_url}/tablet")
    page.fill("#key", KEYS["tablet"])
    page.click("#save-key")
    expect(page.locator("#store option")).not_to_have_count(1)
    page.select_option("#store", "S002")
    page.select_option("#alias-type", "loyalty_card")
    assert page.get_attribute("#alias-value", "placeholder") == "loyalty card number"
    page.fill("#alias-value", card)
    page.click("#go")
    page.wait_for_selector("#recommendations li")
    cart = page.locator("#cart li").first
    expect(cart).to_have_attribute("data-item", in_cart)
    assert cart.locator(".chan").inner_text() == "app"
    assert "added in the app · 1 minute ago" in cart.inner_text()
    assert cart.locator(".where").inner_text().startswith("here: ")
    # the cart comes before the activity on the page
    assert (
        page.evaluate(
            "document.querySelector('#cart')"
            ".compareDocumentPosition(document.querySelector('#activity')) & 4"
        )
        == 4
    )
    # the hashed e-mail is not shown to the clerk
    identities = page.inner_text("#identities")
    assert "e-mail on file" in identities
    assert not any(len(word) == 64 for word in identities.replace("·", " ").split())
    wheres = page.eval_on_selector_all(
        "#recommendations .where", "els => els.map(e => e.textContent)"
    )
    assert wheres and all(w.startswith("here: ") for w in wheres)
    page.screenshot(path=str(SHOTS / "6-cart-from-the-app.png"), full_page=True)

    # filter the suggestions by a category
    wanted = dataset.catalogue["category"][0].as_py() if dataset.catalogue is not None else ""
    with page.expect_response(lambda r: "category=" in r.url):
        page.select_option("#category", wanted)
    page.wait_for_timeout(200)
    metas = page.eval_on_selector_all(
        "#recommendations li .meta", "els => els.map(e => e.textContent)"
    )
    assert metas and all(m.startswith(wanted + " · ") for m in metas)

    # a walk-in customer: what is trending and popular here, labelled, never empty
    page.select_option("#category", "")
    with page.expect_response(lambda r: "/v1/trending" in r.url):
        page.click("#walk-in")
    page.wait_for_selector("#recommendations li")
    assert "Walk-in customer" in page.inner_text("#recs-title")
    reasons = page.eval_on_selector_all(
        "#recommendations li .meta", "els => els.map(e => e.textContent)"
    )
    assert reasons and all("trending" in r or "popular" in r for r in reasons)
    page.screenshot(path=str(SHOTS / "7-walk-in.png"), full_page=True)
    page.close()


def test_tablet_in_portrait_names_stores_and_keeps_suggestions_near_the_top(  # type: ignore[no-untyped-def]
    browser, deployment: Deployment
) -> None:
    """A portrait tablet (768 px wide, one column): the suggestions come right after the customer
    and their cart, the activity after them with its first rows only; the store picker and the
    activity name stores (once); the page loads without a failed request or console error."""
    dataset = load_dataset(deployment.data)
    bought_in_store = dataset.events.filter(pc.equal(dataset.events["channel"], "store"))
    busy = bought_in_store.group_by("customer_id").aggregate([("item_id", "count")])
    customer = busy.sort_by([("item_id_count", "descending")])["customer_id"][0].as_py()
    page = browser.new_page(viewport={"width": 768, "height": 1024})
    failures: list[str] = []
    page.on(
        "response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    page.on("console", lambda m: failures.append(m.text) if m.type == "error" else None)
    page.goto(f"{deployment.base_url}/tablet")
    page.fill("#key", KEYS["tablet"])
    page.click("#save-key")
    expect(page.locator("#store option")).not_to_have_count(1)
    options = page.eval_on_selector_all(
        "#store option", "els => els.map(e => [e.value, e.textContent])"
    )
    named = [(v, t) for v, t in options if v]
    assert named and all(t.endswith(f"({v})") and t != v for v, t in named)
    page.select_option("#store", "S001")
    assert page.inner_text("#who").startswith("Store ") and "(S001)" in page.inner_text("#who")
    page.select_option("#alias-type", "customer")
    page.fill("#alias-value", customer)
    page.click("#go")
    page.wait_for_selector("#recommendations li")
    recs, history = page.locator("#recs").bounding_box(), page.locator("#history").bounding_box()
    assert recs and history and recs["y"] < history["y"]
    assert recs["y"] < 1024 * 1.5  # near the top, not below dozens of activity rows
    assert page.locator("#activity li:visible").count() <= 6
    rows = page.locator("#activity li").count()
    if rows > 6:
        page.click("#more-activity")
        expect(page.locator("#activity li:visible")).to_have_count(rows)
    metas = page.eval_on_selector_all("#activity li .meta", "els => els.map(e => e.textContent)")
    in_store = [m for m in metas if "in store" in m]
    assert in_store and all(m.count("S0") <= 1 and " · store " not in m for m in in_store)
    page.screenshot(path=str(SHOTS / "8-portrait.png"), full_page=True)
    assert failures == []
    page.close()
