"""Test helper: a real deployment (synthetic data -> MLflow -> Redis -> HTTP server) on loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from features.generator import GeneratorConfig, generate
from omnirec.redis_runtime import free_port
from omnirec.settings import Settings
from tests.waiting import PATIENCE, wait_until
from training.pipeline import TrainConfig, TrainResult, train
from training.versions import publish_version

KEYS = {
    "recommend": "test-storefront-key-0001",
    "events": "test-events-key-000000001",
    "tablet": "test-tablet-key-000000001",
    "admin": "test-admin-key-0000000001",
    "privacy": "test-privacy-key-00000001",
    "public": "test-public-widget-key-01",
}
SHOP = "http://shop.test"  # the storefront whose pages may call the API (CORS), served by tests


@dataclass
class Deployment:
    """Everything a service test needs to talk to and to inspect."""

    data: Path
    env: dict[str, str]
    settings: Settings
    trained: list[TrainResult] = field(default_factory=list)
    base_url: str = ""
    server: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def headers(self, scope: str) -> dict[str, str]:
        return {"X-API-Key": KEYS[scope]}

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a /metrics counter's series that carry `labels`."""
        text = httpx.get(f"{self.base_url}/metrics", timeout=PATIENCE).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def client(self, scope: str = "recommend") -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=self.headers(scope), timeout=PATIENCE)

    def train_and_publish(self, model: str, params: dict[str, object] | None = None) -> TrainResult:
        result = train(TrainConfig(data=self.data, model=model, params=params or {}), self.settings)
        assert result.version is not None
        publish_version(self.settings, result.version)
        self.trained.append(result)
        return result

    def start_server(self) -> None:
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = self.data.parent / f"server-{port}.log"
        log = self.log_path.open("wb")
        self.server = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--port", str(port)],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server, log_path, ready = self.server, self.log_path, f"{self.base_url}/health/ready"

        def is_ready() -> bool:
            if server.poll() is not None:
                raise RuntimeError(f"server exited: {log_path.read_text()[-3000:]}")
            return httpx.get(ready, timeout=PATIENCE).status_code == 200

        try:
            wait_until(is_ready, "the server's readiness", every=0.3, ignore=(httpx.HTTPError,))
        except AssertionError as exc:
            raise RuntimeError(f"{exc}: {log_path.read_text()[-3000:]}") from None

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.terminate()
            try:
                self.server.wait(timeout=PATIENCE)
            except subprocess.TimeoutExpired:
                self.server.kill()


MARKUP_ITEM = "I000005"
MARKUP_NAME = '<img src=x onerror="window.__xss=1">Mug <b>bold</b> & "quoted"'


def _add_markup_name(catalogue: Path) -> None:
    """One product name holds markup: every page must show it as text."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(catalogue)
    names = pc.if_else(pc.equal(table["item_id"], MARKUP_ITEM), MARKUP_NAME, table["name"])
    pq.write_table(
        table.set_column(table.column_names.index("name"), "name", names.cast(pa.string())),
        catalogue,
    )


TEMPLATE_MODEL = ("als", {"factors": 16, "iterations": 10})


def _template(base: Path, customers: int, items: int) -> Path:
    """Data generated and the first model trained and registered once per test run (and size):
    a folder that every deployment of that size copies instead of building it again."""
    folder = base / f"template-{customers}x{items}"
    if (folder / "ready").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)  # a build that failed part of the way
    data = folder / "data"
    generate(GeneratorConfig(customers=customers, items=items, days=60, stores=5, seed=11), data)
    _add_markup_name(data / "catalogue.parquet")
    settings = Settings.from_env(_env(folder, None))
    kind, params = TEMPLATE_MODEL
    result = train(TrainConfig(data=data, model=kind, params=params), settings)
    assert result.version == 1
    (folder / "ready").touch()
    return folder


def _env(root: Path, redis_url: str | None) -> dict[str, str]:
    env = {
        "OMNIREC_DATA_DIR": str(root / "var"),
        "OMNIREC_REDIS_PREFIX": f"t{uuid.uuid4().hex[:8]}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "OMNIREC_API_KEYS": ";".join(f"{key}:{scope}" for scope, key in KEYS.items()),
        "OMNIREC_RELOAD_INTERVAL_SECONDS": "0.5",
        "OMNIREC_SNAPSHOT_GRACE_SECONDS": "3600",
        "OMNIREC_REQUEST_READ_SECONDS": "2",
        # every worker (and the typed-only server beside it) reads trending fresh: same answers
        "OMNIREC_TRENDING_REFRESH_SECONDS": "0",
        "OMNIREC_CORS_ORIGINS": SHOP,
        "OMNIREC_ITEM_URL_TEMPLATE": SHOP + "/p/{item_id}",
    }
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    return env


def make_deployment(
    root: Path,
    redis_url: str | None,
    *,
    customers: int = 600,
    items: int = 200,
    redis_env: dict[str, str] | None = None,
) -> Deployment:
    """A deployment of its own: the run's template copied (its data, and its MLflow store with
    version 1 registered, artifacts shared), version 1 published to this deployment's Redis
    under its own prefix; the server is not started yet.

    `redis_url` None: no REDIS_URL, so every process uses the data folder's embedded Redis;
    `redis_env`: more Redis settings (cluster, TLS files)."""
    template = _template(root.parent, customers, items)
    shutil.copytree(template / "data", root / "data")
    shutil.copy(template / "mlflow.db", root / "mlflow.db")
    env = {**_env(root, redis_url), **(redis_env or {})}
    deployment = Deployment(data=root / "data", env=env, settings=Settings.from_env(env))
    publish_version(deployment.settings, 1, deployment.data)
    return deployment


@contextmanager
def running(root: Path, redis_url: str | None, **sizes: int) -> Iterator[Deployment]:
    """A deployment of its own (`make_deployment`) with its server started, stopped after."""
    dep = make_deployment(root, redis_url, **sizes)
    dep.start_server()
    try:
        yield dep
    finally:
        dep.stop_server()
