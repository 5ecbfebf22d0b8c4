"""The storefront under a flood of heavy requests (`./dev bench flood`): paced recommendations
(~300 req/s, 4 connections, 10 ms pauses) alone, beside a client looping batch calls (1,000
customers x limit 100), beside one looping 10,000-event bulk posts, and beside both; on two
servers over the same published snapshot: heavy requests in the child process (the default) and
in the worker (OMNIREC_HEAVY_PROCESS=0)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import httpx

from omnirec.redis_runtime import EmbeddedRedis
from scripts.bench_serve import (
    KEY,
    LUA,
    PAUSE,
    Hammer,
    bench_env,
    publish_als,
    serving_data,
    start_server,
    wrk,
)

SECONDS = 15


def _heavy_in_process(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    found = re.search(
        r'omnirec_heavy_requests_total{route="batch",where="process"} ([\d.e+]+)', text
    )
    return float(found.group(1)) if found else 0.0


def _warm(base: str, heavy: str) -> None:
    """Batch calls until the child answers them (its model loaded), or 5 calls in the worker."""
    body = {"customer_ids": [f"C{i:08d}" for i in range(1000)], "limit": 10}
    with httpx.Client(base_url=base, headers={"X-API-Key": KEY}, timeout=60) as client:
        for _ in range(120 if heavy == "true" else 5):
            client.post("/v1/recommendations/batch", json=body)
            if heavy == "true" and _heavy_in_process(base) > 0:
                return
            time.sleep(0.5)


def run(work: Path, customers: int, items: int) -> None:
    print(
        f"\n== storefront under a heavy-request flood: {items:,} items, {customers:,} customers =="
    )
    folder, var = serving_data(work, customers, items, "flood-var")
    with EmbeddedRedis(var / "redis", persist=False) as redis_server:
        env = bench_env(var, redis_server.url, "recommend+events")
        publish_als(folder, env)
        ids_file = var / "ids.txt"
        ids_file.write_text("\n".join(f"C{i:08d}" for i in range(0, customers, 7)) + "\n")
        paced = var / "paced.lua"
        paced.write_text(LUA % (ids_file, 11, KEY) + PAUSE % 10)
        for heavy in ("true", "false"):
            server, base = start_server({**os.environ, **env, "OMNIREC_HEAVY_PROCESS": heavy})
            try:
                _warm(base, heavy)
                where = "child process" if heavy == "true" else "worker"
                print(f"heavy requests in the {where} (OMNIREC_HEAVY_PROCESS={heavy})", flush=True)
                rate, latency = wrk(base + "/", SECONDS, paced, connections=4)
                print(f"  no flood     {rate:5,.0f} req/s   {latency}", flush=True)
                for kind in ("batch", "bulk", "both"):
                    hammer = Hammer(base, customers)
                    if kind != "both":
                        hammer.threads = (
                            hammer.threads[:1] if kind == "batch" else hammer.threads[1:]
                        )
                    with hammer:
                        rate, latency = wrk(base + "/", SECONDS, paced, connections=4)
                    print(
                        f"  flood {kind:6s} {rate:5,.0f} req/s   {latency}   ({hammer.summary()}; "
                        "target p99 < 10 ms)",
                        flush=True,
                    )
            finally:
                server.terminate()
                server.wait(timeout=30)
