"""Top-k selection over dense score blocks, with masks; no Python loop over items."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp


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
