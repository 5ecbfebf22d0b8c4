"""The runtime that follows the champion: what readiness reports comes from its last refresh."""

from __future__ import annotations

from features.store import RedisFeatureStore
from serving.engine import Engine
from serving.runtime import ModelRuntime
from tests.deploy import Deployment


def test_a_refresh_that_gets_through_clears_the_last_error(deployment: Deployment) -> None:
    settings = deployment.settings
    store = RedisFeatureStore(settings.redis.url or "", settings.redis.prefix, timeout=30)
    runtime = ModelRuntime(settings, Engine(settings, store))
    assert runtime.try_refresh()  # the champion loaded
    assert runtime.last_error is None
    # Redis failed a moment ago (the runtime kept the error), then came back: the champion is
    # the same, so the refresh swaps nothing, and readiness must stop reporting the old error
    runtime.last_error = "ConnectionError: Redis unavailable"
    assert not runtime.try_refresh()
    assert runtime.last_error is None
    store.close()


def test_a_restart_serves_the_active_snapshot_before_asking_mlflow(
    deployment: Deployment,
) -> None:
    settings = deployment.settings
    store = RedisFeatureStore(settings.redis.url or "", settings.redis.prefix, timeout=30)
    first = ModelRuntime(settings, Engine(settings, store))
    assert first.try_refresh()  # the champion's files are in the local cache from here on
    served = first.engine.live.snapshot
    assert served is not None

    restarted = ModelRuntime(settings, Engine(settings, store))
    assert restarted.try_refresh()
    # loaded from what Redis names active and the cached files: no MLflow client was built
    assert not restarted.asked_mlflow
    assert "client" not in vars(restarted.registry)
    snap = restarted.engine.live.snapshot
    assert snap is not None
    assert (snap.version, snap.snapshot_id) == (served.version, served.snapshot_id)
    assert restarted.last_error is None
    # the next refresh asks MLflow, which names the same champion and snapshot: nothing swaps
    assert not restarted.try_refresh()
    assert restarted.asked_mlflow
    assert restarted.engine.live.snapshot is snap
    store.close()
