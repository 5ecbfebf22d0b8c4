"""A running deployment (real Redis, real MLflow store, real HTTP server) shared by the API
tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deploy import Deployment, make_deployment


@pytest.fixture(scope="package")
def deployment(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Iterator[Deployment]:
    dep = make_deployment(tmp_path_factory.mktemp("deployment"), redis_server)
    dep.start_server()
    yield dep
    dep.stop_server()
