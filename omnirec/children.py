"""Child processes that end with their parent: a worker's helper process must not outlive the
worker, even when the worker is killed with SIGKILL (no handler of its own runs then)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int) -> None:
    """Called in the child: the kernel sends it SIGTERM when `parent` dies (Linux; elsewhere a
    no-op). A parent already gone by now ends the child at once."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)
