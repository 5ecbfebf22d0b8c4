"""Privacy subcommands: forget (the right to erasure)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.options import CommandSpec, existing_path
from omnirec.errors import ConfigError
from omnirec.settings import Settings


def _configure_forget(p: argparse.ArgumentParser) -> None:
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--customer", action="append", default=None, help="a customer id or any alias of theirs"
    )
    who.add_argument("--file", type=existing_path, default=None, help="a file of ids, one per line")
    who.add_argument(
        "--pending",
        action="store_true",
        help="apply the erasure log (erasures made through the service) to files and MLflow",
    )
    p.add_argument(
        "--data",
        type=existing_path,
        action="append",
        default=None,
        help="a data folder whose files to rewrite (repeatable; default: $OMNIREC_DATA_DIR/"
        "synthetic when it exists): events, the exported event and feedback log, identities",
    )
    p.add_argument("--no-redis", action="store_true", help="do not touch Redis")


def _run_forget(args: argparse.Namespace, settings: Settings) -> int:
    from features.store import RedisFeatureStore
    from omnirec.redis_runtime import redis_target
    from training.forget import apply_erasures, forget_customers

    default = settings.data_dir / "synthetic"
    folders: list[Path] = args.data or ([default] if default.exists() else [])
    if args.pending:
        print(apply_erasures(settings, folders).describe())
        return 0
    idents = args.customer or [
        line.strip() for line in args.file.read_text().splitlines() if line.strip()
    ]
    if not idents:
        raise ConfigError(f"{args.file}: no ids in it")
    if args.no_redis:
        print(forget_customers(settings, None, idents, folders).describe())
        return 0
    with redis_target(settings) as target:
        store = RedisFeatureStore(target, settings.redis.prefix, timeout=30)
        try:
            print(forget_customers(settings, store, idents, folders).describe())
        finally:
            store.close()
    return 0


COMMANDS = [
    CommandSpec(
        "forget",
        "forget customers everywhere: Redis, data files, MLflow (right to erasure)",
        _configure_forget,
        _run_forget,
    ),
]
