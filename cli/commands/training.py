"""Training subcommands: train, tune, models, promote, rollback, benchmark."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cli.names import MODEL_NAMES
from cli.options import CommandSpec, add_engine_option, existing_path, positive_int
from omnirec.errors import ConfigError
from omnirec.settings import Settings

PROTOCOLS = ("time", "next-basket", "last-days")  # training.splits.PROTOCOLS (CLI imports lazily)


def _json_params(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--params must be a JSON object: {exc}") from exc
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError("--params must be a JSON object")
    return parsed


def _common_train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        type=existing_path,
        default=None,
        help="data folder (default: $OMNIREC_DATA_DIR/synthetic)",
    )
    p.add_argument(
        "--model",
        choices=["auto", *MODEL_NAMES],
        default="auto",
        help="model kind (default auto: the best candidate on a validation part)",
    )
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="time",
        help="test part: time = the last --test-days of the data; next-basket = each "
        "customer's last basket; last-days = each customer's last --test-days",
    )
    p.add_argument(
        "--test-days", type=float, default=7.0, help="days after the cut-off used as test"
    )
    p.add_argument(
        "--budget",
        type=float,
        default=600.0,
        help="seconds model selection may spend (--model auto)",
    )
    p.add_argument("--k", type=positive_int, default=10, help="list length for metrics")
    p.add_argument(
        "--relevant", default="purchase", help="comma list of event types that count as hits"
    )
    seen = p.add_mutually_exclusive_group()
    seen.add_argument(
        "--keep-seen",
        dest="exclude_seen",
        action="store_false",
        default=None,
        help="bought items stay recommendable, back when due for models that learn repurchase "
        "windows (default: decided from the data, or by the model kind)",
    )
    seen.add_argument(
        "--exclude-seen",
        dest="exclude_seen",
        action="store_true",
        help="never count or recommend items the customer bought",
    )
    p.add_argument("--no-publish", action="store_true", help="do not publish features to Redis")


def _configure_train(p: argparse.ArgumentParser) -> None:
    _common_train_options(p)
    add_engine_option(p)
    p.add_argument(
        "--params",
        type=_json_params,
        default={},
        help="model parameters as JSON, e.g. '{\"factors\": 64}'",
    )


def _train_config(args: argparse.Namespace, settings: Settings, params: dict[str, Any]):  # type: ignore[no-untyped-def]
    from training.pipeline import TrainConfig

    data = args.data or settings.data_dir / "synthetic"
    if not Path(data).exists():
        raise ConfigError(f"no data at {data}: run `omnirec generate` or pass --data")
    return TrainConfig(
        data=Path(data),
        model=args.model,
        params=params,
        test_days=args.test_days,
        k=args.k,
        relevant=tuple(args.relevant.split(",")),
        exclude_seen=args.exclude_seen,
        protocol=args.protocol,
        budget_seconds=args.budget,
        engine=getattr(args, "engine", "local"),
    )


def _print_result(result: Any, k: int) -> None:
    from training.report import markdown_table

    results = {result.model.kind: result.metrics, **result.baselines}
    for slice_name in ("all", "repeat", "explore"):
        if slice_name in result.metrics:
            print(f"{slice_name}:" if slice_name != "all" else "all held-out items:")
            print(markdown_table(results, k, slice_name))
    print(f"run {result.run_id}; registered version {result.version}; {result.gate}")
    print("timings: " + ", ".join(f"{n} {t:.1f}s" for n, t in result.timings.items()))


def _run_train(args: argparse.Namespace, settings: Settings) -> int:

    return _train_and_publish(args, settings, args.params)


def _train_and_publish(args: argparse.Namespace, settings: Settings, params: dict[str, Any]) -> int:
    from training.pipeline import train

    config = _train_config(args, settings, params)
    result = train(config, settings)
    _print_result(result, args.k)
    if not args.no_publish and result.version is not None:
        from training.versions import publish_version

        # the model and the validated data this run already holds: nothing fetched or read again
        summary = publish_version(
            settings,
            result.version,
            config.data,
            engine=getattr(args, "engine", "local"),
            model=result.model,
            dataset=result.dataset,
        )
        print(summary)
    return 0


def _configure_tune(p: argparse.ArgumentParser) -> None:
    _common_train_options(p)
    p.add_argument("--trials", type=positive_int, default=20, help="number of search trials")
    p.add_argument(
        "--validation-days",
        type=float,
        default=7.0,
        help="days carved from the end of the training part",
    )


def _run_tune(args: argparse.Namespace, settings: Settings) -> int:
    import mlflow

    from features.dataset import load_dataset
    from features.erasure_log import ErasureLog
    from features.interactions import build_interactions
    from training.evaluation import build_evaluation_set
    from training.pipeline import use_mlflow
    from training.selection import REPEAT_KINDS
    from training.splits import split_events
    from training.tuning import tune

    if args.model == "auto":
        raise ConfigError("omnirec tune needs --model (the kind whose parameters to search)")
    config = _train_config(args, settings, {})
    dataset = load_dataset(config.data, settings.max_future_seconds, ErasureLog(settings.data_dir))
    outer = split_events(dataset.events, config.protocol, config.test_days)
    # the test part is never seen here
    inner = split_events(outer.train, config.protocol, args.validation_days)
    inner_train = build_interactions(inner.train, settings.interactions)
    exclude_seen = config.exclude_seen
    if exclude_seen is None:
        exclude_seen = args.model not in REPEAT_KINDS
    evaluation = build_evaluation_set(
        inner,
        inner_train,
        relevant_types=config.relevant,
        exclude_seen=exclude_seen,
        seed=settings.seed,
    )
    use_mlflow(settings)
    with mlflow.start_run(run_name=f"tune-{args.model}") as parent:
        best = tune(
            args.model,
            evaluation,
            trials=args.trials,
            k=args.k,
            seed=settings.seed,
            log_to_mlflow=True,
        )
        mlflow.log_params({f"best.{k}": v for k, v in best.params.items()})
        mlflow.log_metric(f"best_validation_ndcg_at_{args.k}", best.score)
    print(
        f"best of {best.trials} trials (tuning run {parent.info.run_id}): {best.params} "
        f"validation nDCG@{args.k}={best.score:.4f}"
    )
    return _train_and_publish(args, settings, best.params)


def _configure_models(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metric", default=None, help="metric to show (default: the gate metric)")


def _run_models(args: argparse.Namespace, settings: Settings) -> int:
    from models.registry import ModelRegistry

    metric = args.metric or settings.mlflow.gate_metric
    versions = ModelRegistry(settings.mlflow).versions()
    if not versions:
        print("no registered versions yet: run `omnirec train`")
        return 0
    print(
        f"{'version':>7}  {'model':<13} {metric:>14} {'popularity':>11} {'test':>6}  "
        f"{'data':<12}  champion  snapshot"
    )
    for v in versions:
        value = v.metrics.get(metric)
        base = v.metrics.get(f"popularity.{metric}")
        # the data it learned from (fingerprint) and how many customers its test held
        data = v.params.get("data_fingerprint", "-")[:12]
        print(
            f"{v.version:>7}  {v.model_kind:<13} "
            f"{value if value is None else round(value, 4)!s:>14} "
            f"{base if base is None else round(base, 4)!s:>11} "
            f"{v.params.get('test_customers', '-'):>6}  {data:<12}  "
            f"{'  *' if v.is_champion else '':<8}  {v.snapshot or '-'}"
        )
    return 0


def _configure_promote(p: argparse.ArgumentParser) -> None:
    p.add_argument("version", type=positive_int, help="registered version to make champion")


def _run_promote(args: argparse.Namespace, settings: Settings) -> int:
    from models.registry import ModelRegistry

    ModelRegistry(settings.mlflow).set_champion(args.version)
    print(f"champion -> v{args.version}")
    _activate_snapshot(settings, args.version)
    return 0


def _run_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from models.registry import ModelRegistry

    version = ModelRegistry(settings.mlflow).rollback()
    print(f"champion rolled back to v{version}")
    _activate_snapshot(settings, version)
    return 0


def _activate_snapshot(settings: Settings, version: int) -> None:
    from training.versions import activate_version_snapshot

    print(activate_version_snapshot(settings, version))


def _configure_benchmark(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--suite", choices=["movielens", "completejourney", "synthetic", "all"], default="all"
    )
    p.add_argument(
        "--shared-data",
        type=existing_path,
        default=Path("../shared/data"),
        help="folder of the public data sets",
    )
    p.add_argument(
        "--trials",
        type=positive_int,
        default=15,
        help="tuning trials per model (validation split only)",
    )


def _run_benchmark(args: argparse.Namespace, settings: Settings) -> int:
    from training.benchmark import run_benchmarks

    run_benchmarks(args.suite, args.shared_data, settings, trials=args.trials)
    return 0


COMMANDS = [
    CommandSpec(
        "train",
        "train, evaluate in time order, log + register in MLflow, promote past the gate, publish",
        _configure_train,
        _run_train,
    ),
    CommandSpec(
        "tune",
        "search hyper-parameters on a validation split, then train the best",
        _configure_tune,
        _run_tune,
    ),
    CommandSpec(
        "models",
        "list registered versions with metrics and the champion",
        _configure_models,
        _run_models,
    ),
    CommandSpec(
        "promote",
        "make a version the champion (and switch to its feature snapshot)",
        _configure_promote,
        _run_promote,
    ),
    CommandSpec(
        "rollback", "move the champion back to the previous one", lambda p: None, _run_rollback
    ),
    CommandSpec(
        "benchmark",
        "quality benchmarks: MovieLens 100K, Complete Journey, synthetic",
        _configure_benchmark,
        _run_benchmark,
    ),
]
