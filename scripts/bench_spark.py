"""`./dev bench spark [--data FOLDER | --customers N]`: `omnirec train --model als` on the same
events with the single-machine engine and with `--engine spark` (local mode on this machine's
cores): wall time and peak memory of each, the timings each printed, and from Spark's event log
how its stages would divide over N executors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Stage:
    """One Spark stage as its event log tells it."""

    name: str
    tasks: int = 0
    task_seconds: float = 0.0  # executor run time summed over the tasks
    longest: float = 0.0  # the slowest task
    started: float = field(default=float("inf"))
    finished: float = 0.0

    def on(self, cores: int) -> float:
        """Seconds on `cores` executor cores: the work spread evenly, never below the slowest
        task."""
        return max(self.longest, self.task_seconds / cores)


def _event_lines(event_log: Path) -> Iterator[str]:
    """The JSON lines of the newest application in an event-log folder: a file, or Spark's rolling
    `eventlog_v2_*` folder of `events_<n>_*` parts, plain or compressed (zstd, lz4)."""
    newest = max(event_log.iterdir(), key=lambda p: p.stat().st_mtime)
    parts = (
        sorted(newest.glob("events_*"), key=lambda p: int(p.name.split("_")[1]))
        if newest.is_dir()
        else [newest]
    )
    for part in parts:
        codec = {".zstd": "zstd", ".zst": "zstd", ".lz4": "lz4"}.get(part.suffix)
        with pa.input_stream(str(part), compression=codec) as stream:
            yield from stream.read().decode().splitlines()


def stages_of(event_log: Path) -> list[Stage]:
    """Stages of the newest application in an event-log folder (Spark's JSON lines format)."""
    stages: dict[int, Stage] = {}
    tasks: dict[int, list[float]] = defaultdict(list)
    described: dict[int, str] = {}  # stage -> its job's description (omnirec names its jobs)
    for line in _event_lines(event_log):
        event = json.loads(line)
        kind = event.get("Event")
        if kind == "SparkListenerJobStart":
            text = (event.get("Properties") or {}).get("spark.job.description")
            for stage_id in event.get("Stage IDs", []) if text else []:
                described[stage_id] = text
        elif kind == "SparkListenerStageCompleted":
            info = event["Stage Info"]
            name = described.get(info["Stage ID"], info["Stage Name"])
            stage = stages.setdefault(info["Stage ID"], Stage(name))
            stage.started = info.get("Submission Time", 0) / 1000
            stage.finished = info.get("Completion Time", 0) / 1000
        elif kind == "SparkListenerTaskEnd" and event.get("Task Metrics"):
            tasks[event["Stage ID"]].append(event["Task Metrics"]["Executor Run Time"] / 1000)
    for stage_id, stage in stages.items():
        times = tasks.get(stage_id, [])
        stage.tasks, stage.task_seconds, stage.longest = (
            len(times),
            sum(times),
            max(times, default=0.0),
        )
    return [stages[k] for k in sorted(stages)]


def _available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


class MemoryWatch:
    """The machine's memory in use beyond what it was at the start, sampled every 0.5 s (Spark's
    JVM is a process of its own: this counts it with the Python driver)."""

    def __init__(self) -> None:
        self.start = _available_mib()
        self.lowest = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.lowest = min(self.lowest, _available_mib())

    def stop(self) -> float:
        """Peak MiB in use beyond the start."""
        self._stop.set()
        self._thread.join()
        return self.start - self.lowest


def train(
    data: Path, work: Path, engine: str, event_log: Path | None
) -> tuple[float, float, float, str]:
    """Wall seconds, peak RSS (MiB, the largest process), peak memory of the whole machine beyond
    its start (MiB) and the output of one `omnirec train`."""
    env = {
        **os.environ,
        "OMNIREC_DATA_DIR": str(work / f"var-{engine}"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / f'var-{engine}' / 'mlflow.db'}",
    }
    if event_log is not None:
        env["OMNIREC_SPARK_EVENT_LOG"] = str(event_log)
    (work / f"var-{engine}").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    watch = MemoryWatch()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "train",
            "--data",
            str(data),
            "--engine",
            engine,
            "--model",
            "als",
            "--no-publish",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    machine = watch.stop()
    if status != 0:
        raise SystemExit(f"omnirec train --engine {engine} failed ({status}):\n{out}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024, machine, out


def run(
    data: Path,
    work: Path,
    executors: tuple[int, ...] = (4, 16, 64),
    engines: tuple[str, ...] = ("local", "spark"),
) -> None:
    from pyarrow import dataset

    events = dataset.dataset(data / "events", format="parquet").count_rows()
    print(
        f"\n== omnirec train --model als on {events:,} events ({data}): one process vs --engine "
        "spark "
        f"(local mode, {os.cpu_count()} cores) =="
    )
    results = {}
    event_log = work / "spark-events"
    for engine in engines:
        wall, rss, machine, out = train(
            data, work, engine, event_log if engine == "spark" else None
        )
        results[engine] = wall
        timings = next((line for line in out.splitlines() if line.startswith("timings:")), "")
        print(
            f"{engine:>5}: wall {wall:,.0f} s ({wall / 60:.1f} min), peak RSS {rss / 1024:.1f} GiB "
            f"(largest process), machine {machine / 1024:.1f} GiB in use at the peak; {timings}",
            flush=True,
        )
    if "spark" not in results:
        return
    stages = stages_of(event_log)
    spark_seconds = sum(s.finished - s.started for s in stages)
    print(
        f"\nSpark's {len(stages)} stages ran {spark_seconds:,.0f} s of the {results['spark']:,.0f} "
        "s "
        f"(the rest: fitting ALS, evaluating and logging on the driver)"
    )
    print(
        f"{'stage':<48} {'tasks':>6} {'task s':>8} {'slowest':>8}"
        + "".join(f" {f'{n} cores':>9}" for n in executors)
    )
    by_job: dict[str, Stage] = {}  # stages of one job add up (they run one after another)
    for stage in stages:
        total = by_job.setdefault(stage.name, Stage(stage.name))
        total.tasks += stage.tasks
        total.task_seconds += stage.task_seconds
        total.longest += stage.longest
    for stage in sorted(by_job.values(), key=lambda s: -s.task_seconds)[:10]:
        print(
            f"{stage.name[:48]:<48} {stage.tasks:>6} {stage.task_seconds:>8.1f} "
            f"{stage.longest:>8.1f}" + "".join(f" {stage.on(n):>9.1f}" for n in executors)
        )
    total = sum(s.task_seconds for s in stages)
    print(
        f"{'all stages':<48} {sum(s.tasks for s in stages):>6} {total:>8.1f} {'':>8}"
        + "".join(f" {sum(s.on(n) for s in stages):>9.1f}" for n in executors)
    )
    driver = results["spark"] - spark_seconds
    print(
        f"-> with N executor cores the Spark part takes about the 'N cores' column; the driver's "
        f"{driver:,.0f} s (ALS fit, evaluation, MLflow) stay as they are"
    )
