"""Exact top-k of every row of a dense score block, compiled (numba, one thread, the GIL released:
`models.ann.exact_top` runs tiles of rows in threads): what publishing spends its time on after
the matrix product.

Per row: the row is cut into 16 consecutive slices of g = ceil(n / 16) scores and group j holds
the j-th score of every slice (columns j, j + g, j + 2g, ...); the maximum of each group is the
element-wise maximum of the 16 slices (contiguous, so it runs in SIMD: 4x the maxima of runs of 16
neighbours, which needed a horizontal maximum each). The k-th largest of those maxima (found with a
histogram of them, exactly checked) is a threshold that at least k scores reach, so every score of
the top k is at or above it; only the groups whose maximum reaches it are read again, their scores
at or above it sorted (packed with their column into one integer: score order, then the lower
column first). ~20 us a row of 20k scores on one core (runs of 16 neighbours' maxima: ~33).

Compiled when this module is imported (fixed types) and cached on disk; with nowhere to write, in
memory. Imported only where publishing needs it (numba's import and the cache: ~1 s)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from numba import njit

GROUP = 16  # scores per group whose maximum is kept (one from each slice of the row)
BINS = 512  # histogram of the group maxima, to find their k-th largest
SIGNATURE = "void(float32[:, ::1], int64, int64[:, ::1], float32[:, ::1])"
LOW_BITS = np.int64(0xFFFFFFFF)


def _top_rows(
    scores: npt.NDArray[np.float32],
    k: int,
    out_ids: npt.NDArray[np.int64],
    out_scores: npt.NDArray[np.float32],
) -> None:
    """Fill out_ids / out_scores (m, k) with each row's k best columns and scores, best first
    (ties: the lower column first), padded with -1 / -inf."""
    m, n = scores.shape
    width = (n + GROUP - 1) // GROUP  # scores per slice = groups per row
    for r in range(m):
        row = scores[r]
        row_bits = row.view(np.int32)  # the same scores' bits, for the packed sort keys
        maxima = row[:width].copy()
        for j in range(1, GROUP):  # element-wise over the next slice (the last may be short)
            stop = max(0, min(width, n - j * width))
            part, head = row[j * width : j * width + stop], maxima[:stop]  # views: vectorised
            for g in range(stop):
                if part[g] > head[g]:
                    head[g] = part[g]
        threshold = -np.inf
        if k < width:  # else every group is read
            low, high = maxima.min(), maxima.max()
            if high > low:
                counts = np.zeros(BINS + 1, np.int64)
                scale = BINS / (high - low)
                for g in range(width):
                    counts[int((maxima[g] - low) * scale)] += 1
                reached, edge = 0, BINS
                while edge > 0:
                    reached += counts[edge]
                    if reached >= k:
                        break
                    edge -= 1
                threshold = low + edge / scale
                reached = 0
                for g in range(width):
                    reached += maxima[g] >= threshold
                if reached < k:  # rounding at the bin's edge: read every group
                    threshold = -np.inf
        selected = np.empty(width, np.int64)  # the groups whose maximum reaches the threshold
        count = 0
        for g in range(width):
            if maxima[g] >= threshold:
                selected[count] = g
                count += 1
        keys = np.empty(count * GROUP, np.int64)
        found = 0
        for j in range(GROUP):  # slice by slice, the selected columns in order (cache lines)
            base = j * width
            for i in range(count):
                col = base + selected[i]
                if col >= n:  # the last slice is short
                    break
                # written always, kept when it reaches the threshold (no branch to mispredict)
                bits = np.int64(row_bits[col])
                bits ^= (bits >> 63) & 0x7FFFFFFF  # negative floats order backwards as integers
                keys[found] = (bits << 32) | (LOW_BITS - col)
                found += row[col] >= threshold
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
    top_rows: Callable[..., None] = njit(SIGNATURE, cache=True, nogil=True)(_top_rows)
except RuntimeError:  # nowhere to keep the cache (a read-only file system): compiled in memory
    top_rows = njit(SIGNATURE, nogil=True)(_top_rows)


def dense_top_k(
    scores: npt.NDArray[np.float32], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """(ids, scores) of each row's k best columns, best first; scores (m, n), finite."""
    block = np.ascontiguousarray(scores, dtype=np.float32)
    ids = np.empty((block.shape[0], k), np.int64)
    best = np.empty((block.shape[0], k), np.float32)
    top_rows(block, k, ids, best)
    return ids, best
