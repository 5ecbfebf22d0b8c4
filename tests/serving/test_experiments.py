"""Experiments, merchandising and feedback on a real server: deterministic variants across
servers, a variant answered by another model version, placement rules, recommendation ids on
every route, feedback stored, counted, attributed and exported."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from features.dataset import load_dataset
from models.registry import ModelRegistry
from serving.experiments.config import bucket
from tests.deploy import KEYS, Deployment, make_deployment
from tests.waiting import PATIENCE, wait_until

CUSTOMERS = [f"C{i:08d}" for i in range(100, 160)]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Iterator[Deployment]:
    """ALS v1 (champion) and popularity v2 (alias `challenger`), both published; an experiment
    on `home` between them, one on `product_page` between rule sets; `home` excludes bags and
    caps categories at two in the top ten."""
    root = tmp_path_factory.mktemp("experiments")
    dep = make_deployment(root, redis_server)
    second = dep.train_and_publish("popularity")
    registry = ModelRegistry(dep.settings.mlflow)
    registry.set_champion(1)
    assert second.version == 2
    registry.set_alias("challenger", 2)
    placements = root / "placements.toml"
    placements.write_text("""
[rules.storefront]
exclude = { category = ["bags"] }
diversity = { column = "category", max = 2, top = 10 }
[rules.margin]
boost = [{ column = "margin", factor = 4.0 }]
[placements.home]
rules = "storefront"
[placements.product_page]
[placements.cart]
[placements.post_purchase_email]
[placements.store_tablet]
""")
    experiments = root / "experiments.toml"
    experiments.write_text("""
[experiments.model-ab]
placements = ["home", "post_purchase_email"]
[[experiments.model-ab.variants]]
name = "control"
model = "champion"
share = 50
[[experiments.model-ab.variants]]
name = "challenger"
model = "challenger"
share = 50

[experiments.margin]
placements = ["product_page"]
shadow = "challenger"
shadow_sample = 1.0
[[experiments.margin.variants]]
name = "plain"
model = "champion"
share = 50
[[experiments.margin.variants]]
name = "margin"
model = "champion"
rules = "margin"
share = 50
""")
    dep.env.update(
        {
            "OMNIREC_PLACEMENTS_FILE": str(placements),
            "OMNIREC_EXPERIMENTS_FILE": str(experiments),
            "OMNIREC_ATTRIBUTION_HOURS": "1",
            "OMNIREC_SHADOW_DELAY_SECONDS": "0.5",
        }
    )
    dep.start_server()
    yield dep
    dep.stop_server()


def _variant_of(experiment: str, customer: str, shares: tuple[str, ...]) -> str:
    """The documented assignment: BLAKE2b of experiment and customer, cut by cumulative shares."""
    return shares[0] if bucket(experiment, customer) < 0.5 else shares[1]


def _get(dep: Deployment, path: str, **params: object) -> httpx.Response:
    return httpx.get(
        dep.base_url + path, params=params, headers=dep.headers("recommend"), timeout=PATIENCE
    )


def test_each_customer_sees_one_variant_on_every_server_and_alias(lab: Deployment) -> None:
    other = Deployment(
        lab.data, dict(lab.env), lab.settings
    )  # a second replica, same Redis and MLflow
    other.start_server()
    counted = {
        v: lab.metric(
            "omnirec_variant_answers_total", experiment="model-ab", variant=v, outcome="ok"
        )
        for v in ("control", "challenger")
    }
    served: Counter[str] = Counter()
    try:
        seen: dict[str, set[str]] = {}
        for customer in CUSTOMERS:
            for server in (lab, other, lab):
                body = _get(
                    server, f"/v1/customers/{customer}/recommendations", placement="home"
                ).json()
                seen.setdefault(customer, set()).add(body["variant"])
                served[body["variant"]] += server is lab
                expected = _variant_of("model-ab", customer, ("control", "challenger"))
                assert body["variant"] == expected and body["experiment"] == "model-ab"
                assert body["model_version"] == (1 if expected == "control" else 2)
                assert body["recommendation_id"] == f"{body['request_id']}.model-ab.{expected}.home"
    finally:
        other.stop_server()
    assert all(len(v) == 1 for v in seen.values())
    for variant, before in counted.items():  # /metrics counts each variant's answers, per worker
        after = lab.metric(
            "omnirec_variant_answers_total",
            experiment="model-ab",
            variant=variant,
            outcome="ok",
        )
        assert after - before == served[variant] > 0
    assert Counter(v.pop() for v in seen.values()).keys() == {"control", "challenger"}
    # by an alias (the tablet's loyalty card), the customer's own variant
    customer = CUSTOMERS[0]
    device = next(
        a for t, a in load_dataset(lab.data).identities.aliases_of(customer) if t == "device"
    )
    by_alias = _get(lab, f"/v1/customers/{device}/recommendations", placement="home").json()
    assert by_alias["customer_id"] == customer
    assert by_alias["variant"] == _variant_of("model-ab", customer, ("control", "challenger"))


def test_metrics_show_the_guardrails_rounds_of_each_variant(lab: Deployment) -> None:
    # an error round ends once both sides answered min_requests (200) times in it: 500 answers
    # of each variant end at least one, and the healthy challenger is found no worse
    before = lab.metric(
        "omnirec_guardrail_rounds_total",
        experiment="model-ab",
        variant="challenger",
        measure="errors",
        verdict="ok",
    )
    counts: Counter[str] = Counter()
    with httpx.Client(
        base_url=lab.base_url, headers=lab.headers("recommend"), timeout=PATIENCE
    ) as client:
        for k in range(5_000):
            customer = CUSTOMERS[k % len(CUSTOMERS)]
            variant = _variant_of("model-ab", customer, ("control", "challenger"))
            if counts[variant] >= 500:
                if min(counts.values()) >= 500:
                    break
                continue
            answer = client.get(
                f"/v1/customers/{customer}/recommendations", params={"placement": "home"}
            ).json()
            assert answer["variant"] == variant and not answer["degraded"]
            counts[variant] += 1
    assert counts["control"] == counts["challenger"] == 500
    after = lab.metric(
        "omnirec_guardrail_rounds_total",
        experiment="model-ab",
        variant="challenger",
        measure="errors",
        verdict="ok",
    )
    assert after - before >= 2
    worse = lab.metric(
        "omnirec_guardrail_rounds_total",
        experiment="model-ab",
        variant="challenger",
        measure="errors",
        verdict="worse",
    )
    assert worse == 0
    assert (
        lab.metric(
            "omnirec_guardrail_last_round",
            experiment="model-ab",
            variant="challenger",
            measure="errors",
        )
        == 0.0
    )
    assert "stopped by its guardrail" not in " ".join(
        httpx.get(f"{lab.base_url}/health/ready").json().get("warnings", [])
    )


def test_outside_every_experiment_the_variant_is_default(lab: Deployment) -> None:
    body = _get(lab, "/v1/customers/C00000100/recommendations", placement="cart").json()
    assert (body["variant"], body["experiment"], body["placement"]) == ("default", None, "cart")
    body = _get(lab, "/v1/customers/C00000100/recommendations").json()
    assert body["recommendation_id"] == f"{body['request_id']}._.default._"
    for path in (
        "/v1/trending",
        "/v1/items/I000010/similar",
        "/v1/customers/C00000100/cart/complements",
    ):
        answer = _get(lab, path, placement="cart").json()
        assert answer["recommendation_id"] == f"{answer['request_id']}._.default.cart", path
    with httpx.Client(base_url=lab.base_url, headers=lab.headers("recommend")) as c:
        order = c.post(
            "/v1/orders/complements",
            json={
                "customer_id": "C00000100",
                "item_ids": ["I000010"],
                "placement": "post_purchase_email",
            },
        ).json()
    assert order["recommendation_id"].endswith("._.default.post_purchase_email")


def test_the_home_placement_rules_hold_for_everyone(lab: Deployment) -> None:
    for customer in [*CUSTOMERS[:20], "someone-new"]:
        items = _get(
            lab, f"/v1/customers/{customer}/recommendations", placement="home", limit=10
        ).json()["items"]
        categories = [i["category"] for i in items]
        assert len(items) == 10
        assert "bags" not in categories
        assert max(Counter(categories).values()) <= 2, categories
    # without the placement, bags are recommended to some of the same customers
    unruled = [
        _get(lab, f"/v1/customers/{c}/recommendations", limit=10).json()["items"]
        for c in CUSTOMERS[:20]
    ]
    assert any(i["category"] == "bags" for items in unruled for i in items)


def test_the_margin_variant_boosts_high_margin_items(lab: Deployment) -> None:
    margin = dict(
        zip(
            *pq.read_table(lab.data / "catalogue.parquet", columns=["item_id", "margin"])
            .to_pydict()
            .values(),
            strict=True,
        )
    )
    means: dict[str, list[float]] = {"plain": [], "margin": []}
    for customer in CUSTOMERS:
        body = _get(
            lab, f"/v1/customers/{customer}/recommendations", placement="product_page", limit=10
        ).json()
        assert body["variant"] == _variant_of("margin", customer, ("plain", "margin"))
        means[body["variant"]].append(sum(margin[i["item_id"]] for i in body["items"]) / 10)
    plain, boosted = (sum(v) / len(v) for v in (means["plain"], means["margin"]))
    assert boosted > plain + 0.05, (plain, boosted)  # margins are uniform 0-0.6: the mean is 0.3


def test_request_filters_and_an_unknown_placement(lab: Deployment) -> None:
    body = _get(
        lab,
        "/v1/customers/C00000101/recommendations",
        price_max=15,
        exclude_items="I000001,I000002",
    ).json()
    assert body["items"] and all(i["price"] <= 15 for i in body["items"])
    assert not {"I000001", "I000002"} & {i["item_id"] for i in body["items"]}
    for path in (
        "/v1/customers/C00000101/recommendations",
        "/v1/trending",
        "/v1/items/I000010/similar",
    ):
        r = _get(lab, path, placement="checkout")
        assert r.status_code == 400 and r.json()["field"] == "placement", (path, r.text)
    with httpx.Client(base_url=lab.base_url, headers=lab.headers("recommend")) as c:
        r = c.post(
            "/v1/recommendations/batch",
            json={"customer_ids": ["C00000101"], "placement": "checkout"},
        )
    assert r.status_code == 400 and r.json()["field"] == "placement"


def test_batch_answers_carry_each_customers_variant_and_id(lab: Deployment) -> None:
    with httpx.Client(
        base_url=lab.base_url, headers=lab.headers("recommend"), timeout=PATIENCE
    ) as c:
        body = c.post(
            "/v1/recommendations/batch",
            json={"customer_ids": CUSTOMERS, "placement": "post_purchase_email", "limit": 5},
        ).json()
    for k, (customer, answer) in enumerate(zip(CUSTOMERS, body["results"], strict=True)):
        variant = _variant_of("model-ab", customer, ("control", "challenger"))
        assert answer["variant"] == variant
        assert answer["model_version"] == (1 if variant == "control" else 2)
        assert (
            answer["recommendation_id"]
            == f"{body['request_id']}-{k}.model-ab.{variant}.post_purchase_email"
        )


def test_feedback_is_stored_counted_attributed_and_exported(lab: Deployment) -> None:
    customer = CUSTOMERS[3]
    answer = _get(
        lab, f"/v1/customers/{customer}/recommendations", placement="home", limit=3
    ).json()
    variant, rid = answer["variant"], answer["recommendation_id"]
    first, second = answer["items"][0], answer["items"][1]
    before = {
        kind: lab.metric("omnirec_feedback_total", type=kind, variant=variant, placement="home")
        for kind in ("impression", "click", "purchase")
    }
    attributed = lab.metric("omnirec_attributed_purchases_total", variant=variant)
    revenue = lab.metric("omnirec_attributed_revenue_total", variant=variant)
    feedback = [
        *(
            {
                "type": "impression",
                "customer_id": customer,
                "item_id": i["item_id"],
                "recommendation_id": rid,
                "position": k + 1,
                "channel": "web",
            }
            for k, i in enumerate(answer["items"])
        ),
        {
            "type": "click",
            "customer_id": customer,
            "item_id": first["item_id"],
            "recommendation_id": rid,
            "position": 1,
            "channel": "web",
            "event_id": f"click-{rid}",
        },
        {
            "type": "click",
            "customer_id": customer,
            "item_id": "I000001",
            "recommendation_id": "not-ours",
        },
        {"type": "stare", "customer_id": customer, "item_id": "I000001"},
    ]
    with lab.client("events") as c:
        r = c.post("/v1/feedback", json={"feedback": feedback})
        assert r.status_code == 202, r.text
        assert r.json()["accepted"] == 4 and r.json()["rejected"] == 2
        assert [(e["index"], e["field"]) for e in r.json()["errors"]] == [
            (4, "recommendation_id"),
            (5, "type"),
        ]
        # a retried click is stored once; the purchase quotes no id: the click names its variant
        r = c.post(
            "/v1/feedback",
            json={
                "feedback": [
                    feedback[3],
                    {
                        "type": "purchase",
                        "customer_id": customer,
                        "item_id": first["item_id"],
                        "price": 12.5,
                        "quantity": 2,
                    },
                    {
                        "type": "purchase",
                        "customer_id": customer,
                        "item_id": second["item_id"],
                        "price": 3.0,
                    },
                ]
            },
        )
        assert r.status_code == 202 and r.json()["duplicates"] == 1
        forbidden = httpx.post(
            f"{lab.base_url}/v1/feedback",
            json={"feedback": feedback[:1]},
            headers={"X-API-Key": KEYS["recommend"]},
        )
        assert forbidden.status_code == 403
    after = {
        kind: lab.metric("omnirec_feedback_total", type=kind, variant=variant, placement="home")
        for kind in ("impression", "click")
    }
    assert after["impression"] - before["impression"] == 3 and after["click"] - before["click"] == 1
    # only the purchase of the clicked item counts, with its revenue
    assert lab.metric("omnirec_attributed_purchases_total", variant=variant) - attributed == 1
    assert lab.metric(
        "omnirec_attributed_revenue_total", variant=variant
    ) - revenue == pytest.approx(25.0)
    # exported beside the event log, with the variant and placement of each record
    out = lab.data.parent / "exported" / "events"
    done = subprocess.run(
        [sys.executable, "-m", "cli", "export-events", "--out", str(out)],
        env={**os.environ, **lab.env},
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"exported [\d,]+ feedback records", done.stdout), done.stdout
    table = ds.dataset(out.parent / "feedback", format="parquet", partitioning="hive").to_table()
    mine = table.filter(pc.equal(table["customer_id"], customer))
    kinds = Counter(str(k) for k in mine["feedback_type"].to_pylist())
    assert kinds["impression"] >= 3 and kinds["click"] == 1 and kinds["purchase"] == 2
    purchase = mine.filter(
        pc.and_(
            pc.equal(mine["item_id"], first["item_id"]), pc.equal(mine["feedback_type"], "purchase")
        )
    ).to_pylist()[0]
    assert (purchase["recommendation_id"], purchase["variant"], purchase["placement"]) == (
        rid,
        variant,
        "home",
    )
    # the report reads what was exported: one impression of this variant, clicked and converted
    report_dir = lab.data.parent / "report"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "experiments",
            "report",
            "model-ab",
            "--events",
            str(out),
            "--out",
            str(report_dir),
        ],
        env={**os.environ, **lab.env},
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert done.returncode == 0, done.stderr
    figures = next(
        v
        for v in json.loads((report_dir / "report.json").read_text())["variants"]
        if v["variant"] == variant
    )
    assert (figures["impressions"], figures["clicks"], figures["conversions"]) == (1, 1, 1)
    assert (
        figures["revenue"] == pytest.approx(25.0) and (report_dir / "report.png").stat().st_size > 0
    )


def test_a_purchase_posted_as_an_event_counts_for_the_clicked_recommendation(
    lab: Deployment,
) -> None:
    customer = CUSTOMERS[5]
    answer = _get(
        lab,
        f"/v1/customers/{customer}/recommendations",
        placement="home",
        limit=3,
        channel="email",
    ).json()
    variant, item = answer["variant"], answer["items"][2]["item_id"]
    assert answer["recommendation_id"].endswith(".home.email")  # the id names where it is shown
    attributed = lab.metric("omnirec_attributed_purchases_total", variant=variant, placement="home")
    crossed = lab.metric(
        "omnirec_attributed_purchases_by_channel_total", shown_on="email", bought_on="store"
    )
    revenue = lab.metric("omnirec_attributed_revenue_total", variant=variant, placement="home")
    with lab.client("events") as c:
        click = {
            "type": "click",
            "customer_id": customer,
            "item_id": item,
            "recommendation_id": answer["recommendation_id"],
            "position": 3,
        }
        assert c.post("/v1/feedback", json={"feedback": [click]}).status_code == 202
        bought = [
            {
                "customer_id": customer,
                "item_id": item,
                "event_type": "purchase",
                "channel": "store",
                "price": 7.0,
                "quantity": 3,
            },
            {
                "customer_id": customer,
                "item_id": "I000199",
                "event_type": "purchase",
                "channel": "store",
                "price": 99.0,
            },
        ]
        assert c.post("/v1/events/bulk", json={"events": bought}).status_code == 202
        # the storefront reports the same purchase as feedback, quoting the recommendation and
        # not: it is stored, and not counted a second time
        again = [
            {
                "type": "purchase",
                "customer_id": customer,
                "item_id": item,
                "price": 7.0,
                "quantity": 3,
                "recommendation_id": answer["recommendation_id"],
                "event_id": "again-quoted",
            },
            {
                "type": "purchase",
                "customer_id": customer,
                "item_id": item,
                "price": 7.0,
                "quantity": 3,
                "event_id": "again-unquoted",
            },
        ]
        posted = c.post("/v1/feedback", json={"feedback": again})
        assert posted.status_code == 202 and posted.json()["accepted"] == 2, posted.text
    # only the clicked item's purchase counts, once, price x quantity
    assert (
        lab.metric("omnirec_attributed_purchases_total", variant=variant, placement="home")
        - attributed
        == 1
    )
    assert (
        lab.metric("omnirec_attributed_revenue_total", variant=variant, placement="home") - revenue
        == 21.0
    )
    # the e-mail's suggestion bought at the till: counted on the channel pair, once
    assert (
        lab.metric(
            "omnirec_attributed_purchases_by_channel_total",
            shown_on="email",
            bought_on="store",
        )
        - crossed
        == 1
    )


def test_a_bad_experiments_file_stops_the_service_naming_it(
    lab: Deployment, tmp_path: Path
) -> None:
    bad = tmp_path / "experiments.toml"
    bad.write_text(
        '[experiments.x]\n[[experiments.x.variants]]\nname = "a"\nshare = 60\n'
        '[[experiments.x.variants]]\nname = "b"\nshare = 60\n'
    )
    env = {**os.environ, **lab.env, "OMNIREC_EXPERIMENTS_FILE": str(bad)}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "cli", "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert done.returncode == 2 and time.monotonic() - started < 60
    assert f"{bad}: experiments.x: variant shares add up to 120, not 100" in done.stderr


def test_the_shadow_model_is_computed_off_the_request_path_and_compared(lab: Deployment) -> None:
    # the challenger shadows every product_page request, each shadow answer taking 0.5 s more
    # (OMNIREC_SHADOW_DELAY_SECONDS), at most a quarter of the time: it falls behind, answers do not
    def counted(outcome: str) -> float:
        return lab.metric("omnirec_shadow_total", experiment="margin", outcome=outcome)

    before = {o: counted(o) for o in ("queued", "dropped", "done")}
    compared = lab.metric("omnirec_shadow_overlap_count", experiment="margin")
    for customer in CUSTOMERS[:12]:
        r = _get(lab, f"/v1/customers/{customer}/recommendations", placement="product_page")
        assert (
            r.status_code == 200 and r.json()["model_version"] == 1
        )  # the served model, not the shadow
    sampled = counted("queued") - before["queued"] + counted("dropped") - before["dropped"]
    assert sampled == 12
    assert counted("done") - before["done"] < 12  # the answers came back before their shadows
    # wait for this test's own comparisons: a shadow queued by an earlier test may finish between
    # the readings above (its overlap then counts in `compared` and its "done" after `before`)
    wait_until(
        lambda: lab.metric("omnirec_shadow_overlap_count", experiment="margin") > compared,
        "this test's shadow comparisons",
        every=0.5,
    )
    assert counted("done") > before["done"]


def test_each_worker_holds_the_versions_its_experiments_name_and_lets_go_of_the_rest(
    lab: Deployment,
) -> None:
    def held(version: str, role: str) -> float:
        return lab.metric("omnirec_loaded_model_bytes", version=version, role=role)

    assert held("1", "champion") > 100_000 and held("2", "experiment") > 10_000
    registry = ModelRegistry(lab.settings.mlflow)
    registry.set_alias("challenger", 1)  # no experiment names v2 any more
    try:
        wait_until(lambda: held("2", "experiment") == 0, "v2 let go", every=0.3)
        body = _get(lab, f"/v1/customers/{CUSTOMERS[0]}/recommendations", placement="home").json()
        assert body["model_version"] == 1  # both variants now answer with v1
    finally:
        registry.set_alias("challenger", 2)
    wait_until(lambda: held("2", "experiment") > 10_000, "v2 held again", every=0.3)
