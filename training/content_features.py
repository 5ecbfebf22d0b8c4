"""What the catalogue says about each item, as a sparse matrix over the model's item columns: its
category, brand, price band (a tenth of the catalogue's log prices each) and the words of its name
(each word weighted down by how many items share it). `models.content` places items without
events by it."""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import scipy.sparse as sp

PRICE_BANDS = 10
WORD = re.compile(r"[a-z0-9]{3,}")


def item_content(catalogue: pa.Table, item_ids: npt.NDArray[np.str_]) -> sp.csr_matrix:
    """(len(item_ids), features) rows of category, brand, price band and name words (items the
    catalogue does not list: empty rows)."""
    table = catalogue.to_pydict()
    at = {str(i): k for k, i in enumerate(table["item_id"])}
    rows = np.array([at.get(i, -1) for i in item_ids.tolist()], dtype=np.int64)
    listed = np.flatnonzero(rows >= 0)
    blocks: list[sp.csr_matrix] = []
    for name, weight in (("category", 1.0), ("brand", 1.0)):
        if name in table:
            values = [str(table[name][rows[k]] or "") for k in listed]
            blocks.append(_one_hot(values, listed, len(item_ids), weight))
    if "price" in table:
        prices = np.array([table["price"][rows[k]] or np.nan for k in listed], dtype=np.float64)
        bands = np.full(len(listed), "", dtype=object)
        ok = np.isfinite(prices) & (prices > 0)
        if ok.any():
            edges = np.quantile(np.log(prices[ok]), np.linspace(0, 1, PRICE_BANDS + 1)[1:-1])
            bands[ok] = [f"band{b}" for b in np.searchsorted(edges, np.log(prices[ok]))]
        blocks.append(_one_hot(bands.tolist(), listed, len(item_ids), 0.5))
    if "name" in table:
        blocks.append(
            _words([str(table["name"][rows[k]] or "") for k in listed], listed, len(item_ids))
        )
    if not blocks:
        return sp.csr_matrix((len(item_ids), 0), dtype=np.float32)
    return sp.csr_matrix(sp.hstack(blocks), dtype=np.float32)


def _one_hot(
    values: list[str], rows: npt.NDArray[np.int64], n: int, weight: float
) -> sp.csr_matrix:
    codes, uniques = _codes(values)
    keep = np.array([v != "" for v in values], dtype=bool)
    return sp.csr_matrix(
        (np.full(int(keep.sum()), weight, np.float32), (rows[keep], codes[keep])),
        shape=(n, len(uniques)),
    )


def _words(names: list[str], rows: npt.NDArray[np.int64], n: int) -> sp.csr_matrix:
    """Name words, each weighted by 1 / sqrt(items sharing it) and 1 / sqrt(words in the name)."""
    vocabulary: dict[str, int] = {}
    r: list[int] = []
    c: list[int] = []
    for k, name in zip(rows.tolist(), names, strict=True):
        for word in set(WORD.findall(name.lower())):
            r.append(k)
            c.append(vocabulary.setdefault(word, len(vocabulary)))
    if not r:
        return sp.csr_matrix((n, 0), dtype=np.float32)
    matrix = sp.csr_matrix(
        (np.ones(len(r), np.float32), (np.array(r), np.array(c))), shape=(n, len(vocabulary))
    )
    shared = np.asarray(matrix.sum(axis=0)).ravel()
    per_name = np.asarray(matrix.sum(axis=1)).ravel()
    scaled = sp.diags(1.0 / np.sqrt(np.maximum(per_name, 1.0))) @ matrix
    return sp.csr_matrix(
        scaled @ sp.diags(1.0 / np.sqrt(np.maximum(shared, 1.0))), dtype=np.float32
    )


def _codes(values: list[str]) -> tuple[npt.NDArray[np.int64], list[str]]:
    uniques = sorted(set(values))
    index = {v: i for i, v in enumerate(uniques)}
    return np.array([index[v] for v in values], dtype=np.int64), uniques
