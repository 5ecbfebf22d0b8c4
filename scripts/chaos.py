"""Chaos check: faults injected into a running deployment under load, with what each cost.

    ./dev chaos [--customers N]

A real deployment on loopback (synthetic data, ALS trained and published into MLflow, `omnirec
serve` on the embedded Redis of its data folder) takes storefront requests and posts events (each
with an event_id; a 503 or a dropped connection is retried with the same id, as a careful client
does). One fault at a time; after each, the posted events are exported with `omnirec
export-events`. Per fault it prints: events acknowledged (202) vs exported so far, 5xx answers,
requests that could not connect, degraded answers, the time until the storefront answered
personalized again, and the storefront's p99 during the fault. Every loop is bounded in time and
every address is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil
import pyarrow.parquet as pq

from omnirec.redis_runtime import SharedEmbeddedRedis
from scripts.bench_serve import Background, Hammer
from scripts.resetting_proxy import ResettingProxy

KEY = "chaos-key-0123456789abcdef"
CUSTOMERS = 3_000


@dataclass
class Window:
    """What the load saw during one fault."""

    statuses: dict[int, int] = field(default_factory=dict)
    degraded: int = 0
    latencies: list[float] = field(default_factory=list)

    def p99_ms(self) -> float:
        return float(np.percentile(self.latencies, 99)) * 1e3 if self.latencies else float("nan")


class Deployment:
    """`omnirec serve` on a data folder, restarted on demand like a process supervisor would."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = 0
        self.env = {
            **os.environ,
            "OMNIREC_DATA_DIR": str(root / "var"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "OMNIREC_API_KEYS": f"{KEY}:recommend+events+admin",
            "OMNIREC_RELOAD_INTERVAL_SECONDS": "2",
        }
        self.env.pop("REDIS_URL", None)
        self.server: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        """Start the service; returns the seconds until it was ready."""
        from omnirec.redis_runtime import free_port

        self.port = self.port or free_port()
        started = time.monotonic()
        log = (self.root / "server.log").open("ab")
        self.server = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        while time.monotonic() - started < 120:
            try:
                if httpx.get(f"{self.base}/health/ready", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"omnirec serve not ready; see {self.root / 'server.log'}")

    def redis_pid(self) -> int:
        state = json.loads((self.root / "var" / "redis" / "embedded.json").read_text())
        return int(state["pid"])

    def omnirec(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise SystemExit(f"omnirec {' '.join(args)} failed: {done.stderr[-2000:]}")
        return done.stdout


class Load(Background):
    """Storefront requests and event posts on two threads, recorded into the current window."""

    def __init__(self, dep: Deployment) -> None:
        super().__init__(self._storefront, self._events)
        self.dep = dep
        self.window = Window()
        self.acknowledged: set[str] = set()
        self.posted = 0

    def _storefront(self) -> None:
        rng = np.random.default_rng(1)
        with httpx.Client(headers={"X-API-Key": KEY}, timeout=5) as client:
            while not self.stop.is_set():
                customer = f"C{int(rng.integers(CUSTOMERS)):08d}"
                window, started = self.window, time.perf_counter()
                try:
                    r = client.get(
                        f"{self.dep.base}/v1/customers/{customer}/recommendations?limit=10"
                    )
                    window.statuses[r.status_code] = window.statuses.get(r.status_code, 0) + 1
                    window.latencies.append(time.perf_counter() - started)
                    if r.status_code == 200 and r.json()["degraded"]:
                        window.degraded += 1
                except httpx.HTTPError:
                    window.statuses[0] = window.statuses.get(0, 0) + 1
                    time.sleep(0.05)
                time.sleep(0.004)

    def _events(self) -> None:
        with httpx.Client(headers={"X-API-Key": KEY}, timeout=5) as client:
            while not self.stop.is_set():
                event_id = f"chaos-{self.posted}"
                event = {
                    "customer_id": f"C{self.posted % CUSTOMERS:08d}",
                    "item_id": f"I{self.posted % 300:06d}",
                    "event_type": "view",
                    "channel": "app",
                    "event_id": event_id,
                }
                while not self.stop.is_set():  # retried with the same id until acknowledged
                    try:
                        if client.post(f"{self.dep.base}/v1/events", json=event).status_code == 202:
                            self.acknowledged.add(event_id)
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.1)
                self.posted += 1
                time.sleep(0.01)


def healthy(dep: Deployment) -> bool:
    try:
        r = httpx.get(
            f"{dep.base}/v1/customers/C00000007/recommendations",
            headers={"X-API-Key": KEY},
            timeout=2,
        )
    except httpx.HTTPError:
        return False
    return (
        r.status_code == 200 and r.json()["source"] == "personalized" and not r.json()["degraded"]
    )


def wait_healthy(dep: Deployment, since: float, limit: float = 120.0) -> float:
    while not healthy(dep):
        if time.monotonic() - since > limit:
            return float("inf")
        time.sleep(0.05)
    return time.monotonic() - since


def slow_connections(dep: Deployment, count: int, seconds: float) -> None:
    """`count` connections that send half a request line and then nothing, held `seconds`."""
    socks = []
    for _ in range(count):
        try:
            sock = socket.create_connection(("127.0.0.1", dep.port), timeout=2)
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
            socks.append(sock)
        except OSError:
            break
    time.sleep(seconds)
    for sock in socks:
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slow-connections", type=int, default=5_000)
    args = parser.parse_args()
    from serving.http_protocol import raise_open_file_limit

    raise_open_file_limit()  # this process holds the slow connections
    from features.generator import GeneratorConfig, generate
    from omnirec.settings import Settings
    from training.pipeline import TrainConfig, train
    from training.versions import publish_version

    root = Path(tempfile.mkdtemp(prefix="omnirec-chaos-"))
    dep = Deployment(root)
    generate(GeneratorConfig(customers=CUSTOMERS, items=300, days=60, seed=5), root / "data")
    settings = Settings.from_env(dep.env)
    result = train(TrainConfig(data=root / "data", model="als", params={"factors": 32}), settings)
    publish_version(settings, result.version or 1)
    dep.start()
    log = root / "events-log"
    rows: list[tuple[str, int, int, Window, float]] = []

    def fault(name: str, inject: Callable[[], None], settle: float = 0.0) -> None:
        with_window = Window()
        load.window = with_window
        started = time.monotonic()
        inject()
        recover = wait_healthy(dep, started)
        time.sleep(settle)
        load.window = Window()
        acked = len(load.acknowledged)  # before the export: all of these must be in it
        dep.omnirec("export-events", "--out", str(log))
        rows.append((name, acked, len(exported_of_load(log)), with_window, recover))
        print(f"  {name}: done (recovered in {recover:.1f} s)", flush=True)

    def restart_after(sig: signal.Signals) -> Callable[[], None]:
        def inject() -> None:
            assert dep.server is not None
            redis_before = dep.redis_pid()
            dep.server.send_signal(sig)
            dep.server.wait(timeout=60)
            time.sleep(0.2)
            orphan = _alive(redis_before)
            print(
                f"  {sig.name} to the service: embedded redis-server "
                f"{'ORPHANED' if orphan else 'stopped with it'}"
                if sig == signal.SIGTERM
                else f"  {sig.name} to the service",
                flush=True,
            )
            dep.start()

        return inject

    def pause_redis() -> None:
        pid = dep.redis_pid()
        os.kill(pid, signal.SIGSTOP)
        ready_times = []
        for _ in range(5):
            t0 = time.perf_counter()
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{dep.base}/health/ready", timeout=5)
            ready_times.append(time.perf_counter() - t0)
            time.sleep(0.8)
        os.kill(pid, signal.SIGCONT)
        print(
            f"  readiness answered within {max(ready_times) * 1e3:.0f} ms while Redis was paused",
            flush=True,
        )

    def flood() -> None:
        with Hammer(dep.base, CUSTOMERS, key=KEY) as hammer:
            time.sleep(20)
        print(f"  flood: {hammer.summary()}", flush=True)

    def kill_9_with_children() -> None:
        """kill -9 of the service while its heavy-request child is up: nothing of it may stay."""
        assert dep.server is not None
        with httpx.Client(headers={"X-API-Key": KEY}, timeout=60) as client:
            client.post(  # starts the heavy-request child
                f"{dep.base}/v1/recommendations/batch",
                json={"customer_ids": ["C00000001", "C00000002"], "limit": 5},
            )
        # the service's own helpers: the heavy-request child, multiprocessing's resource tracker
        # (the data folder's embedded redis-server is shared and outlives a killed user by design)
        children = [
            c
            for c in psutil.Process(dep.server.pid).children(recursive=True)
            if "redis" not in c.name() and "redis-server" not in " ".join(c.cmdline())
        ]
        dep.server.kill()
        dep.server.wait(timeout=60)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_running(c) for c in children):
            time.sleep(0.1)
        left = [f"{c.pid} {' '.join(c.cmdline())[:60]}" for c in children if _running(c)]
        orphans.append(len(left))
        print(
            f"  kill -9 of the service with {len(children)} child process(es): "
            f"{len(left)} left running {left}",
            flush=True,
        )
        dep.start()

    def flush_with_stock() -> None:
        """FLUSHALL after a live stock change: the stock comes back like the features."""
        item = f"I{7:06d}"
        with httpx.Client(headers={"X-API-Key": KEY}, timeout=30) as client:
            client.post(
                f"{dep.base}/v1/stock",
                json={"updates": [{"store_id": "S003", "item_id": item, "quantity": 0}]},
            ).raise_for_status()
            before = _at_store(client, dep, "S003")
            _flush(dep, load)
            recovered = wait_healthy(dep, time.monotonic())
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                after = _at_store(client, dep, "S003")
                if after == before:
                    break
                time.sleep(0.5)
            stores = client.get(f"{dep.base}/v1/stores").json()["stores"]
        stock_rows.append((before, after, item not in after.get("items", set())))
        print(
            f"  stock at S003 before the flush: {before['count']} suggestions over 20 customers; "
            f"after ({recovered:.1f} s to healthy): {after['count']}; the live change (item "
            f"{item} at 0) kept: {item not in after.get('items', set())}; stores {len(stores)}",
            flush=True,
        )

    def reset_connections() -> None:
        """Redis behind a proxy that accepts connections and resets them, for 5 s."""
        proxy.resetting.set()
        time.sleep(5)
        proxy.resetting.clear()

    print(f"chaos run in {root} (service on {dep.base})", flush=True)
    with Load(dep) as load:
        time.sleep(3)
        fault("baseline (no fault, 10 s)", lambda: time.sleep(10))
        fault("SIGTERM to the service", restart_after(signal.SIGTERM))
        fault("kill -9 of the service", restart_after(signal.SIGKILL))
        fault("kill -9 of redis-server", lambda: os.kill(dep.redis_pid(), signal.SIGKILL), settle=1)
        fault("Redis paused 5 s", pause_redis, settle=1)
        fault("FLUSHALL of Redis", lambda: _flush(dep, load), settle=1)
        fault("FLUSHALL: live stock rebuilt", flush_with_stock, settle=1)
        fault("kill -9 with the heavy child up", kill_9_with_children)
        fault("batch + bulk flood 20 s", flood)
        log_before = (root / "server.log").stat().st_size
        fault(
            f"{args.slow_connections:,} half-sent requests, 30 s",
            lambda: slow_connections(dep, args.slow_connections, 30),
        )
        grew = ((root / "server.log").stat().st_size - log_before) / 1e3
        print(f"  the server log grew {grew:,.0f} kB during the half-sent requests", flush=True)
        # Redis reached through a proxy that resets connections (Redis restarting, or behind a
        # load balancer): this process holds the embedded server while the service restarts on
        # the proxy's address
        with SharedEmbeddedRedis(root / "var" / "redis") as redis_url:
            proxy = ResettingProxy(int(redis_url.rsplit(":", 1)[1].split("/")[0]))
            assert dep.server is not None
            dep.server.send_signal(signal.SIGTERM)
            dep.server.wait(timeout=60)
            dep.env["REDIS_URL"] = f"redis://127.0.0.1:{proxy.port}/0"
            dep.start()
            fault("Redis resets connections 5 s", reset_connections, settle=1)
            load.__exit__(None, None, None)  # the load stops before the last export
            dep.omnirec("export-events", "--out", str(log))
            proxy.close()
    exported = exported_of_load(log)
    print(
        f"\n{'fault':<40} {'acked':>7} {'exported':>8} {'5xx':>5} {'no conn':>7} {'degraded':>8} "
        f"{'healthy s':>9} {'p99 ms':>8}"
    )
    for name, acked, exp, window, recover in rows:
        fivexx = sum(n for s, n in window.statuses.items() if s >= 500)
        print(
            f"{name:<40} {acked:>7,} {exp:>8,} {fivexx:>5} {window.statuses.get(0, 0):>7} "
            f"{window.degraded:>8} "
            f"{recover:>9.1f} {window.p99_ms():>8.1f}"
        )
    lost = sorted(load.acknowledged - exported, key=lambda i: int(i.split("-")[1]))
    print(
        f"events acknowledged {len(load.acknowledged):,}, exported "
        f"{len(exported & load.acknowledged):,}, "
        f"acknowledged but not exported: {len(lost)} {lost[:20]} (the flush: acknowledged after "
        "the export "
        f"that preceded it)"
    )
    print("'healthy s': from the fault until the storefront answered personalized, not degraded")
    print(f"FLUSHALL happened between events {flush_marks}")
    print(f"processes of the service left running after kill -9: {sum(orphans)}")
    for before, after, kept in stock_rows:
        print(
            f"stock after FLUSHALL: S003 suggestions {before['count']} before, {after['count']} "
            f"after, the live change kept: {kept}"
        )
    assert dep.server is not None
    dep.server.send_signal(signal.SIGTERM)
    dep.server.wait(timeout=60)


def exported_of_load(log: Path) -> set[str]:
    """The event ids of the load's events in the exported log."""
    ids: set[str] = set()
    for path in log.rglob("*.parquet"):
        column = pq.read_table(path, columns=["event_id"]).column("event_id").to_pylist()
        ids.update(i for i in column if i and i.startswith("chaos-"))
    return ids


flush_marks: list[int] = []
orphans: list[int] = []
stock_rows: list[tuple[dict[str, object], dict[str, object], bool]] = []


def _at_store(client: httpx.Client, dep: Deployment, store: str) -> dict[str, object]:
    """How many suggestions 20 customers get at `store`, and which items."""
    count, items = 0, set()
    for k in range(20):
        r = client.get(
            f"{dep.base}/v1/customers/C{k:08d}/recommendations",
            params={"store_id": store, "limit": 10},
        )
        if r.status_code == 200:
            got = [i["item_id"] for i in r.json()["items"]]
            count += len(got)
            items.update(got)
    return {"count": count, "items": items}


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _flush(dep: Deployment, load: Load) -> None:
    import redis

    dep.omnirec(
        "export-events", "--out", str(dep.root / "events-log")
    )  # what an operator would keep
    state = json.loads((dep.root / "var" / "redis" / "embedded.json").read_text())
    flush_marks.append(load.posted)
    redis.Redis(port=int(state["port"])).flushall()
    flush_marks.append(load.posted)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


if __name__ == "__main__":
    main()
