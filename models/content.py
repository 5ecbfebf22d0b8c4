"""Items without events, placed by what the catalogue says about them (category, brand, price
band, words of the name): each such "cold" item is scored as a share of the scores of the known
items most like it, so it reaches the customers whose taste fits, and its similar items are its
own kind. One mapping for every model (factor, neighbourhood, repeat), fitted on plain arrays: the
metadata matrix is built by `training.content_features`."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from models.topk import top_k

NEIGHBOURS = 20  # known items a cold item borrows its scores from
COLD_SHARE = 0.5  # ... and the share of their (similarity-weighted) mean score it gets
BLOCK = 512  # cold items whose similarities are compared at once


def content_neighbours(
    content: sp.csr_matrix, known: npt.NDArray[np.bool_], k: int = NEIGHBOURS
) -> sp.csr_matrix:
    """(n_items, n_items): for each cold item (not `known`) its `k` most similar known items by
    cosine over `content` rows, weights summing to 1; empty rows for known items and for cold
    items that share nothing with any known one."""
    n = content.shape[0]
    unit = _l2_rows(content)
    known_cols = np.flatnonzero(known)
    cold = np.flatnonzero(~known)
    rows: list[npt.NDArray[np.int64]] = []
    cols: list[npt.NDArray[np.int64]] = []
    data: list[npt.NDArray[np.float32]] = []
    if len(known_cols) and len(cold):
        reference = unit[known_cols].T.tocsc()
        for start in range(0, len(cold), BLOCK):
            block = cold[start : start + BLOCK]
            sims = np.asarray((unit[block] @ reference).toarray(), dtype=np.float32)
            ids, best = top_k(sims, min(k, len(known_cols)))
            ok = (ids >= 0) & (best > 0)
            weight = np.where(ok, best, 0.0)
            total = weight.sum(axis=1, keepdims=True)
            weight = np.divide(weight, total, out=np.zeros_like(weight), where=total > 0)
            r, c = np.nonzero(ok)
            rows.append(block[r])
            cols.append(known_cols[ids[r, c]])
            data.append(weight[r, c].astype(np.float32))
    if not rows:
        return sp.csr_matrix((n, n), dtype=np.float32)
    return sp.csr_matrix(
        (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n, n),
        dtype=np.float32,
    )


def _l2_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    m = sp.csr_matrix(matrix, dtype=np.float32)
    size = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    return sp.csr_matrix(sp.diags(1.0 / np.where(size > 0, size, 1.0)) @ m, dtype=np.float32)
