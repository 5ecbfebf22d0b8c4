"""Speed benchmarks with printed figures, each beside a baseline measured in the same run.

    ./dev bench data          generate 10M events; load + validate + stitch + build the matrix
    ./dev bench als           ALS fit through the pipeline vs implicit directly, same matrix
    ./dev bench train         the whole `omnirec train` on the 10M events (wall time, memory)
    ./dev bench store         publish 1M customers into Redis vs redis-benchmark; read_many
                              latency vs raw GET/MGET
    ./dev bench ingest        event ingestion with the embedded Redis's persistence: none,
                              everysec, always
    ./dev bench serve         HTTP: recommendations vs liveness under wrk; p99 at 300 req/s;
                              batch throughput
    ./dev bench redis         the route through redis-py, coredis, valkey-glide; over TLS; on a
                              3-master cluster
    ./dev bench flood         storefront p99 beside batch and bulk floods, heavy requests in a
                              child process or not
    ./dev bench stock         POST /v1/stock rows/s vs pipelined HSET; recommendations with
                              availability vs without
    ./dev bench experiments   recommendations with an A/B experiment + merchandising rules vs
                              without
    ./dev bench publish [--customers N]   publish (score + top-200 + encode + write) vs the
                                          matrix product alone
    ./dev bench ann [--items N]           HNSW index vs brute force: queries/s and recall@10
    ./dev bench spark [--data FOLDER | --customers N]   `omnirec train` one process vs
                                                        --engine spark
    ./dev bench repurchase [--data FOLDER]   Complete Journey: rebuy rate by days since purchase
                                             / cycle, and the show-again policy's due vs not due
    ./dev bench doors [--data FOLDER]        Complete Journey: the registered MLflow model asked
                                             with defaults vs buy-again (recall@10)
    ./dev bench new-items [--data FOLDER]    Complete Journey: recall on items first sold in the
                                             test weeks, placed by their metadata, vs a rule
    ./dev bench tenants       memory and requests/s with 1, 5 and 20 tenants in one process
    ./dev bench all           the steps a person waits on, one table, each row beside its
                              anchor measured in the same run (scripts/bench_steps.py); the
                              suites above run alone

Each heavy stage runs in its own process so that its peak memory (max RSS) is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(os.environ.get("OMNIREC_BENCH_DIR", ROOT / "var" / "bench"))
PY = sys.executable


def run_stage(
    *args: str, env: dict[str, str] | None = None
) -> tuple[dict[str, object], float, float]:
    """Run `python -m scripts.bench _stage ...`; returns (its JSON, wall seconds, peak RSS in
    MiB)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [PY, "-m", "scripts.bench", "_stage", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"stage {args} failed with status {status}")
    return json.loads(out.decode().strip().splitlines()[-1]), wall, usage.ru_maxrss / 1024


def fmt_rate(n: float, seconds: float) -> str:
    return f"{n / max(seconds, 1e-9):,.0f}/s"


# ----------------------------------------------------------------------------- stages (child
# processes)
def stage(name: str, args: list[str]) -> dict[str, object]:
    if name == "generate":
        from features.generator import GeneratorConfig, generate

        started = time.perf_counter()
        result = generate(
            GeneratorConfig(customers=int(args[1]), items=int(args[2]), days=90, seed=42),
            Path(args[0]),
        )
        return {"events": result.events, "seconds": time.perf_counter() - started}
    if name == "read":
        from features.io import read_table

        started = time.perf_counter()
        table = read_table(Path(args[0]) / "events")
        return {
            "events": table.num_rows,
            "seconds": time.perf_counter() - started,
            "nbytes": table.nbytes,
        }
    if name == "load":
        from features.dataset import load_dataset
        from features.interactions import build_interactions

        started = time.perf_counter()
        dataset = load_dataset(Path(args[0]))
        loaded = time.perf_counter()
        matrix = build_interactions(dataset.events)
        return {
            "events": dataset.report.total,
            "rejected": dataset.report.rejects.num_rows,
            "load_seconds": loaded - started,
            "build_seconds": time.perf_counter() - loaded,
            "seconds": time.perf_counter() - started,
            "shape": list(matrix.shape),
            "nnz": int(matrix.matrix.nnz),
        }
    if name == "als":
        return als_stage(Path(args[0]))
    raise SystemExit(f"unknown stage {name}")


def als_stage(folder: Path) -> dict[str, object]:
    import numpy as np
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from features.dataset import load_dataset
    from features.interactions import build_interactions
    from training.fitting import fit_model

    matrix = build_interactions(load_dataset(folder).events)
    params = {"factors": 64, "regularization": 0.05, "alpha": 2.0, "iterations": 15}
    direct, ours = [], []
    for _ in range(3):  # interleaved, best of three: the machine is shared and noisy
        started = time.perf_counter()
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(**params, random_state=42)
            model.fit(matrix.matrix, show_progress=False)
        direct.append(time.perf_counter() - started)
        started = time.perf_counter()
        fit_model("als", params, matrix, 42)
        ours.append(time.perf_counter() - started)
    return {
        "direct": float(np.min(direct)),
        "pipeline": float(np.min(ours)),
        "shape": list(matrix.shape),
        "nnz": int(matrix.matrix.nnz),
    }


# ----------------------------------------------------------------------------- suites (parent)
def bench_data(customers: int, items: int) -> Path:
    folder = WORK / f"synthetic-{customers}x{items}"
    print(
        f"\n== data: generate, load + validate + stitch, build the matrix ({customers:,} "
        f"customers, {items:,} items) =="
    )
    result, _wall, rss = run_stage("generate", str(folder), str(customers), str(items))
    events = float(result["events"])  # type: ignore[arg-type]
    print(
        f"generate      {events:,.0f} events in {result['seconds']:.1f}s = "
        f"{fmt_rate(events, result['seconds'])}  peak RSS {rss:,.0f} MiB"
    )  # type: ignore[arg-type]
    read, _, read_rss = run_stage("read", str(folder))
    nbytes = float(read["nbytes"]) / 2**20  # type: ignore[arg-type]
    print(
        f"baseline: pyarrow read of the Parquet parts alone: {read['seconds']:.2f}s = "
        f"{fmt_rate(events, read['seconds'])}; "  # type: ignore[arg-type]
        f"in-memory columnar size {nbytes:,.0f} MiB; peak RSS {read_rss:,.0f} MiB"
    )
    load, _, load_rss = run_stage("load", str(folder))
    print(
        f"load+validate+stitch {load['load_seconds']:.2f}s, build matrix "
        f"{load['build_seconds']:.2f}s "
        f"-> {fmt_rate(events, load['seconds'])} (target 1,000,000/s); matrix {load['shape']} nnz "
        f"{load['nnz']:,}"
    )  # type: ignore[arg-type]
    print(
        f"peak RSS {load_rss:,.0f} MiB = {load_rss / nbytes:.2f}x the columnar size (target < 4x)"
    )
    return folder


def bench_als(folder: Path) -> None:
    print(
        "\n== ALS fit: through the pipeline vs implicit directly (same matrix, best of 3, 64 "
        "factors, 15 iterations) =="
    )
    result, _, _ = run_stage("als", str(folder))
    ratio = float(result["pipeline"]) / float(result["direct"])  # type: ignore[arg-type]
    print(
        f"matrix {result['shape']} nnz {result['nnz']:,}: implicit {result['direct']:.2f}s, "
        f"pipeline {result['pipeline']:.2f}s "
        f"-> ratio {ratio:.3f} (target <= 1.15)"
    )


def bench_train(folder: Path) -> None:
    print(
        "\n== omnirec train on the generated events: load -> split -> fit -> evaluate -> log -> "
        "register =="
    )
    env = {
        "OMNIREC_DATA_DIR": str(WORK / "train-var"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{WORK / 'train-var' / 'mlflow.db'}",
    }
    started = time.perf_counter()
    proc = subprocess.Popen(
        [PY, "-m", "cli", "train", "--data", str(folder), "--model", "als", "--no-publish"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    print(out.strip())
    print(
        f"wall {wall:.0f}s (target < 600s), peak RSS {usage.ru_maxrss / 1024:,.0f} MiB (target < "
        f"8192 MiB), exit {status}"
    )


def bench_store(customers: int = 1_000_000) -> None:
    from scripts.bench_store import run_store

    run_store(customers)


def bench_ingest() -> None:
    from scripts.bench_store import run_ingest

    run_ingest()


def bench_serve(customers: int = 100_000, items: int = 20_000) -> None:
    from scripts.bench_serve import run

    run(WORK, customers, items)


def bench_redis(customers: int = 100_000, items: int = 20_000) -> None:
    from scripts.bench_redis import run

    run(WORK, customers, items)


def bench_flood(customers: int = 100_000, items: int = 20_000) -> None:
    from scripts.bench_flood import run

    run(WORK, customers, items)


def bench_stock(customers: int = 100_000, items: int = 20_000) -> None:
    from scripts.bench_stock import run

    run(WORK, customers, items)


def bench_experiments(customers: int = 100_000, items: int = 20_000) -> None:
    from scripts.bench_experiments import run

    run(WORK, customers, items)


def bench_publish(customers: int, items: int) -> None:
    from scripts.bench_publish import run

    run(WORK, customers, items, with_numpy_baseline=customers <= 200_000)


def bench_ann(items: int) -> None:
    from scripts.bench_ann import run

    run(items)


def bench_spark(customers: int, items: int, data: Path | None) -> None:
    from scripts.bench_spark import run

    run(data or bench_data(customers, items), WORK)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_stage":
        print(json.dumps(stage(sys.argv[2], sys.argv[3:])))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "suite",
        choices=[
            "data",
            "als",
            "train",
            "store",
            "ingest",
            "serve",
            "redis",
            "flood",
            "stock",
            "experiments",
            "publish",
            "ann",
            "spark",
            "repurchase",
            "doors",
            "new-items",
            "tenants",
            "all",
        ],
    )
    parser.add_argument(
        "--customers",
        type=int,
        default=250_000,
        help="synthetic customers for data/als/train (250k ~ 10M events)",
    )
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="spark: an existing data folder; repurchase/doors: a Complete Journey folder",
    )
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    folder = WORK / f"synthetic-{args.customers}x{args.items}"
    if args.suite == "all":
        from scripts.bench_steps import run as bench_steps

        bench_steps(WORK)
        return
    if args.suite == "data" or (args.suite in {"als", "train"} and not folder.exists()):
        folder = bench_data(args.customers, args.items)
    if args.suite == "als":
        bench_als(folder)
    if args.suite == "train":
        bench_train(folder)
    if args.suite == "store":
        bench_store()
    if args.suite == "ingest":
        bench_ingest()
    if args.suite == "serve":
        bench_serve()
    if args.suite == "redis":
        bench_redis()
    if args.suite == "flood":
        bench_flood()
    if args.suite == "stock":
        bench_stock()
    if args.suite == "experiments":
        bench_experiments()
    if args.suite == "tenants":
        from scripts.bench_tenants import run as bench_tenants

        bench_tenants(WORK)
    if args.suite == "ann":  # --items: the catalogue (1,000,000 unless given)
        bench_ann(args.items if "--items" in sys.argv else 1_000_000)
    if args.suite == "new-items":
        from scripts.bench_new_items import bench_new_items

        bench_new_items(args.data)
    if args.suite in {"repurchase", "doors"}:
        from scripts.bench_doors import bench_doors, bench_repurchase

        (bench_repurchase if args.suite == "repurchase" else bench_doors)(args.data)
    if args.suite == "spark":
        bench_spark(args.customers, args.items, args.data)
    if args.suite == "publish":  # --customers: how many to publish (100,000 unless given)
        bench_publish(args.customers if "--customers" in sys.argv else 100_000, args.items)


if __name__ == "__main__":
    main()
