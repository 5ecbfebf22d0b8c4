"""The Redis side of the data path: publishing customers into the feature store against
redis-benchmark's SET rate on the same Redis, `read_many` latency against raw GET/MGET, and event
ingestion under each persistence policy of the embedded Redis (`./dev bench store`, `./dev bench
ingest`)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def run_store(customers: int = 1_000_000) -> None:
    import numpy as np

    from features.encoding import ENCODER, CustomerFeatures
    from features.store import RedisFeatureStore
    from omnirec.redis_runtime import EmbeddedRedis

    print(
        f"\n== feature store: publish {customers:,} customers (64-factor vectors + histories), "
        "reads =="
    )
    rng = np.random.default_rng(0)
    vectors = rng.random((customers, 64), dtype=np.float32)
    hist_items = rng.integers(0, 20_000, (customers, 30)).astype(np.int32)
    hist_weights = rng.random((customers, 30), dtype=np.float32)
    cands = rng.integers(0, 20_000, (customers, 100)).astype(np.int32)
    cand_scores = np.sort(rng.random((customers, 100), dtype=np.float32), axis=1)[:, ::-1]
    ids = [f"C{i:08d}" for i in range(customers)]
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedRedis(Path(tmp), persist=False) as redis_server,
    ):
        store = RedisFeatureStore(redis_server.url, "bench", timeout=30)
        before = int(store.client.info("memory")["used_memory"])

        def entries():  # type: ignore[no-untyped-def]
            for i in range(customers):
                yield (
                    ids[i],
                    ENCODER.encode(
                        CustomerFeatures(
                            customer_id=ids[i],
                            vector=vectors[i].tobytes(),
                            candidates=cands[i].tobytes(),
                            candidate_scores=cand_scores[i].tobytes(),
                            history_items=hist_items[i].tobytes(),
                            history_weights=hist_weights[i].tobytes(),
                            categories=["shoes", "bags"],
                            first_seen=1_700_000_000,
                            last_seen=1_760_000_000,
                        )
                    ),
                )

        value_size = len(next(iter(entries()))[1])
        started = time.perf_counter()
        written = store.write_batch("s1", "c", entries())
        seconds = time.perf_counter() - started
        used = int(store.client.info("memory")["used_memory"]) - before
        ours = written / seconds
        bench = shutil.which("redis-benchmark")
        ceiling = None
        if bench:
            out = subprocess.run(
                [
                    bench,
                    "-p",
                    str(redis_server.port),
                    "-P",
                    "16",
                    "-t",
                    "set",
                    "-d",
                    str(value_size),
                    "-n",
                    "1000000",
                    "-r",
                    "1000000",
                    "-q",
                    "--csv",
                ],
                capture_output=True,
                text=True,
                timeout=600,
            ).stdout
            ceiling = float(out.strip().splitlines()[-1].split(",")[1].strip('"'))
        print(
            f"value size {value_size} B; publish {written:,} customers in {seconds:.1f}s = "
            f"{ours:,.0f} customers/s (target 100,000/s)"
        )
        if ceiling:
            print(
                f"ceiling: redis-benchmark -P 16 -t set -d {value_size} on the same Redis = "
                f"{ceiling:,.0f} SET/s -> ratio {ours / ceiling:.0%} (aim 50%)"
            )
        else:
            print("ceiling: redis-benchmark not installed (apt-get install redis-tools)")
        print(f"Redis memory per customer: {used / written:,.0f} bytes")
        sample = [ids[i] for i in rng.integers(0, customers, 10_000)]
        raw = store.client
        for label, size in (("1 customer", 1), ("100 customers", 100)):
            ours_t, raw_t = [], []
            for n in range(10_000 if size == 1 else 2_000):
                batch = sample[n % 100 : n % 100 + size]
                t0 = time.perf_counter()
                store.read_many("s1", "c", batch)
                t1 = time.perf_counter()
                keys = [f"bench:s:s1:c:{c}" for c in batch]
                raw.get(keys[0]) if size == 1 else raw.mget(keys)
                t2 = time.perf_counter()
                ours_t.append(t1 - t0)
                raw_t.append(t2 - t1)
            p = lambda xs, q: float(np.percentile(xs, q)) * 1e3  # noqa: E731
            print(
                f"read_many {label:<13} p50 {p(ours_t, 50):.3f} ms  p99 {p(ours_t, 99):.3f} ms   | "
                f" raw {'GET' if size == 1 else 'MGET'} p50 {p(raw_t, 50):.3f} ms  p99 "
                f"{p(raw_t, 99):.3f} ms"
            )
        store.close()


def run_ingest(bulk_calls: int = 100, bulk_size: int = 1_000, singles: int = 5_000) -> None:
    """Event ingestion (validate + MULTI/EXEC) into an embedded Redis with each persistence
    policy."""
    from features.realtime import RealtimeEvents
    from features.store import RedisFeatureStore
    from omnirec.redis_runtime import EmbeddedRedis

    print(
        f"\n== ingestion: {bulk_calls} bulk posts of {bulk_size:,} events, {singles:,} single "
        "events =="
    )
    events = [
        {
            "customer_id": f"C{i % 50_000:08d}",
            "item_id": f"I{i % 20_000:06d}",
            "event_type": "view",
            "channel": "web",
        }
        for i in range(bulk_size)
    ]
    for label, persist, policy in (
        ("no persistence (baseline)", False, "everysec"),
        ("appendfsync everysec", True, "everysec"),
        ("appendfsync always", True, "always"),
    ):
        with (
            tempfile.TemporaryDirectory() as tmp,
            EmbeddedRedis(Path(tmp), persist=persist, appendfsync=policy) as server,
        ):
            realtime = RealtimeEvents(RedisFeatureStore(server.url, "bench", timeout=30))
            started = time.perf_counter()
            for _ in range(bulk_calls):
                realtime.ingest(events)
            bulk = bulk_calls * bulk_size / (time.perf_counter() - started)
            started = time.perf_counter()
            for i in range(singles):
                realtime.ingest(events[i % bulk_size : i % bulk_size + 1])
            single = singles / (time.perf_counter() - started)
            realtime.store.close()
        print(f"{label:<26} bulk {bulk:>9,.0f} events/s   one at a time {single:>7,.0f} events/s")
