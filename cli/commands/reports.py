"""`omnirec report attribution`: which channel sells what another channel suggested."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path

from cli.options import CommandSpec, existing_path
from omnirec.settings import Settings


def _moment(value: str) -> datetime:
    """argparse type: an ISO date or time (UTC unless it names its offset)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO date or time") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _configure(p: argparse.ArgumentParser) -> None:
    kinds = p.add_subparsers(dest="kind", required=True, metavar="REPORT")
    attribution = kinds.add_parser(
        "attribution",
        help="shown-on x bought-on: purchases on every channel attributed to the "
        "recommendations that showed the item, with 95 %% intervals, per placement and variant",
    )
    attribution.add_argument("--since", type=_moment, default=None, help="ISO date or time")
    attribution.add_argument("--until", type=_moment, default=None, help="ISO date or time")
    attribution.add_argument(
        "--data",
        type=existing_path,
        default=None,
        help="the data folder: its exported events/ (and feedback), identity map "
        "(default: $OMNIREC_DATA_DIR/synthetic)",
    )
    attribution.add_argument(
        "--click-hours",
        type=float,
        default=None,
        help="a purchase this long after a click counts for it ($OMNIREC_ATTRIBUTION_HOURS, 24)",
    )
    attribution.add_argument(
        "--view-hours",
        type=float,
        default=None,
        help="a purchase this long after an impression counts for it "
        "($OMNIREC_VIEW_ATTRIBUTION_HOURS, 72)",
    )
    attribution.add_argument(
        "--out", type=Path, default=None, help="folder for attribution.md, .json and .png"
    )
    attribution.add_argument(
        "--no-mlflow", action="store_true", help="do not log the report as an MLflow run"
    )


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from features.dataset import load_identities
    from features.export import feedback_folder
    from training.attribution_report import (
        Windows,
        attribution_report,
        log_attribution,
        write_attribution,
    )
    from training.experiment_report import read_parquet_folder

    data = args.data or settings.data_dir / "synthetic"
    events_dir = data / "events"
    feedback = read_parquet_folder(feedback_folder(events_dir))
    if feedback is None:
        raise SystemExit(
            f"no feedback under {feedback_folder(events_dir)} (omnirec export-events writes it)"
        )
    windows = Windows(
        args.click_hours or settings.serving.attribution_hours,
        args.view_hours or settings.serving.view_attribution_hours,
    )
    report = attribution_report(
        feedback,
        read_parquet_folder(events_dir),
        load_identities(data),
        windows,
        args.since,
        args.until,
    )
    out = args.out or settings.data_dir / "reports" / "attribution" / time.strftime("%Y%m%d-%H%M%S")
    files = write_attribution(report, out)
    print(report.markdown())
    print("\n".join(f"-> {f}" for f in files))
    if not args.no_mlflow:
        run = log_attribution(report, files, settings)
        print(f"-> MLflow run {run} ({settings.mlflow.experiment}-reports)")
    return 0


COMMANDS = [
    CommandSpec(
        "report",
        "reports on what the recommendations did: attribution (shown-on x bought-on)",
        _configure,
        _run,
    )
]
