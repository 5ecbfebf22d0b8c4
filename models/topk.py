"""Top-k selection, in one place: `top_k` for small blocks (numpy's partial sort), and the exact
inner-product top-k of many queries for publishing, `exact_top`: tiles of queries in threads,
each a BLAS product and then the compiled selection of its rows (`dense_top_k`).

The compiled selection, per row: the row is cut into 16 consecutive slices of g = ceil(n / 16)
scores and group j holds the j-th score of every slice (columns j, j + g, j + 2g, ...); the
maximum of each group is the element-wise maximum of the 16 slices (contiguous, so it runs in
SIMD). The k-th largest of those maxima (found with a histogram of them, exactly checked) is a
threshold that at least k scores reach, so every score of the top k is at or above it; only the
groups whose maximum reaches it are read again, their scores at or above it sorted (packed with
their column into one integer: score order, then the lower column first). ~20 us a row of 20k
scores on one core. It is compiled on first use (numba's import and the cache: ~1 s), or ahead by
`omnirec compile-kernels`."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

from omnirec.compiled import jit

GROUP = 16  # scores per group whose maximum is kept (one from each slice of the row)
BINS = 512  # histogram of the group maxima, to find their k-th largest
SIGNATURE = "void(float32[:, ::1], int64, int64[:, ::1], float32[:, ::1])"
LOW_BITS = np.int64(0xFFFFFFFF)
EXACT_TILE_SCORES = 8_000_000  # most scores per product tile of the exact search (32 MB a thread)


def mask_rows(scores: npt.NDArray[np.float32], mask: sp.csr_matrix) -> None:
    """Set scores[r, c] = -inf wherever mask has an entry (in place)."""
    coo = mask.tocoo()
    scores[coo.row, coo.col] = -np.inf


def top_k(
    scores: npt.NDArray[np.float32], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Best k columns per row, best first; returns (ids, scores), padded with -1 / -inf.

    scores: (m, n_items). Columns scored -inf are never returned.
    """
    m, n = scores.shape
    k_eff = min(k, n)
    if k_eff == 0:
        return np.full((m, k), -1, np.int64), np.full((m, k), -np.inf, np.float32)
    part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    ids = np.take_along_axis(part, order, axis=1).astype(np.int64)
    best = np.take_along_axis(part_scores, order, axis=1).astype(np.float32)
    ids[~np.isfinite(best)] = -1
    if k_eff < k:
        ids = np.pad(ids, ((0, 0), (0, k - k_eff)), constant_values=-1)
        best = np.pad(best, ((0, 0), (0, k - k_eff)), constant_values=-np.inf)
    return ids, best


def dense_top_k(
    scores: npt.NDArray[np.float32], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """(ids, scores) of each row's k best columns, best first; scores (m, n), finite."""
    block = np.ascontiguousarray(scores, dtype=np.float32)
    ids = np.empty((block.shape[0], k), np.int64)
    best = np.empty((block.shape[0], k), np.float32)
    selection()(block, k, ids, best)
    return ids, best


def exact_top(
    vectors: npt.NDArray[np.float32], queries: npt.NDArray[np.float32], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Exact top-k by inner product. The queries are cut into tiles (up to 8M scores each, as
    many tiles as a multiple of the threads); one thread per core takes tile after tile: the
    tile's BLAS product (one BLAS thread) into the thread's own buffer, then the tile's compiled
    selection (`dense_top_k`). No phase waits for another's threads: every core multiplies
    or selects all the time. 20k items x 64, top 200, 2 cores: 85-97 % of the product alone's
    rate, 1.6-2.1x faiss's `knn` in the same runs (BLAS threads and selection threads taking turns
    on whole blocks of 800 rows, as before: ~35-40 %)."""
    top_rows = selection()
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    items = np.ascontiguousarray(vectors, dtype=np.float32).T
    threads = _threads()
    tiles = -(-len(queries) // max(16, EXACT_TILE_SCORES // max(1, items.shape[1])))
    tiles = -(-tiles // threads) * threads if tiles > 1 else 1
    rows = max(1, -(-len(queries) // tiles))
    ids = np.empty((len(queries), k), np.int64)
    scores = np.empty((len(queries), k), np.float32)
    buffers = threading.local()

    def select(start: int) -> None:
        tile = slice(start, start + rows)
        count = len(queries[tile])
        buffer = getattr(buffers, "scores", None)
        if buffer is None:
            buffer = buffers.scores = np.empty((rows, items.shape[1]), np.float32)
        product = np.matmul(queries[tile], items, out=buffer[:count])
        top_rows(product, k, ids[tile], scores[tile])

    starts = range(0, len(queries), rows)
    if len(starts) <= 1:  # one tile (a fold-in, a small call): here, BLAS as configured
        if len(starts):
            select(0)
        return ids, scores
    with _blas().limit(limits=1, user_api="blas"):
        list(_pool().map(select, starts))
    return ids, scores


@functools.cache
def _blas() -> ThreadpoolController:
    """The BLAS libraries loaded (numpy's among them), whose threads the tiles limit to one."""
    return ThreadpoolController()


@functools.cache
def _threads() -> int:
    """The cores this process may run on: the exact search's threads."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores or 1


@functools.cache
def _pool() -> ThreadPoolExecutor:
    """One thread per core, kept for the process's life (a forked child starts its own: the
    parent's threads do not exist there)."""
    return ThreadPoolExecutor(_threads(), thread_name_prefix="exact-top")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pool.cache_clear)


@functools.cache
def selection() -> Callable[..., None]:
    """The compiled selection of rows (compiled, or loaded from the cache, once a process)."""
    compiled: Callable[..., None] = jit(SIGNATURE)(_top_rows)
    return compiled


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
