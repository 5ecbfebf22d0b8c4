"""Exact top-k of every row of a dense score block, compiled (numba, rows in parallel threads, the
GIL released): what publishing spends its time on after the matrix product.

Per row: the maximum of each run of 16 scores; the k-th largest of those maxima (found with a
histogram of them, exactly checked) is a threshold that at least k scores reach, so every score of
the top k is at or above it; only the runs whose maximum reaches it are read again, their scores
at or above it sorted (packed with their column into one integer: score order, then the lower
column first). About 2x faiss's heap selection in the same run (`./dev bench publish`).

Compiled when this module is imported (fixed types) and cached on disk; with nowhere to write, in
memory. Imported only where publishing needs it (numba's import is ~0.7 s)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from numba import njit, prange

RUN = 16  # scores per run whose maximum is kept
BINS = 512  # histogram of the run maxima, to find their k-th largest
SIGNATURE = "void(float32[:, ::1], int64, int64[:, ::1], float32[:, ::1])"
LOW_BITS = np.int64(0xFFFFFFFF)


def _top_rows(scores: npt.NDArray[np.float32], k: int, out_ids: npt.NDArray[np.int64],
              out_scores: npt.NDArray[np.float32]) -> None:  # fmt: skip
    """Fill out_ids / out_scores (m, k) with each row's k best columns and scores, best first
    (ties: the lower column first), padded with -1 / -inf."""
    m, n = scores.shape
    runs = (n + RUN - 1) // RUN
    for r in prange(m):
        row = scores[r]
        maxima = np.empty(runs, np.float32)
        for b in range(runs):
            top = row[b * RUN]
            for j in range(b * RUN + 1, min(b * RUN + RUN, n)):
                top = max(top, row[j])
            maxima[b] = top
        threshold = -np.inf
        if k < runs:  # else every run is read
            low, high = maxima.min(), maxima.max()
            if high > low:
                counts = np.zeros(BINS + 1, np.int64)
                scale = BINS / (high - low)
                for b in range(runs):
                    counts[int((maxima[b] - low) * scale)] += 1
                reached, edge = 0, BINS
                while edge > 0:
                    reached += counts[edge]
                    if reached >= k:
                        break
                    edge -= 1
                threshold = low + edge / scale
                reached = 0
                for b in range(runs):
                    reached += maxima[b] >= threshold
                if reached < k:  # rounding at the bin's edge: read every run
                    threshold = -np.inf
        size = 0
        for b in range(runs):
            if maxima[b] >= threshold:
                size += RUN
        keys = np.empty(size, np.int64)
        found = 0
        for b in range(runs):
            if maxima[b] >= threshold:
                for j in range(b * RUN, min(b * RUN + RUN, n)):
                    value = row[j]
                    if value >= threshold:
                        bits = np.int64(np.float32(value).view(np.int32))
                        if bits < 0:  # negative floats order backwards as integers
                            bits = bits ^ 0x7FFFFFFF
                        keys[found] = (bits << 32) | (LOW_BITS - j)
                        found += 1
        keys = keys[:found]
        kept = min(k, found)
        if found > 2 * kept:
            keys = np.partition(keys, found - kept)[found - kept :]
        keys = np.sort(keys)
        for i in range(kept):
            col = LOW_BITS - (keys[keys.shape[0] - 1 - i] & LOW_BITS)
            out_ids[r, i] = col
            out_scores[r, i] = row[col]
        for i in range(kept, k):
            out_ids[r, i] = -1
            out_scores[r, i] = -np.inf


try:
    top_rows: Callable[..., None] = njit(SIGNATURE, cache=True, nogil=True, parallel=True)(
        _top_rows
    )
except RuntimeError:  # nowhere to keep the cache (a read-only file system): compiled in memory
    top_rows = njit(SIGNATURE, nogil=True, parallel=True)(_top_rows)


def dense_top_k(
    scores: npt.NDArray[np.float32], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """(ids, scores) of each row's k best columns, best first; scores (m, n), finite."""
    block = np.ascontiguousarray(scores, dtype=np.float32)
    ids = np.empty((block.shape[0], k), np.int64)
    best = np.empty((block.shape[0], k), np.float32)
    top_rows(block, k, ids, best)
    return ids, best
