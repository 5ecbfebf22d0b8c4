"""A running deployment (real Redis, real MLflow store, real HTTP server) shared by the API
tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deploy import Deployment, running


@pytest.fixture(scope="package")
def deployment(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Iterator[Deployment]:
    with running(tmp_path_factory.mktemp("deployment"), redis_server) as dep:
        yield dep
