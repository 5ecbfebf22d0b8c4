"""Data subcommands: generate, import, validate, interactions."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cli.names import IMPORT_FORMATS
from cli.options import CommandSpec, existing_path, positive_int
from omnirec.settings import Settings


def _configure_generate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--customers", type=positive_int, default=2_000, help="number of customers")
    p.add_argument("--items", type=positive_int, default=1_000, help="catalogue size")
    p.add_argument("--days", type=positive_int, default=90, help="days of history")
    p.add_argument("--seed", type=int, default=42, help="random seed (same seed, same files)")
    p.add_argument("--stores", type=positive_int, default=20, help="number of physical stores")
    p.add_argument(
        "--events-per-customer", type=float, default=40.0, help="mean events per customer"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: $OMNIREC_DATA_DIR/synthetic)",
    )


def _run_generate(args: argparse.Namespace, settings: Settings) -> int:
    from features.generator import GeneratorConfig, generate

    out = args.out or settings.data_dir / "synthetic"
    started = time.perf_counter()
    result = generate(
        GeneratorConfig(
            customers=args.customers,
            items=args.items,
            days=args.days,
            seed=args.seed,
            stores=args.stores,
            events_per_customer=args.events_per_customer,
        ),
        out,
    )
    elapsed = time.perf_counter() - started
    print(
        f"wrote {result.events:,} events for {result.customers:,} customers, {result.items:,} "
        "items, "
        f"{result.stores} stores, {result.aliases:,} aliases to {out} in {elapsed:.1f}s"
    )
    return 0


def _configure_import(p: argparse.ArgumentParser) -> None:
    p.add_argument("format", choices=IMPORT_FORMATS, help="layout of the source data")
    p.add_argument("source", type=existing_path, help="source file or folder")
    p.add_argument("--out", type=Path, required=True, help="output folder for events.parquet etc.")


def _run_import(args: argparse.Namespace, settings: Settings) -> int:
    from features.importers import import_dataset
    from features.io import write_table
    from features.validation import validate_events

    imported = import_dataset(args.format, args.source)
    report = validate_events(imported.events, str(args.source), settings.max_future_seconds)
    write_table(report.accepted, args.out / "events.parquet")
    if imported.catalogue is not None:
        write_table(imported.catalogue, args.out / "catalogue.parquet")
    rejects = report.write_rejects(args.out / "rejects.csv")
    print(report.summary())
    print(
        f"events -> {args.out / 'events.parquet'}" + (f"; rejects -> {rejects}" if rejects else "")
    )
    return 0


def _configure_validate(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "file", type=existing_path, help="events file (CSV, Parquet or a folder of Parquet)"
    )
    p.add_argument(
        "--rejects",
        type=Path,
        default=None,
        help="where to write rejected rows (default: <file>.rejects.csv)",
    )


def _run_validate(args: argparse.Namespace, settings: Settings) -> int:
    from features.validation import load_events

    report = load_events(args.file, settings.max_future_seconds)
    print(report.summary())
    target = args.rejects or args.file.with_name(args.file.name + ".rejects.csv")
    written = report.write_rejects(target)
    if written:
        print(f"rejected rows with row number and reason -> {written}")
    return 0 if report.rejects.num_rows == 0 else 1


def _configure_interactions(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "folder", type=existing_path, help="data folder (events, identity, catalogue, stock)"
    )


def _run_interactions(args: argparse.Namespace, settings: Settings) -> int:
    from features.dataset import load_dataset
    from features.interactions import build_interactions

    dataset = load_dataset(args.folder, settings.max_future_seconds)
    print(dataset.report.summary())
    matrix = build_interactions(dataset.events, settings.interactions)
    n_c, n_i = matrix.shape
    density = matrix.matrix.nnz / max(1, n_c * n_i)
    print(
        f"interactions: {n_c:,} customers x {n_i:,} items, {matrix.matrix.nnz:,} non-zeros "
        f"(density {density:.4%}) after identity stitching"
    )
    return 0


COMMANDS = [
    CommandSpec(
        "generate",
        "write synthetic omnichannel data (events, catalogue, stock, identities)",
        _configure_generate,
        _run_generate,
    ),
    CommandSpec(
        "import",
        "convert a public data set layout into the canonical event schema",
        _configure_import,
        _run_import,
    ),
    CommandSpec(
        "validate",
        "check an events file against the data contract and report rejects",
        _configure_validate,
        _run_validate,
    ),
    CommandSpec(
        "interactions",
        "load a data folder and summarise its weighted interaction matrix",
        _configure_interactions,
        _run_interactions,
    ),
]
