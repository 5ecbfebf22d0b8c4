"""train -> register -> promote -> load through a real `mlflow server` on PostgreSQL (loopback)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from features.generator import GeneratorConfig, generate
from models import load_model
from models.registry import ModelRegistry
from omnirec.redis_runtime import free_port
from omnirec.settings import Settings
from tests.waiting import PATIENCE, wait_until
from training.pipeline import TrainConfig, train

PG_DSN = os.environ.get("OMNIREC_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432")


def _admin_connection():  # type: ignore[no-untyped-def]
    import psycopg2

    dsn = PG_DSN.replace("postgresql+psycopg2://", "postgresql://") + "/postgres"
    conn = psycopg2.connect(dsn, connect_timeout=3)
    conn.autocommit = True
    return conn


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        admin = _admin_connection()
    except Exception as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_DSN}: {exc}")
    database = f"omnirec_mlflow_{uuid.uuid4().hex[:8]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {database}")
    port = free_port()
    artifacts = tmp_path_factory.mktemp("mlflow-artifacts")
    log = (artifacts / "server.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"{PG_DSN}/{database}",
            "--artifacts-destination",
            str(artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            if server.poll() is not None:
                pytest.fail(
                    f"mlflow server exited: {(artifacts / 'server.log').read_text()[-2000:]}"
                )
            return httpx.get(f"{url}/health", timeout=PATIENCE).status_code == 200

        wait_until(healthy, "the mlflow server healthy", every=0.5, ignore=(httpx.HTTPError,))
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=PATIENCE)
        log.close()
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.close()


def test_cycle_through_tracking_server_on_postgres(
    mlflow_server: str, settings: Settings, tmp_path: Path
) -> None:
    import msgspec

    remote = msgspec.structs.replace(
        settings, mlflow=msgspec.structs.replace(settings.mlflow, tracking_uri=mlflow_server)
    )
    generate(GeneratorConfig(customers=400, items=150, days=45, seed=9), tmp_path / "data")
    first = train(TrainConfig(data=tmp_path / "data", model="itemknn"), remote)
    second = train(TrainConfig(data=tmp_path / "data", model="popularity"), remote)
    registry = ModelRegistry(remote.mlflow)
    assert first.version == 1 and registry.champion() == 1
    assert second.version == 2 and not second.promoted
    registry.set_champion(2)
    assert registry.champion() == 2
    loaded = load_model(registry.download(2, tmp_path / "download"))
    assert loaded.kind == "popularity"
    assert loaded.recommend(["C00000003"], n=3) == second.model.recommend(["C00000003"], n=3)
    assert registry.rollback() == 1
