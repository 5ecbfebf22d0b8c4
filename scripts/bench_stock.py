"""Real-time stock (`./dev bench stock`): rows/s through `POST /v1/stock` (10,000-row bodies,
levels and deltas over every store) beside the same rows written straight into Redis with a
pipelined HSET (the baseline), and the recommendation route's throughput with availability in
the answer against without (wrk, same server, alternating rounds)."""

from __future__ import annotations

import os
import random
import statistics
import time
from pathlib import Path

import httpx

from omnirec.redis_runtime import EmbeddedRedis
from scripts.bench_serve import KEY, LUA, bench_env, publish_als, serving_data, start_server, wrk

BODY_ROWS = 10_000
POSTS = 30
ROUNDS = 3
ROUND_SECONDS = 10


def _bodies(items: int, stores: list[str], seed: int = 7) -> list[dict[str, object]]:
    rng = random.Random(seed)
    bodies = []
    for _ in range(POSTS):
        rows: list[dict[str, object]] = []
        for _ in range(BODY_ROWS):
            row: dict[str, object] = {
                "store_id": rng.choice(stores),
                "item_id": f"I{rng.randrange(items):06d}",
            }
            if rng.random() < 0.5:
                row["quantity"] = rng.randrange(0, 30)
            else:
                row["delta"] = rng.randrange(-3, 4)
            rows.append(row)
        bodies.append({"updates": rows})
    return bodies


def run(work: Path, customers: int, items: int) -> None:
    import redis

    print(f"\n== real-time stock: {items:,} items, {customers:,} customers, one worker ==")
    folder, var = serving_data(work, customers, items, "stock-var")
    with EmbeddedRedis(var / "redis", persist=False) as redis_server:
        env = bench_env(var, redis_server.url, "recommend+stock")
        publish_als(folder, env)
        server, base = start_server({**os.environ, **env})
        try:
            with httpx.Client(base_url=base, headers={"X-API-Key": KEY}, timeout=120) as client:
                stores = [s for s in client.get("/v1/stores").json()["stores"]] or ["S000"]
                bodies = _bodies(items, stores)
                client.post("/v1/stock", json=bodies[0])  # warm
                started = time.perf_counter()
                for body in bodies:
                    answer = client.post("/v1/stock", json=body)
                    assert answer.status_code == 200 and answer.json()["rejected"] == 0, answer.text
                route = POSTS * BODY_ROWS / (time.perf_counter() - started)
            raw = redis.Redis.from_url(redis_server.url)
            started = time.perf_counter()
            for body in bodies:
                pipe = raw.pipeline(transaction=False)
                for row in body["updates"]:  # type: ignore[union-attr]
                    key = f"raw:{row['store_id']}"
                    if "quantity" in row:
                        pipe.hset(key, str(row["item_id"]), int(row["quantity"]))  # type: ignore[arg-type]
                    else:
                        pipe.hincrby(key, str(row["item_id"]), int(row["delta"]))  # type: ignore[arg-type]
                pipe.execute()
            baseline = POSTS * BODY_ROWS / (time.perf_counter() - started)
            print(
                f"POST /v1/stock: {route:,.0f} rows/s ({POSTS} posts of {BODY_ROWS:,} rows; target "
                "100,000)   |   "
                f"baseline, the same rows as pipelined HSET/HINCRBY from redis-py: {baseline:,.0f} "
                "rows/s",
                flush=True,
            )

            ids_file = var / "ids.txt"
            ids_file.write_text("\n".join(f"C{i:08d}" for i in range(0, customers, 7)) + "\n")
            plain, with_where = var / "plain.lua", var / "where.lua"
            plain.write_text(
                (LUA % (ids_file, 11, KEY)).replace("limit=10", f"limit=10&store_id={stores[0]}")
            )
            with_where.write_text(
                (LUA % (ids_file, 11, KEY)).replace(
                    "limit=10", f"limit=10&store_id={stores[0]}&availability=true"
                )
            )
            ratios = []
            for round_ in range(ROUNDS):
                without, _ = wrk(base + "/", ROUND_SECONDS, plain)
                within, latency = wrk(base + "/", ROUND_SECONDS, with_where)
                ratios.append(within / without)
                print(
                    f"round {round_ + 1}: without availability {without:,.0f} req/s, with "
                    f"{within:,.0f} req/s "
                    f"({within / without:.0%}); with: {latency}",
                    flush=True,
                )
            print(
                f"recommendations with availability: median {statistics.median(ratios):.0%} of the "
                "throughput without"
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
