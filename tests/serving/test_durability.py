"""Acknowledged means durable: `omnirec serve` on the embedded Redis, under SIGTERM and kill -9,
with the other commands (export, train, promote, rollback) run beside it on the same data folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from tests.deploy import Deployment, make_deployment
from tests.test_embedded_redis import alive, wait_gone
from tests.waiting import PATIENCE, wait_until


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A deployment without REDIS_URL: every process uses the data folder's embedded Redis."""
    dep = make_deployment(tmp_path_factory.mktemp("embedded"), None, customers=300, items=120)
    yield dep
    dep.stop_server()


def redis_state(dep: Deployment) -> dict[str, int] | None:
    path = Path(dep.env["OMNIREC_DATA_DIR"]) / "redis" / "embedded.json"
    return json.loads(path.read_text()) if path.exists() else None


def post_events(dep: Deployment, count: int, tag: str) -> int:
    accepted = 0
    with dep.client("events") as c:
        for start in range(0, count, 500):
            events = [
                {
                    "customer_id": f"C{i % 300:08d}",
                    "item_id": f"I{i % 120:06d}",
                    "event_type": "view",
                    "channel": "web",
                    "event_id": f"{tag}-{i}",
                }
                for i in range(start, min(count, start + 500))
            ]
            answer = c.post("/v1/events/bulk", json={"events": events})
            assert answer.status_code == 202, answer.text
            accepted += answer.json()["accepted"]
    return accepted


def omnirec(
    dep: Deployment, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env={**os.environ, **dep.env},
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        cwd=cwd,
    )


def exported_rows(folder: Path) -> int:
    return sum(pq.read_metadata(p).num_rows for p in folder.rglob("*.parquet"))


def test_acknowledged_events_survive_sigterm_and_kill_9(
    embedded: Deployment, tmp_path: Path
) -> None:
    dep = embedded
    dep.start_server()
    assert post_events(dep, 2000, "first") == 2000
    state = redis_state(dep)
    assert state is not None and alive(state["pid"])

    # SIGTERM: the service stops, and with it the embedded Redis (it was the last user)
    assert dep.server is not None
    dep.server.send_signal(signal.SIGTERM)
    dep.server.wait(timeout=PATIENCE)
    assert wait_gone(state["pid"]), "the embedded redis-server was orphaned"
    assert redis_state(dep) is None

    # back up, and `omnirec export-events` beside it drains the same Redis
    dep.start_server()
    out = tmp_path / "log"
    export = omnirec(dep, "export-events", "--out", str(out))
    assert export.returncode == 0, export.stderr[-2000:]
    assert exported_rows(out) == 2000, export.stdout

    # kill -9 of the service and of redis-server: what was acknowledged is still there
    assert post_events(dep, 1000, "second") == 1000
    state = redis_state(dep)
    assert state is not None and dep.server is not None
    dep.server.kill()
    dep.server.wait(timeout=PATIENCE)
    os.kill(state["pid"], signal.SIGKILL)
    assert wait_gone(state["pid"])
    dep.start_server()  # the state file is stale now: a new server loads the append-only file
    assert redis_state(dep) != state
    export = omnirec(dep, "export-events", "--out", str(out))
    assert export.returncode == 0, export.stderr[-2000:]
    assert exported_rows(out) == 3000
    # a retry of an event acknowledged before the crash is still recognised
    with dep.client("events") as c:
        again = c.post(
            "/v1/events",
            json={
                "customer_id": "C00000001",
                "item_id": "I000001",
                "event_type": "view",
                "channel": "web",
                "event_id": "second-1",
            },
        )
    assert again.json()["duplicates"] == 1
    print(
        f"\nacknowledged 3,000, exported {exported_rows(out):,} after SIGTERM, kill -9 of "
        f"the service and kill -9 of redis-server"
    )


def test_train_promote_and_rollback_beside_a_running_service(
    embedded: Deployment, tmp_path: Path
) -> None:
    dep = embedded
    if dep.server is None or dep.server.poll() is not None:
        dep.start_server()

    def served_version() -> int | None:
        with dep.client() as c:
            return c.get("/v1/customers/C00000003/recommendations").json()["model_version"]  # type: ignore[no-any-return]

    def wait_version(version: int) -> None:
        wait_until(
            lambda: served_version() == version, f"the service serving v{version}", every=0.3
        )

    start_version = served_version()
    trained = dep.train_and_publish("itemknn", {"neighbours": 30})  # joins the same Redis
    assert trained.version is not None
    promote = omnirec(dep, "promote", str(trained.version), cwd=tmp_path)
    assert promote.returncode == 0, promote.stderr[-2000:]
    wait_version(trained.version)
    rollback = omnirec(dep, "rollback", cwd=tmp_path)
    assert rollback.returncode == 0, rollback.stderr[-2000:]
    assert start_version is not None
    wait_version(start_version)
    assert not (tmp_path / "mlflow.db").exists()  # MLflow never fell back to a local store
    ready = httpx.get(f"{dep.base_url}/health/ready").json()
    assert ready["status"] == "ok" and ready["durable"] is True and ready["features"] == "ok"
