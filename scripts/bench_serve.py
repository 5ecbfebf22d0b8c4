"""HTTP benchmark: recommendations vs liveness under wrk, p99 at a fixed 300 req/s, batch throughput."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from omnirec.redis_runtime import EmbeddedRedis, free_port

KEY = "bench-key-0123456789abcdef"
PACED = """
local ids = {}
for line in io.lines("%s") do ids[#ids + 1] = line end
math.randomseed(11)
request = function()
  local id = ids[math.random(#ids)]
  return wrk.format("GET", "/v1/customers/" .. id .. "/recommendations?limit=10", {["X-API-Key"] = "%s"})
end
delay = function() return %d end
"""
LUA = """
local ids = {}
for line in io.lines("%s") do ids[#ids + 1] = line end
math.randomseed(7)
request = function()
  local id = ids[math.random(#ids)]
  return wrk.format("GET", "/v1/customers/" .. id .. "/recommendations?limit=10", {["X-API-Key"] = "%s"})
end
"""


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
        f"p50 {lat.get('50')}  p90 {lat.get('90')}  p99 {lat.get('99')}  non-2xx {errors.group(1) if errors else 0}",
    )


def run(work: Path, customers: int, items: int) -> None:
    from features.generator import GeneratorConfig, generate
    from omnirec.settings import Settings
    from training.pipeline import TrainConfig, train
    from training.publishing import publish_version

    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    print(
        f"\n== serving: {items:,} items, 64 factors, {customers:,} published customers, one worker =="
    )
    folder = work / f"serve-{customers}x{items}"
    var = work / "serve-var"
    shutil.rmtree(var, ignore_errors=True)
    if not (folder / "catalogue.parquet").exists():
        generate(
            GeneratorConfig(
                customers=customers, items=items, days=60, seed=3, events_per_customer=30
            ),
            folder,
        )
    with EmbeddedRedis(var / "redis", persist=False) as redis_server:
        env = {"OMNIREC_DATA_DIR": str(var), "REDIS_URL": redis_server.url, "MLFLOW_TRACKING_URI": f"sqlite:///{var / 'mlflow.db'}",
               "OMNIREC_API_KEYS": f"{KEY}:recommend+tablet+events", "OMNIREC_REDIS_PREFIX": "bench"}  # fmt: skip
        settings = Settings.from_env(env)
        started = time.perf_counter()
        result = train(
            TrainConfig(data=folder, model="als", params={"factors": 64}, max_eval_users=5_000),
            settings,
        )
        print(
            f"trained + registered in {time.perf_counter() - started:.0f}s; nDCG@10 {result.metrics['all']['ndcg']:.4f} vs popularity {result.baseline['all']['ndcg']:.4f}"
        )
        summary = publish_version(settings, result.version or 1)
        print(str(summary))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([sys.executable, "-m", "omnirec.cli", "serve", "--port", str(port)], env={**os.environ, **env},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            ids = [f"C{i:08d}" for i in range(0, customers, 7)]
            ids_file = var / "ids.txt"
            ids_file.write_text("\n".join(ids) + "\n")
            script = var / "recs.lua"
            script.write_text(LUA % (ids_file, KEY))
            wrk(f"{base}/health/live", 3)  # warm-up
            wrk(base + "/", 3, script)
            live_rate, live_lat = wrk(f"{base}/health/live", 15)
            rec_rate, rec_lat = wrk(base + "/", 15, script)
            print(f"wrk -t1 -c16 15s  liveness        {live_rate:8,.0f} req/s   {live_lat}")
            print(f"wrk -t1 -c16 15s  recommendations {rec_rate:8,.0f} req/s   {rec_lat}")
            print(f"recommendations / liveness = {rec_rate / live_rate:.0%} (target >= 50%)")
            paced = var / "paced.lua"
            # each of 4 connections waits 10 ms between requests: about 300 req/s in all
            connections, pause_ms = 4, 10
            paced.write_text(PACED % (ids_file, KEY, pause_ms))
            paced_rate, paced_lat = wrk(base + "/", 20, paced, connections=connections)
            print(
                f"paced load ({connections} connections, {pause_ms} ms pause each) {paced_rate:,.0f} req/s   {paced_lat}  (target p99 < 10 ms at 300 req/s)"
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
                f"batch route: {len(batch_ids):,} customers in {seconds:.1f}s = {len(batch_ids) / seconds:,.0f} customers/s (target 5,000/s)"
            )
            customers_file = var / "customers.txt"
            customers_file.write_text("\n".join(batch_ids) + "\n")
            out = subprocess.run([sys.executable, "-m", "omnirec.cli", "batch", "--customers", str(customers_file), "--out",
                                  str(var / "campaign.parquet")], env={**os.environ, **env}, capture_output=True, text=True, timeout=600)  # fmt: skip
            print("omnirec batch: " + (out.stdout.strip().splitlines() or [out.stderr[-500:]])[-1])
        finally:
            server.terminate()
            server.wait(timeout=30)
