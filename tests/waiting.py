"""How tests wait: on readiness and process events, with one generous limit.

A test may wait long on a busy machine, never fail early: every wait in the suite goes through
`wait_until` (or uses `PATIENCE` as its limit), so the limit is set in one place. The limit only
bounds a wait for something that is broken; a healthy run never comes near it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

# seconds; OMNIREC_TEST_PATIENCE raises (or lowers, to find a hang faster) every wait at once
PATIENCE = float(os.environ.get("OMNIREC_TEST_PATIENCE", "600"))


def wait_until(
    predicate: Callable[[], object],
    what: str,
    *,
    seconds: float = PATIENCE,
    every: float = 0.2,
    ignore: tuple[type[BaseException], ...] = (),
) -> None:
    """Poll `predicate` until it is truthy; after `seconds` fail, naming `what`.

    Exceptions in `ignore` count as "not yet" (a server that is not listening yet, say)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if predicate():
                return
        except ignore:
            pass
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not reached in {seconds:g} s")
        time.sleep(every)
