"""A repeat model served (plain, and with its candidates re-ranked by the learned ranker): bought
items come back once the show-again policy stored with the version says they are due, never
before, items almost nobody buys twice do not come back, and every door answers the same."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from features.dataset import load_dataset
from models import load_model
from models.registry import ModelRegistry
from models.repeat import RepeatExploreRecommender
from tests.deploy import Deployment, make_deployment


@pytest.fixture(scope="module", params=["repeat", "repeat_ranked"])
def served(
    tmp_path_factory: pytest.TempPathFactory, redis_server: str, request: pytest.FixtureRequest
) -> Iterator[Deployment]:
    dep = make_deployment(tmp_path_factory.mktemp(request.param), redis_server)
    params = {"neighbours": 20, **({"levels": 2} if request.param == "repeat_ranked" else {})}
    result = dep.train_and_publish(request.param, params)
    assert result.model.kind == request.param
    assert result.version is not None
    ModelRegistry(dep.settings.mlflow).set_champion(result.version)  # whatever the gate said
    dep.start_server()
    yield dep
    dep.stop_server()


def last_purchases(data: Path, customer: str) -> dict[str, float]:
    events = load_dataset(data).events
    bought = events.filter(
        pc.and_(
            pc.equal(events["customer_id"].cast("string"), customer),
            pc.equal(events["event_type"].cast("string"), "purchase"),
        )
    )
    last: dict[str, float] = {}
    for item, at in zip(
        bought["item_id"].cast("string").to_pylist(), bought["timestamp"].to_pylist(), strict=True
    ):
        last[item] = max(last.get(item, 0.0), at.timestamp())
    return last


def test_bought_items_come_back_only_when_due(served: Deployment) -> None:
    model = served.trained[-1].model
    assert isinstance(model, RepeatExploreRecommender)
    policy = model.show_again
    assert policy.mode == "when_due"
    came_back = 0
    with served.client() as c:
        for k in range(100, 130):
            customer = f"C{k:08d}"
            body = c.get(f"/v1/customers/{customer}/recommendations", params={"limit": 10}).json()
            assert body["model_version"] == served.trained[-1].version
            bought = last_purchases(served.data, customer)
            now = time.time()
            row = model.rows_of([customer])[0]
            for item in body["items"]:
                if item["item_id"] in bought and item["source"] == "personalized":
                    col = model.columns_of([item["item_id"]])
                    own = model.own_window_days(np.array([row]), col)
                    assert not policy.hides(col, np.array([bought[item["item_id"]]]), now, own)[0]
                    came_back += 1
            kept = c.get(
                f"/v1/customers/{customer}/recommendations",
                params={"limit": 10, "exclude_purchased": "false"},
            ).json()
            assert kept["items"]
    assert came_back > 0  # due repeat purchases are suggested again, not excluded for good
    assert policy.window_days is not None
    assert np.isinf(policy.window_days).sum() < len(policy.window_days)


def test_every_door_gives_the_same_answer(served: Deployment, tmp_path: Path) -> None:
    """The evaluation, the registered MLflow model and the HTTP route apply the same show-again
    policy: asked about the same customers at (nearly) the same time, the same top 10 (the route
    also leaves out what the catalogue marks inactive, so the others' lists are read past those);
    an alias asked through the pyfunc is answered as its customer, as the route does."""
    import mlflow.pyfunc

    from training.evaluation import policy_recommendations

    result = served.trained[-1]
    assert result.version is not None
    registry = ModelRegistry(served.settings.mlflow)
    model = load_model(registry.download(result.version, tmp_path))
    assert model.show_again.mode == "when_due"  # stored with the version
    mlflow.set_tracking_uri(served.settings.mlflow.tracking_uri)
    name = served.settings.mlflow.model_name
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{result.version}")
    dataset = load_dataset(served.data)
    assert dataset.catalogue is not None
    catalogue = dataset.catalogue.to_pydict()
    active = {i for i, a in zip(catalogue["item_id"], catalogue["active"], strict=True) if a}
    aliases = dataset.identities.table.to_pydict()
    alias_of = dict(zip(aliases["customer_id"], aliases["alias_id"], strict=True))

    def shown(items: list[str], scores: list[float]) -> tuple[list[str], list[float]]:
        kept = [(i, s) for i, s in zip(items, scores, strict=True) if i in active][:10]
        return [i for i, _ in kept], [s for _, s in kept]

    compared = 0
    with served.client() as c:
        for customer in [f"C{k:08d}" for k in range(100, 130)]:
            body = c.get(f"/v1/customers/{customer}/recommendations", params={"limit": 10}).json()
            now = time.time()
            if any(i["source"] != "personalized" or i["score"] <= 0 for i in body["items"]):
                continue  # the route's fallbacks, or ties of no signal: not the model's choice
            ids, values = policy_recommendations(
                model, model.rows_of([customer]), np.array([now]), 40
            )
            evaluation, scores = shown([str(model.item_ids[i]) for i in ids[0]], values[0].tolist())
            asked = [customer, alias_of[customer]] if customer in alias_of else [customer]
            out = pyfunc.predict(asked, params={"n": 40, "now": now})
            for who in asked:
                mine = out[out["customer_id"] == who].sort_values("rank")
                door, _ = shown(mine["item_id"].tolist(), mine["score"].tolist())
                assert door == evaluation, (who, door, evaluation)
            # equal scores may come in either order: the same scores, the same items above ties
            route = [(i["item_id"], i["score"]) for i in body["items"]]
            assert [s for _, s in route] == pytest.approx(scores, abs=2e-6), customer
            tied = scores[-1] + 2e-6
            above = {i for i, s in zip(evaluation, scores, strict=True) if s > tied}
            assert {i for i, s in route if s > tied} == above, customer
            compared += 1
    assert compared >= 20


def test_a_purchase_posted_live_follows_the_same_policy(served: Deployment) -> None:
    """A purchase posted to the service hides an item exactly as the same purchase in the event
    log would: for the customer's own window where they have a rhythm for it, not at all for an
    item the policy lets come back at once (it used to hide every live purchase for 90 days)."""
    model = served.trained[-1].model
    policy = model.show_again
    assert policy.window_days is not None
    with served.client() as c:
        for k in range(130, 200):
            customer = f"C{k:08d}"
            before = c.get(f"/v1/customers/{customer}/recommendations", params={"limit": 10})
            items = [i["item_id"] for i in before.json()["items"] if i["source"] == "personalized"]
            row = model.rows_of([customer])
            cols = model.columns_of(items)
            own = model.own_window_days(np.repeat(row, len(cols)), cols)
            free = [
                i
                for i, col, mine in zip(items, cols, own, strict=True)
                if np.isnan(mine) and policy.window_days[col] == 0
            ]
            if free:
                break
        else:
            pytest.fail("no customer has an item that comes back at once")
        event = {
            "customer_id": customer,
            "item_id": free[0],
            "event_type": "purchase",
            "channel": "web",
        }
        with served.client("events") as events:
            assert events.post("/v1/events", json=event).status_code == 202
        after = c.get(f"/v1/customers/{customer}/recommendations", params={"limit": 10}).json()
        assert free[0] in [i["item_id"] for i in after["items"]]


def test_every_item_says_why_without_asking(served: Deployment) -> None:
    """Cheap reasons by default, right for the source: a bought item says how often and how
    regularly the customer buys it (from the model), not what they viewed weeks ago."""
    model = served.trained[-1].model
    rhythm = 0
    with served.client() as c:
        for k in range(100, 160):
            customer = f"C{k:08d}"
            body = c.get(f"/v1/customers/{customer}/recommendations", params={"limit": 10}).json()
            row = model.rows_of([customer])[0]
            for item in body["items"]:
                assert item["reasons"], item
                first = item["reasons"][0]
                if first.startswith("bought ") and " times" in first:
                    count, _ = model.purchase_rhythm(row, model.columns_of([item["item_id"]]))
                    assert first.startswith(f"bought {count[0]:.0f} times"), (first, count)
                    rhythm += "usually every" in first
    assert rhythm > 0


def test_the_replenishment_list_names_who_is_due(served: Deployment, tmp_path: Path) -> None:
    """`omnirec due`: the customers whose own rhythm says an item is due within the week, with
    how often and when they last bought it, from the champion."""
    import os

    import pyarrow.parquet as pq

    from cli.main import main
    from training.due import DAY

    model = served.trained[-1].model
    env = {
        "MLFLOW_TRACKING_URI": served.settings.mlflow.tracking_uri,
        "OMNIREC_DATA_DIR": str(served.settings.data_dir),
    }
    os.environ.update(env)
    try:
        out = tmp_path / "due.parquet"
        assert main(["due", "--out", str(out), "--within", "7", "--data", str(served.data)]) == 0
    finally:
        for key in env:
            os.environ.pop(key, None)
    rows = pq.read_table(out).to_pylist()
    assert rows and all(r["name"] for r in rows)
    now = time.time()
    for r in rows[:50]:
        due = r["due_at"].timestamp()
        assert now - 0.5 * r["every_days"] * DAY - 60 <= due <= now + 7 * DAY + 60
        row = model.rows_of([r["customer_id"]])[0]
        count, every = model.purchase_rhythm(row, model.columns_of([r["item_id"]]))
        assert r["times_bought"] == int(count[0]) >= 3
        assert abs(r["every_days"] - every[0]) < 0.1
        assert abs(r["last_bought_at"].timestamp() + r["every_days"] * DAY - due) < 0.1 * DAY
