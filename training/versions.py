"""A registered version published or switched back to: the registry's side of publishing, above
the two ways of writing a snapshot (this process: `training.publish`; Spark's executors:
`training.spark_publish`)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from features.dataset import Dataset, load_dataset
from features.erasure_log import ErasureLog
from features.store import RedisFeatureStore
from models import load_model
from models.base import Recommender
from models.registry import SNAPSHOT_FILE, ModelRegistry
from omnirec.redis_runtime import redis_target
from omnirec.settings import Settings
from training.publish import PublishSummary, publish
from training.spark_publish import spark_publish


def publish_version(
    settings: Settings,
    version: int,
    data: Path | None = None,
    *,
    engine: str = "local",
    model: Recommender | None = None,
    dataset: Dataset | None = None,
) -> PublishSummary:
    """Publish a registered version: its model, features rebuilt from its data, then switch.
    With `engine="spark"`, Spark reads the events and its executors score and write customers.

    The model and the data come from the registry and the run's data folder, unless the caller
    already holds them (`omnirec train` right after registering): then they are used as they
    are, not downloaded, loaded and validated a second time."""
    registry = ModelRegistry(settings.mlflow)
    if model is None:
        with tempfile.TemporaryDirectory() as tmp:
            model = load_model(registry.download(version, Path(tmp)))
    if data is None:
        run_id = registry.client.get_model_version(registry.name, str(version)).run_id
        data = Path(registry.client.get_run(str(run_id)).data.params["data"])
    folder = data
    if dataset is None and engine == "local":
        dataset = load_dataset(folder, settings.max_future_seconds, ErasureLog(settings.data_dir))
    with redis_target(settings) as target, tempfile.TemporaryDirectory() as tmp:
        store = RedisFeatureStore(target, settings.redis.prefix, timeout=30)
        # a version that lost the gate is published, not switched to
        activate = registry.champion() == version
        record = Path(tmp) / SNAPSHOT_FILE
        if engine == "local":
            assert dataset is not None
            summary = publish(
                store, model, dataset, version, settings, activate=activate, record=record
            )
        else:
            from features.spark_events import spark_session

            summary = spark_publish(
                spark_session(),
                store,
                model,
                folder,
                version,
                settings,
                activate=activate,
                record=record,
            )
        store.close()
        registry.store_snapshot_file(version, record)  # Redis can be rebuilt from it
    registry.tag_version(version, "omnirec.snapshot", summary.snapshot)
    return summary


def activate_version_snapshot(settings: Settings, version: int) -> str:
    """Switch Redis to the snapshot `version` was published with (republish when it was cleaned
    up)."""
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


__all__ = ["activate_version_snapshot", "publish_version"]
