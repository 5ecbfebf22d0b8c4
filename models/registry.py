"""The MLflow model registry as omnirec uses it: versions, the `champion` alias, promote and roll
back."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from omnirec.errors import RegistryError
from omnirec.settings import MlflowSettings

if TYPE_CHECKING:
    from mlflow import MlflowClient

CHAMPION = "champion"
HISTORY_TAG = "omnirec.champion_history"
SNAPSHOT_FILE = "snapshot.parquet"
SNAPSHOT_ARTIFACTS = "feature-snapshot"  # run artifact folder of a version's recorded snapshot


@dataclass(frozen=True)
class VersionInfo:
    """One registered version with what a data scientist compares."""

    version: int
    run_id: str
    model_kind: str
    metrics: dict[str, float]
    is_champion: bool
    snapshot: str | None
    params: dict[str, str] = field(default_factory=dict)  # the run's parameters


def serving_copies(data_dir: Path) -> Path:
    """Where the service keeps the model files it fetched from MLflow (one copy per data folder,
    shared by its workers); a restart serves from them without asking MLflow."""
    return data_dir / "serving-models"


def serving_copy(data_dir: Path, version: int) -> Path:
    return serving_copies(data_dir) / f"v{version}"


def quiet_artifact_transfers() -> None:
    """MLflow draws a progress bar per artifact it moves: noise in a log (the service's
    downloads, training's uploads). Off unless the environment says otherwise."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _mlflow_error() -> type[Exception]:
    from mlflow.exceptions import MlflowException

    return MlflowException


class ModelRegistry:
    """Registered model `settings.model_name` in the tracking/registry store of `settings`.

    MLflow is imported and its client built on the first call that needs it (some 3 s of a
    process's start): a service that starts from the snapshot Redis names never waits for it."""

    def __init__(self, settings: MlflowSettings) -> None:
        quiet_artifact_transfers()
        self.settings = settings
        self.name = settings.model_name

    @cached_property
    def client(self) -> MlflowClient:
        from mlflow import MlflowClient

        # both explicit: a None registry URI would follow whatever this process set globally
        return MlflowClient(
            tracking_uri=self.settings.tracking_uri,
            registry_uri=self.settings.registry_uri or self.settings.tracking_uri,
        )

    def champion(self) -> int | None:
        """The version the `champion` alias points at, or None."""
        try:
            return int(self.client.get_model_version_by_alias(self.name, CHAMPION).version)
        except _mlflow_error():
            return None

    def alias_version(self, alias: str) -> int | None:
        """The version an alias (`champion`, `challenger`, ...) points at, or None."""
        try:
            return int(self.client.get_model_version_by_alias(self.name, alias).version)
        except _mlflow_error():
            return None

    def set_alias(self, alias: str, version: int) -> None:
        """Point any alias other than `champion` at `version` (`champion` has promote/rollback)."""
        if alias == CHAMPION:
            raise RegistryError("move the champion with promote or rollback")
        self._version(version)
        self.client.set_registered_model_alias(self.name, alias, str(version))

    def metric(self, version: int, name: str) -> float | None:
        """A metric of the run that produced `version`."""
        run_id = self._version(version).run_id
        value = self.client.get_run(run_id).data.metrics.get(name) if run_id else None
        return None if value is None else float(value)

    def set_champion(self, version: int) -> None:
        """Point `champion` at `version`, remembering the previous one for rollback."""
        self._version(version)
        previous = self.champion()
        if previous == version:
            return
        history = self._history()
        if previous is not None:
            history.append(previous)
        self.client.set_registered_model_tag(self.name, HISTORY_TAG, json.dumps(history[-50:]))
        self.client.set_registered_model_alias(self.name, CHAMPION, str(version))

    def rollback(self) -> int:
        """Move `champion` back to the version it pointed at before; returns that version."""
        history = self._history()
        if not history:
            raise RegistryError(f"{self.name}: no earlier champion to roll back to")
        target = history.pop()
        self.client.set_registered_model_tag(self.name, HISTORY_TAG, json.dumps(history))
        self.client.set_registered_model_alias(self.name, CHAMPION, str(target))
        return target

    def versions(self) -> list[VersionInfo]:
        """All versions, newest first, with their run's metrics."""
        champion = self.champion()
        found = self.client.search_model_versions(f"name='{self.name}'")
        infos = []
        for mv in sorted(found, key=lambda v: int(v.version), reverse=True):
            data = self.client.get_run(mv.run_id).data if mv.run_id else None
            metrics = data.metrics if data is not None else {}
            infos.append(
                VersionInfo(
                    version=int(mv.version),
                    run_id=mv.run_id or "",
                    model_kind=mv.tags.get("omnirec.model", "?"),
                    metrics=dict(metrics),
                    is_champion=int(mv.version) == champion,
                    snapshot=mv.tags.get("omnirec.snapshot"),
                    params=dict(data.params) if data is not None else {},
                )
            )
        return infos

    def tag_version(self, version: int, key: str, value: str) -> None:
        self.client.set_model_version_tag(self.name, str(version), key, value)

    def version_tag(self, version: int, key: str) -> str | None:
        value = self._version(version).tags.get(key)
        return None if value is None else str(value)

    def download(self, version: int, folder: Path) -> Path:
        """Fetch the saved omnirec model (arrays + JSON) of `version` into `folder`; returns its
        path."""
        import mlflow.artifacts

        # the version's own artifact location: a `models:/` URI would resolve through the
        # process-wide registry URI, which commands like rollback never set (MLflow then asked a
        # ./mlflow.db of whatever folder the command ran in)
        source = self.client.get_model_version_download_uri(self.name, str(version))
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=str(folder), tracking_uri=self.settings.tracking_uri
        )
        model_dir = Path(local) / "artifacts" / "omnirec_model"
        if not model_dir.exists():
            raise RegistryError(f"{self.name} v{version}: no omnirec model in its artifacts")
        return model_dir

    def replace_model_files(self, version: int, model_dir: Path) -> None:
        """Write the files of a saved omnirec model over those of `version` (an erasure rewrote
        them: same names, same place, so every door loads the rewritten ones)."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        source = self.client.get_model_version_download_uri(self.name, str(version))
        repository = get_artifact_repository(source)
        repository.log_artifacts(str(model_dir), "artifacts/omnirec_model")  # type: ignore[no-untyped-call]

    def store_snapshot_file(self, version: int, path: Path) -> None:
        """Keep the recorded feature snapshot of `version` with the run that produced it."""
        run_id = self._version(version).run_id
        if not run_id:
            raise RegistryError(
                f"{self.name} v{version}: no run to store its feature snapshot with"
            )
        self.client.log_artifact(run_id, str(path), SNAPSHOT_ARTIFACTS)

    def download_snapshot_file(self, version: int, folder: Path) -> Path:
        """The recorded feature snapshot of `version`, downloaded into `folder`."""
        import mlflow.artifacts

        run_id = self._version(version).run_id
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id,
                artifact_path=f"{SNAPSHOT_ARTIFACTS}/{SNAPSHOT_FILE}",
                dst_path=str(folder),
                tracking_uri=self.settings.tracking_uri,
            )
        except (_mlflow_error(), OSError) as exc:
            raise RegistryError(
                f"{self.name} v{version}: no recorded feature snapshot ({exc})"
            ) from exc
        return Path(local)

    def _version(self, version: int):  # type: ignore[no-untyped-def]
        try:
            return self.client.get_model_version(self.name, str(version))
        except _mlflow_error() as exc:
            raise RegistryError(f"{self.name}: no version {version}") from exc

    def _history(self) -> list[int]:
        try:
            tags = self.client.get_registered_model(self.name).tags
        except _mlflow_error() as exc:
            raise RegistryError(f"no registered model {self.name!r} yet: train one first") from exc
        return [int(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]
