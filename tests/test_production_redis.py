"""Production Redis: a real 3-master Redis Cluster and a real TLS-only Redis with an ACL user,
started here on loopback ports, each serving the whole path (publish, every route, events in and
out, a new champion) through the one access layer."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from features.io import read_table
from models.registry import ModelRegistry
from tests.deploy import Deployment, make_deployment
from tests.redis_servers import TLS_PASSWORD, Cluster, SentinelGroup, TlsRedis
from tests.serving.test_reliability import Load, wait_for
from tests.waiting import PATIENCE, wait_until
from training.versions import activate_version_snapshot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started = Cluster(tmp_path_factory.mktemp("cluster")).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def on_cluster(tmp_path_factory: pytest.TempPathFactory, cluster: Cluster) -> Iterator[Deployment]:
    dep = make_deployment(
        tmp_path_factory.mktemp("on-cluster"),
        cluster.url,
        customers=400,
        items=150,
        redis_env={"OMNIREC_REDIS_CLUSTER": "true"},
    )
    dep.start_server()
    yield dep
    dep.stop_server()


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    started = TlsRedis(tmp_path_factory.mktemp("tls")).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def on_tls(tmp_path_factory: pytest.TempPathFactory, tls_redis: TlsRedis) -> Iterator[Deployment]:
    dep = make_deployment(
        tmp_path_factory.mktemp("on-tls"),
        tls_redis.url(),
        customers=400,
        items=150,
        redis_env=tls_redis.env,
    )
    dep.start_server()
    yield dep
    dep.stop_server()


def cli(
    dep: Deployment, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env={**os.environ, **dep.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )  # the timeout guards against a hang


def every_route(dep: Deployment, tmp_path: Path) -> None:
    """Every route answers from Redis (personalized, not degraded), events go in and come out."""
    customer = "C00000003"
    with dep.client() as c:
        rec = c.get(
            f"/v1/customers/{customer}/recommendations", params={"limit": 5, "explain": True}
        )
        similar = c.get("/v1/items/I000010/similar", params={"limit": 5})
        complements = c.post(
            "/v1/orders/complements",
            json={"customer_id": "C00000008", "item_ids": ["I000010"], "limit": 5},
        )
        batch = c.post(
            "/v1/recommendations/batch",
            json={"customer_ids": [f"C{i:08d}" for i in range(1, 41)], "limit": 3},
        )
    assert rec.status_code == 200 and rec.json()["source"] == "personalized", rec.text
    assert not rec.json()["degraded"] and rec.json()["items"][0]["reasons"]
    assert similar.status_code == 200 and similar.json()["source"] == "similar"
    assert complements.status_code == 200 and not complements.json()["degraded"]
    assert complements.json()["items"][0]["source"] == "bought_together"
    results = batch.json()["results"]
    assert len(results) == 40 and not any(r["degraded"] for r in results)
    assert sum(r["source"] == "personalized" for r in results) > 30
    with dep.client("tablet") as c:
        lookup = c.get(
            "/v1/customers/lookup", params={"alias_type": "email", "value": "Customer3@Example.com"}
        ).json()
        profile = c.get(f"/v1/customers/{customer}/profile").json()
        stores = c.get("/v1/stores/")
    assert lookup["customer_id"] == customer and lookup["known"]
    assert profile["activity"] and profile["aliases"]
    assert stores.status_code == 200
    tag = hashlib.sha1(str(tmp_path).encode()).hexdigest()[:8]
    events = [
        {
            "customer_id": f"C{i:08d}",
            "item_id": "I000042",
            "event_type": "view",
            "channel": "web",
            "event_id": f"ev-{tag}-{i}",
        }
        for i in range(1, 301)
    ]
    with dep.client("events") as c:
        one = c.post("/v1/events", json={**events[0], "event_id": f"ev-{tag}-single"})
        bulk = c.post("/v1/events/bulk", json={"events": events})
        retry = c.post("/v1/events/bulk", json={"events": events[:50]})
    assert one.status_code == 202 and bulk.status_code == 202 and retry.status_code == 202
    assert (bulk.json()["accepted"], retry.json()["duplicates"]) == (300, 50)
    with dep.client() as c:
        fresh = c.get("/v1/customers/C00000007/profile", headers=dep.headers("tablet")).json()
    assert fresh["activity"][0]["item_id"] == "I000042"  # the real-time list, read back at once
    ready = httpx.get(f"{dep.base_url}/health/ready").json()
    assert ready["status"] == "ok" and ready["redis"] and ready["durable"] is True, ready
    out = tmp_path / "events"
    exported = cli(dep, "export-events", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    table = read_table(out)
    assert table.num_rows == 301  # once each: the retried 50 were not stored again
    listing = tmp_path / "customers.txt"
    listing.write_text("\n".join(f"C{i:08d}" for i in range(1, 101)))
    campaign = cli(dep, "batch", "--customers", str(listing), "--out", str(tmp_path / "c.csv"))
    assert campaign.returncode == 0, campaign.stderr
    assert len((tmp_path / "c.csv").read_text().splitlines()) == 1 + 100 * 10


def test_cluster_keys_spread_over_every_master(on_cluster: Deployment, cluster: Cluster) -> None:
    prefix = on_cluster.env["OMNIREC_REDIS_PREFIX"]
    per_master = cluster.keys_per_master(f"{prefix}:s:*")
    assert len(per_master) == 3 and min(per_master.values()) > 100, per_master
    snapshot_keys = sum(per_master.values())
    assert snapshot_keys > 400  # every customer, item list and stock bitmap of the snapshot
    print(f"\nsnapshot keys per master: {per_master}")


def test_cluster_serves_every_route_and_exports_events(
    on_cluster: Deployment, cluster: Cluster, tmp_path: Path
) -> None:
    every_route(on_cluster, tmp_path)
    streams = cluster.keys_per_master(f"{{{on_cluster.env['OMNIREC_REDIS_PREFIX']}:events:*")
    assert sum(1 for n in streams.values() if n) >= 2  # the event streams live on several masters


def test_cluster_hot_reloads_a_new_champion(on_cluster: Deployment) -> None:
    second = on_cluster.train_and_publish("itemknn", {"neighbours": 50})
    registry = ModelRegistry(on_cluster.settings.mlflow)
    with Load(on_cluster, "/v1/customers/C00000003/recommendations?limit=5") as load:
        registry.set_champion(second.version or 0)
        activate_version_snapshot(on_cluster.settings, second.version or 0)
        wait_for(lambda: load.versions[second.version] > 20)
    assert set(load.statuses) == {200}, load.statuses


def test_cluster_master_killed_under_load_never_5xx(
    on_cluster: Deployment, cluster: Cluster
) -> None:
    paths = [
        "/v1/customers/C00000003/recommendations?limit=5",
        "/v1/customers/C00000011/recommendations?limit=5",
    ]
    loads = [Load(on_cluster, path) for path in paths]
    for load in loads:
        load.__enter__()
    try:
        time.sleep(1.0)
        cluster.kill(cluster.ports[-1])
        time.sleep(4.0)
    finally:
        for load in loads:
            load.__exit__(None, None, None)
    statuses = sum((load.statuses for load in loads), start=type(loads[0].statuses)())
    assert statuses[200] > 50 and set(statuses) == {200}, statuses
    print(
        f"\none master killed under load: statuses {dict(statuses)}, "
        f"degraded {sum(load.degraded for load in loads)}"
    )


def test_tls_with_an_acl_user_serves_every_route(on_tls: Deployment, tmp_path: Path) -> None:
    every_route(on_tls, tmp_path)


def test_a_wrong_password_or_an_untrusted_certificate_names_redis_url(
    on_tls: Deployment, tls_redis: TlsRedis
) -> None:
    wrong = cli(on_tls, "snapshots", env={"REDIS_URL": tls_redis.url("not-the-password")})
    assert wrong.returncode == 2, wrong.stderr
    assert "REDIS_URL" in wrong.stderr and "password" in wrong.stderr
    assert TLS_PASSWORD not in wrong.stderr and "not-the-password" not in wrong.stderr
    untrusted = cli(on_tls, "snapshots", env={"OMNIREC_REDIS_CA_FILE": ""})
    assert untrusted.returncode == 2, untrusted.stderr
    assert "REDIS_URL" in untrusted.stderr and "not trusted" in untrusted.stderr
    serve = cli(on_tls, "serve", "--port", "1", env={"REDIS_URL": tls_redis.url("nope-nope")})
    assert serve.returncode == 2 and "REDIS_URL" in serve.stderr, serve.stderr


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    started = SentinelGroup(tmp_path_factory.mktemp("sentinel")).start()
    yield started
    started.stop()


def test_sentinel_serves_every_route_and_follows_a_failover(
    sentinels: SentinelGroup, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    dep = make_deployment(
        tmp_path_factory.mktemp("on-sentinel"),
        sentinels.url,
        customers=400,
        items=150,
        redis_env={"OMNIREC_REDIS_SENTINEL_MASTER": sentinels.name},
    )
    dep.start_server()
    try:
        every_route(dep, tmp_path)
        with Load(dep, "/v1/customers/C00000003/recommendations?limit=5") as load:
            time.sleep(1.0)
            sentinels.kill_master()  # the replica is promoted; the service finds it by itself
            started = time.monotonic()
            wait_until(lambda: _personalized(dep), "personalized answers again")
            recovered = time.monotonic() - started
        assert set(load.statuses) == {200}, load.statuses
        with dep.client("events") as c:
            after = c.post(
                "/v1/events",
                json={
                    "customer_id": "C00000003",
                    "item_id": "I000007",
                    "event_type": "view",
                    "channel": "web",
                },
            )
        assert after.status_code == 202, after.text
        print(
            f"\nSentinel failover under load: statuses {dict(load.statuses)}, degraded "
            f"{load.degraded}, personalized again {recovered:.1f} s after the promotion"
        )
    finally:
        dep.stop_server()


def _personalized(dep: Deployment) -> bool:
    with dep.client() as c:
        body = c.get("/v1/customers/C00000003/recommendations", params={"limit": 5}).json()
    return body["source"] == "personalized" and not body["degraded"]
