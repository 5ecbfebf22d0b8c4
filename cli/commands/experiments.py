"""Experiment subcommands: `experiments list|report|simulate` and `alias`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cli.options import CommandSpec, existing_path, positive_int
from omnirec.settings import Settings


def _configure(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="validate the placements and experiments files and show them")
    report = actions.add_parser(
        "report",
        help="impressions, CTR, conversion and revenue per impression per variant, "
        "with 95 %% intervals, lift over the control and p-values, and a plot",
    )
    report.add_argument("name", help="the experiment's name")
    report.add_argument(
        "--feedback",
        type=existing_path,
        default=None,
        help="exported feedback folder (default: beside the exported events)",
    )
    report.add_argument(
        "--events",
        type=Path,
        default=None,
        help="event log folder whose purchases count too (default: "
        "$OMNIREC_DATA_DIR/synthetic/events)",
    )
    report.add_argument(
        "--control", default=None, help="the control variant (default: the experiment's first)"
    )
    report.add_argument(
        "--window-hours",
        type=float,
        default=None,
        help="attribution window (default $OMNIREC_ATTRIBUTION_HOURS or 24)",
    )
    report.add_argument(
        "--out", type=Path, default=None, help="folder for report.json and report.png"
    )
    simulate = actions.add_parser(
        "simulate", help="simulated feedback of an experiment whose true lift is known"
    )
    simulate.add_argument("name", help="the simulated experiment's name")
    simulate.add_argument(
        "--out", type=Path, required=True, help="folder for the simulated feedback (Parquet)"
    )
    simulate.add_argument(
        "--data",
        type=existing_path,
        default=None,
        help="a synthetic data folder (omnirec generate; default: $OMNIREC_DATA_DIR/synthetic)",
    )
    simulate.add_argument(
        "--customers", type=positive_int, default=None, help="the first N customers (default: all)"
    )
    simulate.add_argument("--seed", type=int, default=7)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    return {"list": _list, "report": _report, "simulate": _simulate}[args.action](args, settings)


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from serving.experiments.config import load_experiments
    from serving.placements import load_placements

    placements = load_placements(settings.serving.placements_file)
    experiments = load_experiments(settings.serving.experiments_file, placements)
    print(
        f"placements ({placements.source}): "
        + ", ".join(
            f"{name}{f' [{rules.name}]' if rules else ''}"
            for name, rules in placements.placements.items()
        )
    )
    for e in experiments.experiments:
        scope = (
            f"placements {sorted(e.placements) if e.placements else 'all'}, "
            f"channels {sorted(e.channels) if e.channels else 'all'}"
        )
        variants = ", ".join(
            f"{v.name}={v.model}{f'+{v.rules.name}' if v.rules else ''} {v.share:.0%}"
            for v in e.variants
        )
        shadow = f"; shadow {e.shadow} on {e.shadow_sample:.0%}" if e.shadow else ""
        print(f"experiment {e.name}: {variants} ({scope}{shadow})")
    if not experiments.experiments:
        print(f"no experiments ({experiments.source})")
    return 0


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from features.export import feedback_folder
    from serving.experiments.config import load_experiments
    from serving.placements import load_placements
    from training.experiment_report import experiment_report, read_parquet_folder, write_report

    events_dir = args.events or settings.data_dir / "synthetic" / "events"
    feedback_dir = args.feedback or feedback_folder(events_dir)
    feedback = read_parquet_folder(feedback_dir)
    if feedback is None:
        raise SystemExit(
            f"no feedback under {feedback_dir} (omnirec export-events writes it there)"
        )
    control = args.control
    if control is None and settings.serving.experiments_file is not None:
        configured = load_experiments(
            settings.serving.experiments_file, load_placements(settings.serving.placements_file)
        ).by_name(args.name)
        control = configured.control.name if configured else None
    window = args.window_hours or settings.serving.attribution_hours
    report = experiment_report(
        args.name, feedback, read_parquet_folder(events_dir), window, control
    )
    out = (
        args.out
        or settings.data_dir
        / "reports"
        / "experiments"
        / f"{args.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    data, plot = write_report(report, out)
    print(report.table())
    print(f"-> {data}\n-> {plot}")
    return 0


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    import pyarrow.parquet as pq

    from features.click_simulation import simulate_experiment
    from features.generator import latent_tastes, read_config

    data = args.data or settings.data_dir / "synthetic"
    sim = simulate_experiment(
        latent_tastes(read_config(data)),
        experiment=args.name,
        customers=args.customers,
        seed=args.seed,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    pq.write_table(sim.feedback, args.out / "simulated.parquet")
    rates = ", ".join(
        f"{v} {r:.4f} ({sim.impressions[v]:,} impressions)" for v, r in sim.expected_ctr.items()
    )
    print(f"{sim.feedback.num_rows:,} feedback records -> {args.out}")
    print(f"true click-through: {rates}; true lift {sim.true_lift:+.1%}")
    return 0


def _configure_alias(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "alias", help="an alias such as challenger (champion moves with promote/rollback)"
    )
    p.add_argument("version", type=positive_int, help="registered model version")


def _run_alias(args: argparse.Namespace, settings: Settings) -> int:
    from models.registry import ModelRegistry

    ModelRegistry(settings.mlflow).set_alias(args.alias, args.version)
    print(
        f"{args.alias} -> v{args.version} (experiments naming it follow within the reload interval;"
        f" publish the version first: omnirec publish {args.version})"
    )
    return 0


COMMANDS = [
    CommandSpec(
        "experiments",
        "A/B experiments: list the configured ones, report one, simulate one",
        _configure,
        _run,
    ),
    CommandSpec(
        "alias",
        "point an MLflow alias (challenger, ...) at a version for experiments",
        _configure_alias,
        _run_alias,
    ),
]
