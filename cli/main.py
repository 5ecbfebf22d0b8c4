"""The `omnirec` command: thin glue over the pipeline stages (each subcommand has --help)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cli.options import CommandSpec
from omnirec.errors import ConfigError, OmnirecError
from omnirec.settings import Settings

# commands that hold a whole data set: their peak memory is what they hold (omnirec.memory)
WHOLE_DATA_COMMANDS = frozenset(
    {"generate", "import", "validate", "interactions", "train", "tune", "publish", "benchmark"}
)


def all_commands() -> list[CommandSpec]:
    """Every subcommand, in the order `--help` lists them."""
    from cli.commands import (
        data,
        demo,
        experiments,
        kernels,
        privacy,
        reports,
        serve,
        training,
    )

    return [
        *data.COMMANDS,
        *training.COMMANDS,
        *serve.COMMANDS,
        *experiments.COMMANDS,
        *reports.COMMANDS,
        *demo.COMMANDS,
        *privacy.COMMANDS,
        *kernels.COMMANDS,
    ]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="omnirec",
        description="Cross-channel product recommendations: data, training, feature store, "
        "serving.",
    )
    parser.add_argument(
        "--tenant",
        default=None,
        help="the retailer or brand to work on (one of $OMNIREC_TENANTS): its data folder, "
        "Redis prefix and MLflow model; `serve` serves every tenant",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for spec in all_commands():
        child = sub.add_parser(spec.name, help=spec.help, description=spec.help)
        spec.configure(child)
        child.set_defaults(handler=spec.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `omnirec` console script; returns the exit status."""
    args = build_parser().parse_args(argv)  # --help and bad arguments end here, importing little
    from omnirec.redis_runtime import stop_cleanly_on_sigterm

    if args.command in WHOLE_DATA_COMMANDS:
        from omnirec.memory import return_freed_memory

        return_freed_memory()
    try:
        settings = Settings.from_env()
        if args.tenant is not None:
            if args.command == "serve":
                raise ConfigError("serve serves every tenant of OMNIREC_TENANTS: drop --tenant")
            settings = settings.for_tenant(args.tenant)
        with stop_cleanly_on_sigterm():
            return int(args.handler(args, settings))
    except OmnirecError as exc:
        print(f"omnirec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
