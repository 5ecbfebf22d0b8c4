"""The publish step: score every customer with a model version, write the snapshot through the
feature store and switch Redis to it atomically; and switch back to a version's snapshot."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import scipy.sparse as sp

from features.dataset import Dataset
from features.encoding import ENCODER, SnapshotMeta
from features.snapshot_file import SnapshotRecorder
from features.stock import LiveStock
from features.store import RedisFeatureStore
from models.base import Recommender
from omnirec.progress import Progress
from omnirec.settings import Settings
from training.snapshot import (
    CategoryCodes,
    GroupPopularity,
    bought_together,
    catalogue_of,
    customer_entries,
    event_arrays,
    popular_lists,
    purchases,
    stock_bitmaps,
)


@dataclass(frozen=True)
class PublishSummary:
    """What one publish wrote."""

    snapshot: str
    version: int
    customers: int
    items: int
    keys: int
    seconds: float
    customers_per_second: float
    previous: str | None
    cleaned: list[str]

    def __str__(self) -> str:
        return (
            f"published snapshot {self.snapshot} (model v{self.version}): {self.customers:,} "
            "customers, "
            f"{self.items:,} items, {self.keys:,} keys in {self.seconds:.1f}s "
            f"({self.customers_per_second:,.0f} customers/s); active before: {self.previous or '-'}"
            + (f"; removed {', '.join(self.cleaned)}" if self.cleaned else "")
        )


@dataclass(frozen=True)
class SnapshotParts:
    """What a snapshot holds besides the per-customer records, from whichever engine read the
    events: side tables of the data folder, popularity per channel and store, kept units per
    customer x item (for bought-together), the number of customers and the newest event."""

    catalogue: pa.Table | None
    stock: pa.Table | None
    stores: pa.Table | None  # store_id, latitude, longitude
    identities: pa.Table
    groups: GroupPopularity
    units: sp.csr_matrix
    customers: int
    data_end: int  # seconds since 1970

    @property
    def channels(self) -> list[str]:
        return self.groups.channels

    @property
    def store_ids(self) -> list[str]:
        return self.groups.stores


# writes every customer's record of one snapshot; returns the count of keys written
CustomerWriter = Callable[[RedisFeatureStore, str, CategoryCodes], int]


def publish(
    store: RedisFeatureStore,
    model: Recommender,
    dataset: Dataset,
    version: int,
    settings: Settings,
    *,
    candidates: int | None = None,
    activate: bool = True,
    record: Path | None = None,
) -> PublishSummary:
    """Write a new snapshot for `model` built from `dataset`; switch to it atomically when
    `activate`.

    With `record`, every key written is also recorded into that Parquet file (see
    features.snapshot_file), from which the snapshot can be restored into an empty Redis."""
    ev = event_arrays(dataset.events, model)
    units, last_bought = purchases(ev, model.n_items)
    parts = SnapshotParts(
        dataset.catalogue,
        dataset.stock,
        dataset.stores,
        dataset.identities.table,
        GroupPopularity.of(ev, model.n_items, settings),
        units,
        len(ev.customers),
        int(ev.at.max(initial=0)),
    )
    n_candidates = candidates or settings.serving.candidates_per_customer

    def write_customers(store: RedisFeatureStore, snapshot: str, categories: CategoryCodes) -> int:
        progress = Progress(len(ev.customers), "publish", "customers")
        entries = customer_entries(model, ev, last_bought, categories, n_candidates, progress)
        written = store.write_batch(snapshot, "c", entries)
        progress.close()
        return written

    return publish_parts(
        store, model, parts, write_customers, version, settings, activate=activate, record=record
    )


def publish_parts(
    store: RedisFeatureStore,
    model: Recommender,
    parts: SnapshotParts,
    write_customers: CustomerWriter,
    version: int,
    settings: Settings,
    *,
    activate: bool = True,
    record: Path | None = None,
) -> PublishSummary:
    """Write a snapshot from `parts` and `write_customers` (this process, or Spark's executors),
    register it, and switch to it when `activate`; with `record`, every key is also recorded."""
    if record is None:
        return _publish(store, model, parts, write_customers, version, settings, activate)[0]
    with SnapshotRecorder(record, store.prefix) as recorder:
        store.recorder = recorder
        try:
            summary, meta = _publish(
                store, model, parts, write_customers, version, settings, activate
            )
        finally:
            store.recorder = None
        recorder.close(meta)
    return summary


def _publish(
    store: RedisFeatureStore,
    model: Recommender,
    parts: SnapshotParts,
    write_customers: CustomerWriter,
    version: int,
    settings: Settings,
    activate: bool,
) -> tuple[PublishSummary, SnapshotMeta]:
    started = time.perf_counter()
    snapshot = f"v{version}-{time.time_ns() // 1_000_000}"
    keys = 0

    bitmaps = list(stock_bitmaps(parts.stock, model))
    catalogue = catalogue_of(model, parts.catalogue, parts.channels, parts.store_ids)
    catalogue.stock_stores = [name for name, _ in bitmaps]
    if parts.stores is not None:
        catalogue.store_locations = [
            (str(s), float(lat), float(lon))
            for s, lat, lon in zip(
                parts.stores["store_id"].to_pylist(),
                parts.stores["latitude"].to_pylist(),
                parts.stores["longitude"].to_pylist(),
                strict=True,
            )
            if lat is not None and lon is not None
        ]
        if "name" in parts.stores.column_names:
            catalogue.store_names = {
                str(s): str(n)
                for s, n in zip(
                    parts.stores["store_id"].to_pylist(),
                    parts.stores["name"].to_pylist(),
                    strict=True,
                )
                if n
            }
    live = LiveStock(store.prefix)
    if parts.stock is not None and live.empty(store.client):
        live.seed(
            store.client, parts.stock
        )  # the first publish starts the live stock from the file
    store.write_one(snapshot, "catalogue", "", ENCODER.encode(catalogue))
    categories = CategoryCodes.of(catalogue)
    keys += store.write_batch(snapshot, "popular", popular_lists(model, parts.groups, categories))
    keys += store.write_batch(
        snapshot, "together", bought_together(parts.units, catalogue.item_ids)
    )
    keys += store.write_batch(snapshot, "stock", bitmaps)
    keys += store.write_identities(parts.identities)
    keys += write_customers(store, snapshot, categories)
    count = parts.customers
    meta = SnapshotMeta(
        snapshot_id=snapshot,
        model_version=version,
        model_kind=model.kind,
        created_at=int(time.time()),
        customers=count,
        items=model.n_items,
        data_end=parts.data_end,
    )
    store.register_snapshot(meta)
    previous = store.activate(snapshot) if activate else store.active_snapshot()
    cleaned = store.cleanup(settings.redis.snapshot_grace_seconds)
    seconds = time.perf_counter() - started
    return PublishSummary(
        snapshot,
        version,
        count,
        model.n_items,
        keys,
        seconds,
        count / max(seconds, 1e-9),
        previous,
        cleaned,
    ), meta


__all__ = ["PublishSummary", "SnapshotParts", "publish", "publish_parts"]
