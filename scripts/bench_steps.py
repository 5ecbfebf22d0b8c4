"""Every step a person waits on, each beside its anchor measured in the same run, as one table
(`./dev bench all`).

- `omnirec --help`: its wall time (best of 5), beside `python -c pass`;
- the numba kernels in a fresh process: loaded from numba's cache, beside compiling them;
- `omnirec train` on 2,000 customers with its defaults (its stages are printed);
- `omnirec serve` until `/health/ready` is 200, a restart and a first start, beside a bare
  Litestar app on uvicorn until it answers;
- the liveness route, beside the bare app's;
- the recommendations route, beside the service's and the bare app's liveness;
- `omnirec serve --workers 2` on the recommendations route, beside one worker;
- publishing 100,000 customers into Redis, beside the matrix product alone.

HTTP rows alternate their rounds (so each pair sees the same machine noise) and report the
median ratio. The machine has 2 cores: wrk, the server and the embedded Redis share them.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from omnirec.redis_runtime import EmbeddedRedis, free_port
from scripts.bench_serve import KEY, LUA, bench_env, serving_data, start_server, wrk

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ROUNDS = 5
ROUND_SECONDS = 8


@dataclass
class Row:
    step: str
    now: str
    anchor: str
    share: str
    goal: str
    met: bool | None


def _best_wall(args: list[str], env: dict[str, str] | None = None, times: int = 5) -> float:
    best = float("inf")
    for _ in range(times):
        started = time.perf_counter()
        subprocess.run(args, cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
        best = min(best, time.perf_counter() - started)
    return best


def cli_help() -> Row:
    took = _best_wall([PY, "-m", "cli", "--help"])
    floor = _best_wall([PY, "-c", "pass"])
    return Row(
        "`omnirec --help`",
        f"{took:.2f} s",
        f"`python -c pass` {floor:.2f} s",
        f"{took / floor:.1f}x",
        "<= 0.3 s",
        took <= 0.3,
    )


def kernels() -> Row:
    code = "from cli.commands.kernels import compile_kernels; compile_kernels()"
    cached = _best_wall([PY, "-c", code], times=3)
    with tempfile.TemporaryDirectory() as empty:
        compiled = _best_wall(
            [PY, "-c", code], env={**os.environ, "NUMBA_CACHE_DIR": empty}, times=1
        )
    return Row(
        "numba kernels in a fresh process (after `./dev setup`)",
        f"{cached:.2f} s (from the cache setup wrote)",
        f"compiling them: {compiled:.1f} s",
        f"{cached / compiled:.0%}",
        "compiled once at setup, never on a request",
        cached < compiled,
    )


def _ready_seconds(args: list[str], env: dict[str, str], path: str) -> float:
    """Seconds from starting `args` (which serve on the port appended) until `path` is 200."""
    port = free_port()
    started = time.perf_counter()
    server = subprocess.Popen(
        [*args, str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                raise SystemExit(f"{args} exited with {server.returncode} before it was ready")
            time.sleep(0.02)
    finally:
        server.terminate()
        server.wait(timeout=60)


BARE = [PY, "-m", "uvicorn", "scripts.bare_litestar:app", "--log-level", "warning"]
BARE_FLAGS = ["--no-access-log", "--http", "httptools", "--port"]


def train_and_start(work: Path) -> list[Row]:
    """`omnirec train` with its defaults on 2,000 customers, then `omnirec serve` until ready."""
    from features.generator import GeneratorConfig, generate

    var = work / "steps-var"
    shutil.rmtree(var, ignore_errors=True)
    data = work / "steps-2000x300"
    if not (data / "catalogue.parquet").exists():
        generate(GeneratorConfig(customers=2_000, items=300, seed=11), data)
    rows = []
    with EmbeddedRedis(var / "redis", persist=False) as redis_server:
        env = {**os.environ, **bench_env(var, redis_server.url, "recommend")}
        started = time.perf_counter()
        done = subprocess.run(
            [PY, "-m", "cli", "train", "--data", str(data)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=True,
        )
        took = time.perf_counter() - started
        chosen = next(
            (line.split("chose ", 1)[1] for line in done.stdout.splitlines() if " chose " in line),
            "?",
        )
        stages = next((line for line in done.stdout.splitlines() if line.startswith("timings")), "")
        print(f"omnirec train: {took:.1f} s, chose {chosen}\n  {stages}", flush=True)
        rows.append(
            Row(
                "`omnirec train --data gen` (2,000 customers, defaults, publishes)",
                f"{took:.1f} s, chose {chosen.split(' in ')[0]}",
                "-",
                "-",
                "<= 15 s, the same choice",
                took <= 15,
            )
        )
        serve = [PY, "-m", "cli", "serve", "--port"]
        cache = var / "serving-models"
        first = []
        for _ in range(3):
            shutil.rmtree(cache, ignore_errors=True)  # the model comes from MLflow
            first.append(_ready_seconds(serve, env, "/health/ready"))
        restart = [_ready_seconds(serve, env, "/health/ready") for _ in range(3)]
        bare = [_ready_seconds([*BARE, *BARE_FLAGS], env, "/health/live") for _ in range(3)]
    print(
        f"ready: first start {min(first):.2f} s, restart {min(restart):.2f} s, bare Litestar "
        f"{min(bare):.2f} s (best of 3 each)",
        flush=True,
    )
    rows.append(
        Row(
            "`omnirec serve` until `/health/ready` is 200 (2,000 customers, 300 items)",
            f"restart {min(restart):.1f} s; first start (model from MLflow) {min(first):.1f} s",
            f"bare Litestar app ready {min(bare):.1f} s",
            f"{min(restart) / min(bare):.1f}x",
            "<= 4 s",
            min(restart) <= 4,
        )
    )
    return rows


def http(work: Path, customers: int = 20_000, items: int = 20_000) -> list[Row]:
    """Liveness and recommendations against a bare Litestar app, 1 and 2 workers."""
    from scripts.bench_serve import publish_als

    folder, var = serving_data(work, customers, items, "steps-serve-var")
    rows = []
    with EmbeddedRedis(var / "redis", persist=False) as redis_server:
        env = bench_env(var, redis_server.url, "recommend")
        publish_als(folder, env)
        full_env = {**os.environ, **env}
        ids = var / "ids.txt"
        ids.write_text("\n".join(f"C{i:08d}" for i in range(0, customers, 7)) + "\n")
        script = var / "recs.lua"
        script.write_text(LUA % (ids, 7, KEY))
        servers = []
        try:
            one, one_base = start_server(full_env)
            servers.append(one)
            bare, bare_base = start_server(full_env, [*BARE, *BARE_FLAGS])
            servers.append(bare)
            two, two_base = start_server(
                full_env, [PY, "-m", "cli", "serve", "--workers", "2", "--port"]
            )
            servers.append(two)
            for base in (one_base, two_base):  # every worker's first answers, before timing
                wrk(base + "/", 3, script)
            wrk(f"{bare_base}/health/live", 2)
            rounds: dict[str, list[float]] = {"bare": [], "live": [], "recs": [], "two": []}
            cores: dict[str, list[dict[str, float]]] = {"recs": [], "two": []}
            redis_pid = redis_server.pid or 0
            for number in range(ROUNDS):
                rounds["bare"].append(wrk(f"{bare_base}/health/live", ROUND_SECONDS)[0])
                rounds["live"].append(wrk(f"{one_base}/health/live", ROUND_SECONDS)[0])
                with CoreShares(one.pid, redis_pid) as shares:
                    rec, latency = wrk(one_base + "/", ROUND_SECONDS, script)
                rounds["recs"].append(rec)
                cores["recs"].append(shares.result)
                with CoreShares(two.pid, redis_pid) as shares:
                    rounds["two"].append(wrk(two_base + "/", ROUND_SECONDS, script)[0])
                cores["two"].append(shares.result)
                print(
                    f"round {number + 1}: bare liveness {rounds['bare'][-1]:,.0f}  liveness "
                    f"{rounds['live'][-1]:,.0f}  recommendations {rec:,.0f} ({latency})  "
                    f"2 workers {rounds['two'][-1]:,.0f} req/s",
                    flush=True,
                )
        finally:
            for process in servers:
                process.terminate()
                process.wait(timeout=60)

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(rounds[a], rounds[b], strict=True))

    def median(name: str) -> str:
        return f"{statistics.median(rounds[name]):,.0f} req/s"

    live_share, recs_live = ratio("live", "bare"), ratio("recs", "live")
    recs_bare, two = ratio("recs", "bare"), ratio("two", "recs")
    for name, label in (("recs", "1 worker"), ("two", "2 workers")):
        used = {k: statistics.median(r[k] for r in cores[name]) for k in cores[name][0]}
        print(
            f"cores busy under wrk, {label} (median of the rounds, of {os.cpu_count()}): "
            + ", ".join(f"{k} {v:.2f}" for k, v in used.items()),
            flush=True,
        )
    rows += [
        Row(
            "the service's liveness route",
            median("live"),
            f"bare Litestar liveness {median('bare')}",
            f"{live_share:.0%}",
            ">= 90 %",
            live_share >= 0.9,
        ),
        Row(
            f"recommendations ({items:,} items, 64 factors) vs the service's liveness",
            median("recs"),
            f"liveness {median('live')}",
            f"{recs_live:.0%}",
            ">= 60 %",
            recs_live >= 0.6,
        ),
        Row(
            "recommendations vs a bare Litestar liveness route",
            median("recs"),
            f"bare Litestar liveness {median('bare')}",
            f"{recs_bare:.0%}",
            ">= 55 %",
            recs_bare >= 0.55,
        ),
        Row(
            "`omnirec serve --workers 2`, recommendations (wrk and Redis on the same cores: "
            "their shares are printed above the table)",
            median("two"),
            f"1 worker {median('recs')}",
            f"{two:.2f}x",
            ">= 1.7x",
            two >= 1.7,
        ),
    ]
    return rows


class CoreShares:
    """Cores each side kept busy while the `with` block ran (CPU seconds over wall seconds): the
    server (its workers and their children), Redis, wrk (this process's finished children) and
    what was left idle."""

    def __init__(self, server_pid: int, redis_pid: int) -> None:
        self.server = psutil.Process(server_pid)
        self.redis = psutil.Process(redis_pid) if redis_pid else None
        self.result: dict[str, float] = {}

    def _server_seconds(self) -> float:
        total = 0.0
        for process in [self.server, *self.server.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def _redis_seconds(self) -> float:
        if self.redis is None:
            return 0.0
        times = self.redis.cpu_times()
        return float(times.user + times.system)

    @staticmethod
    def _children_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def __enter__(self) -> CoreShares:
        self.started = time.perf_counter()
        self.before = (self._server_seconds(), self._redis_seconds(), self._children_seconds())
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.started
        after = (self._server_seconds(), self._redis_seconds(), self._children_seconds())
        server, redis, load = ((a - b) / wall for a, b in zip(after, self.before, strict=True))
        idle = (os.cpu_count() or 1) - server - redis - load
        self.result = {"server": server, "Redis": redis, "wrk": load, "idle": max(idle, 0.0)}


def publish_row(work: Path) -> Row:
    from scripts.bench_publish import run as bench_publish

    rate, baseline = bench_publish(work, 100_000, with_numpy_baseline=False)
    return Row(
        "publishing 100,000 customers (score, top-200, encode, write)",
        f"{rate:,.0f} customers/s",
        f"the matrix product alone {baseline:,.0f} customers/s",
        f"{rate / baseline:.0%}",
        ">= 65 %",
        rate / baseline >= 0.65,
    )


def run(work: Path) -> None:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    print("\n== the steps a person waits on, each beside its anchor (same run) ==", flush=True)
    rows = [cli_help(), kernels()]
    rows += train_and_start(work)
    rows += http(work)
    rows.append(publish_row(work))
    print("\n| step | now | anchor (same run) | share | goal | met |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        met = "-" if row.met is None else ("yes" if row.met else "**no**")
        print(f"| {row.step} | {row.now} | {row.anchor} | {row.share} | {row.goal} | {met} |")
