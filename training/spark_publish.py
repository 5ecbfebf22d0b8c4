"""Publishing with Spark: every customer scored on Spark's executors, each partition written
straight to Redis (or a Redis Cluster).

The driver computes what is shared (catalogue, popular lists per channel and store, bought-
together, stock, identities: small aggregates from Spark SQL) and writes it as the single-machine
publish does (`training.publish.publish_parts`). Customers are partitioned by id with all their
events; the saved model goes to every executor once (a zip, `SparkContext.addArchive`); each
partition runs the same code as the single-machine path (`event_arrays`, `purchases`,
`customer_entries`), so the snapshot holds the same records, and hands back what it wrote for the
snapshot file.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import scipy.sparse as sp
from pyspark import SparkFiles
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from features.dataset import SideTables, load_side_tables
from features.snapshot_file import SCHEMA, MemoryRecorder, SnapshotRecorder
from features.spark_events import (
    CANONICAL,
    collect,
    indexed,
    job,
    read_events,
    staging_folder,
    weight_of,
)
from features.store import RedisFeatureStore
from models import load_model
from models.base import Recommender
from omnirec.redis_access import RedisTarget
from omnirec.settings import Settings
from training.publish import PublishSummary, SnapshotParts, publish_parts
from training.snapshot import (
    CategoryCodes,
    GroupPopularity,
    customer_entries,
    event_arrays,
    purchases,
)

CUSTOMERS_PER_PARTITION = 50_000  # a partition's events and records fit an executor's memory
_MODELS: dict[str, Recommender] = {}  # per Python worker: the model files it has loaded


@dataclass(frozen=True)
class _PartitionJob:
    """What every partition needs, shipped with the task (small: no model, no events)."""

    model_file: str  # the name SparkFiles knows the saved model's unpacked archive by
    target: RedisTarget
    prefix: str
    snapshot: str
    channels: list[str]
    stores: list[str]
    categories: CategoryCodes
    candidates: int

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = pa.Table.from_batches(list(batches))
        if table.num_rows == 0:
            return
        model = _MODELS.get(self.model_file)
        if model is None:  # the first partition of this publish on this worker: load it once
            _MODELS.clear()
            model = _MODELS[self.model_file] = load_model(Path(SparkFiles.get(self.model_file)))
        ev = event_arrays(table, model, channels=self.channels, stores=self.stores)
        _, last_bought = purchases(ev, model.n_items)
        store = RedisFeatureStore(self.target, self.prefix, timeout=30)
        recorder = MemoryRecorder(self.prefix)
        store.recorder = recorder
        try:
            entries = customer_entries(model, ev, last_bought, self.categories, self.candidates)
            store.write_batch(self.snapshot, "c", entries)
        finally:
            store.close()
        yield from recorder.batches()


def _sparse(
    table: pa.Table, rows: str, cols: str, value: str, shape: tuple[int, int]
) -> sp.csr_matrix:
    """A CSR matrix of the table's (row, column, value) triples; zeros left out (as the local
    path leaves out events that weigh nothing)."""
    matrix = sp.csr_matrix(
        (
            np.asarray(table[value].to_numpy(), dtype=np.float64),
            (
                np.asarray(table[rows].to_numpy(), dtype=np.int64),
                np.asarray(table[cols].to_numpy(), dtype=np.int64),
            ),
        ),
        shape=shape,
    )
    matrix.eliminate_zeros()
    return matrix


def snapshot_parts(
    spark: SparkSession, events: DataFrame, model: Recommender, side: SideTables, settings: Settings
) -> tuple[SnapshotParts, DataFrame]:
    """The shared parts of a snapshot from Spark aggregates, and the events with each item's
    model column (`col`, -1 when the model has no such item)."""
    items = indexed(spark, [str(i) for i in model.item_ids.tolist()], "item_id", "col")
    events = events.join(F.broadcast(items), "item_id", "left").withColumn(
        "col", F.coalesce("col", F.lit(-1))
    )
    job(spark, "publish: channels and stores")
    channels = sorted(r[0] for r in events.select("channel").distinct().collect())
    stores = sorted(
        r[0] for r in events.select("store_id").distinct().collect() if r[0] is not None
    )
    known = events.filter(F.col("col") >= 0)
    weight = weight_of("event_type", settings.interactions.event_weights, 0.0)
    job(spark, "publish: popular per channel and store")
    by_channel = (
        known.join(F.broadcast(indexed(spark, channels, "channel", "group")), "channel")
        .groupBy("group", "col")
        .agg(F.sum(weight).alias("w"))
        .toArrow()
    )
    by_store = (
        known.filter(F.col("event_type") == "purchase")
        .join(F.broadcast(indexed(spark, stores, "store_id", "group")), "store_id")
        .groupBy("group", "col")
        .agg(F.sum(weight).alias("w"))
        .toArrow()
    )
    n_items = model.n_items
    groups = GroupPopularity(
        _sparse(by_channel, "group", "col", "w", (len(channels), n_items)),
        channels,
        _sparse(by_store, "group", "col", "w", (len(stores), n_items)),
        stores,
    )
    # kept units per customer x item (bought-together needs no customer order: a unique number each)
    signed = F.when(F.col("event_type") == "purchase", F.col("quantity")).when(
        F.col("event_type") == "return", -F.col("quantity")
    )
    customer_numbers = (
        events.select("customer_id")
        .distinct()
        .withColumn("number", F.monotonically_increasing_id())
    )
    job(spark, "publish: kept units (bought-together)")
    kept = collect(
        known.filter(F.col("event_type").isin("purchase", "return"))
        .groupBy("customer_id", "col")
        .agg(F.sum(signed).alias("units"))
        .filter(F.col("units") > 0)
        .join(customer_numbers, "customer_id")
        .select("number", "col", "units")
    )
    _, dense = np.unique(np.asarray(kept["number"].to_numpy()), return_inverse=True)
    units = sp.csr_matrix(
        (
            np.asarray(kept["units"].to_numpy(), dtype=np.float64),
            (dense, np.asarray(kept["col"].to_numpy())),
        ),
        shape=(int(dense.max(initial=-1)) + 1, n_items),
    )
    job(spark, "publish: customers and the newest event")
    totals = events.agg(
        F.countDistinct("customer_id").alias("customers"),
        F.max(F.unix_seconds("timestamp")).alias("end"),
    ).first()
    assert totals is not None
    parts = SnapshotParts(
        side.catalogue,
        side.stock,
        side.stores,
        side.identities.table,
        groups,
        units,
        int(totals["customers"]),
        int(totals["end"] or 0),
    )
    return parts, events


def spark_publish(
    spark: SparkSession,
    store: RedisFeatureStore,
    model: Recommender,
    folder: Path,
    version: int,
    settings: Settings,
    *,
    activate: bool = True,
    record: Path | None = None,
    candidates: int | None = None,
) -> PublishSummary:
    """`training.publish.publish` with Spark reading the events and its executors scoring and
    writing every customer; the same snapshot, switched to when `activate`."""
    side = load_side_tables(folder if folder.is_dir() else folder.parent)
    read = read_events(spark, folder, settings.max_future_seconds, identities=side.identities)
    accepted = read.accepted.cache()
    try:  # read and validated once for the aggregates and the partitions
        return _spark_publish(
            spark,
            store,
            model,
            accepted,
            side,
            version,
            settings,
            activate=activate,
            record=record,
            candidates=candidates,
        )
    finally:
        accepted.unpersist()


def _spark_publish(
    spark: SparkSession,
    store: RedisFeatureStore,
    model: Recommender,
    events: DataFrame,
    side: SideTables,
    version: int,
    settings: Settings,
    *,
    activate: bool,
    record: Path | None,
    candidates: int | None,
) -> PublishSummary:
    parts, events = snapshot_parts(spark, events, model, side, settings)
    partitions = max(
        spark.sparkContext.defaultParallelism, -(-parts.customers // CUSTOMERS_PER_PARTITION)
    )
    with tempfile.TemporaryDirectory(prefix="omnirec-spark-") as tmp:
        model_dir = model.save(
            Path(tmp) / f"model-v{version}-{uuid.uuid4().hex}"
        )  # a new name each time
        # one zip archive, unpacked once on every executor: Spark refuses to ship a folder
        # (addFile recursive) to any master but local mode
        archive = Path(shutil.make_archive(str(model_dir), "zip", root_dir=model_dir))
        spark.sparkContext.addArchive(str(archive))
        staged = staging_folder() / f"omnirec-spark-records-{uuid.uuid4().hex}"

        def write_customers(
            store: RedisFeatureStore, snapshot: str, categories: CategoryCodes
        ) -> int:
            scoring = _PartitionJob(
                archive.name,
                store.target,
                store.prefix,
                snapshot,
                parts.channels,
                parts.store_ids,
                categories,
                candidates or settings.serving.candidates_per_customer,
            )
            by_customer = (
                events.select(*CANONICAL)
                .repartition(partitions, "customer_id")
                .sortWithinPartitions("customer_id", "timestamp", "item_id", "event_type")
            )
            records = by_customer.mapInArrow(scoring, "key binary, value binary")
            job(spark, "publish: score and write every customer (executors -> Redis)")
            records.write.mode("overwrite").parquet(str(staged))
            try:
                written = pads.dataset(str(staged), format="parquet", schema=SCHEMA)
                if isinstance(store.recorder, SnapshotRecorder):  # executors' records join the file
                    for batch in written.to_batches():
                        store.recorder.append(batch)
                return int(written.count_rows())
            finally:
                shutil.rmtree(staged, ignore_errors=True)

        return publish_parts(
            store,
            model,
            parts,
            write_customers,
            version,
            settings,
            activate=activate,
            record=record,
        )


__all__ = ["spark_publish"]
