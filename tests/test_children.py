"""A helper process ends with the process that started it, even when that one is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.waiting import PATIENCE, wait_until

PARENT = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", CHILD, str(os.getpid())])
print(child.pid, flush=True)
time.sleep(600)
"""
CHILD = """
import sys, time
from omnirec.children import die_with_parent
die_with_parent(int(sys.argv[1]))
time.sleep(600)
"""


def alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "State:\tZ" not in status.read_text()  # a zombie has exited
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_the_child_ends_when_its_parent_is_killed() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", f"CHILD = {CHILD!r}\n{PARENT}"], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    wait_until(lambda: alive(child), "the child started")
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(timeout=PATIENCE)
    wait_until(lambda: not alive(child), "the child gone with its parent", every=0.05)
