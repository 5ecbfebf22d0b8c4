"""Shared fixtures: the real data sets, a real Redis, an isolated settings object."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnirec.redis_runtime import EmbeddedRedis
from omnirec.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("OMNIREC_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data: the real public data sets (never copied into the repository)."""
    if not SHARED_DATA.exists():
        pytest.fail(f"shared data folder not found at {SHARED_DATA} (set OMNIREC_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis: REDIS_URL when set, otherwise an embedded redis-server for the session."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis"), persist=False) as server:
        yield server.url


@pytest.fixture
def settings(tmp_path: Path, redis_server: str) -> Settings:
    """Settings isolated to this test: own data folder, own Redis key prefix, own MLflow store."""
    return Settings.from_env(
        {
            "OMNIREC_DATA_DIR": str(tmp_path / "var"),
            "REDIS_URL": redis_server,
            "OMNIREC_REDIS_PREFIX": f"test-{uuid.uuid4().hex[:10]}",
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        }
    )
