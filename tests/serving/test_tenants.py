"""Two retailers in one deployment: one service process serves each tenant's champion from its own
data folder, Redis prefix, MLflow model and stock; a key reaches its own tenant only, ids that
exist in both never mix, and metrics carry the tenant."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from cli.main import main
from features.generator import GeneratorConfig, generate
from omnirec.redis_runtime import free_port
from omnirec.settings import Settings
from tests.waiting import PATIENCE, wait_until
from training.pipeline import TrainConfig, train
from training.versions import publish_version

TENANTS = ("north", "south")
SCOPES = ("recommend", "events", "tablet", "stock", "admin", "privacy")
SIZES = {"north": (300, 120), "south": (400, 150)}  # customers, items: the south has more
KEYS = {(t, s): f"key-{t}-{s}-0123456789" for t in TENANTS for s in SCOPES}


class Service:
    def __init__(self, base: str, data: dict[str, Path], env: dict[str, str]) -> None:
        self.base, self.data, self.env = base, data, env

    def get(self, tenant: str, scope: str, path: str, **params: object) -> httpx.Response:
        headers = {"X-API-Key": KEYS[(tenant, scope)]}
        return httpx.get(self.base + path, params=params, headers=headers, timeout=PATIENCE)

    def post(self, tenant: str, scope: str, path: str, body: object) -> httpx.Response:
        headers = {"X-API-Key": KEYS[(tenant, scope)]}
        return httpx.post(self.base + path, json=body, headers=headers, timeout=PATIENCE)

    def delete(self, tenant: str, scope: str, path: str) -> httpx.Response:
        headers = {"X-API-Key": KEYS[(tenant, scope)]}
        return httpx.delete(self.base + path, headers=headers, timeout=PATIENCE)

    def names(self, tenant: str) -> dict[str, str]:
        table = pq.read_table(self.data[tenant] / "catalogue.parquet", columns=["item_id", "name"])
        return dict(zip(table["item_id"].to_pylist(), table["name"].to_pylist(), strict=True))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("tenants")
    env = {
        "OMNIREC_DATA_DIR": str(root / "var"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "REDIS_URL": redis_server,
        "OMNIREC_REDIS_PREFIX": f"t{uuid.uuid4().hex[:8]}",
        "OMNIREC_TENANTS": ",".join(TENANTS),
        "OMNIREC_API_KEYS": ";".join(f"{k}:{s}@{t}" for (t, s), k in KEYS.items()),
        "OMNIREC_RELOAD_INTERVAL_SECONDS": "0.5",
        "OMNIREC_TRENDING_REFRESH_SECONDS": "0",
    }
    base = Settings.from_env(env)
    data: dict[str, Path] = {}
    for seed, tenant in enumerate(TENANTS, start=3):
        own = base.for_tenant(tenant)
        data[tenant] = own.data_dir / "data"
        # the same customer and item ids in both, with other tastes, names and stock
        customers, items = SIZES[tenant]
        config = GeneratorConfig(customers=customers, items=items, days=45, stores=3, seed=seed)
        generate(config, data[tenant])
        result = train(
            TrainConfig(data=data[tenant], model="als", params={"factors": 8, "iterations": 5}),
            own,
        )
        assert result.version == 1  # each tenant's own first version
        publish_version(own, 1, data[tenant])
    port = free_port()
    log = (root / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port", str(port)],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if server.poll() is not None:
            raise RuntimeError((root / "server.log").read_text()[-3000:])
        return httpx.get(f"{url}/health/ready", timeout=PATIENCE).status_code == 200

    try:
        wait_until(ready, "the tenants' service ready", every=0.3, ignore=(httpx.HTTPError,))
        yield Service(url, data, env)
    finally:
        server.terminate()
        try:
            server.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            server.kill()


def test_each_tenant_is_served_its_own_champion(service: Service) -> None:
    ready = httpx.get(f"{service.base}/health/ready", timeout=PATIENCE).json()
    assert ready["status"] == "ok" and ready["tenants"] == {"north": 1, "south": 1}
    answers = {}
    for tenant in TENANTS:
        got = service.get(tenant, "recommend", "/v1/customers/C00000001/recommendations", limit=10)
        assert got.status_code == 200, got.text
        answers[tenant] = got.json()
        names = service.names(tenant)
        assert answers[tenant]["source"] == "personalized"
        assert all(i["name"] == names[i["item_id"]] for i in answers[tenant]["items"])
    # the same customer id in both: two catalogues, two models, two answers
    north, south = service.names("north"), service.names("south")
    assert any(north[i] != south[i] for i in north)
    assert [i["item_id"] for i in answers["north"]["items"]] != [
        i["item_id"] for i in answers["south"]["items"]
    ]


def test_what_a_key_posts_stays_in_its_tenant(service: Service) -> None:
    customer, item = "C00000007", "I000011"
    event = {"customer_id": customer, "item_id": item, "event_type": "view", "channel": "web"}
    assert service.post("north", "events", "/v1/events", event).status_code == 202

    def shows(tenant: str) -> bool:
        profile = service.get(tenant, "tablet", f"/v1/customers/{customer}/profile").json()
        return any(a["item_id"] == item and a["channel"] == "web" for a in profile["activity"][:1])

    wait_until(lambda: shows("north"), "the view in the north profile")
    assert not shows("south")
    # stock: the south's store S001 runs out of an item; the north's does not
    stocked = service.get(
        "north", "recommend", "/v1/customers/C00000002/recommendations", store_id="S001", limit=5
    ).json()["items"]
    gone = stocked[0]["item_id"]
    update = {"updates": [{"store_id": "S001", "item_id": gone, "quantity": 0}]}
    assert service.post("south", "stock", "/v1/stock", update).status_code == 200
    again = service.get(
        "north", "recommend", "/v1/customers/C00000002/recommendations", store_id="S001", limit=5
    ).json()["items"]
    assert gone in [i["item_id"] for i in again]
    # a tenant's admin key reloads its own tenant; other scopes stay as documented
    assert service.post("south", "admin", "/v1/admin/reload", {}).json()["model_version"] == 1
    assert service.post("north", "recommend", "/v1/admin/reload", {}).status_code == 403


def test_metrics_carry_the_tenant_and_the_cli_takes_one(
    service: Service, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    service.get("south", "recommend", "/v1/customers/C00000003/recommendations")
    metrics = httpx.get(f"{service.base}/metrics", timeout=PATIENCE).text
    requests = [m for m in metrics.splitlines() if m.startswith("omnirec_requests_total{")]
    assert any('tenant="south"' in m for m in requests)
    assert any('tenant="north"' in m for m in requests)
    for name, value in service.env.items():
        monkeypatch.setenv(name, value)
    assert main(["--tenant", "south", "models"]) == 0
    assert "v1" in capsys.readouterr().out
    assert main(["--tenant", "west", "models"]) == 2
    assert "unknown tenant 'west'" in capsys.readouterr().err


def test_on_every_route_a_key_never_reaches_the_other_tenants_customers_or_items(
    service: Service,
) -> None:
    """C00000350 and I000140 exist in the south only: the north's keys find nothing of them on
    any route, the south's find them."""
    customer, item = "C00000350", "I000140"
    path = f"/v1/customers/{customer}"

    def recommend(tenant: str) -> str:
        return str(service.get(tenant, "recommend", f"{path}/recommendations").json()["source"])

    assert recommend("south") == "personalized" and recommend("north") != "personalized"
    profile = {t: service.get(t, "tablet", f"{path}/profile").json()["known"] for t in TENANTS}
    assert profile == {"north": False, "south": True}
    found = {
        t: service.get(
            t, "tablet", "/v1/customers/lookup", alias_type="customer", value=customer
        ).json()["known"]
        for t in TENANTS
    }
    assert found == {"north": False, "south": True}
    similar = {
        t: service.get(t, "recommend", f"/v1/items/{item}/similar").json()["source"]
        for t in TENANTS
    }
    assert similar["south"] != "popular" and similar["north"] == "popular"
    cart = service.get("north", "recommend", f"{path}/cart/complements").json()
    assert cart["source"] != "personalized"
    batch = {
        t: service.post(
            t, "recommend", "/v1/recommendations/batch", {"customer_ids": [customer]}
        ).json()["results"][0]["source"]
        for t in TENANTS
    }
    assert batch["south"] == "personalized" and batch["north"] != "personalized"
    order = {"customer_id": customer, "item_ids": [item], "limit": 3}
    assert service.post("north", "recommend", "/v1/orders/complements", order).status_code == 200
    exported = {t: service.get(t, "privacy", f"{path}/export").json() for t in TENANTS}
    assert exported["south"]["profile"]["known"] and not exported["north"]["profile"]["known"]
    assert len(exported["south"]["ids"]) > 1 and exported["north"]["ids"] == [customer]
    # the north forgets its customer of that id: the south's is untouched
    assert service.delete("north", "privacy", path).status_code == 200
    assert service.get("south", "tablet", f"{path}/profile").json()["known"] is True
    assert recommend("south") == "personalized"
    stores = {t: service.get(t, "tablet", "/v1/stores").json()["names"] for t in TENANTS}
    assert stores["north"] and stores["north"] == stores["south"]  # same towns: same generator
