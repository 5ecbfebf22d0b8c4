"""Whole-data commands give freed memory back to the operating system."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
import numpy as np, pyarrow as pa
from omnirec.memory import return_freed_memory

def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024

if sys.argv[1] == "on":
    assert return_freed_memory()
    assert pa.default_memory_pool().backend_name == "system"
big = np.ones(4_000_000)
del big  # 30 MiB freed: glibc raises its mmap threshold above the blocks below
blocks, kept = [], []
for _ in range(30):
    blocks.append(np.ones(2_000_000))  # 15 MiB each
    kept.append(np.ones(200))  # small arrays that stay, between them on the heap
held = rss()
del blocks
print(held, rss())
"""


def released(setting: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, setting], capture_output=True, text=True, check=True
    )
    held, after = map(int, out.stdout.split())
    return held - after


def test_freed_arrays_leave_the_process() -> None:
    # in a child: the settings are process-wide, and the measure is the process's own RSS
    # MiB: the 450 MiB of blocks went back. (With glibc's defaults they stayed in one run here
    # and went back in another: whether they do depends on where the small arrays land.)
    assert released("on") > 400
