"""Follows the MLflow `champion` alias: loads its model and feature snapshot, swaps without a restart."""

from __future__ import annotations

import asyncio
import gc
import logging
import shutil
from pathlib import Path

from models import load_model
from models.registry import ModelRegistry
from omnirec.errors import OmnirecError
from omnirec.settings import Settings
from serving.catalogue import load_snapshot
from serving.engine import Engine

log = logging.getLogger("omnirec.serving")


def settle_heap() -> None:
    """Take what is loaded (libraries, model, snapshot: some 300k objects) out of the cyclic
    garbage collector's walks.

    Every full collection walks every tracked object; with a snapshot loaded that was half of the
    batch route's time (20k customers: 1.9 s, 0.9 s frozen). Frozen objects are still freed by
    reference counting; the previous freeze is undone and collected first, so the cycles of a
    retired snapshot do not pile up. Runs once per model swap (a full collection, ~0.1 s).
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class ModelRuntime:
    """Loads (model version, snapshot) pairs into an Engine; each swap is one reference assignment."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.registry = ModelRegistry(settings.mlflow)
        self.cache = settings.data_dir / "serving-models"
        self.last_error: str | None = None

    def _model_folder(self, version: int) -> Path:
        folder = self.cache / f"v{version}"
        if not (folder / "model.json").exists():
            tmp = self.cache / f".v{version}.download"
            shutil.rmtree(tmp, ignore_errors=True)
            downloaded = self.registry.download(version, tmp)
            shutil.rmtree(folder, ignore_errors=True)
            folder.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(downloaded), folder)
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    def refresh(self) -> bool:
        """Load the champion if it is not the one being served; returns True when it swapped."""
        version = self.registry.champion()
        current = self.engine.snapshot
        if version is None or self.engine.store is None:
            return False
        snapshot_id = self.registry.version_tag(version, "omnirec.snapshot")
        if snapshot_id is None:
            self.last_error = f"champion v{version} has no published snapshot yet"
            return False
        if (
            current is not None
            and current.version == version
            and current.snapshot_id == snapshot_id
        ):
            return False
        model = load_model(self._model_folder(version))
        loaded = load_snapshot(self.engine.store, snapshot_id, model, version)
        self.engine.snapshot = loaded  # requests already running keep the object they hold
        self.last_error = None
        settle_heap()
        log.info("serving model v%s with snapshot %s", version, snapshot_id)
        return True

    def try_refresh(self) -> bool:
        try:
            return self.refresh()
        except (OmnirecError, OSError) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("model refresh failed: %s", self.last_error)
            return False
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("model refresh failed: %s", self.last_error)
            return False

    async def poll_forever(self) -> None:
        interval = max(0.2, self.settings.serving.reload_interval_seconds)
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.try_refresh)
