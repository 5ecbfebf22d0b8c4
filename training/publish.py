"""The publish step: score every customer with a model version, write the snapshot through the
feature store and switch Redis to it atomically; and switch back to a version's snapshot."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from features.dataset import Dataset, load_dataset
from features.encoding import ENCODER, SnapshotMeta
from features.snapshot_file import SnapshotRecorder
from features.stock import LiveStock
from features.store import RedisFeatureStore
from models import load_model
from models.base import Recommender
from models.registry import SNAPSHOT_FILE, ModelRegistry
from omnirec.progress import Progress
from omnirec.redis_runtime import redis_target
from omnirec.settings import Settings
from training.snapshot import (
    CategoryCodes,
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
        return (f"published snapshot {self.snapshot} (model v{self.version}): {self.customers:,} customers, "
                f"{self.items:,} items, {self.keys:,} keys in {self.seconds:.1f}s "
                f"({self.customers_per_second:,.0f} customers/s); active before: {self.previous or '-'}"
                + (f"; removed {', '.join(self.cleaned)}" if self.cleaned else ""))  # fmt: skip


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
    """Write a new snapshot for `model` built from `dataset`; switch to it atomically when `activate`.

    With `record`, every key written is also recorded into that Parquet file (see
    features.snapshot_file), from which the snapshot can be restored into an empty Redis."""
    if record is None:
        return _publish(store, model, dataset, version, settings, candidates, activate)[0]
    with SnapshotRecorder(record, store.prefix) as recorder:
        store.recorder = recorder
        try:
            summary, meta = _publish(store, model, dataset, version, settings, candidates, activate)
        finally:
            store.recorder = None
        recorder.close(meta)
    return summary


def _publish(store: RedisFeatureStore, model: Recommender, dataset: Dataset, version: int, settings: Settings,
             candidates: int | None, activate: bool) -> tuple[PublishSummary, SnapshotMeta]:  # fmt: skip
    started = time.perf_counter()
    snapshot = f"v{version}-{time.time_ns() // 1_000_000}"
    ev = event_arrays(dataset.events, model)
    keys = 0

    bitmaps = list(stock_bitmaps(dataset, model))
    catalogue = catalogue_of(model, dataset, ev)
    catalogue.stock_stores = [name for name, _ in bitmaps]
    if dataset.stores is not None:
        catalogue.store_locations = [
            (str(s), float(lat), float(lon))
            for s, lat, lon in zip(dataset.stores["store_id"].to_pylist(), dataset.stores["latitude"].to_pylist(),
                                   dataset.stores["longitude"].to_pylist(), strict=True)
            if lat is not None and lon is not None
        ]  # fmt: skip
    live = LiveStock(store.prefix)
    if dataset.stock is not None and live.empty(store.client):
        live.seed(
            store.client, dataset.stock
        )  # the first publish starts the live stock from the file
    store.write_one(snapshot, "catalogue", "", ENCODER.encode(catalogue))
    categories = CategoryCodes.of(catalogue)
    keys += store.write_batch(snapshot, "popular", popular_lists(model, ev, categories, settings))
    units, last_bought = purchases(ev, model.n_items)
    keys += store.write_batch(snapshot, "together", bought_together(units, catalogue.item_ids))
    keys += store.write_batch(snapshot, "stock", bitmaps)
    keys += store.write_identities(dataset.identities.table)

    n_candidates = candidates or settings.serving.candidates_per_customer
    progress = Progress(len(ev.customers), "publish", "customers")
    entries = customer_entries(model, ev, last_bought, categories, n_candidates, progress)
    keys += store.write_batch(snapshot, "c", entries)
    progress.close()
    count = len(ev.customers)
    meta = SnapshotMeta(snapshot_id=snapshot, model_version=version, model_kind=model.kind, created_at=int(time.time()),
                        customers=count, items=model.n_items, data_end=int(ev.at.max(initial=0)))  # fmt: skip
    store.register_snapshot(meta)
    previous = store.activate(snapshot) if activate else store.active_snapshot()
    cleaned = store.cleanup(settings.redis.snapshot_grace_seconds)
    seconds = time.perf_counter() - started
    return PublishSummary(snapshot, version, count, model.n_items, keys, seconds,
                          count / max(seconds, 1e-9), previous, cleaned), meta  # fmt: skip


def publish_version(settings: Settings, version: int, data: Path | None = None) -> PublishSummary:
    """Publish a registered version: download its model, rebuild features from its data, switch."""
    registry = ModelRegistry(settings.mlflow)
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(registry.download(version, Path(tmp)))
    run_id = registry.client.get_model_version(registry.name, str(version)).run_id
    run = registry.client.get_run(str(run_id))
    folder = data or Path(run.data.params["data"])
    dataset = load_dataset(folder, settings.max_future_seconds)
    with redis_target(settings) as target, tempfile.TemporaryDirectory() as tmp:
        store = RedisFeatureStore(target, settings.redis.prefix, timeout=30)
        # a version that lost the gate is published, not switched to
        activate = registry.champion() == version
        record = Path(tmp) / SNAPSHOT_FILE
        summary = publish(
            store, model, dataset, version, settings, activate=activate, record=record
        )
        store.close()
        registry.store_snapshot_file(version, record)  # Redis can be rebuilt from it
    registry.tag_version(version, "omnirec.snapshot", summary.snapshot)
    return summary


def activate_version_snapshot(settings: Settings, version: int) -> str:
    """Switch Redis to the snapshot `version` was published with (republish when it was cleaned up)."""
    registry = ModelRegistry(settings.mlflow)
    snapshot = registry.version_tag(version, "omnirec.snapshot")
    with redis_target(settings) as target:
        store = RedisFeatureStore(target, settings.redis.prefix, timeout=30)
        try:
            if snapshot and store.snapshot_meta(snapshot) is not None:
                previous = store.activate(snapshot)
                return f"feature snapshot {snapshot} active again (was {previous})"
        finally:
            store.close()
    return str(publish_version(settings, version))


__all__ = ["PublishSummary", "activate_version_snapshot", "publish", "publish_version"]
