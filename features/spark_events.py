"""The event log through Spark SQL, for data that does not fit one machine: read, validate and
identity-stitch the events, weight them and aggregate them into the same interaction matrix
(`features.interactions.build_interactions`) and purchase occasions the single-machine path builds.

Only aggregates come back to the driver: the matrix as (row, column, weight) integers, the id
vocabularies, and the (small) test part of a time split. pyspark is imported here and in
`features.spark_rules` (the event rules in Spark SQL) only, so the rest of the project runs
without it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.dataset as pads
import scipy.sparse as sp
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from features.dataset import events_path, load_identities
from features.identity import IdentityMap
from features.interactions import MICROS_PER_DAY
from features.schema import EVENTS
from features.spark_rules import validated
from omnirec.errors import DataError
from omnirec.interaction_data import Interactions, Occasions
from omnirec.settings import InteractionSettings

# Java's `\z` is the end of the text (its `$` and `\Z`, like Python's `$`, allow a final newline)
CANONICAL = [field.name for field in EVENTS]


def spark_session(master: str | None = None) -> SparkSession:
    """The Spark session (created once per process): `master`, else $OMNIREC_SPARK_MASTER, else
    local mode on every core; Python workers run this interpreter; times are UTC."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    master = master or os.environ.get("OMNIREC_SPARK_MASTER", "local[*]")
    builder = (
        SparkSession.builder.appName("omnirec")
        .master(master)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.showConsoleProgress", str(sys.stderr.isatty()).lower())
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config(
            "spark.driver.memory",
            os.environ.get("OMNIREC_SPARK_DRIVER_MEMORY") or _driver_memory(master),
        )
        .config("spark.sql.shuffle.partitions", os.environ.get("OMNIREC_SPARK_PARTITIONS", "64"))
    )
    event_log = os.environ.get("OMNIREC_SPARK_EVENT_LOG")  # a folder: stages and task times
    if event_log:
        Path(event_log).mkdir(parents=True, exist_ok=True)
        builder = builder.config("spark.eventLog.enabled", "true").config(
            "spark.eventLog.dir", Path(event_log).resolve().as_uri()
        )
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def stop_spark(session: SparkSession) -> None:
    """Stop the session and the JVM this process launched for it (SparkSession.stop leaves the
    JVM running until the interpreter exits)."""
    from pyspark import SparkContext

    session.stop()
    gateway = SparkContext._gateway
    if gateway is None:
        return
    gateway.shutdown()
    process = getattr(gateway, "proc", None)
    if process is not None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    SparkContext._gateway = None
    SparkContext._jvm = None


def _driver_memory(master: str) -> str:
    """4g; in local mode (the executors live in the driver's JVM) a third of this machine's
    memory when that is more (100M events ran out of 4g: cached events, shuffles)."""
    if not master.startswith("local"):
        return "4g"
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{max(4, total // 3 // 2**30)}g"


def staging_folder() -> Path:
    """Where executors leave large results for the driver: $OMNIREC_SPARK_STAGING or the temp
    folder (on a cluster it must be storage both reach)."""
    return Path(os.environ.get("OMNIREC_SPARK_STAGING") or tempfile.gettempdir())


def collect(frame: DataFrame) -> pa.Table:
    """A result that may be large, on the driver: Spark's executors write it as Parquet into the
    staging folder ($OMNIREC_SPARK_STAGING, default the temp folder; on a cluster, storage the
    driver and executors share) and pyarrow reads it, so the driver's JVM never holds it."""
    folder = staging_folder() / f"omnirec-spark-{uuid.uuid4().hex}"
    frame.write.parquet(str(folder))
    try:
        return pads.dataset(str(folder), format="parquet").to_table()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class SparkEvents:
    """Accepted (canonical, identity-stitched) events, rejects (reason, file, row) and the number
    of rows read (from the files' metadata: rejected = rows - accepted)."""

    accepted: DataFrame
    rejects: DataFrame
    rows: int


def job(spark: SparkSession, description: str) -> None:
    """Name the Spark jobs that follow (Spark's event log and UI show it; `./dev bench spark`
    groups its stages by it)."""
    spark.sparkContext.setJobDescription(description)


def read_events(
    spark: SparkSession,
    folder: Path,
    max_future_seconds: float,
    *,
    now: float | None = None,
    identities: IdentityMap | None = None,
) -> SparkEvents:
    """The data folder's events validated as `features.validation.validate_events` does (the same
    rules and reasons, the first failing rule per row) and stitched through its identity map
    (`identities`, when the caller has read it already)."""
    path = events_path(Path(folder))
    if path.is_dir() or path.suffix in {".parquet", ".pq"}:
        raw = spark.read.parquet(str(path))
        try:  # where each row came from, for the rejects
            raw = raw.withColumn("source_row", F.col("_metadata.row_index") + 1)
        except AnalysisException:
            raw = raw.withColumn("source_row", F.lit(None).cast("long"))
    else:
        raw = spark.read.option("header", True).csv(str(path))  # every column as text
        raw = raw.withColumn("source_row", F.lit(None).cast("long"))
    raw = raw.withColumn("source_file", F.col("_metadata.file_path"))
    missing = [
        c
        for c in ("customer_id", "item_id", "event_type", "channel", "timestamp")
        if c not in raw.columns
    ]
    if missing:
        raise DataError(str(path), f"missing required column(s) {', '.join(missing)}")
    latest = int(
        ((now if now is not None else datetime.now(UTC).timestamp()) + max_future_seconds) * 1e6
    )
    checked = validated(raw, latest, max_future_seconds)
    reason = F.col("_reason")
    accepted = checked.filter(reason.isNull()).select(*[F.col(f"_{n}").alias(n) for n in CANONICAL])
    originals = [
        F.col(c).cast("string").alias(c)
        for c in raw.columns
        if c not in {"source_row", "source_file"}
    ]
    rejects = checked.filter(reason.isNotNull()).select(
        F.col("source_file").alias("file"),
        F.col("source_row").alias("row"),
        reason.alias("reason"),
        *originals,
    )
    job(spark, "count the rows read")
    rows = raw.count()
    if identities is None:
        folder = Path(folder)
        identities = load_identities(folder if folder.is_dir() else folder.parent)
    return SparkEvents(_stitched(spark, accepted, identities), rejects, rows)


def _stitched(spark: SparkSession, events: DataFrame, identities: IdentityMap) -> DataFrame:
    if identities.table.num_rows == 0:
        return events
    aliases = spark.createDataFrame(
        identities.table.select(["alias_id", "customer_id"]).rename_columns(["_alias", "_customer"])
    )
    joined = events.join(aliases, events["customer_id"] == aliases["_alias"], "left")
    return joined.withColumn("customer_id", F.coalesce("_customer", "customer_id")).select(
        *CANONICAL
    )


# ------------------------------------------------------------------ splits


@dataclass(frozen=True)
class SparkTimeSplit:
    """Events before `cutoff` (train, in Spark) and from it on (test, collected: it is small)."""

    train: DataFrame
    test: pa.Table
    cutoff: datetime
    end: datetime


def time_split(events: DataFrame, test_days: float) -> SparkTimeSplit:
    """The global time split of `training.splits.time_split`: the last `test_days` are the test."""
    job(events.sparkSession, "time split: the last event")
    last_micros = events.agg(F.max(F.unix_micros("timestamp"))).first()
    if last_micros is None or last_micros[0] is None:
        raise DataError("<events>", "no events to split")
    end = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(last_micros[0]))
    cutoff = end - timedelta(days=test_days)
    cut = F.lit(cutoff).cast("timestamp")
    job(events.sparkSession, "time split: the test part to the driver")
    test = to_arrow(events.filter(F.col("timestamp") >= cut))
    train = events.filter(F.col("timestamp") < cut)
    if test.num_rows == 0 or train.isEmpty():
        raise DataError(
            "<events>", f"cut-off {cutoff.isoformat()} leaves an empty train or test part"
        )
    return SparkTimeSplit(train, test, cutoff, end)


def to_arrow(events: DataFrame) -> pa.Table:
    """Canonical events as an Arrow table in the contract's schema (collected to the driver)."""
    table = collect(events.select(*CANONICAL))
    return pa.table({f.name: table[f.name].cast(f.type) for f in EVENTS})


# ------------------------------------------------------------ interactions


def weight_of(column: str, weights: dict[str, float], default: float) -> Column:
    """Each row's weight by the value of `column` (`default` for values not in `weights`)."""
    if not weights:
        return F.lit(default)
    table = F.create_map(*[F.lit(v) for pair in weights.items() for v in pair])
    return F.coalesce(table[F.col(column)].cast("double"), F.lit(default))


def weighted_events(events: DataFrame, settings: InteractionSettings) -> DataFrame:
    """customer_id, item_id, event_type, micros, units, weight, confidence (weight x quantity
    confidence): the weights of `features.interactions.build_interactions`, in the same order."""
    ts = F.unix_micros("timestamp")
    frame = events.select(
        "customer_id",
        "item_id",
        "event_type",
        "session_id",
        ts.alias("micros"),
        F.greatest(F.col("quantity").cast("double"), F.lit(1.0)).alias("units"),
        (
            weight_of("event_type", settings.event_weights, 0.0)
            * weight_of("channel", settings.channel_weights, 1.0)
        ).alias("weight"),
    )
    if settings.decay_half_life_days > 0:
        if settings.decay_reference == "customer":
            reference = F.max("micros").over(Window.partitionBy("customer_id"))
        else:
            reference = F.lit(frame.agg(F.max("micros")).first()[0])  # type: ignore[index]
        age_days = F.greatest(reference - F.col("micros"), F.lit(0)).cast("double") / MICROS_PER_DAY
        decay = F.pow(F.lit(0.5), age_days / settings.decay_half_life_days)
        frame = frame.withColumn("weight", F.col("weight") * decay)
    if settings.quantity_scaling == "log":
        confidence = 1.0 + F.log(F.col("units"))
    else:
        confidence = F.least(F.col("units"), F.lit(float(settings.max_quantity)))
    return frame.withColumn("confidence", F.col("weight") * confidence)


def sorted_ids(events: DataFrame, column: str) -> npt.NDArray[np.str_]:
    """The distinct values of `column`, sorted as the single-machine path sorts them."""
    job(events.sparkSession, f"interactions: distinct {column}")
    values = collect(events.select(column).distinct())[column]
    return np.sort(np.asarray(values.to_numpy(zero_copy_only=False)).astype(str))


def indexed(
    spark: SparkSession, ids: npt.NDArray[np.str_] | list[str], name: str, index: str
) -> DataFrame:
    """A DataFrame of `ids` (column `name`) and their positions (column `index`, int32)."""
    return spark.createDataFrame(
        pa.table(
            {
                name: pa.array(list(ids), pa.string()),
                index: pa.array(np.arange(len(ids), dtype=np.int32)),
            }
        )
    )


def spark_interactions(
    spark: SparkSession, events: DataFrame, settings: InteractionSettings | None = None
) -> Interactions:
    """The weighted customer x item matrix and purchase occasions of `events`, computed by Spark;
    equal to `build_interactions` on the same events (same ids in the same order, same weights)."""
    settings = settings or InteractionSettings()
    customers = sorted_ids(events, "customer_id")
    items = sorted_ids(events, "item_id")
    weighted = (
        weighted_events(events, settings)
        .join(F.broadcast(indexed(spark, items, "item_id", "col")), "item_id")
        .join(indexed(spark, customers, "customer_id", "row"), "customer_id")
    )
    kind = F.col("event_type")
    bought, returned = kind == "purchase", kind == "return"
    per_pair = weighted.groupBy("row", "col").agg(
        F.sum(F.when(~bought & ~returned, F.col("weight"))).alias("other"),
        F.sum(F.when(bought, F.col("confidence"))).alias("bought"),
        F.sum(F.when(bought, F.col("units"))).alias("bought_units"),
        F.sum(F.when(returned, F.col("units"))).alias("returned_units"),
        F.max(F.when(bought, F.col("micros"))).alias("last_micros"),
        F.count(F.when(bought, F.lit(1))).alias("purchases"),
    )
    kept = F.least(
        F.greatest(
            (F.col("bought_units") - F.coalesce("returned_units", F.lit(0.0)))
            / F.col("bought_units"),
            F.lit(0.0),
        ),
        F.lit(1.0),
    )
    value = F.coalesce("other", F.lit(0.0)) + F.coalesce(F.col("bought") * kept, F.lit(0.0))
    job(spark, "interactions: weights per customer x item")
    # one pass: the weights, and for items kept (net of returns) when they were last bought
    kept_units = F.col("bought_units") - F.coalesce("returned_units", F.lit(0.0))
    last_at = F.when(kept_units > 0, F.expr("last_micros div 1000000"))
    positive = per_pair.select(
        "row",
        "col",
        value.cast("float").alias("value"),
        last_at.alias("last_at"),
        F.when(kept_units > 0, F.col("purchases")).alias("purchases"),
    )
    entries = collect(positive.filter((F.col("value") > 0) | F.col("last_at").isNotNull()))
    shape = (len(customers), len(items))
    rows = np.asarray(entries["row"].to_numpy(), dtype=np.int64)
    cols = np.asarray(entries["col"].to_numpy(), dtype=np.int64)
    values = np.asarray(entries["value"].to_numpy(zero_copy_only=False), dtype=np.float32)
    weighted_pairs = values > 0
    matrix = sp.csr_matrix(
        (values[weighted_pairs], (rows[weighted_pairs], cols[weighted_pairs])),
        shape=shape,
        dtype=np.float32,
    )
    matrix.sort_indices()
    last = entries["last_at"]
    has_last = np.asarray(last.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    last_seconds = np.asarray(last.fill_null(0).to_numpy(), dtype=np.float64)
    last_bought = sp.csr_matrix(
        (last_seconds[has_last], (rows[has_last], cols[has_last])), shape=shape, dtype=np.float64
    )
    last_bought.sort_indices()
    times = np.asarray(entries["purchases"].fill_null(0).to_numpy(), dtype=np.float32)
    times_bought = sp.csr_matrix(
        (times[has_last], (rows[has_last], cols[has_last])), shape=shape, dtype=np.float32
    )
    times_bought.sort_indices()
    occasions = _occasions(weighted.filter(bought))
    return Interactions(
        matrix,
        customers,
        items,
        occasions,
        last_bought if last_bought.nnz else None,
        times_bought if times_bought.nnz else None,
    )


def _occasions(purchases: DataFrame) -> Occasions | None:
    """(customer, item, basket) -> the basket's first purchase of the item; a basket is the
    session id, or the customer's day when the event has none."""
    day = F.when(F.col("session_id").isNull(), F.expr(f"micros div {MICROS_PER_DAY}"))
    job(purchases.sparkSession, "interactions: purchase occasions")
    table = collect(
        purchases.groupBy("row", "col", "session_id", day.alias("day"))
        .agg(F.min("micros").alias("first"))
        .select("row", "col", "first")
    )
    if table.num_rows == 0:
        return None
    rows, cols = (np.asarray(table[c].to_numpy(), dtype=np.int64) for c in ("row", "col"))
    first = np.asarray(table["first"].to_numpy(), dtype=np.int64)
    order = np.lexsort((first, cols, rows))
    return Occasions(rows=rows[order], cols=cols[order], days=first[order] / MICROS_PER_DAY)
