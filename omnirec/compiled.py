"""The one way the project compiles a kernel: numba's `njit`, nopython, the GIL released, cached
on disk beside the module (compiled in memory where there is nowhere to keep the cache, a
read-only file system). `omnirec compile-kernels` compiles every kernel once, at setup and when
the image is built, so no request or timed step pays for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])


def jit(signature: Any | None = None) -> Callable[[F], F]:
    """Compile a function (at once when `signature` is given, else on its first call); it is
    called as before, with the same arguments and results."""
    from numba import njit

    def compiled(function: F) -> F:
        try:
            return cast(F, njit(signature, cache=True, nogil=True)(function))
        except RuntimeError:  # a read-only file system: nowhere to keep the cache
            return cast(F, njit(signature, nogil=True)(function))

    return compiled
