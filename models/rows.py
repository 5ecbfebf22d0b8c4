"""Per-customer sparse matrices of a model (history, last purchases, counts, rhythms): rows taken
for some customers, rows emptied for erased ones, and stored as three arrays without pickle."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from omnirec.errors import ModelFormatError


def taken(
    matrix: sp.csr_matrix | None, rows: npt.NDArray[np.int64], n_cols: int, dtype: type
) -> sp.csr_matrix:
    """The rows `rows` of `matrix` (-1, or no matrix: an empty row), as `dtype`."""
    rows = np.asarray(rows, dtype=np.int64)
    if matrix is None or matrix.shape[0] == 0:
        return sp.csr_matrix((len(rows), n_cols), dtype=dtype)
    picked = sp.csr_matrix(matrix[np.where(rows >= 0, rows, 0)], dtype=dtype)
    if (rows < 0).any():
        picked = sp.csr_matrix(sp.diags((rows >= 0).astype(dtype)) @ picked, dtype=dtype)
        picked.eliminate_zeros()
    return picked


def emptied(matrix: sp.csr_matrix, rows: npt.NDArray[np.int64]) -> sp.csr_matrix:
    """`matrix` with `rows` emptied (same dtype, zeros dropped)."""
    keep = np.ones(matrix.shape[0], dtype=matrix.dtype)
    keep[rows] = 0
    out = sp.csr_matrix(sp.diags(keep) @ matrix, dtype=matrix.dtype)
    out.eliminate_zeros()
    return out


def as_arrays(name: str, matrix: sp.csr_matrix | None) -> dict[str, npt.NDArray[Any]]:
    """`matrix` as `<name>_data`, `<name>_indices`, `<name>_indptr` (nothing for None)."""
    if matrix is None:
        return {}
    return {
        f"{name}_data": matrix.data,
        f"{name}_indices": matrix.indices,
        f"{name}_indptr": matrix.indptr,
    }


def from_arrays(
    arrays: dict[str, npt.NDArray[Any]], name: str, shape: tuple[int, int]
) -> sp.csr_matrix | None:
    """The matrix `as_arrays` stored under `name` (None when the file has none); a malformed one
    is a ModelFormatError."""
    if f"{name}_indptr" not in arrays:
        return None
    try:
        return sp.csr_matrix(
            (arrays[f"{name}_data"], arrays[f"{name}_indices"], arrays[f"{name}_indptr"]),
            shape=shape,
        )
    except (ValueError, KeyError) as exc:
        raise ModelFormatError(f"{name} matrix is malformed: {exc}") from exc
