"""HTTP benchmark: the recommendation route with an active experiment (two model versions, 50/50)
and merchandising rules, against the same route without them, alternating rounds on one machine;
then with a 5 % shadow of the challenger on top."""

from __future__ import annotations

import os
import time
from pathlib import Path

from models.registry import ModelRegistry
from omnirec.redis_runtime import EmbeddedRedis
from omnirec.settings import Settings
from scripts.bench_serve import KEY, LUA, ROUND_SECONDS, bench_env, serving_data, start_server, wrk
from training.pipeline import TrainConfig, train
from training.publish import publish_version

ROUNDS = 4
PLACEMENTS = """
[rules.storefront]
exclude = { category = ["%s"] }
boost = [{ column = "margin", factor = 1.5 }, { new_days = 30, factor = 1.2 }]
bury = [{ column = "brand", values = ["Initech"], factor = 0.8 }]
diversity = { column = "category", max = 3, top = 10 }
[placements.home]
rules = "storefront"
"""
EXPERIMENT = """
[experiments.bench]
placements = ["home"]
%s
[[experiments.bench.variants]]
name = "control"
model = "champion"
share = 50
[[experiments.bench.variants]]
name = "challenger"
model = "challenger"
share = 50
"""


def run(work: Path, customers: int, items: int) -> None:
    print(
        f"\n== experiments: {items:,} items, {customers:,} published customers, one worker per server =="
    )
    folder, var = serving_data(work, customers, items, "experiments-var")
    with EmbeddedRedis(var / "redis", persist=False) as redis_server:
        env = bench_env(var, redis_server.url, "recommend")
        settings = Settings.from_env(env)
        started = time.perf_counter()
        versions = []
        for factors in (64, 48):  # the champion, then a challenger to split traffic with
            result = train(TrainConfig(data=folder, model="als", params={"factors": factors},
                                       max_eval_users=1_000), settings)  # fmt: skip
            assert result.version is not None
            publish_version(settings, result.version)
            versions.append(result.version)
        registry = ModelRegistry(settings.mlflow)
        registry.set_champion(versions[0])
        registry.set_alias("challenger", versions[1])
        print(f"two ALS versions trained and published in {time.perf_counter() - started:.0f}s")
        (var / "placements.toml").write_text(PLACEMENTS % "bags")
        (var / "experiment.toml").write_text(EXPERIMENT % "")
        (var / "shadowed.toml").write_text(
            EXPERIMENT % 'shadow = "challenger"\nshadow_sample = 0.05'
        )
        files = {"OMNIREC_PLACEMENTS_FILE": str(var / "placements.toml")}
        servers = []
        try:
            plain, plain_base = start_server({**os.environ, **env})
            servers.append(plain)
            tested, tested_base = start_server({**os.environ, **env, **files,
                                                "OMNIREC_EXPERIMENTS_FILE": str(var / "experiment.toml")})  # fmt: skip
            servers.append(tested)
            shadowed, shadowed_base = start_server({**os.environ, **env, **files,
                                                    "OMNIREC_EXPERIMENTS_FILE": str(var / "shadowed.toml")})  # fmt: skip
            servers.append(shadowed)
            ids_file = var / "ids.txt"
            ids_file.write_text("\n".join(f"C{i:08d}" for i in range(0, customers, 7)) + "\n")
            scripts = {}
            for name, query in (("plain", ""), ("home", "&placement=home")):
                scripts[name] = var / f"{name}.lua"
                scripts[name].write_text(
                    (LUA % (ids_file, 7, KEY)).replace("limit=10", "limit=10" + query)
                )
            for base, name in (
                (plain_base, "plain"),
                (tested_base, "home"),
                (shadowed_base, "home"),
            ):
                wrk(base + "/", 3, scripts[name])  # warm-up
            ratios, shadow_ratios = [], []
            for _ in range(ROUNDS):
                without = wrk(plain_base + "/", ROUND_SECONDS, scripts["plain"])
                with_rules = wrk(tested_base + "/", ROUND_SECONDS, scripts["home"])
                with_shadow = wrk(shadowed_base + "/", ROUND_SECONDS, scripts["home"])
                ratios.append(with_rules[0] / without[0])
                shadow_ratios.append(with_shadow[0] / without[0])
                print(
                    f"wrk -t1 -c16 {ROUND_SECONDS}s  no experiment, no rules   {without[0]:8,.0f} req/s   {without[1]}"
                )
                print(f"wrk -t1 -c16 {ROUND_SECONDS}s  experiment + rules        {with_rules[0]:8,.0f} req/s   {with_rules[1]}"
                      f"  ({ratios[-1]:.0%})")  # fmt: skip
                print(f"wrk -t1 -c16 {ROUND_SECONDS}s  + 5 % challenger shadow   {with_shadow[0]:8,.0f} req/s   {with_shadow[1]}"
                      f"  ({shadow_ratios[-1]:.0%})")  # fmt: skip
            ratios.sort()
            shadow_ratios.sort()
            print(f"experiment + rules / neither: median {ratios[len(ratios) // 2]:.0%} over {ROUNDS} rounds "
                  f"(min {ratios[0]:.0%}, max {ratios[-1]:.0%}; target >= 90%); with the shadow too: "
                  f"median {shadow_ratios[len(shadow_ratios) // 2]:.0%}")  # fmt: skip
        finally:
            for process in servers:
                process.terminate()
                process.wait(timeout=30)
