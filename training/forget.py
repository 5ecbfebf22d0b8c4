"""Forgetting a customer everywhere (`omnirec forget`; `DELETE /v1/customers/{id}` does the
Redis part at once and leaves the rest to `omnirec forget --pending`): Redis, Redis's append-only
file, the data folders' files, and every registered version's recorded feature snapshot and saved
model in MLflow. The erasure log (salted hashes and times, never an id) is written first and is
what the file and MLflow steps work from, so they can run later, again, or after a crash.

What stays, as the regulators' guidance allows: what a model learned from everyone (item factors,
similarities, cycles) keeps a trace of the erased customer's purchases among everyone's until the
next training, which leaves them out (docs/operations.md: retrain at least every 30 days)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from features.erasure import (
    erase_from_files,
    erase_from_redis,
    owner_of,
    person_ids,
    rewrite_append_only_file,
)
from features.erasure_log import Erased, ErasureLog
from features.snapshot_file import without_erased_keys
from features.store import RedisFeatureStore
from models import load_model
from models.aliases import load_aliases, save_aliases
from models.registry import ModelRegistry, serving_copy
from omnirec.errors import RegistryError
from omnirec.settings import Settings


@dataclass
class Erasure:
    """What an erasure found and removed (counts and places, never the ids)."""

    customers: int = 0
    ids: int = 0
    redis_entries: int = 0
    aof_rewritten: bool = False
    files: list[Path] = field(default_factory=list)
    snapshot_rows: int = 0
    model_versions: list[int] = field(default_factory=list)

    def describe(self) -> str:
        versions = ", ".join(f"v{v}" for v in self.model_versions) or "none"
        return (
            f"forgot {self.customers} customer(s) ({self.ids} ids with their aliases): "
            f"{self.redis_entries} Redis keys and stream entries; append-only file "
            f"{'rewritten' if self.aof_rewritten else 'not in use'}; {len(self.files)} data "
            f"files rewritten; {self.snapshot_rows} recorded snapshot rows removed; saved models "
            f"rewritten: {versions}"
        )


def forget_customers(
    settings: Settings,
    store: RedisFeatureStore | None,
    idents: Sequence[str],
    folders: Sequence[Path] = (),
) -> Erasure:
    """Forget each customer `idents` name everywhere: the log, Redis, the files under `folders`,
    MLflow. Idempotent."""
    log = ErasureLog(settings.data_dir)
    total = Erasure()
    for ident in idents:
        ids = person_ids(store, folders, ident)
        log.record(sorted(ids))
        total.customers += 1
        total.ids += len(ids)
        if store is not None:
            customer = owner_of(store, ident)
            total.redis_entries += erase_from_redis(store.client, store.keys, customer, sorted(ids))
    if store is not None:
        total.aof_rewritten = rewrite_append_only_file(store)
    applied = apply_erasures(settings, folders)
    total.files, total.snapshot_rows = applied.files, applied.snapshot_rows
    total.model_versions = applied.model_versions
    return total


def apply_erasures(settings: Settings, folders: Sequence[Path] = ()) -> Erasure:
    """Bring the files under `folders` and every registered version's snapshot and model in line
    with the erasure log (nothing to do: nothing changes)."""
    erased = ErasureLog(settings.data_dir).read()
    erasure = Erasure()
    if not erased:
        return erasure
    for folder in folders:
        erasure.files += erase_from_files(folder, erased)
    registry = ModelRegistry(settings.mlflow)
    try:
        versions = registry.versions()
    except RegistryError:
        return erasure
    for info in versions:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path: Path | None = registry.download_snapshot_file(info.version, Path(tmp) / "s")
            except RegistryError:
                path = None
            if path is not None:
                gone = without_erased_keys(path, erased)
                if gone:
                    registry.store_snapshot_file(info.version, path)
                    erasure.snapshot_rows += gone
            if _forget_in_model(
                registry, info.version, erased, Path(tmp) / "model", settings.data_dir
            ):
                erasure.model_versions.append(info.version)
    return erasure


def _forget_in_model(
    registry: ModelRegistry, version: int, erased: Erased, folder: Path, data_dir: Path
) -> bool:
    """Rewrite the saved model of `version` without the customers erased since (ids replaced,
    their rows emptied, their aliases dropped); whether it changed."""
    model_dir = registry.download(version, folder)
    model = load_model(model_dir)
    aliases = load_aliases(model_dir)
    # anyone erased at all: a model keeps no times to tell a later return apart
    erased_ids = model.customer_ids[np.isfinite(erased.until(model.customer_ids.tolist()))]
    alias_ids = list(aliases)
    gone_alias = np.isfinite(erased.until(alias_ids)) | np.isfinite(
        erased.until([aliases[a] for a in alias_ids])
    )
    forgotten = model.forget_customers(erased_ids.tolist())
    if not forgotten and not gone_alias.any():
        return False
    model.save(model_dir)
    kept = [a for a, gone in zip(alias_ids, gone_alias.tolist(), strict=True) if not gone]
    save_aliases(np.array(kept, str), np.array([aliases[a] for a in kept], str), model_dir)
    registry.replace_model_files(version, model_dir)
    # the service's own copy of the old files goes too: a restart fetches the rewritten ones
    shutil.rmtree(serving_copy(data_dir, version), ignore_errors=True)
    return True
