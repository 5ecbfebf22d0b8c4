"""`omnirec compile-kernels`: compile every numba kernel once (setup, the image build), so that
no request and no timed step pays for it."""

from __future__ import annotations

import argparse
import time

from cli.options import CommandSpec
from omnirec.settings import Settings


def compile_kernels() -> list[str]:
    """Compile (or load from numba's cache) every kernel of the project; returns their names."""
    import features.customer_records
    import serving.arrange
    from models.topk import selection

    selection()
    return [features.customer_records.__name__, "models.topk", serving.arrange.__name__]


def _run(args: argparse.Namespace, settings: Settings) -> int:
    started = time.perf_counter()
    names = compile_kernels()
    print(f"compiled {', '.join(names)} in {time.perf_counter() - started:.1f}s")
    return 0


COMMANDS = [
    CommandSpec(
        "compile-kernels",
        "compile the numba kernels once (setup and image build do it)",
        lambda p: None,
        _run,
    )
]
