"""What every subcommand is built from: its spec and the option types the commands share."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omnirec.settings import Settings


@dataclass(frozen=True)
class CommandSpec:
    """One subcommand: its name, help, options and handler."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Settings], int]


def existing_path(value: str) -> Path:
    """argparse type: a path that exists."""
    path = Path(value)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{value} does not exist")
    return path


def positive_int(value: str) -> int:
    """argparse type: an integer > 0."""
    try:
        number = int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from exc
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be a positive integer")
    return number


def add_engine_option(p: argparse.ArgumentParser) -> None:
    """--engine: who reads the events (this process, or Spark: see README, Scaling)."""
    p.add_argument(
        "--engine",
        choices=("local", "spark"),
        default="local",
        help="local (default): this process reads the events; spark: Spark SQL reads and "
        "aggregates them ($OMNIREC_SPARK_MASTER, default local[*]) and publishing "
        "scores customers on its executors",
    )
