"""The Spark engine on a real standalone cluster started on this machine (a master and two
workers, each its own JVM, `tests.spark_cluster`): executors are separate processes with their own
Python, so every shuffle and every result crosses processes. It must give what the single-machine
path gives: the same interactions, the same published snapshot, the same model choice."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from features.dataset import load_dataset
from features.encoding import CUSTOMER_DECODER
from features.interactions import build_interactions
from features.snapshot_file import SCHEMA
from features.spark_events import spark_session, stop_spark
from features.store import RedisFeatureStore
from omnirec.settings import Settings
from serving.ask import Ask
from serving.catalogue import load_snapshot
from serving.engine import Engine
from tests.spark_cluster import LOOPBACK, SparkCluster
from training.fitting import fit_model
from training.pipeline import TrainConfig, train
from training.publish import publish
from training.spark_publish import spark_publish


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkCluster]:
    started = SparkCluster(tmp_path_factory.mktemp("spark-cluster")).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def spark(cluster: SparkCluster) -> Iterator[SparkSession]:
    before = os.environ.get("SPARK_LOCAL_IP")
    os.environ["SPARK_LOCAL_IP"] = LOOPBACK  # the driver, where the executors reach it
    session = spark_session(cluster.url)
    yield session
    stop_spark(session)
    if before is None:
        os.environ.pop("SPARK_LOCAL_IP", None)
    else:
        os.environ["SPARK_LOCAL_IP"] = before


def test_the_cluster_runs_executors_in_their_own_processes(
    spark: SparkSession, cluster: SparkCluster
) -> None:
    (application,) = cluster.state()["activeapps"]  # type: ignore[misc]
    assert application["cores"] == 2  # one from each worker
    pids = spark.sparkContext.parallelize(range(8), 8).map(lambda _: os.getpid()).collect()
    assert os.getpid() not in pids
    assert len(set(pids)) >= 2  # a Python worker per executor at least


def _records(store: RedisFeatureStore, snapshot: str) -> dict[str, bytes]:
    prefix = store.key(snapshot, "")
    keys = list(store.client.scan_iter(match=f"{prefix}*", count=5_000))
    values = store.client.mget(keys)
    return {k.decode()[len(prefix) :]: v for k, v in zip(keys, values, strict=True)}


def test_publish_on_the_cluster_writes_the_same_snapshot_and_answers_the_same(
    spark: SparkSession, data: Path, settings: Settings, tmp_path: Path
) -> None:
    """Publishing with Spark's executors writes the snapshot this process writes, and the
    service answers the same from it."""
    dataset = load_dataset(data)
    model = fit_model("als", {"factors": 16}, build_interactions(dataset.events), settings.seed)
    stores = {
        engine: RedisFeatureStore(
            settings.redis.url or "", f"{settings.redis.prefix}-{engine}", timeout=30
        )
        for engine in ("local", "spark")
    }
    local = publish(stores["local"], model, dataset, 1, settings, record=tmp_path / "local.parquet")
    distributed = spark_publish(
        spark, stores["spark"], model, data, 1, settings, record=tmp_path / "spark.parquet"
    )
    assert distributed.customers == local.customers > 1_400
    assert distributed.keys == local.keys

    ours, theirs = (
        _records(stores["spark"], distributed.snapshot),
        _records(stores["local"], local.snapshot),
    )
    assert set(ours) == set(theirs)
    shared = [k for k in theirs if not k.startswith("c:")]
    assert len(shared) > 400 and all(ours[k] == theirs[k] for k in shared)  # byte for byte
    customers = [k for k in theirs if k.startswith("c:")]
    same_candidates = 0
    for key in customers:
        a, b = CUSTOMER_DECODER.decode(ours[key]), CUSTOMER_DECODER.decode(theirs[key])
        # the scores of one customer come from a matmul over another block of customers: equal
        # up to float32 rounding, so near-ties may swap places
        scores_a = np.frombuffer(a.candidate_scores, np.float32)
        scores_b = np.frombuffer(b.candidate_scores, np.float32)
        np.testing.assert_allclose(scores_a, scores_b, rtol=1e-5, atol=1e-6)
        same_candidates += a.candidates == b.candidates
        rest = {"candidates": b"", "candidate_scores": b""}
        assert msgspec.structs.replace(a, **rest) == msgspec.structs.replace(b, **rest), key
    assert same_candidates >= 0.99 * len(customers)

    # the snapshot file holds what the executors wrote
    assert (
        pq.read_table(tmp_path / "spark.parquet").num_rows
        == pq.read_table(tmp_path / "local.parquet").num_rows
    )
    assert pq.read_schema(tmp_path / "spark.parquet").equals(SCHEMA)

    answers = {}
    for engine, store in stores.items():
        served = Engine(settings, store)
        summary = distributed if engine == "spark" else local
        served.live.snapshot = load_snapshot(store, summary.snapshot, model, 1)
        who = [k.removeprefix("c:") for k in sorted(customers)[:300]]
        answers[engine] = [
            [i.item_id for i in r.items]
            for r in served.batches.answer_blocking(who, Ask(request_id="t"))
        ]
    same = sum(a == b for a, b in zip(answers["spark"], answers["local"], strict=True))
    assert all(len(a) == 10 for a in answers["spark"])
    assert same >= 0.98 * len(answers["local"]), same
    for store in stores.values():
        store.close()


def test_model_auto_on_the_cluster_chooses_what_one_machine_chooses(
    spark: SparkSession, data: Path, settings: Settings
) -> None:
    config = TrainConfig(data=data, model="auto", register=False, refit_full=False)
    local = train(config, settings)
    distributed = train(dataclasses.replace(config, engine="spark"), settings)
    assert local.selection is not None and distributed.selection is not None
    # the same validation part (a time cut of the train part), the same scores, the same choice
    assert distributed.selection.validation == local.selection.validation
    assert distributed.selection.validation_customers == local.selection.validation_customers
    assert distributed.selection.best.label == local.selection.best.label
    ours, theirs = distributed.selection.trials, local.selection.trials
    assert [t.label for t in ours] == [t.label for t in theirs]
    assert [t.score or 0.0 for t in ours] == pytest.approx([t.score or 0.0 for t in theirs])
    # the shuffles across processes aggregate the matrix this process builds
    assert (distributed.interactions.matrix != local.interactions.matrix).nnz == 0
    assert distributed.metrics["all"]["ndcg"] == pytest.approx(local.metrics["all"]["ndcg"])
