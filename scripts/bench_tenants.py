"""Several tenants in one service process: memory and recommendation throughput with 1, 5 and 20
small tenants (each its own catalogue, ALS model and published snapshot), against one worker.

    ./dev bench tenants

Every tenant is trained and published once (600 customers x 200 items, 32 factors); the server is
then started with the first 1, 5 and 20 of them, warmed (each tenant asked 50 times) and measured:
its resident memory, and requests/s under wrk with each request's key, hence tenant, drawn at
random. The 1-tenant row is the baseline of the same run.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

import httpx
import psutil

from omnirec.redis_runtime import EmbeddedRedis
from scripts.bench_serve import start_server, wrk

SIZES = (1, 5, 20)
LUA = """
local keys = {}
for line in io.lines("%s") do keys[#keys + 1] = line end
math.randomseed(7)
request = function()
  local key = keys[math.random(#keys)]
  local id = string.format("C%%08d", math.random(0, 599))
  return wrk.format("GET", "/v1/customers/" .. id .. "/recommendations?limit=10",
                    {["X-API-Key"] = key})
end
"""


def _key(tenant: str) -> str:
    return f"bench-{tenant}-key-0123456789"


def _env(var: Path, redis_url: str, tenants: list[str]) -> dict[str, str]:
    return {
        "OMNIREC_DATA_DIR": str(var),
        "REDIS_URL": redis_url,
        "MLFLOW_TRACKING_URI": f"sqlite:///{var / 'mlflow.db'}",
        "OMNIREC_REDIS_PREFIX": "bench",
        "OMNIREC_TENANTS": ",".join(tenants),
        "OMNIREC_API_KEYS": ";".join(f"{_key(t)}:recommend@{t}" for t in tenants),
    }


def run(work: Path) -> None:
    from features.generator import GeneratorConfig, generate
    from omnirec.settings import Settings
    from training.pipeline import TrainConfig, train
    from training.versions import publish_version

    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    var = work / "tenants-var"
    shutil.rmtree(var, ignore_errors=True)
    names = [f"t{k:02d}" for k in range(max(SIZES))]
    print(
        f"\n== tenants: 1, 5 and {max(SIZES)} tenants of 600 customers x 200 items, one worker =="
    )
    with EmbeddedRedis(var / "redis", persist=False) as redis_server:
        settings = Settings.from_env(_env(var, redis_server.url, names))
        started = time.perf_counter()
        for seed, name in enumerate(names):
            own = settings.for_tenant(name)
            data = own.data_dir / "data"
            generate(GeneratorConfig(customers=600, items=200, days=45, seed=seed), data)
            result = train(
                TrainConfig(data=data, model="als", params={"factors": 32}, max_eval_users=300),
                own,
            )
            publish_version(own, result.version or 1, data)
        print(f"{len(names)} tenants trained and published in {time.perf_counter() - started:.0f}s")
        rows = []
        for size in SIZES:
            tenants = names[:size]
            env = {**os.environ, **_env(var, redis_server.url, tenants)}
            server, base = start_server(env)
            try:
                with httpx.Client(base_url=base, timeout=60) as client:
                    for tenant in tenants:
                        for _ in range(50):
                            client.get(
                                f"/v1/customers/C{random.randrange(600):08d}/recommendations",
                                headers={"X-API-Key": _key(tenant)},
                            ).raise_for_status()
                rss = (
                    sum(
                        p.memory_info().rss
                        for p in [
                            psutil.Process(server.pid),
                            *psutil.Process(server.pid).children(True),
                        ]
                        if "redis" not in p.name()
                    )
                    / 2**20
                )
                keys = var / f"keys-{size}.txt"
                keys.write_text("\n".join(_key(t) for t in tenants) + "\n")
                script = var / f"tenants-{size}.lua"
                script.write_text(LUA % keys)
                wrk(base + "/", 3, script)  # warm-up
                rate, latency = wrk(base + "/", 15, script)
                rows.append((size, rss, rate, latency))
            finally:
                server.terminate()
                server.wait(timeout=60)
    base_rss, base_rate = rows[0][1], rows[0][2]
    print(
        f"{'tenants':>8} {'server RSS MiB':>15} {'per tenant':>11} {'req/s':>8} {'vs 1':>6}"
        "  latency"
    )
    for size, rss, rate, latency in rows:
        extra = (rss - base_rss) / max(size - 1, 1) if size > 1 else 0.0
        print(
            f"{size:>8} {rss:>15,.0f} {extra:>10,.1f}+ {rate:>8,.0f} {rate / base_rate:>6.0%}  "
            f"{latency}"
        )
    print(
        "(per tenant: the memory each tenant past the first adds; the server process and its "
        "children, Redis apart)"
    )
