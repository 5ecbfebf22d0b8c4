"""Serving subcommands: serve, batch, publish, export-events, snapshots."""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

from cli.options import CommandSpec, add_engine_option, existing_path, positive_int
from omnirec.settings import Settings


def _configure_serve(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=None, help="bind address (default $OMNIREC_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default $OMNIREC_PORT or 8000)")
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="worker processes (default $OMNIREC_WORKERS or 1)",
    )


def _run_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from omnirec.redis_runtime import redis_target

    host = args.host or settings.serving.host
    port = args.port or settings.serving.port
    workers = args.workers or settings.serving.workers
    from serving.http_protocol import DeadlineHttpToolsProtocol, raise_open_file_limit

    raise_open_file_limit()
    from serving.experiments.config import load_experiments
    from serving.placements import load_placements

    # a bad placements or experiments file stops here, naming the file and the rule
    load_experiments(
        settings.serving.experiments_file, load_placements(settings.serving.placements_file)
    )
    # every worker uses the same Redis: REDIS_URL, or the data folder's shared embedded server
    with redis_target(settings) as target:
        os.environ["REDIS_URL"] = target.url
        # where the workers are served (tracking links default to it: OMNIREC_PUBLIC_URL wins)
        os.environ["OMNIREC_HOST"], os.environ["OMNIREC_PORT"] = host, str(port)
        uvicorn.run(
            "serving.asgi:app",
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            access_log=False,
            factory=False,
            http=DeadlineHttpToolsProtocol,
        )
    return 0


def _configure_publish(p: argparse.ArgumentParser) -> None:
    p.add_argument("version", type=positive_int, help="registered model version")
    p.add_argument(
        "--data", type=existing_path, default=None, help="data folder (default: the run's)"
    )
    add_engine_option(p)


def _run_publish(args: argparse.Namespace, settings: Settings) -> int:
    from training.versions import publish_version

    print(publish_version(settings, args.version, args.data, engine=args.engine))
    return 0


def _configure_export(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="event log folder (default: $OMNIREC_DATA_DIR/synthetic/events)",
    )


def _run_export(args: argparse.Namespace, settings: Settings) -> int:
    from features.export import export_events
    from features.realtime import RealtimeEvents
    from features.store import RedisFeatureStore
    from omnirec.redis_runtime import redis_target

    out = args.out or settings.data_dir / "synthetic" / "events"
    with redis_target(settings) as target:
        store = RedisFeatureStore(target, settings.redis.prefix, timeout=30)
        result = export_events(
            RealtimeEvents(store, streams=settings.redis.event_streams),
            out,
        )
        store.close()
    print(f"exported {result.events:,} events into {len(result.files)} file(s) under {out}")
    if result.feedback:
        from features.export import feedback_folder

        print(f"exported {result.feedback:,} feedback records under {feedback_folder(out)}")
    return 0


def _configure_batch(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--customers",
        type=existing_path,
        required=True,
        help="file with one customer id per line (or a CSV with customer_id)",
    )
    p.add_argument("--out", type=Path, required=True, help="output .csv or .parquet")
    p.add_argument("--limit", type=positive_int, default=10, help="items per customer")
    p.add_argument("--store-id", default=None, help="only items in stock at this store")
    p.add_argument(
        "--placement",
        default=None,
        help="a configured placement (e.g. post_purchase_email): its rules and experiment",
    )
    p.add_argument(
        "--channel",
        default="email",
        help="where the answers are shown (default email): named in each recommendation id, "
        "so purchases on any channel are attributed to it",
    )
    p.add_argument(
        "--link-base",
        default=None,
        help="the service's address as e-mail readers reach it, for the tracking links "
        "(default $OMNIREC_PUBLIC_URL, else http://$OMNIREC_HOST:$OMNIREC_PORT)",
    )


def _configure_due(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="output .csv or .parquet")
    p.add_argument(
        "--within", type=float, default=7.0, help="days ahead a purchase may be due (default 7)"
    )
    p.add_argument(
        "--at",
        default=None,
        help="the date to count from (ISO, default now; the data's last day for old data)",
    )
    p.add_argument("--version", type=positive_int, default=None, help="default: the champion")
    p.add_argument("--data", type=existing_path, default=None, help="catalogue for names")


def _run_due(args: argparse.Namespace, settings: Settings) -> int:
    import tempfile
    from datetime import datetime

    from features.dataset import load_side_tables
    from features.io import write_table
    from models import load_model
    from models.registry import ModelRegistry
    from training.due import due_to_buy_again

    registry = ModelRegistry(settings.mlflow)
    version = args.version or registry.champion()
    if version is None:
        raise SystemExit("no champion model yet: run `omnirec train`")
    now = datetime.fromisoformat(args.at).timestamp() if args.at else time.time()
    catalogue = load_side_tables(args.data).catalogue if args.data else None
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(registry.download(version, Path(tmp)))
    table = due_to_buy_again(model, now, args.within, catalogue)
    write_table(table, args.out)
    customers = len(set(table.column("customer_id").to_pylist()))
    print(f"{table.num_rows:,} items due for {customers:,} customers (v{version}) -> {args.out}")
    return 0


def _read_customers(path: Path) -> list[str]:
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if lines and lines[0].split(",")[0] == "customer_id":
        return [line.split(",")[0] for line in lines[1:]]
    return lines


def _run_batch(args: argparse.Namespace, settings: Settings) -> int:
    import pyarrow as pa

    from features.io import write_table
    from features.store import RedisFeatureStore
    from omnirec.progress import Progress
    from omnirec.redis_runtime import redis_target
    from serving.ask import Ask
    from serving.engine import Engine
    from serving.links import Links, link_secret
    from serving.runtime import ModelRuntime

    customers = _read_customers(args.customers)
    started = time.perf_counter()
    with redis_target(settings) as target:
        store = RedisFeatureStore(target, settings.redis.prefix, timeout=30)
        engine = Engine(settings, store)
        if args.link_base:
            engine.batches.links = Links(link_secret(settings), args.link_base)
        runtime = ModelRuntime(settings, engine)
        if not runtime.refresh() and engine.live.snapshot is None:
            raise SystemExit(f"no champion model with a published snapshot: {runtime.last_error}")
        loaded = time.perf_counter()
        rows: dict[str, list[object]] = {
            k: []
            for k in (
                "customer_id",
                "rank",
                "item_id",
                "score",
                "source",
                "model_version",
                "snapshot",
                "recommendation_id",
                "variant",
                # what the e-mail shows: the item's title, category, price, image and why
                "name",
                "category",
                "price",
                "image_url",
                "reason",
                "tracking_url",  # records the click with its recommendation id, then the item
            )
        }
        progress = Progress(len(customers), "batch", "customers")
        engine.placements.rules_for(args.placement)  # an unknown placement stops here
        run_id = f"{random.getrandbits(128):032x}"  # the recommendation ids' common part
        for start in range(0, len(customers), 1000):
            chunk = customers[start : start + 1000]
            ask = Ask(
                limit=args.limit,
                channel=args.channel,
                store_id=args.store_id,
                placement=args.placement,
                request_id=run_id,
            )
            answers = engine.batches.answer_blocking(chunk, ask, first_index=start)
            progress.update(len(chunk))
            for answer, customer in zip(answers, chunk, strict=True):
                n = len(answer.items)
                rows["customer_id"] += [customer] * n
                rows["rank"] += range(1, n + 1)
                rows["item_id"] += [item.item_id for item in answer.items]
                rows["score"] += [item.score for item in answer.items]
                rows["source"] += [item.source for item in answer.items]
                rows["model_version"] += [answer.model_version] * n
                rows["snapshot"] += [answer.snapshot] * n
                rows["recommendation_id"] += [answer.recommendation_id] * n
                rows["variant"] += [answer.variant] * n
                rows["name"] += [item.name for item in answer.items]
                rows["category"] += [item.category for item in answer.items]
                rows["price"] += [item.price for item in answer.items]
                rows["image_url"] += [item.image_url for item in answer.items]
                rows["reason"] += ["; ".join(item.reasons) for item in answer.items]
                rows["tracking_url"] += [item.link for item in answer.items]
        progress.close()
        answered = time.perf_counter()
        store.close()
    write_table(pa.table(rows), args.out)
    seconds = time.perf_counter() - started
    print(
        f"{len(customers):,} customers -> {args.out} in {seconds:.1f}s "
        f"({len(customers) / max(seconds, 1e-9):,.0f} customers/s; "
        f"model load {loaded - started:.1f}s, answers "
        f"{len(customers) / max(answered - loaded, 1e-9):,.0f} customers/s)"
    )
    return 0


def _configure_snapshots(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cleanup",
        action="store_true",
        help="remove snapshots retired longer than the grace period",
    )


def _run_snapshots(args: argparse.Namespace, settings: Settings) -> int:
    from features.store import RedisFeatureStore
    from omnirec.redis_runtime import redis_target

    with redis_target(settings) as target:
        store = RedisFeatureStore(target, settings.redis.prefix, timeout=30)
        if args.cleanup:
            print(
                "removed:",
                ", ".join(store.cleanup(settings.redis.snapshot_grace_seconds)) or "nothing",
            )
        for meta, state in store.snapshots():
            print(
                f"{meta.snapshot_id:<24} model v{meta.model_version:<4} {meta.model_kind:<10} "
                f"{meta.customers:>10,} customers  {state}"
            )
        store.close()
    return 0


COMMANDS = [
    CommandSpec("serve", "run the HTTP service (uvicorn)", _configure_serve, _run_serve),
    CommandSpec(
        "publish",
        "publish a registered version's features to Redis",
        _configure_publish,
        _run_publish,
    ),
    CommandSpec(
        "due",
        "replenishment list: who is due to buy what again in the next days (repeat models)",
        _configure_due,
        _run_due,
    ),
    CommandSpec(
        "export-events",
        "drain posted events from Redis into the Parquet event log",
        _configure_export,
        _run_export,
    ),
    CommandSpec(
        "batch",
        "nightly export: recommendations for many customers to CSV or Parquet",
        _configure_batch,
        _run_batch,
    ),
    CommandSpec(
        "snapshots",
        "list feature snapshots in Redis (and clean up retired ones)",
        _configure_snapshots,
        _run_snapshots,
    ),
]
