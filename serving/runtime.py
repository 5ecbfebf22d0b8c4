"""Follows the MLflow `champion` alias: loads its model and feature snapshot, swaps without a
restart."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

from features.erasure_log import ErasureLog
from features.snapshot_file import restore_snapshot
from models import load_model
from models.registry import ModelRegistry, serving_copies, serving_copy
from omnirec.errors import FeatureStoreError, OmnirecError, RegistryError
from omnirec.redis_access import primaries_info
from omnirec.settings import Settings
from serving.catalogue import LoadedSnapshot, load_snapshot, loaded_bytes
from serving.engine import Engine
from serving.metrics import LOADED_BYTES, REDIS_DURABLE, SNAPSHOT_MISSING, SNAPSHOT_RESTORES
from serving.stock_keeper import StockKeeper

log = logging.getLogger("omnirec.serving")
RESTORE_LOCK_SECONDS = 600  # one restore at a time across workers and replicas
RESTORE_RETRY_SECONDS = 10.0  # after a failed restore
SNAPSHOT_CHECK_SECONDS = 1.0  # how often the service checks that its snapshot is still in Redis


GC_THRESHOLDS = (100_000, 50, 1_000)  # CPython's default is (700, 10, 10)
SWITCH_INTERVAL = 0.001  # seconds another thread may hold the GIL before the loop's gets it (5 ms)


def tune_process() -> None:
    """Settings of a serving process (a worker and its heavy-request child).

    - Collect cycles less often: an answer allocates many short-lived containers (a batch of
      1,000 x 100 items: some 200,000), and with CPython's default thresholds the cyclic collector
      ran so often under a batch flood that it doubled the storefront's p99 (45 -> 22 ms with these
      thresholds, same run). Reference counting still frees what is not in a cycle.
    - Hand the GIL back to the event loop's thread sooner when another thread holds it (the thread
      that receives the heavy-request process's answers, `asyncio.to_thread` work).
    - One BLAS thread: a request multiplies one vector by the catalogue; OpenBLAS's second thread
      made that 0.14 -> 0.50 ms on 2 busy cores (its threads spin while the loop and the child
      want the CPU)."""
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL)
    threadpool_limits(1, "blas")


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
    """Loads (model version, snapshot) pairs into an Engine; each swap is one reference assignment.

    Each check (at start, every reload interval, on /v1/admin/reload) also makes sure the
    champion's feature snapshot is in Redis: when it is not (Redis restarted empty, flushed), the
    answers are marked degraded and the snapshot is restored from the file recorded with the
    version in MLflow, by one worker at a time. It also reads whether Redis keeps what it
    acknowledged (append-only file or a replica) and says so when it does not."""

    def __init__(self, settings: Settings, engine: Engine, *, keep_stock: bool = True) -> None:
        """`keep_stock`: this process follows the live stock on every request, so its levels
        are the ones to write back if Redis loses them (not the heavy-request process's, which
        reads them only when a batch comes)."""
        self.settings = settings
        self.engine = engine
        self.registry = ModelRegistry(settings.mlflow)
        self.cache = serving_copies(settings.data_dir)
        self.last_error: str | None = None
        self.snapshot_state = "none"  # ok | missing | restoring | none (no champion yet)
        self.durable: bool | None = None  # Redis keeps acknowledged writes; None until checked
        self.durability: str | None = None  # why acknowledged events may be lost, or None
        self.rule_problems: list[str] = []  # what the rules read that the catalogue lacks
        # live stock written back when Redis lost it
        self.stock = StockKeeper(engine.live) if keep_stock else None
        self.experiment_problems: dict[int, str] = {}  # experiment versions that did not load
        self._refreshing = threading.Lock()
        # whether the champion was read from MLflow yet (a start from Redis has not)
        self.asked_mlflow = False
        self._retry_restore_at = 0.0

    def _cached(self, version: int) -> Path | None:
        """The local copy of `version`'s files, when a whole one is there."""
        folder = serving_copy(self.settings.data_dir, version)
        return folder if (folder / "model.json").exists() else None

    def _model_folder(self, version: int) -> Path:
        """The champion's files in the local cache, downloaded once. Workers and their
        heavy-request processes share the cache: each downloads into its own temporary folder
        and renames it into place (atomic; when another process got there first, its copy is
        used)."""
        cached = self._cached(version)
        if cached is not None:
            return cached
        folder = serving_copy(self.settings.data_dir, version)
        self.cache.mkdir(parents=True, exist_ok=True)
        if folder.exists():  # left half-written by an older version of this code
            shutil.rmtree(folder, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=self.cache, prefix=f".v{version}-"))
        try:
            downloaded = self.registry.download(version, tmp)
            try:
                os.rename(downloaded, folder)
            except OSError:
                if self._cached(version) is None:
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    def refresh(self) -> bool:
        """Load the champion if it is not the one being served; returns True when it swapped.
        Each refresh says afresh what is wrong: a refresh that gets through clears the last
        error, also when the champion did not change (readiness then stops reporting it)."""
        store = self.engine.live.store
        if store is None:
            return False
        self.last_error = None
        self.check_durability()
        if self.engine.live.snapshot is None and not self.asked_mlflow and self._start_from_redis():
            return True
        self.asked_mlflow = True
        version = self.registry.champion()
        current = self.engine.live.snapshot
        if version is None:
            return False
        snapshot_id = self.registry.version_tag(version, "omnirec.snapshot")
        if snapshot_id is None:
            self.last_error = f"champion v{version} has no published snapshot yet"
            return False
        if store.snapshot_meta(snapshot_id) is None:
            self._missing(version, snapshot_id)
        if (
            current is not None
            and current.version == version
            and current.snapshot_id == snapshot_id
        ):
            if changed := self._follow_experiments(version):
                settle_heap()  # the versions held for experiments out of the collector's walks
            return changed
        self._serve(self._load(version, snapshot_id))
        self.last_error = None
        self._follow_experiments(version)
        settle_heap()
        log.info("serving model v%s with snapshot %s", version, snapshot_id)
        return True

    def _start_from_redis(self) -> bool:
        """Start serving before MLflow is even imported (some 4 s of a start): the snapshot Redis
        names active, which promote, rollback and publish move with the champion, and its model
        version from the local cache, when both are there and no experiment names another
        model. The caller asks MLflow at once after (`asked_mlflow` is still False) and swaps
        if the champion moved meanwhile. Returns whether it loaded."""
        store = self.engine.live.store
        if store is None or self.engine.experiments.model_refs():
            return False
        active = store.active_snapshot()
        meta = store.snapshot_meta(active) if active else None
        if meta is None or self._cached(meta.model_version) is None:
            return False
        self._serve(self._load(meta.model_version, meta.snapshot_id))
        settle_heap()
        log.info(
            "serving model v%s with snapshot %s (the active one; MLflow is asked next)",
            meta.model_version,
            meta.snapshot_id,
        )
        return True

    def _serve(self, loaded: LoadedSnapshot) -> None:
        """Serve `loaded` (requests already running keep the object they hold) and account for
        its memory in place of the version it replaces."""
        current = self.engine.live.snapshot
        self.engine.live.snapshot = loaded
        LOADED_BYTES.labels(str(loaded.version), "champion").set(loaded_bytes(loaded))
        if current is not None and current.version != loaded.version:
            with contextlib.suppress(KeyError):
                LOADED_BYTES.remove(str(current.version), "champion")

    def _load(self, version: int, snapshot_id: str) -> LoadedSnapshot:
        assert self.engine.live.store is not None
        model = load_model(self._model_folder(version))
        loaded = load_snapshot(self.engine.live.store, snapshot_id, model, version)
        self.rule_problems = self.engine.placements.check_columns(loaded)
        for problem in self.rule_problems:
            log.warning("%s", problem)
        return loaded

    def _follow_experiments(self, champion: int) -> bool:
        """Resolve the models the experiments name (aliases, v<N>) and hold those versions
        besides the champion; versions no experiment names any more are let go (their memory
        with them). Returns True when what is held changed. A version that cannot be loaded
        (no published snapshot) is skipped: its variants answer with the control meanwhile."""
        refs = self.engine.experiments.model_refs()
        resolved: dict[str, int] = {}
        for ref in refs:
            version = (
                int(ref[1:])
                if ref[0] == "v" and ref[1:].isdigit()
                else self.registry.alias_version(ref)
            )
            if version is not None:
                resolved[ref] = version
        wanted = set(resolved.values()) - {champion}
        held = {v: s for v, s in self.engine.live.versions.items() if v in wanted}
        for version in sorted(wanted - held.keys()):
            snapshot_id = self.registry.version_tag(version, "omnirec.snapshot")
            try:
                if snapshot_id is None:
                    raise RegistryError("no published snapshot (omnirec publish VERSION)")
                held[version] = self._load(version, snapshot_id)
            except Exception as exc:
                self.experiment_problems[version] = f"v{version}: {exc}"
                log.warning("experiment model v%s not loaded: %s", version, exc)
                continue
            self.experiment_problems.pop(version, None)
            LOADED_BYTES.labels(str(version), "experiment").set(loaded_bytes(held[version]))
            log.info("holding model v%s for experiments", version)
        for version in set(self.engine.live.versions) - held.keys():
            with contextlib.suppress(KeyError):
                LOADED_BYTES.remove(str(version), "experiment")
            log.info("let go of model v%s: no experiment uses it", version)
        changed = (
            held.keys() != self.engine.live.versions.keys()
            or resolved != self.engine.live.model_refs
        )
        self.engine.live.versions = held
        self.engine.live.model_refs = resolved
        return changed

    def _missing(self, version: int, snapshot_id: str) -> None:
        """The champion's snapshot is not in Redis: answer degraded, restore it from MLflow."""
        store = self.engine.live.store
        assert store is not None
        if self.snapshot_state not in {"missing", "restoring"}:  # counted and logged once
            SNAPSHOT_MISSING.inc()
            log.warning(
                "feature snapshot %s of v%s is not in Redis: restoring it", snapshot_id, version
            )
        self.snapshot_state = "missing"
        self.engine.live.features_missing = True
        if time.monotonic() < self._retry_restore_at:
            return  # the last try failed a moment ago
        lock = store.keys.restoring(snapshot_id)
        if not store.client.set(lock, b"1", nx=True, ex=RESTORE_LOCK_SECONDS):
            return  # another worker restores it; the next check sees it back
        try:
            self.snapshot_state = "restoring"
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                path = self.registry.download_snapshot_file(version, Path(tmp))
                erased = ErasureLog(self.settings.data_dir)  # not back after a flush
                meta, keys = restore_snapshot(store.client, store.prefix, path, erased)
            if meta.snapshot_id != snapshot_id:
                raise RegistryError(
                    f"v{version}: recorded snapshot is {meta.snapshot_id}, not {snapshot_id}"
                )
            store.register_snapshot(meta)
            store.activate(snapshot_id)
            SNAPSHOT_RESTORES.inc()
            log.warning(
                "restored feature snapshot %s (%d keys) in %.1f s",
                snapshot_id,
                keys,
                time.perf_counter() - started,
            )
        except Exception:
            self._retry_restore_at = time.monotonic() + RESTORE_RETRY_SECONDS
            raise
        finally:
            store.client.delete(lock)

    def check_durability(self) -> None:
        """Whether Redis keeps acknowledged writes across a restart (append-only file or a
        replica)."""
        store = self.engine.live.store
        if store is None:
            return
        try:
            persistence = primaries_info(store.client, "persistence")
            replication = primaries_info(store.client, "replication")
        except Exception as exc:  # managed Redis may refuse INFO: say so rather than guess
            reason: str | None = f"Redis did not say how it persists ({type(exc).__name__})"
        else:
            kept = [
                int(p.get("aof_enabled", 0)) == 1 or int(r.get("connected_slaves", 0)) > 0
                for p, r in zip(persistence, replication, strict=True)
            ]
            reason = (
                None
                if all(kept)
                else (
                    f"{kept.count(False)} of {len(kept)} Redis primaries have no append-only file "
                    "and "
                    "no replica: acknowledged events are lost if one restarts (set appendonly yes, "
                    "appendfsync always or everysec)"
                )
            )
        if reason != self.durability:
            if reason:
                log.warning("events are not durable: %s", reason)
            else:
                log.info("Redis persists acknowledged writes (append-only file or replica)")
        self.durability = reason
        self.durable = reason is None
        REDIS_DURABLE.set(0 if reason else 1)

    def try_refresh(self) -> bool:
        """`refresh`, one at a time, errors logged and kept in `last_error`."""
        with self._refreshing:
            try:
                swapped = self.refresh()
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("model refresh failed: %s", self.last_error)
                return False
            self._features_back()
            try:
                if self.stock is not None:
                    self.stock.check()
            except FeatureStoreError:
                pass  # Redis is down: the next check, once it is back
            except Exception as exc:  # logged; the next check tries again
                log.warning("live stock check failed: %s", type(exc).__name__)
            return swapped

    def _features_back(self) -> None:
        """Clear the degraded mark once the served snapshot is in Redis again."""
        store, snap = self.engine.live.store, self.engine.live.snapshot
        if snap is None or store is None or self.snapshot_state == "ok":
            return
        try:
            present = store.snapshot_meta(snap.snapshot_id) is not None
        except OmnirecError:
            return
        if present:
            if self.snapshot_state in {"missing", "restoring"}:
                log.warning(
                    "feature snapshot %s is back: answers personalized again", snap.snapshot_id
                )
            self.snapshot_state = "ok"
            self.engine.live.features_missing = False

    async def poll_forever(self) -> None:
        interval = max(0.2, self.settings.serving.reload_interval_seconds)
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.try_refresh)

    async def watch_features(self) -> None:
        """Every SNAPSHOT_CHECK_SECONDS, one HEXISTS on the event loop's connection: when the served
        snapshot is gone, answers are marked degraded at once and a restore starts (in a thread)."""
        restore: asyncio.Future[bool] | None = None
        while True:
            await asyncio.sleep(SNAPSHOT_CHECK_SECONDS)
            snap = self.engine.live.snapshot
            if snap is None or self.engine.live.breaker.open:
                continue
            try:
                present = await self.engine.live.snapshot_present(snap.snapshot_id)
            except OmnirecError:
                continue  # Redis down: the breaker and readiness speak for that
            if present:
                if self.engine.live.features_missing and (restore is None or restore.done()):
                    await asyncio.to_thread(self._features_back)
                continue
            self.engine.live.features_missing = (
                True  # degraded at once; the restore counts and logs it
            )
            if restore is None or restore.done():
                restore = asyncio.ensure_future(asyncio.to_thread(self.try_refresh))
