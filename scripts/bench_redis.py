"""Redis clients and production Redis on the recommendation route (`./dev bench redis`).

The same published snapshot served through: redis-py + hiredis auto-pipelined (the project's
access layer), coredis and valkey-glide (benchmark adapters, scripts/redis_clients.py), all on
plain TCP to one Redis; then the access layer over TLS with an ACL user and client certificates,
and against a 3-master Redis Cluster. Each figure is a share of the liveness route measured on the
same server in alternating rounds (the machine's noise hits both), plus p99 at a paced 300 req/s."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from omnirec.redis_runtime import EmbeddedRedis
from scripts.bench_serve import KEY, LUA, PAUSE, serving_data, start_server, wrk

ROUNDS = 3
ROUND_SECONDS = 8


def _ratio(base: str, script: Path) -> str:
    wrk(f"{base}/health/live", 2)
    wrk(base + "/", 2, script)
    ratios, rates, lines = [], [], []
    for _ in range(ROUNDS):
        live = wrk(f"{base}/health/live", ROUND_SECONDS)
        rec = wrk(base + "/", ROUND_SECONDS, script)
        ratios.append(rec[0] / live[0])
        rates.append(rec[0])
        lines.append(rec[1])
    ratios.sort()
    mid = ratios[len(ratios) // 2]
    return (
        f"{sorted(rates)[len(rates) // 2]:7,.0f} req/s, {mid:.0%} of liveness "
        f"(min {ratios[0]:.0%}, max {ratios[-1]:.0%})   {lines[-1]}"
    )


def _paced(base: str, ids_file: Path, var: Path) -> str:
    paced = var / "paced.lua"
    paced.write_text(LUA % (ids_file, 11, KEY) + PAUSE % 10)
    rate, latency = wrk(base + "/", 15, paced, connections=4)
    return f"paced {rate:,.0f} req/s   {latency}"


def run(work: Path, customers: int, items: int) -> None:
    from omnirec.settings import Settings
    from tests.redis_servers import Cluster, TlsRedis
    from training.pipeline import TrainConfig, train
    from training.versions import publish_version

    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    print(
        f"\n== Redis clients and production Redis: {items:,} items, {customers:,} customers, one "
        "worker =="
    )
    folder, var = serving_data(work, customers, items, "redis-var")
    ids_file = var / "ids.txt"
    ids_file.write_text("\n".join(f"C{i:08d}" for i in range(0, customers, 7)) + "\n")
    script = var / "recs.lua"
    script.write_text(LUA % (ids_file, 7, KEY))
    common = {
        "OMNIREC_DATA_DIR": str(var),
        "MLFLOW_TRACKING_URI": f"sqlite:///{var / 'mlflow.db'}",
        "OMNIREC_API_KEYS": f"{KEY}:recommend",
        "OMNIREC_REDIS_PREFIX": "bench",
    }
    with EmbeddedRedis(var / "redis", persist=False) as plain:
        tls = TlsRedis(var / "tls").start()
        cluster = Cluster(var / "cluster").start()
        targets = {
            "plain": {**common, "REDIS_URL": plain.url},
            "tls": {**common, "REDIS_URL": tls.url(), **tls.env},
            "cluster": {**common, "REDIS_URL": cluster.url, "OMNIREC_REDIS_CLUSTER": "true"},
        }
        try:
            result = train(
                TrainConfig(data=folder, model="als", params={"factors": 64}, max_eval_users=2_000),
                Settings.from_env(targets["plain"]),
            )
            for name, env in targets.items():
                started = time.perf_counter()
                summary = publish_version(Settings.from_env(env), result.version or 1)
                print(
                    f"published to {name} Redis in {time.perf_counter() - started:.1f}s: {summary}"
                )
            servers = {
                "redis-py + hiredis, auto-pipelined (chosen)": ("plain", None),
                "coredis": ("plain", [sys.executable, "-m", "scripts.redis_clients", "coredis"]),
                "valkey-glide": ("plain", [sys.executable, "-m", "scripts.redis_clients", "glide"]),
                "redis-py over TLS + ACL user + client certificate": ("tls", None),
                "redis-py against a 3-master cluster": ("cluster", None),
            }
            for label, (target, command) in servers.items():
                server, base = start_server({**os.environ, **targets[target]}, command)
                try:
                    print(f"{label:52s} {_ratio(base, script)}", flush=True)
                    if target != "plain" or command is None:
                        print(
                            f"{'':52s} {_paced(base, ids_file, var)}  (target p99 < 10 ms)",
                            flush=True,
                        )
                finally:
                    server.terminate()
                    server.wait(timeout=30)
        finally:
            cluster.stop()
            tls.stop()
