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
