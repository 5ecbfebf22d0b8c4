"""Test helper: a Spark standalone cluster started on this machine from the installed pyspark (its
`bin/spark-class`): a master and two workers, each its own JVM, each worker offering one core, so
that a job's executors are separate processes with their own Python workers and every shuffle
crosses processes. Stopped with everything its workers launched (executors, Python daemons)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

import pyspark
import pytest

from omnirec.redis_runtime import free_port
from tests.waiting import PATIENCE, wait_until

LOOPBACK = "127.0.0.1"


class SparkCluster:
    def __init__(self, folder: Path, workers: int = 2) -> None:
        if not shutil.which("java"):
            pytest.skip("no java: the Spark standalone cluster tests are not run")
        self.folder, self.workers = folder, workers
        self.home = Path(pyspark.__file__).parent
        self.port, self.ui_port = free_port(), free_port()
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"spark://{LOOPBACK}:{self.port}"

    def _launch(self, name: str, *args: str) -> None:
        log = (self.folder / f"{name}.log").open("wb")
        env = {
            **os.environ,
            "SPARK_HOME": str(self.home),
            "SPARK_LOCAL_IP": LOOPBACK,
            "SPARK_LOG_DIR": str(self.folder),
        }
        self.processes.append(
            subprocess.Popen(
                [str(self.home / "bin" / "spark-class"), *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its executors join its process group: stopped with it
            )
        )
        log.close()

    def state(self) -> dict[str, object]:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{self.ui_port}/json/", timeout=5) as r:
            return dict(json.load(r))

    def start(self) -> SparkCluster:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._launch(
            "master",
            "org.apache.spark.deploy.master.Master",
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            "--webui-port",
            str(self.ui_port),
        )
        try:
            wait_until(self.state, "Spark master", ignore=(OSError, ValueError))
            for number in range(self.workers):
                work = self.folder / f"worker-{number}"
                work.mkdir(exist_ok=True)
                self._launch(
                    f"worker-{number}",
                    "org.apache.spark.deploy.worker.Worker",
                    "--host",
                    LOOPBACK,
                    "--cores",
                    "1",
                    "--memory",
                    "1g",
                    "--webui-port",
                    str(free_port()),
                    "--work-dir",
                    str(work),
                    self.url,
                )
            wait_until(
                lambda: self.state().get("aliveworkers") == self.workers,
                f"{self.workers} Spark workers registered",
                ignore=(OSError, ValueError),
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Workers first (SIGTERM to each one's process group: it, its executors and their
        Python workers), then the master; SIGKILL for whatever is still there after PATIENCE."""
        for process in reversed(self.processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=PATIENCE)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for process in self.processes:  # an executor that outlived its worker
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        self.processes.clear()
