"""The offline pipeline: load -> split in time -> train -> evaluate -> log + register -> gate."""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow.models.signature import ModelSignature
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema

from features.dataset import Dataset, load_dataset
from features.interactions import Interactions, build_interactions
from models import create_model
from models.base import Recommender
from models.registry import ModelRegistry
from omnirec.settings import Settings
from training.evaluation import (
    EvaluationSet,
    build_evaluation_set,
    evaluate,
    flat_metrics,
    popularity_baseline,
)
from training.report import write_report
from training.splits import time_split

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
PYFUNC_ENTRY = MODELS_DIR / "mlflow_entry.py"
PYFUNC_SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec(DataType.string)]),  # a list of customer ids (or one column)
    outputs=Schema([ColSpec(DataType.string, "customer_id"), ColSpec(DataType.long, "rank"),
                    ColSpec(DataType.string, "item_id"), ColSpec(DataType.double, "score")]),
    params=ParamSchema([ParamSpec("n", DataType.long, 10), ParamSpec("exclude_seen", DataType.boolean, True)]),
)  # fmt: skip
CODE_PATHS = [
    str(Path(__file__).resolve().parents[1] / name) for name in ("models", "features", "omnirec")
]


@dataclass(frozen=True)
class TrainConfig:
    """What `omnirec train` does; every field is logged as a run parameter."""

    data: Path
    model: str = "als"
    params: dict[str, Any] = field(default_factory=dict)
    test_days: float = 7.0
    k: int = 10
    relevant: tuple[str, ...] = ("purchase",)
    exclude_seen: bool = True
    refit_full: bool = True
    register: bool = True
    max_eval_users: int = 20_000


@dataclass(frozen=True)
class TrainResult:
    """What a run produced and decided."""

    run_id: str
    version: int | None
    promoted: bool
    champion_before: int | None
    gate: str
    metrics: dict[str, dict[str, float]]
    baseline: dict[str, dict[str, float]]
    report: Path
    model: Recommender
    interactions: Interactions
    dataset: Dataset
    timings: dict[str, float]


def data_fingerprint(folder: Path) -> str:
    """sha256 over the bytes of every input file (names included), stable across runs."""
    digest = hashlib.sha256()
    files = (
        [folder]
        if folder.is_file()
        else sorted(
            p for p in folder.rglob("*") if p.is_file() and p.suffix in {".parquet", ".csv"}
        )
    )
    for path in files:
        digest.update(str(path.relative_to(folder.parent if folder.is_file() else folder)).encode())
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def code_version() -> str:
    """The git commit of this checkout (with '+dirty' when modified), else 'unknown'."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=5, check=True
        )
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def use_mlflow(settings: Settings) -> None:
    """Point MLflow at the configured stores and experiment.

    With a local (SQLite or file) tracking store, the experiment keeps its artifacts under the
    data folder rather than in a `./mlruns` of whatever directory the command ran from.
    """
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    if settings.mlflow.registry_uri:
        mlflow.set_registry_uri(settings.mlflow.registry_uri)
    local = settings.mlflow.tracking_uri.startswith(("sqlite:", "file:", "/"))
    if local and mlflow.get_experiment_by_name(settings.mlflow.experiment) is None:
        artifacts = settings.data_dir / "mlflow-artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        mlflow.create_experiment(settings.mlflow.experiment, artifact_location=artifacts.as_uri())
    mlflow.set_experiment(settings.mlflow.experiment)


def fit_model(
    kind: str, params: dict[str, Any], interactions: Interactions, seed: int
) -> Recommender:
    """Create and fit a model; ALS and BPR get the seed unless params name one."""
    if kind in {"als", "bpr"}:
        params = {"seed": seed, **params}
    return create_model(kind, **params).fit(interactions)


def train(config: TrainConfig, settings: Settings) -> TrainResult:
    """Run the whole pipeline once; registers a version and moves `champion` only past the gate."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now

    dataset = load_dataset(config.data, settings.max_future_seconds)
    lap("load_validate")
    split = time_split(dataset.events, config.test_days)
    train_inter = build_interactions(split.train, settings.interactions)
    evaluation: EvaluationSet = build_evaluation_set(
        split, train_inter, relevant_types=config.relevant, exclude_seen=config.exclude_seen,
        max_users=config.max_eval_users, seed=settings.seed,
    )  # fmt: skip
    lap("split_interactions")
    model = fit_model(config.model, config.params, train_inter, settings.seed)
    lap("fit_eval_model")
    baseline_model = popularity_baseline(train_inter)
    metrics = evaluate(model, evaluation, baseline_model, config.k)
    baseline = evaluate(baseline_model, evaluation, baseline_model, config.k)
    lap("evaluate")
    full_inter = train_inter
    if config.refit_full:
        full_inter = build_interactions(dataset.events, settings.interactions)
        model = fit_model(config.model, config.params, full_inter, settings.seed)
    lap("fit_full")

    use_mlflow(settings)
    registry = ModelRegistry(settings.mlflow)
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run() as run:
        mlflow.log_params({
            "model": config.model, **{f"model.{k}": v for k, v in model.params.items()},
            "seed": settings.seed, "test_days": config.test_days, "k": config.k,
            "relevant": ",".join(config.relevant), "exclude_seen": config.exclude_seen,
            "refit_full": config.refit_full, "cutoff": split.cutoff.isoformat(),
            "data": str(config.data), "data_fingerprint": data_fingerprint(config.data),
            "code_version": code_version(),
            "event_weights": str(settings.interactions.event_weights),
            "channel_weights": str(settings.interactions.channel_weights),
            "decay_half_life_days": settings.interactions.decay_half_life_days,
            "customers": full_inter.shape[0], "items": full_inter.shape[1],
            "events_accepted": dataset.report.accepted.num_rows,
            "events_rejected": dataset.report.rejects.num_rows,
        })  # fmt: skip
        mlflow.log_metrics(flat_metrics(metrics, config.k))
        mlflow.log_metrics(flat_metrics(baseline, config.k, prefix="popularity."))
        report_dir = Path(tmp) / "report"
        write_report({config.model: metrics, "popularity": baseline}, config.k, report_dir,
                     f"omnirec {config.model} — time split at {split.cutoff:%Y-%m-%d %H:%M}",
                     {"relevant events": ",".join(config.relevant), "exclude seen": str(config.exclude_seen)})  # fmt: skip
        mlflow.log_artifacts(str(report_dir), artifact_path="report")
        model_dir = model.save(Path(tmp) / "omnirec_model")
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(PYFUNC_ENTRY), artifacts={"omnirec_model": str(model_dir)},
            code_paths=CODE_PATHS, pip_requirements=_requirements(),
            registered_model_name=settings.mlflow.model_name if config.register else None,
            signature=PYFUNC_SIGNATURE,
        )  # fmt: skip
        lap("log_register")
        run_id = run.info.run_id
    version = (
        int(info.registered_model_version)
        if config.register and info.registered_model_version
        else None
    )
    champion_before = registry.champion() if version else None
    promoted, gate = False, "not registered"
    if version is not None:
        registry.tag_version(version, "omnirec.model", config.model)
        promoted, gate = _gate(registry, version, champion_before, settings.mlflow.gate_metric)
        if promoted:
            registry.set_champion(version)
    lap("gate")
    return TrainResult(run_id, version, promoted, champion_before, gate, metrics, baseline,
                       report_dir, model, full_inter, dataset, timings)  # fmt: skip


def _gate(
    registry: ModelRegistry, version: int, champion: int | None, metric: str
) -> tuple[bool, str]:
    new = registry.metric(version, metric)
    if champion is None:
        return True, f"no champion yet: v{version} ({metric}={new}) becomes champion"
    old = registry.metric(champion, metric)
    if new is None:
        return False, f"v{version} has no {metric}: champion v{champion} kept"
    if old is None or new > old:
        return True, f"v{version} {metric}={new:.4f} beats champion v{champion} ({old})"
    return (
        False,
        f"v{version} {metric}={new:.4f} does not beat champion v{champion} ({old:.4f}): kept",
    )


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [
        f"{name}=={version(name)}"
        for name in ("mlflow", "numpy", "scipy", "pandas", "pyarrow", "implicit", "threadpoolctl")
    ]
