"""Shared fixtures: the real data sets, a real Redis, an isolated settings object; and the
session's checks: real-data tests skipped loudly when the data folder is absent, and no process
a test started left alive when the run ends."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnirec.redis_runtime import EmbeddedRedis
from omnirec.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("OMNIREC_SHARED_DATA", REPO.parent / "shared" / "data"))
NO_SHARED_DATA = "REAL DATA ABSENT"
# every process started during the run inherits this variable; one still alive at the end leaked
RUN_MARKER = "OMNIREC_TEST_RUN"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data: the real public data sets (never copied into the repository).

    A fresh clone has no such folder: the tests on real files are then skipped, and counted in
    the run's summary (CI has the folder, so there they run)."""
    if not SHARED_DATA.exists():
        pytest.skip(f"{NO_SHARED_DATA}: {SHARED_DATA} not found (set OMNIREC_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis: REDIS_URL when set, otherwise an embedded redis-server for the session."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis"), persist=False) as server:
        yield server.url


@pytest.fixture
def settings(tmp_path: Path, redis_server: str) -> Settings:
    """Settings isolated to this test: own data folder, own Redis key prefix, own MLflow store."""
    return Settings.from_env(
        {
            "OMNIREC_DATA_DIR": str(tmp_path / "var"),
            "REDIS_URL": redis_server,
            "OMNIREC_REDIS_PREFIX": f"test-{uuid.uuid4().hex[:10]}",
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        }
    )


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault(RUN_MARKER, uuid.uuid4().hex)


# the longest modules start first, so that with a worker per core none of them is the tail
# the modules that take longest (measured with --durations), started first so that short ones
# fill the end of the run instead of one long module running alone
LONGEST_FIRST = (
    "tests/training/test_spark_engine.py",
    "tests/test_production_redis.py",
    "tests/serving/test_repeat_serving.py",
    "tests/serving/test_api.py",
    "tests/serving/test_durability.py",
    "tests/serving/test_reliability.py",
    "tests/training/test_pipeline.py",
    "tests/serving/test_experiments.py",
    "tests/serving/test_fastpath.py",
    "tests/serving/test_omnichannel.py",
    "tests/test_image.py",
    "tests/serving/test_erasure.py",
    "tests/training/test_mlflow_server.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def first(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=first)  # stable: every other test keeps its place


def _marked_processes(marker: str) -> list[int]:
    """Processes (other than this one and its parents) whose environment carries the marker."""
    mine = {os.getpid(), os.getppid()}
    found: list[int] = []
    needle = f"{RUN_MARKER}={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if "\nState:\tZ" in (entry / "status").read_text():
                continue  # exited, waiting to be reaped: gone for our purposes
        except OSError:
            continue
        found.append(int(entry.name))
    return found


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:200]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a process started by a test outlived it (then end that process)."""
    if hasattr(session.config, "workerinput") or not Path("/proc/self/environ").exists():
        return  # an xdist worker (the controller checks once, after every worker), or no /proc
    marker = os.environ[RUN_MARKER]
    deadline = time.monotonic() + 15  # processes being stopped right now get a moment
    leftovers = _marked_processes(marker)
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.2)
        leftovers = _marked_processes(marker)
    if not leftovers:
        return
    described = [f"{pid}: {_command(pid)}" for pid in leftovers]
    for pid in leftovers:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    session.config.stash[_LEFTOVERS] = described
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


_LEFTOVERS = pytest.StashKey[list[str]]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    absent = sum(1 for report in skipped if NO_SHARED_DATA in str(report.longrepr))
    if absent:
        terminalreporter.write_sep(
            "!", f"{absent} real-data tests SKIPPED: no data folder at {SHARED_DATA}", yellow=True
        )
    leftovers = terminalreporter.config.stash.get(_LEFTOVERS, [])
    if leftovers:
        terminalreporter.write_sep("!", "processes left running by tests (now killed)", red=True)
        for line in leftovers:
            terminalreporter.write_line(line)
