"""HTTP benchmark: recommendations vs liveness under wrk, p99 at a fixed 300 req/s, batch
throughput."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

import httpx

from omnirec.redis_runtime import EmbeddedRedis, free_port

KEY = "bench-key-0123456789abcdef"
LUA = """
local ids = {}
for line in io.lines("%s") do ids[#ids + 1] = line end
math.randomseed(%d)
request = function()
  local id = ids[math.random(#ids)]
  local path = "/v1/customers/" .. id .. "/recommendations?limit=10"
  return wrk.format("GET", path, {["X-API-Key"] = "%s"})
end
"""
# appended for paced load: ms between a connection's requests
PAUSE = "delay = function() return %d end\n"


ROUNDS = 5
ROUND_SECONDS = 10


class Background:
    """Loops on threads while the `with` block runs: each target runs until `self.stop` is set."""

    def __init__(self, *targets: Callable[[], None]) -> None:
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=target) for target in targets]

    def __enter__(self) -> Self:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)


class Hammer(Background):
    """Heavy callers on two threads: batch calls of 1,000 customers x limit 100, and bulk posts of
    10,000 events, each in a loop as fast as the server answers (bodies encoded once)."""

    def __init__(self, base: str, customers: int, key: str = KEY) -> None:
        import json

        super().__init__(lambda: self._loop("batch"), lambda: self._loop("bulk"))
        ids = [f"C{i:08d}" for i in range(min(customers, 1000))]
        self.batch = json.dumps({"customer_ids": ids, "limit": 100}).encode()
        self.bulk = json.dumps(
            {
                "events": [
                    {
                        "customer_id": f"C{i % customers:08d}",
                        "item_id": f"I{i % 1000:06d}",
                        "event_type": "view",
                        "channel": "web",
                    }
                    for i in range(10_000)
                ]
            }
        ).encode()
        self.base, self.key, self.done = base, key, {"batch": 0, "bulk": 0, "errors": 0}

    def _loop(self, kind: str) -> None:
        path, body = (
            ("/v1/recommendations/batch", self.batch)
            if kind == "batch"
            else ("/v1/events/bulk", self.bulk)
        )
        headers = {"X-API-Key": self.key, "Content-Type": "application/json"}
        with httpx.Client(base_url=self.base, headers=headers, timeout=60) as client:
            while not self.stop.is_set():
                ok = client.post(path, content=body).status_code in {200, 202}
                self.done[kind if ok else "errors"] += 1

    def summary(self) -> str:
        done = self.done
        return f"{done['batch']} batch calls, {done['bulk']} bulk posts, {done['errors']} errors"


def start_server(
    env: dict[str, str], command: list[str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """`omnirec serve` (or `command` + the port) on a free port, once it is ready."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = (
        [*command, str(port)]
        if command
        else [sys.executable, "-m", "cli", "serve", "--port", str(port)]
    )
    server = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                return server, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.terminate()
    raise SystemExit(f"omnirec serve on {base} did not become ready")


def wrk(
    url: str, seconds: int, script: Path | None = None, connections: int = 16
) -> tuple[float, str]:
    """requests/s and the latency line from `wrk --latency`."""
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script:
        args[1:1] = ["-s", str(script)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {m.group(1): m.group(2) for m in re.finditer(r"^\s+(50|90|99)%\s+(\S+)", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return (
        rate,
        f"p50 {lat.get('50')}  p90 {lat.get('90')}  p99 {lat.get('99')}  non-2xx "
        f"{errors.group(1) if errors else 0}",
    )


def serving_data(work: Path, customers: int, items: int, scratch: str) -> tuple[Path, Path]:
    """The synthetic data set the serving benchmarks share (generated once), and an empty
    scratch folder for this run."""
    from features.generator import GeneratorConfig, generate

    folder = work / f"serve-{customers}x{items}"
    var = work / scratch
    shutil.rmtree(var, ignore_errors=True)
    if not (folder / "catalogue.parquet").exists():
        generate(
            GeneratorConfig(
                customers=customers, items=items, days=60, seed=3, events_per_customer=30
            ),
            folder,
        )
    var.mkdir(parents=True)
    return folder, var


def bench_env(var: Path, redis_url: str, scopes: str) -> dict[str, str]:
    """The settings a benchmark's server and commands share: its data folder, Redis, MLflow
    store and one API key with `scopes` ("recommend+events")."""
    return {
        "OMNIREC_DATA_DIR": str(var),
        "REDIS_URL": redis_url,
        "MLFLOW_TRACKING_URI": f"sqlite:///{var / 'mlflow.db'}",
        "OMNIREC_API_KEYS": f"{KEY}:{scopes}",
        "OMNIREC_REDIS_PREFIX": "bench",
    }


def publish_als(folder: Path, env: dict[str, str], factors: int = 64) -> int:
    """Train ALS on `folder`, register it and publish it, with settings from `env`; returns
    the registered version."""
    from omnirec.settings import Settings
    from training.pipeline import TrainConfig, train
    from training.versions import publish_version

    settings = Settings.from_env(env)
    result = train(
        TrainConfig(data=folder, model="als", params={"factors": factors}, max_eval_users=1_000),
        settings,
    )
    assert result.version is not None
    publish_version(settings, result.version)
    return result.version


def run(work: Path, customers: int, items: int) -> None:
    from omnirec.settings import Settings
    from training.pipeline import TrainConfig, train
    from training.versions import publish_version

    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    print(
        f"\n== serving: {items:,} items, 64 factors, {customers:,} published customers, one worker "
        "=="
    )
    folder, var = serving_data(work, customers, items, "serve-var")
    with EmbeddedRedis(var / "redis", persist=False) as redis_server:
        env = bench_env(var, redis_server.url, "recommend+tablet+events")
        settings = Settings.from_env(env)
        started = time.perf_counter()
        result = train(
            TrainConfig(data=folder, model="als", params={"factors": 64}, max_eval_users=5_000),
            settings,
        )
        print(
            f"trained + registered in {time.perf_counter() - started:.0f}s; nDCG@10 "
            f"{result.metrics['all']['ndcg']:.4f} vs popularity "
            f"{result.baseline['all']['ndcg']:.4f}"
        )
        summary = publish_version(settings, result.version or 1)
        print(str(summary))
        servers: list[subprocess.Popen[bytes]] = []
        try:
            server, base = start_server({**os.environ, **env})
            servers.append(server)
            typed_server, typed_base = start_server(
                {**os.environ, **env, "OMNIREC_FAST_PATHS": "0"}
            )
            servers.append(typed_server)
            ids = [f"C{i:08d}" for i in range(0, customers, 7)]
            ids_file = var / "ids.txt"
            ids_file.write_text("\n".join(ids) + "\n")
            script = var / "recs.lua"
            script.write_text(LUA % (ids_file, 7, KEY))
            wrk(f"{base}/health/live", 3)  # warm-up
            wrk(base + "/", 3, script)
            wrk(typed_base + "/", 3, script)
            # liveness and recommendations alternate, so both see the same machine noise
            rounds = []
            for _ in range(ROUNDS):
                live = wrk(f"{base}/health/live", ROUND_SECONDS)
                rec = wrk(base + "/", ROUND_SECONDS, script)
                rounds.append((live, rec))
                print(f"wrk -t1 -c16 {ROUND_SECONDS}s  liveness {live[0]:8,.0f} req/s   {live[1]}")
                print(
                    f"wrk -t1 -c16 {ROUND_SECONDS}s  recommendations {rec[0]:8,.0f} req/s   "
                    f"{rec[1]}  ({rec[0] / live[0]:.0%} of liveness)"
                )
            typed_rate, typed_lat = wrk(typed_base + "/", ROUND_SECONDS, script)
            print(
                f"wrk -t1 -c16 {ROUND_SECONDS}s  recommendations, fast path off "
                f"(OMNIREC_FAST_PATHS=0) {typed_rate:8,.0f} req/s   {typed_lat}"
            )
            ratios = sorted(rec[0] / live[0] for live, rec in rounds)
            print(
                f"recommendations / liveness: median {ratios[len(ratios) // 2]:.0%} over {ROUNDS} "
                "rounds "
                f"(min {ratios[0]:.0%}, max {ratios[-1]:.0%}; target >= 50%)"
            )
            paced = var / "paced.lua"
            # each of 4 connections waits 10 ms between requests: about 300 req/s in all
            connections, pause_ms = 4, 10
            paced.write_text(LUA % (ids_file, 11, KEY) + PAUSE % pause_ms)
            paced_rate, paced_lat = wrk(base + "/", 20, paced, connections=connections)
            print(
                f"paced load ({connections} connections, {pause_ms} ms pause each) "
                f"{paced_rate:,.0f} req/s   {paced_lat}  (target p99 < 10 ms at 300 req/s)"
            )
            with httpx.Client(base_url=base, headers={"X-API-Key": KEY}, timeout=60) as client:
                batch_ids = [f"C{i:08d}" for i in range(20_000)]
                t0 = time.perf_counter()
                for start in range(0, len(batch_ids), 1000):
                    r = client.post(
                        "/v1/recommendations/batch",
                        json={"customer_ids": batch_ids[start : start + 1000], "limit": 10},
                    )
                    assert r.status_code == 200
                seconds = time.perf_counter() - t0
            print(
                f"batch route: {len(batch_ids):,} customers in {seconds:.1f}s = "
                f"{len(batch_ids) / seconds:,.0f} customers/s (target 5,000/s)"
            )
            customers_file = var / "customers.txt"
            customers_file.write_text("\n".join(batch_ids) + "\n")
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "cli",
                    "batch",
                    "--customers",
                    str(customers_file),
                    "--out",
                    str(var / "campaign.parquet"),
                ],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=600,
            )
            print("omnirec batch: " + (out.stdout.strip().splitlines() or [out.stderr[-500:]])[-1])
            # last: the flood's events make every customer's features fresh (rescored per request)
            with Hammer(base, customers) as hammer:
                flood_rate, flood_lat = wrk(base + "/", 20, paced, connections=connections)
            print(
                "paced load while another client loops batch calls (1,000 customers x limit 100) "
                "and 10,000-event bulk posts: "
                f"{flood_rate:,.0f} req/s   {flood_lat}  ({hammer.summary()}; target p99 < 10 ms)"
            )
        finally:
            for process in servers:
                process.terminate()
                process.wait(timeout=30)
