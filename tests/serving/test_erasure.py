"""The right to erasure and of access, end to end on a real deployment: a customer asked for by an
alias is exported, then forgotten through the service; their id and every alias are then looked
for in every Redis key and value, every data file, every MLflow artifact, a restore after Redis
lost its data, and the next training."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pyarrow.parquet as pq
import pytest
import redis

from features.dataset import load_dataset
from features.erasure_log import LOG_FILE
from features.export import export_events
from features.realtime import RealtimeEvents
from features.store import RedisFeatureStore
from models.registry import ModelRegistry, serving_copy
from tests.deploy import Deployment, running
from tests.waiting import wait_until
from training.forget import apply_erasures
from training.pipeline import TrainConfig, train

CUSTOMER = "C00000007"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Iterator[Deployment]:
    with running(tmp_path_factory.mktemp("erasure"), redis_server) as dep:
        yield dep


def person(dep: Deployment) -> list[str]:
    table = load_dataset(dep.data).identities.table.to_pydict()
    aliases = [
        a for a, c in zip(table["alias_id"], table["customer_id"], strict=True) if c == CUSTOMER
    ]
    assert aliases, "the generated customer has aliases"
    return [CUSTOMER, *aliases]


def found_in_redis(client: redis.Redis, prefix: str, ids: list[str]) -> list[str]:
    """Every key of the deployment whose name or value holds one of `ids`."""
    needles = [i.encode() for i in ids]
    hits = []
    for key in client.scan_iter(match=f"*{prefix}*", count=10_000):
        kind = client.type(key)
        if kind == b"string":
            values = [client.get(key) or b""]
        elif kind == b"list":
            values = client.lrange(key, 0, -1)
        elif kind == b"hash":
            values = [b"".join([k, v]) for k, v in client.hgetall(key).items()]
        elif kind == b"set":
            values = list(client.smembers(key))
        elif kind == b"zset":
            values = client.zrange(key, 0, -1)
        elif kind == b"stream":
            values = [b"".join(f.values()) for _, f in client.xrange(key)]
        else:
            values = []
        if any(n in key or any(n in v for v in values) for n in needles):
            hits.append(key.decode())
    return hits


def found_in_files(folder: Path, ids: list[str]) -> list[str]:
    """Files under `folder` holding one of `ids`: Parquet read as tables, npz as arrays, others
    as UTF-8 and UTF-32 bytes."""
    hits = []
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix == ".parquet":
            text = str(pq.read_table(path).to_pylist()).encode()
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                text = b"".join(
                    "\n".join(npz[k].astype(str).ravel().tolist()).encode()
                    for k in npz.files
                    if npz[k].dtype.kind == "U"
                )
        else:
            text = path.read_bytes()
        if any(i.encode() in text or i.encode("utf-32-le") in text for i in ids):
            hits.append(str(path))
    return hits


def test_export_then_forget_everywhere(deployment: Deployment, tmp_path: Path) -> None:
    dep = deployment
    ids = person(dep)
    alias = ids[1]
    shutil.copytree(dep.data, tmp_path / "unswept")  # a copy made before the erasure
    client = redis.Redis.from_url(dep.settings.redis.url or "")
    prefix = dep.settings.redis.prefix
    store = RedisFeatureStore(dep.settings.redis.url or "", prefix)
    event = {"customer_id": alias, "item_id": "I000020", "event_type": "purchase", "channel": "web"}
    with dep.client("events") as c:
        assert c.post("/v1/events", json=event).status_code == 202
    log_folder = dep.data / "event-log"
    export_events(RealtimeEvents(store, streams=dep.settings.redis.event_streams), log_folder)
    with dep.client("events") as c:  # one more, still in the stream when the erasure comes
        assert c.post("/v1/events", json={**event, "item_id": "I000021"}).status_code == 202
    assert found_in_files(log_folder, ids)
    assert found_in_redis(client, prefix, ids)

    # the right of access: everything held, asked for by an alias
    with dep.client("privacy") as c:
        held = c.get(f"/v1/customers/{alias}/export").json()
    assert held["customer_id"] == CUSTOMER and set(ids) <= set(held["ids"])
    assert held["purchases"] and held["profile"]["customer_id"] == CUSTOMER
    with dep.client("recommend") as c:
        assert c.delete(f"/v1/customers/{alias}").status_code == 403  # its own scope

    # forgotten through the service: Redis at once
    with dep.client("privacy") as c:
        answer = c.delete(f"/v1/customers/{alias}")
    assert answer.status_code == 200, answer.text
    done = answer.json()
    assert done["erased"] and done["ids"] >= len(ids) and done["redis_entries"] > 0
    assert found_in_redis(client, prefix, ids) == []
    with dep.client() as c:
        body = c.get(f"/v1/customers/{CUSTOMER}/recommendations").json()
    assert body["source"] in {"popular", "trending"}  # an unknown customer now
    log = (dep.settings.data_dir / LOG_FILE).read_text()
    assert log and not any(i in log for i in ids)  # salted hashes and times only

    # Redis loses everything: the restore from MLflow does not bring them back
    for key in client.scan_iter(match=f"*{prefix}*", count=10_000):
        client.delete(key)

    def restored() -> bool:
        with dep.client() as c:
            return (
                c.get("/v1/customers/C00000008/recommendations").json()["source"] == "personalized"
            )

    wait_until(restored, "the snapshot restored from MLflow")
    assert found_in_redis(client, prefix, ids) == []

    # the files and MLflow follow from the log (`omnirec forget --pending`)
    served_copy = serving_copy(dep.settings.data_dir, 1)
    assert (served_copy / "model.json").exists()  # what the running service fetched
    applied = apply_erasures(dep.settings, [dep.data])
    assert applied.files and applied.model_versions == [1] and applied.snapshot_rows > 0
    assert not served_copy.exists()  # a restart fetches the rewritten files, not the old ones
    assert found_in_files(dep.data, ids) == []
    registry = ModelRegistry(dep.settings.mlflow)
    for version in registry.versions():
        artifacts = tmp_path / f"v{version.version}"
        mlflow.artifacts.download_artifacts(
            run_id=version.run_id,
            dst_path=str(artifacts / "run"),
            tracking_uri=dep.settings.mlflow.tracking_uri,
        )
        registry.download(version.version, artifacts / "model")
        assert found_in_files(artifacts, ids) == []
    assert apply_erasures(dep.settings, [dep.data]).files == []  # idempotent
    with dep.client("privacy") as c:
        again = c.delete(f"/v1/customers/{alias}").json()
    assert again["redis_entries"] == 0

    # the next training leaves them out, even from data files the erasure never swept
    result = train(
        TrainConfig(data=tmp_path / "unswept", model="popularity", register=False), dep.settings
    )
    assert not set(ids) & set(result.model.customer_ids.tolist())
