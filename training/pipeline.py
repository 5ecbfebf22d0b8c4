"""The offline pipeline: load -> split in time -> train -> evaluate -> log + register -> gate.

Longer than our 400 lines on purpose: the pipeline's steps, in the order they run, read top to
bottom (load, split, select, fit, evaluate, log, register, gate).
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from features.dataset import Dataset, load_dataset, load_side_tables
from features.erasure_log import ErasureLog
from models.aliases import save_aliases
from models.base import Recommender
from models.registry import ModelRegistry, quiet_artifact_transfers
from omnirec.interaction_data import Interactions
from omnirec.settings import Settings
from training.content_features import configured_days, placeable
from training.evaluation import (
    EvaluationSet,
    build_evaluation_set,
    evaluate,
    flat_metrics,
    popularity_baseline,
)
from training.fitting import fit_model
from training.gate import champion_gate
from training.report import write_report
from training.run_events import PreparedEvents
from training.selection import (
    DEFAULT_BUDGET_SECONDS,
    REPEAT_KINDS,
    Selection,
    select_model,
    select_model_on,
)

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
PYFUNC_ENTRY = MODELS_DIR / "mlflow_entry.py"


def pyfunc_signature() -> Any:
    """The registered model's signature: a list of customer ids in, ranked items out."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec(DataType.string)]),  # a list of customer ids (or one column)
        outputs=Schema(
            [
                ColSpec(DataType.string, "customer_id"),
                ColSpec(DataType.long, "rank"),
                ColSpec(DataType.string, "item_id"),
                ColSpec(DataType.double, "score"),
            ]
        ),
        params=ParamSchema(
            [
                ParamSpec("n", DataType.long, 10),
                # True: hide what the version's show-again policy hides; False: hide nothing
                ParamSpec("exclude_purchased", DataType.boolean, True),
                ParamSpec("now", DataType.double, 0.0),  # epoch seconds; 0: the current time
            ]
        ),
    )


CODE_PATHS = [
    str(Path(__file__).resolve().parents[1] / name) for name in ("models", "features", "omnirec")
]


@dataclass(frozen=True)
class TrainConfig:
    """What `omnirec train` does; every field is logged as a run parameter."""

    data: Path
    model: str = "als"  # "auto": the best candidate on a validation part (training.selection)
    params: dict[str, Any] = field(default_factory=dict)
    test_days: float = 7.0
    k: int = 10
    relevant: tuple[str, ...] = ("purchase",)
    # bought items never suggested again (True), kept (False, back when due for models that
    # learn windows), or None: decided from the data (auto) or the model kind
    exclude_seen: bool | None = None
    refit_full: bool = True
    register: bool = True
    max_eval_users: int = 20_000
    protocol: str = "time"  # or "next-basket", "last-days" (training.splits.PROTOCOLS)
    budget_seconds: float = DEFAULT_BUDGET_SECONDS  # model selection's time budget
    min_test_customers: int = 50  # fewer: the gate does not decide on this run
    engine: str = "local"  # "spark": Spark SQL reads and aggregates them (features.spark_events)


@dataclass(frozen=True)
class TrainResult:
    """What a run produced and decided."""

    run_id: str
    version: int | None
    promoted: bool
    champion_before: int | None
    gate: str
    metrics: dict[str, dict[str, float]]
    baseline: dict[str, dict[str, float]]  # popularity, evaluated on the same test part
    report: Path
    model: Recommender
    interactions: Interactions
    dataset: Dataset | None  # None when Spark read the events
    timings: dict[str, float]
    baselines: dict[str, dict[str, dict[str, float]]]  # popularity and, where kept, buy-again
    selection: Selection | None


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


def use_mlflow(settings: Settings, experiment: str | None = None) -> None:
    """Point MLflow at the configured stores and experiment (or `experiment`).

    With a local (SQLite or file) tracking store, the experiment keeps its artifacts under the
    data folder rather than in a `./mlruns` of whatever directory the command ran from.
    """
    import mlflow

    quiet_artifact_transfers()
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    if settings.mlflow.registry_uri:
        mlflow.set_registry_uri(settings.mlflow.registry_uri)
    name = experiment or settings.mlflow.experiment
    local = settings.mlflow.tracking_uri.startswith(("sqlite:", "file:", "/"))
    if local and mlflow.get_experiment_by_name(name) is None:
        artifacts = settings.data_dir / "mlflow-artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        mlflow.create_experiment(name, artifact_location=artifacts.as_uri())
    mlflow.set_experiment(name)


def train(config: TrainConfig, settings: Settings) -> TrainResult:
    """Run the whole pipeline once; registers a version and moves `champion` only past the gate."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now

    kind, params, exclude_seen = config.model, config.params, config.exclude_seen
    selection: Selection | None = None
    if config.engine == "spark":
        events = PreparedEvents.spark(
            config.data, config.model, config.protocol, config.test_days, settings
        )
        lap("load_validate_split")
    else:
        dataset = load_dataset(
            config.data, settings.max_future_seconds, ErasureLog(settings.data_dir)
        )
        lap("load_validate")
        events = PreparedEvents.local(
            dataset, config.model, config.protocol, config.test_days, settings
        )
    split = events.split
    if kind == "auto":
        choose: dict[str, Any] = {
            "relevant": config.relevant,
            "exclude_seen": config.exclude_seen,
            "k": config.k,
            "budget_seconds": config.budget_seconds,
            "max_users": config.max_eval_users,
        }
        if events.validation is not None:  # Spark cut and aggregated it
            inner, inner_train = events.validation()
            selection = select_model_on(inner, inner_train, settings, **choose)
        else:
            selection = select_model(
                split.train,
                settings,
                protocol=config.protocol,
                test_days=config.test_days,
                **choose,
            )
        kind, params, exclude_seen = (
            selection.best.kind,
            selection.best.params,
            selection.exclude_seen,
        )
        lap("select_model")
    if exclude_seen is None:
        exclude_seen = kind not in REPEAT_KINDS
    due = selection.best.due if selection is not None else True
    side = events.dataset if events.dataset is not None else load_side_tables(_folder(config.data))
    train_inter = events.train_interactions()

    def fit(data: Interactions, serving_index: bool = True) -> Recommender:
        """The chosen model on `data`, with the run's show-again policy and the catalogue's
        items placed (both are read over `data`'s item columns)."""
        return fit_model(
            kind,
            params,
            data,
            settings.seed,
            serving_index=serving_index,
            exclude_bought=exclude_seen,
            due=due,
            configured_days=configured_days(
                side.catalogue, data.item_ids, settings.serving.repurchase_days
            ),
            content=placeable(side.catalogue, data),
        )

    evaluation: EvaluationSet = build_evaluation_set(
        split,
        train_inter,
        relevant_types=config.relevant,
        exclude_seen=exclude_seen,
        max_users=config.max_eval_users,
        seed=settings.seed,
    )
    test_customers = len(evaluation.rows) + (
        evaluation.new_truth["all"].shape[0] if evaluation.new_truth else 0
    )
    print(
        f"test part: {split.describe()}, {test_customers:,} customers "
        f"({len(evaluation.rows):,} returning)",
        flush=True,
    )
    lap("split_interactions")
    # refitted on everything below when refit_full: this one is only evaluated
    model = fit(train_inter, serving_index=not config.refit_full)
    lap("fit_eval_model")
    baseline_model = popularity_baseline(train_inter, exclude_seen)
    metrics = evaluate(model, evaluation, baseline_model, config.k)
    baseline = evaluate(baseline_model, evaluation, baseline_model, config.k)
    baselines = {"popularity": baseline}
    if not exclude_seen:  # where customers rebuy, the bar to clear is their own history
        buy_again = fit_model("buy_again", {}, train_inter, settings.seed, exclude_bought=False)
        baselines["buy_again"] = evaluate(buy_again, evaluation, baseline_model, config.k)
        del buy_again
    lap("evaluate")
    returning = len(evaluation.rows)
    full_inter = train_inter
    if config.refit_full:  # what was only evaluated goes before the refit (memory at 100M events)
        del evaluation, model, baseline_model, train_inter
        full_inter = events.all_interactions()
        model = fit(full_inter)
    lap("fit_full")
    print(f"show again: {model.show_again.describe()}", flush=True)

    import mlflow.pyfunc

    use_mlflow(settings)

    registry = ModelRegistry(settings.mlflow)
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run() as run:
        mlflow.log_params(
            {
                "model": kind,
                **{f"model.{k}": v for k, v in model.params.items()},
                "selected_by": "validation" if selection else "given",
                "seed": settings.seed,
                "test_days": config.test_days,
                "k": config.k,
                "protocol": config.protocol,
                "test_customers": test_customers,
                "relevant": ",".join(config.relevant),
                "exclude_seen": exclude_seen,
                "show_again": model.show_again.mode,
                "refit_full": config.refit_full,
                "cutoff": split.cutoff.isoformat(),
                "engine": config.engine,
                "quantity_scaling": settings.interactions.quantity_scaling,
                "decay_reference": settings.interactions.decay_reference,
                "data": str(config.data),
                "data_fingerprint": data_fingerprint(config.data),
                "code_version": code_version(),
                "event_weights": str(settings.interactions.event_weights),
                "channel_weights": str(settings.interactions.channel_weights),
                "decay_half_life_days": settings.interactions.decay_half_life_days,
                "customers": full_inter.shape[0],
                "items": full_inter.shape[1],
                "events_accepted": events.accepted,
                "events_rejected": events.rejected,
            }
        )
        mlflow.log_metrics(flat_metrics(metrics, config.k))
        for name, results in baselines.items():
            mlflow.log_metrics(flat_metrics(results, config.k, prefix=f"{name}."))
        report_dir = Path(tmp) / "report"
        write_report(
            {kind: metrics, **baselines},
            config.k,
            report_dir,
            f"omnirec {kind} — {split.describe()}",
            {"relevant events": ",".join(config.relevant), "exclude seen": str(exclude_seen)},
        )
        mlflow.log_artifacts(str(report_dir), artifact_path="report")
        if selection is not None:
            mlflow.log_text(selection.table(), "selection/comparison.md")
            mlflow.log_text(selection.to_json(), "selection/selection.json")
            mlflow.log_metric(f"validation_{selection.metric}", selection.best.score or 0.0)
        model_dir = model.save(Path(tmp) / "omnirec_model")
        identity = side.identities.table
        save_aliases(
            identity.column("alias_id").to_numpy(zero_copy_only=False).astype(str),
            identity.column("customer_id").to_numpy(zero_copy_only=False).astype(str),
            model_dir,
        )
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_ENTRY),
            artifacts={"omnirec_model": str(model_dir)},
            code_paths=CODE_PATHS,
            pip_requirements=_requirements(),
            registered_model_name=settings.mlflow.model_name if config.register else None,
            signature=pyfunc_signature(),
        )
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
        registry.tag_version(version, "omnirec.model", kind)
        promoted, gate = champion_gate(
            registry, version, champion_before, settings.mlflow.gate_metric
        )
        if returning < config.min_test_customers:
            few = (
                f"only {returning} returning test customers "
                f"(< {config.min_test_customers}): the gate does not decide on so few; "
            )
            if champion_before is None:
                gate = few + f"v{version} becomes the first champion"
            else:
                promoted = False
                gate = (
                    few
                    + f"champion v{champion_before} kept (`omnirec promote {version}` to override)"
                )
        if promoted:
            registry.set_champion(version)
    lap("gate")
    return TrainResult(
        run_id,
        version,
        promoted,
        champion_before,
        gate,
        metrics,
        baseline,
        report_dir,
        model,
        full_inter,
        events.dataset,
        timings,
        baselines,
        selection,
    )


def _folder(data: Path) -> Path:
    """The data folder of `--data` (a folder, or the events file in one)."""
    return data if data.is_dir() else data.parent


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [
        f"{name}=={version(name)}"
        for name in ("mlflow", "numpy", "scipy", "pandas", "pyarrow", "implicit", "threadpoolctl")
    ]
