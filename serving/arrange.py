"""The merchandising pass over one answer's scored candidates, compiled (numba): boosts, a
stable sort, the diversity cap and the cut in one call of ~2 µs instead of a dozen numpy calls and
a Python loop (`./dev bench experiments`, the engine alone: a boost cost 10 µs an answer that way,
a filter + boosts + bury + diversity cap 19 µs; now 5 and 7 µs, the rest outside this pass).

Compiled when this module is imported (the types are fixed below) and cached on disk (beside the
module, else in the user's cache folder; the image compiles it at build), so no request waits for
the compiler; with nowhere to write, it is compiled in memory at import."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from numba import njit

NO_FACTORS = np.zeros(0, np.float32)  # no boosts: the scores as they come
NO_CODES = np.zeros(0, np.int64)  # no diversity cap


# the answer is written over the inputs and only its length and whether it is final come back:
# returning arrays costs each call two boxings (numba unpickles their types in Python), ~2.5 us
# of a request once the caches have gone cold between requests
SIGNATURE = "int64(int64[::1], float32[::1], float32[::1], int64[::1], int64, int64, int64)"
Arranged = tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], bool]


def _arrange(
    picked: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float32],
    factors: npt.NDArray[np.float32],
    codes: npt.NDArray[np.int64],
    max_items: int,
    top: int,
    limit: int,
) -> int:
    """Rewrites `picked` (item columns, best first) and `scores` so that their first `kept`
    entries are the first `limit` in the order the rules give, with their scores; returns
    2 * kept + (1 if that order is final else 0).

    factors (per item column; empty: none): the scores, shifted to start at 0 among the
    candidates, times the factor, reorder them (stable: ties keep their order); the scores
    returned are those products scaled to a peak of 1.
    codes (per item column; empty: no cap): in the top `top`, at most `max_items` per code; an
    item over the cap moves below the top, which the next items that fit fill. Final means the
    top is full (else the caller fills it from other candidates)."""
    n = picked.shape[0]
    values = scores.copy()
    order = np.arange(n)
    if factors.shape[0] > 0 and n > 0:
        floor = scores.min()
        for p in range(n):
            values[p] = (scores[p] - floor) * factors[picked[p]]
        order = np.argsort(-values, kind="mergesort")
        peak = values[order[0]]
        for p in range(n):
            values[p] = values[p] / peak if peak > 0 else np.float32(1.0)
    settled = True
    if codes.shape[0] > 0:
        head = np.empty(n, np.int64)  # positions in `order`
        rest = np.empty(n, np.int64)
        head_codes = np.empty(n, np.int64)
        heads = rests = 0
        for p in range(n):
            code = codes[picked[order[p]]]
            same = 0
            for h in range(heads):
                if head_codes[h] == code:
                    same += 1
            if heads < top and same < max_items:
                head[heads] = order[p]
                head_codes[heads] = code
                heads += 1
            else:
                rest[rests] = order[p]
                rests += 1
            if heads == top and heads + rests >= limit:  # the answer is decided
                break
        settled = heads == top
        for h in range(heads):
            order[h] = head[h]
        for r in range(rests):
            order[heads + r] = rest[r]
    kept = min(limit, n)
    items = picked[order[:kept]]  # gathered before they are written over
    for p in range(kept):
        picked[p] = items[p]
        scores[p] = values[order[p]]
    return int(2 * kept + (1 if settled else 0))


try:
    _compiled: Callable[..., int] = njit(SIGNATURE, cache=True, nogil=True)(_arrange)
except RuntimeError:  # nowhere to keep the cache (a read-only file system): compiled in memory
    _compiled = njit(SIGNATURE, nogil=True)(_arrange)


def arrange(picked: npt.NDArray[np.int64], scores: npt.NDArray[np.float32], factors: npt.NDArray[np.float32],
            codes: npt.NDArray[np.int64], max_items: int, top: int, limit: int) -> Arranged:  # fmt: skip
    """(items, scores, final): see `_arrange`. `picked` and `scores` are rearranged in place when
    they are writable contiguous arrays of the kernel's types (else copies are), and the answer is
    their first entries."""
    try:  # no checks first: asking an array for its flags and dtype costs more than the pass
        packed = int(_compiled(picked, scores, factors, codes, max_items, top, limit))
    except TypeError:  # read-only, strided or of other types: no compiled version takes them
        picked, scores = np.array(picked, np.int64), np.array(scores, np.float32)
        packed = int(_compiled(picked, scores, factors, codes, max_items, top, limit))
    kept = packed >> 1
    return picked[:kept], scores[:kept], bool(packed & 1)
