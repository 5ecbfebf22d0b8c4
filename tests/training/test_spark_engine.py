"""The Spark engine in local mode (`local[2]`) against the single-machine path on the same data:
the same interaction matrix and occasions, the same validation verdicts, the same snapshot and
recommendations, the same trained model. `test_spark_cluster` publishes and chooses a model on a
standalone cluster, against this process."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from cli.main import main
from features.dataset import load_dataset
from features.interactions import build_interactions
from features.keys import Keys
from features.spark_events import read_events, spark_interactions, spark_session, stop_spark
from features.store import RedisFeatureStore
from features.validation import validate_events
from omnirec.redis_access import RedisTarget
from omnirec.settings import InteractionSettings, Settings
from serving.ask import Ask
from serving.catalogue import load_snapshot
from serving.engine import Engine
from tests.features.test_event_rules import EXPECTED, FUTURE, ROWS, as_file
from tests.redis_servers import Cluster
from training.fitting import fit_model
from training.pipeline import TrainConfig, train
from training.spark_publish import spark_publish


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    session = spark_session("local[2]")
    yield session
    stop_spark(session)


@pytest.mark.parametrize(
    "interaction_settings",
    [
        InteractionSettings(),
        InteractionSettings(decay_half_life_days=20.0),  # from each customer's last event
        InteractionSettings(
            decay_half_life_days=5.0,
            decay_reference="global",
            quantity_scaling="linear",
            max_quantity=3,
        ),
    ],
    ids=["defaults", "customer-decay", "global-decay-linear"],
)
def test_interactions_from_spark_equal_the_single_machine_ones(
    spark: SparkSession, data: Path, interaction_settings: InteractionSettings
) -> None:
    dataset = load_dataset(data)
    local = build_interactions(dataset.events, interaction_settings)
    read = read_events(spark, data, 86_400)
    assert read.rejects.count() == 0
    distributed = spark_interactions(spark, read.accepted, interaction_settings)

    assert distributed.customer_ids.tolist() == local.customer_ids.tolist()
    assert distributed.item_ids.tolist() == local.item_ids.tolist()
    assert distributed.matrix.dtype == local.matrix.dtype == np.float32
    assert distributed.matrix.nnz == local.matrix.nnz > 10_000
    assert (distributed.matrix != local.matrix).nnz == 0  # every weight, bit for bit
    # the identity map was applied: aliases (devices, cards) are no rows of their own
    assert not any(c.startswith("D") for c in distributed.customer_ids.tolist())

    ours, theirs = distributed.occasions, local.occasions
    assert ours is not None and theirs is not None
    order = np.lexsort((theirs.days, theirs.cols, theirs.rows))
    assert np.array_equal(ours.rows, theirs.rows[order])
    assert np.array_equal(ours.cols, theirs.cols[order])
    assert np.array_equal(ours.days, theirs.days[order])


def test_spark_validation_gives_the_same_verdicts_and_says_where(
    spark: SparkSession, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    rows = [  # (customer, item, type, channel, timestamp, quantity, price, store)
        ("C1", "I1", "purchase", "store", now - timedelta(days=3), "2", "9.5", "S1"),
        (" C2 ", "I2", "BUY", " Web ", now - timedelta(days=2), "1", None, None),  # normalised
        ("C3", "I3", "addtocart", "app", now - timedelta(days=1), None, "1", None),
        (None, "I1", "view", "web", now, "1", None, None),  # customer_id: missing
        ("C 4", "I1", "view", "web", now, "1", None, None),  # invalid characters
        ("C5", "", "view", "web", now, "1", None, None),  # item_id: missing
        ("C6", "I1", "teleport", "web", now, "1", None, None),  # unknown type
        ("C7", "I1", "view", "W E B", now, "1", None, None),  # channel
        ("C8", "I1", "view", "web", now + timedelta(days=30), "1", None, None),  # future
        ("C9", "I1", "purchase", "web", now, "-2", None, None),  # quantity
        ("C10", "I1", "purchase", "web", now, "1.5", None, None),  # quantity: not whole
        ("C11", "I1", "purchase", "web", now, "x", None, None),  # quantity: not a number
        ("C12", "I1", "purchase", "web", now, "1", "-3", None),  # price
        ("C13", "I1", "purchase", "web", now, "1", "abc", None),  # price: not a number
        ("C14", "I1", "purchase", "store", now, "1", None, "S 1"),  # store id
    ]
    columns = [
        "customer_id",
        "item_id",
        "event_type",
        "channel",
        "timestamp",
        "quantity",
        "price",
        "store_id",
    ]
    table = pa.table(
        {
            name: pa.array(
                [row[i] for row in rows],
                pa.timestamp("us", tz="UTC") if name == "timestamp" else pa.string(),
            )
            for i, name in enumerate(columns)
        }
    )
    folder = tmp_path / "data"
    folder.mkdir()
    pq.write_table(table, folder / "events.parquet")

    local = validate_events(table)
    read = read_events(spark, folder, 86_400)
    rejects = read.rejects.orderBy("row").toArrow()
    assert rejects["row"].to_pylist() == local.rejects["row"].to_pylist() == list(range(4, 16))
    assert rejects["reason"].to_pylist() == local.rejects["reason"].to_pylist()
    assert {Path(f.removeprefix("file:")) for f in rejects["file"].to_pylist()} == {
        folder / "events.parquet"
    }
    assert rejects["customer_id"].to_pylist()[1] == "C 4"  # the row as it was sent
    accepted = read.accepted.orderBy("customer_id").toArrow()
    assert accepted["customer_id"].to_pylist() == ["C1", "C2", "C3"]
    assert accepted["event_type"].to_pylist() == ["purchase", "purchase", "add_to_cart"]
    assert accepted["channel"].to_pylist() == ["store", "web", "app"]
    assert accepted["quantity"].to_pylist() == [2, 1, 1]


def test_spark_gives_the_event_rules_corpus_the_verdicts_of_every_other_door(
    spark: SparkSession, tmp_path: Path
) -> None:
    """The corpus of `tests/features/test_event_rules.py`, read by Spark SQL as a file."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    pq.write_table(as_file(ROWS), folder / "events.parquet")
    rejects = read_events(spark, folder, FUTURE).rejects.orderBy("row").toArrow()
    found: list[str | None] = [None] * len(ROWS)
    for row, reason in zip(rejects["row"].to_pylist(), rejects["reason"].to_pylist(), strict=True):
        found[row - 1] = reason
    assert found == EXPECTED


def test_spark_executors_write_straight_to_a_redis_cluster(
    spark: SparkSession, data: Path, settings: Settings, tmp_path: Path
) -> None:
    cluster = Cluster(tmp_path / "cluster").start()
    try:
        dataset = load_dataset(data)
        model = fit_model("als", {"factors": 16}, build_interactions(dataset.events), settings.seed)
        store = RedisFeatureStore(RedisTarget(cluster.url, cluster=True), "omnirec", timeout=30)
        summary = spark_publish(spark, store, model, data, 1, settings)
        assert store.active_snapshot() == summary.snapshot
        per_master = cluster.keys_per_master(Keys("omnirec").snapshot(summary.snapshot, "c", "*"))
        assert len(per_master) == 3 and all(n > 300 for n in per_master.values())
        assert sum(per_master.values()) == summary.customers
        served = Engine(settings, store)
        served.live.snapshot = load_snapshot(store, summary.snapshot, model, 1)
        customers = [str(c) for c in model.customer_ids.tolist()[:50]]
        answers = served.batches.answer_blocking(customers, Ask(request_id="t"))
        assert all(len(a.items) == 10 and a.source == "personalized" for a in answers)
        store.close()
    finally:
        cluster.stop()


def test_train_and_publish_with_the_spark_engine(
    spark: SparkSession, data: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    config = TrainConfig(data=data, model="als", params={"factors": 16}, register=False)
    local = train(config, settings)
    distributed = train(dataclasses.replace(config, engine="spark"), settings)
    assert distributed.dataset is None
    assert distributed.interactions.shape == local.interactions.shape
    assert (distributed.interactions.matrix != local.interactions.matrix).nnz == 0
    # the same matrix and seed: the same model, the same held-out metrics
    assert distributed.metrics["all"]["ndcg"] == pytest.approx(
        local.metrics["all"]["ndcg"], abs=1e-6
    )
    assert distributed.metrics["all"]["recall"] == pytest.approx(
        local.metrics["all"]["recall"], abs=1e-6
    )

    env = {
        "OMNIREC_DATA_DIR": str(settings.data_dir),
        "MLFLOW_TRACKING_URI": settings.mlflow.tracking_uri,
        "REDIS_URL": settings.redis.url or "",
        "OMNIREC_REDIS_PREFIX": settings.redis.prefix,
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        assert (
            main(
                [
                    "train",
                    "--data",
                    str(data),
                    "--engine",
                    "spark",
                    "--model",
                    "als",
                    "--params",
                    '{"factors": 16}',
                    "--no-publish",
                ]
            )
            == 0
        )
        assert main(["publish", "1", "--engine", "spark"]) == 0
        printed = capsys.readouterr().out
        assert "published snapshot v1-" in printed and "1,499 customers" in printed
    store = RedisFeatureStore(settings.redis.url or "", settings.redis.prefix, timeout=30)
    active = store.active_snapshot()
    assert active is not None and active.startswith("v1-")
    store.close()
