"""The publish stage: a registered version's features into Redis, and back to a version's snapshot."""

from __future__ import annotations

import tempfile
from pathlib import Path

from features.dataset import load_dataset
from features.publish import PublishSummary, publish
from features.store import RedisFeatureStore
from models import load_model
from omnirec.redis_runtime import redis_url
from omnirec.settings import Settings
from training.registry import ModelRegistry


def publish_version(settings: Settings, version: int, data: Path | None = None) -> PublishSummary:
    """Publish a registered version: download its model, rebuild features from its data, switch."""
    registry = ModelRegistry(settings.mlflow)
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(registry.download(version, Path(tmp)))
    run_id = registry.client.get_model_version(registry.name, str(version)).run_id
    run = registry.client.get_run(str(run_id))
    folder = data or Path(run.data.params["data"])
    dataset = load_dataset(folder)
    with redis_url(settings) as url:
        store = RedisFeatureStore(url, settings.redis.prefix, timeout=30)
        activate = (
            registry.champion() == version
        )  # a version that lost the gate is published, not switched to
        summary = publish(store, model, dataset, version, settings, activate=activate)
        store.close()
    registry.tag_version(version, "omnirec.snapshot", summary.snapshot)
    return summary


def activate_version_snapshot(settings: Settings, version: int) -> str:
    """Switch Redis to the snapshot `version` was published with (republish when it was cleaned up)."""
    registry = ModelRegistry(settings.mlflow)
    snapshot = registry.version_tag(version, "omnirec.snapshot")
    with redis_url(settings) as url:
        store = RedisFeatureStore(url, settings.redis.prefix, timeout=30)
        try:
            if snapshot and store.snapshot_meta(snapshot) is not None:
                previous = store.activate(snapshot)
                return f"feature snapshot {snapshot} active again (was {previous})"
        finally:
            store.close()
    return str(publish_version(settings, version))
