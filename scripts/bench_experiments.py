"""HTTP benchmark: the recommendation route in an A/B experiment (two model versions, 50/50) and
under merchandising rules, against the same route without them: one server, one placement per
configuration, wrk rounds alternating between them so that each sees the same machine noise.
Then the same with a slow shadow challenger on every request (each shadow answer 20 ms slower:
OMNIREC_SHADOW_DELAY_SECONDS) on a second server: its latency must stay off the storefront's."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import httpx
import numpy as np

from models.registry import ModelRegistry
from omnirec.redis_runtime import EmbeddedRedis
from omnirec.settings import Settings
from scripts.bench_serve import (
    KEY,
    LUA,
    bench_env,
    publish_als,
    serving_data,
    start_server,
    wrk,
)

# many short pairs: each configuration's second right beside a second of the baseline (the order
# swapped every round), so that a ratio pairs like with like on a machine whose neighbours change
# its speed from one few-second stretch to the next; an A/A pair (the baseline against itself)
# shows how far that noise alone moves a ratio
ROUNDS = 30
ROUND_SECONDS = 1
PLACEMENTS = """
[rules.filter]
exclude = { category = ["bags"] }
[rules.light]
exclude = { category = ["bags"] }
boost = [{ column = "margin", factor = 1.5 }]
[rules.heavy]
exclude = { category = ["bags"] }
boost = [{ column = "margin", factor = 1.5 }, { new_days = 30, factor = 1.2 }]
bury = [{ column = "brand", values = ["Initech"], factor = 0.8 }]
diversity = { column = "category", max = 3, top = 10 }
[placements.plain]
[placements.ab]
[placements.ab_filter]
rules = "filter"
[placements.ab_light]
rules = "light"
[placements.ab_heavy]
rules = "heavy"
"""
EXPERIMENT = """
[experiments.bench]
placements = ["ab", "ab_filter", "ab_light", "ab_heavy"]
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
CONFIGURATIONS = {  # placement -> what it measures
    "plain": "no experiment, no rules (baseline)",
    "ab": "experiment: 2 model versions, 50/50",
    "ab_filter": "experiment + a filter rule (exclude a category)",
    "ab_light": "experiment + light rules (1 filter, 1 boost)",
    "ab_heavy": "experiment + heavy rules (filter, 3 boosts/buries, diversity cap)",
}


SHADOW_LABEL = "heavy rules + slow shadow (second server)"


def run(work: Path, customers: int, items: int) -> None:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    print(
        f"\n== experiments: {items:,} items, {customers:,} published customers, one worker per "
        "server =="
    )
    folder, var = serving_data(work, customers, items, "experiments-var")
    with EmbeddedRedis(var / "redis", persist=False) as redis_server:
        env = bench_env(var, redis_server.url, "recommend")
        settings = Settings.from_env(env)
        started = time.perf_counter()
        # the champion, then a challenger to split traffic with
        versions = [publish_als(folder, env, factors) for factors in (64, 48)]
        registry = ModelRegistry(settings.mlflow)
        registry.set_champion(versions[0])
        registry.set_alias("challenger", versions[1])
        print(f"two ALS versions trained and published in {time.perf_counter() - started:.0f}s")
        (var / "placements.toml").write_text(PLACEMENTS)
        (var / "experiment.toml").write_text(EXPERIMENT % "")
        (var / "shadowed.toml").write_text(
            EXPERIMENT % 'shadow = "challenger"\nshadow_sample = 1.0'
        )
        files = {"OMNIREC_PLACEMENTS_FILE": str(var / "placements.toml")}
        servers = []
        try:
            server, base = start_server(
                {
                    **os.environ,
                    **env,
                    **files,
                    "OMNIREC_EXPERIMENTS_FILE": str(var / "experiment.toml"),
                }
            )
            servers.append(server)
            shadowed, shadowed_base = start_server(
                {
                    **os.environ,
                    **env,
                    **files,
                    "OMNIREC_SHADOW_DELAY_SECONDS": "0.02",
                    "OMNIREC_EXPERIMENTS_FILE": str(var / "shadowed.toml"),
                }
            )
            servers.append(shadowed)
            ids_file = var / "ids.txt"
            ids_file.write_text("\n".join(f"C{i:08d}" for i in range(0, customers, 7)) + "\n")
            scripts = {}
            for placement in CONFIGURATIONS:
                scripts[placement] = var / f"{placement}.lua"
                query = "limit=10" if placement == "plain" else f"limit=10&placement={placement}"
                scripts[placement].write_text((LUA % (ids_file, 7, KEY)).replace("limit=10", query))
            for placement in CONFIGURATIONS:
                wrk(base + "/", 3, scripts[placement])  # warm-up
            wrk(shadowed_base + "/", 3, scripts["ab_heavy"])

            def target(name: str) -> tuple[str, Path, int]:
                """The server, wrk script and server process a configuration is measured with."""
                if name == "shadow":  # heavy rules on the server whose challenger shadows
                    return shadowed_base, scripts["ab_heavy"], shadowed.pid
                return base, scripts[name], server.pid

            names = [*CONFIGURATIONS, "shadow"]
            ratios: dict[str, list[float]] = {name: [] for name in names}
            cpu_ratios: dict[str, list[float]] = {name: [] for name in names}
            rates: list[float] = []
            costs: list[float] = []
            for round_ in range(ROUNDS):
                line = []
                for name in names:
                    (baseline, cost), (rate, cpu) = paired(
                        (base, scripts["plain"], server.pid), target(name), swap=round_ % 2 == 1
                    )
                    rates.append(baseline)
                    costs.append(cost)
                    ratios[name].append(rate / baseline)
                    cpu_ratios[name].append(cost / cpu)
                    line.append(f"{'A/A' if name == 'plain' else name} {rate / baseline:4.0%}")
                print(
                    f"round {round_ + 1:2}: baseline {rates[-1]:6,.0f} req/s, {costs[-1]:4.0f} us "
                    "of "
                    "server CPU a request; " + "  ".join(line)
                )
            print(
                f"median share of the baseline's throughput over {ROUNDS} rounds (each: the "
                "configuration "
                f"/ the baseline in the {ROUND_SECONDS} s beside it; target >= 90 %), and the same "
                "share "
                "from the server's CPU time per request (the baseline's / the configuration's):"
            )
            for name in names:
                label = (
                    "the baseline against itself (A/A: the noise)"
                    if name == "plain"
                    else CONFIGURATIONS.get(name, SHADOW_LABEL)
                )
                print(f"  {label:<68} {_spread(ratios[name])}   CPU {_spread(cpu_ratios[name])}")
            print(
                f"baseline: median {float(np.median(rates)):,.0f} req/s, "
                f"{float(np.median(costs)):.0f} us of server CPU a request"
            )
            for label, url in (("experiment server", base), ("shadow server", shadowed_base)):
                print(f"{label}: {_variants_served(url)}")
            print("latency, one 3 s run each (wrk -t1 -c16):")
            for name, label in [*CONFIGURATIONS.items(), ("shadow", SHADOW_LABEL)]:
                url, script, _ = target(name)
                rate, latency = wrk(url + "/", 3, script)
                print(f"  {label:<68} {rate:8,.0f} req/s   {latency}")
        finally:
            for process in servers:
                process.terminate()
                process.wait(timeout=30)
        engine_alone(
            settings,
            redis_server.url,
            var,
            customers,
            float(np.median(rates)),
            float(np.median(costs)),
        )


def paired(
    baseline: tuple[str, Path, int], measured: tuple[str, Path, int], swap: bool
) -> tuple[tuple[float, float], tuple[float, float]]:
    """(requests/s, microseconds of the server's CPU a request) of the baseline and of the
    measured configuration, each for ROUND_SECONDS, one right after the other (the measured
    configuration first when `swap`)."""
    order = [measured, baseline] if swap else [baseline, measured]
    first, second = (_round(url, script, pid) for url, script, pid in order)
    return (second, first) if swap else (first, second)


def _round(url: str, script: Path, pid: int) -> tuple[float, float]:
    """One wrk round: requests/s and the server process's CPU microseconds a request (user +
    system, all its threads: what bounds its throughput once it has a core to itself)."""
    before = _cpu_seconds(pid)
    rate, _ = wrk(url + "/", ROUND_SECONDS, script)
    return rate, (_cpu_seconds(pid) - before) / max(rate * ROUND_SECONDS, 1.0) * 1e6


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _variants_served(url: str) -> str:
    """What each variant of the experiment answered, from /metrics, the guardrail's latency
    rounds of the challenger (how many found it worse than the control, the p99 ratio of the
    last), and whether the guardrail stopped one (then its customers got the control, and the
    figures would hold one version)."""
    served: dict[str, float] = {}
    rounds: dict[str, float] = {}
    last = float("nan")
    stopped = []
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        name = line.split("{", 1)[0]
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if not line.startswith("omnirec_") or labels.get("experiment") != "bench":
            continue
        value = float(line.rsplit(" ", 1)[1])
        if name == "omnirec_variant_stopped" and value:
            stopped.append(labels["variant"])
        elif name == "omnirec_variant_answers_total" and labels["outcome"] == "ok":
            served[labels["variant"]] = served.get(labels["variant"], 0) + value
        elif name == "omnirec_guardrail_rounds_total" and labels["measure"] == "latency":
            rounds[labels["verdict"]] = value
        elif name == "omnirec_guardrail_last_round" and labels["measure"] == "latency":
            last = value
    answers = ", ".join(f"{name} {count:,.0f}" for name, count in sorted(served.items()))
    why = [
        w
        for w in httpx.get(f"{url}/health/ready", timeout=30).json().get("warnings", [])
        if "guardrail" in w
    ]
    judged = sum(rounds.values())
    return (
        f"answers per variant: {answers or 'none'}; the challenger's latency rounds: "
        f"{judged:,.0f}, "
        f"{rounds.get('worse', 0):,.0f} found it worse (the last: p99 {last:.2f} x the control's); "
        f"stopped by the guardrail: {'; '.join(why) if why else ', '.join(stopped) or 'none'}"
    )


def _spread(values: list[float]) -> str:
    """Median (middle half, min, max) of ratios, as percentages."""
    ordered = sorted(values)
    quartiles = f"{ordered[len(ordered) // 4]:.0%}-{ordered[3 * len(ordered) // 4]:.0%}"
    median = float(np.median(ordered))
    return f"{median:4.0%} (middle half {quartiles}, min {ordered[0]:.0%}, max {ordered[-1]:.0%})"


def engine_alone(
    settings: Settings,
    redis_url: str,
    var: Path,
    customers: int,
    http_rate: float,
    http_cpu: float,
    answers: int = 2_000,
) -> None:
    """What the experiment and the rules cost, far less noisily than the wrk rounds: the engine
    in this process answers the same customers under each placement. First without HTTP or
    Redis (their states read once: the rules' own cost), then through the route's engine call
    on an event loop (`Engine.recommend`, one Redis round trip each: the variant, the second
    version, the guardrail's tally and the answer's labels too), in CPU time of this process.
    Configurations alternate (the route's, customer by customer) over 7 rounds; medians in
    microseconds per answer."""
    import asyncio

    import msgspec

    from features.store import RedisFeatureStore
    from serving.ask import Ask
    from serving.engine import Engine
    from serving.runtime import ModelRuntime

    serving = msgspec.structs.replace(
        settings.serving,
        placements_file=var / "placements.toml",
        experiments_file=var / "experiment.toml",
    )
    settings = msgspec.structs.replace(settings, serving=serving)
    engine = Engine(settings, RedisFeatureStore(redis_url, settings.redis.prefix, timeout=30))
    ModelRuntime(settings, engine).refresh()  # the champion and the challenger
    snap = engine.live.snapshot
    assert snap is not None and engine.live.versions
    ids = [f"C{i:08d}" for i in range(0, customers, 7)][:answers]
    states = engine.live.customers_blocking(snap, ids)
    names = list(CONFIGURATIONS)
    alone: dict[str, list[float]] = {name: [] for name in names}
    routed: dict[str, list[float]] = {name: [] for name in names}

    async def route(spent: dict[str, float]) -> None:
        """Each customer answered under every configuration in turn: what the machine's
        neighbours do to one answer they do to the others."""
        for customer in ids:
            for name in names:
                started = time.process_time()
                placement = None if name == "plain" else name
                await engine.recommend(customer, Ask(placement=placement, request_id="r"))
                spent[name] += time.process_time() - started

    loop = asyncio.new_event_loop()
    for _ in range(7):
        for name in names:
            rules = engine.placements.rules_for(name)
            started = time.perf_counter()
            for state in states:
                engine.personal.answer(snap, state, Ask(request_id="r"), rules=rules)
            alone[name].append((time.perf_counter() - started) / len(states) * 1e6)
        spent = dict.fromkeys(names, 0.0)
        loop.run_until_complete(route(spent))
        for name in names:
            routed[name].append(spent[name] / len(ids) * 1e6)
    loop.run_until_complete(engine.aclose())
    loop.close()
    base_alone, base_routed = float(np.median(alone["plain"])), float(np.median(routed["plain"]))
    print(
        f"the engine in process ({len(ids):,} customers, 7 alternating rounds, median us per "
        "answer): alone "
        "(states read once, no experiment: the rules' cost) | the route's engine call (CPU, one "
        "Redis trip "
        f"each) | what that adds to the HTTP baseline's {http_cpu:.0f} us of server CPU a request "
        f"({http_rate:,.0f} req/s), as a throughput share:"
    )
    for name in names:
        one, call = float(np.median(alone[name])), float(np.median(routed[name]))
        label = "no experiment, no rules" if name == "plain" else CONFIGURATIONS[name]
        if name == "plain":
            print(f"  {label:<68} {one:6.1f} us           | {call:6.1f} us")
            continue
        share = http_cpu / (http_cpu + call - base_routed)
        print(
            f"  {label:<68} {one:6.1f} us (+{one - base_alone:4.1f}) | {call:6.1f} us "
            f"(+{call - base_routed:4.1f})"
            f" | {share:4.0%}"
        )
