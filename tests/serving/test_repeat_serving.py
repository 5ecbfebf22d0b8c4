"""A repeat model served (plain, and with its candidates re-ranked by the learned ranker): bought
items come back once the window the model learned has passed, never before, and items almost
nobody buys twice do not come back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from features.dataset import load_dataset
from models.registry import ModelRegistry
from models.repeat import RepeatExploreRecommender
from tests.deploy import Deployment, make_deployment


@pytest.fixture(scope="module", params=["repeat", "repeat_ranked"])
def served(
    tmp_path_factory: pytest.TempPathFactory, redis_server: str, request: pytest.FixtureRequest
) -> Iterator[Deployment]:
    dep = make_deployment(tmp_path_factory.mktemp(request.param), redis_server)
    params = {"neighbours": 20, **({"levels": 3} if request.param == "repeat_ranked" else {})}
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
    window = dict(zip(model.item_ids.tolist(), model.window_days.tolist(), strict=True))
    came_back = 0
    with served.client() as c:
        for k in range(100, 130):
            customer = f"C{k:08d}"
            body = c.get(f"/v1/customers/{customer}/recommendations", params={"limit": 10}).json()
            assert body["model_version"] == served.trained[-1].version
            bought = last_purchases(served.data, customer)
            now = time.time()
            for item in body["items"]:
                if item["item_id"] in bought and item["source"] == "personalized":
                    days_since = (now - bought[item["item_id"]]) / 86_400
                    assert days_since >= window[item["item_id"]], (customer, item)
                    came_back += 1
            kept = c.get(
                f"/v1/customers/{customer}/recommendations",
                params={"limit": 10, "exclude_purchased": "false"},
            ).json()
            assert kept["items"]
    assert came_back > 0  # due repeat purchases are suggested again, not excluded for good
    assert np.isinf(model.window_days).sum() < len(model.window_days)
