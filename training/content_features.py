"""What the catalogue tells training about the items: which are model columns before anyone bought
them (`listed_items`), the repurchase days configured for their category (`configured_days`), and
their metadata as a sparse matrix over the item columns (`item_content`: category, brand, price
band, a tenth of the catalogue's log prices each, and the words of the name, each weighted down by
how many items share it), by which `models.content` places the items without events."""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import scipy.sparse as sp

from omnirec.interaction_data import Interactions

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


def placeable(catalogue: pa.Table | None, data: Interactions) -> sp.csr_matrix | None:
    """The catalogue's metadata over the item columns, when there is a catalogue and an item
    without events to place by it."""
    if catalogue is None or (np.diff(data.matrix.tocsc().indptr) > 0).all():
        return None
    return item_content(catalogue, data.item_ids)


def listed_items(catalogue: pa.Table | None) -> npt.NDArray[np.str_] | None:
    """The catalogue's active items (all, without an `active` column): model columns even before
    anyone bought or viewed them."""
    if catalogue is None:
        return None
    ids = catalogue.column("item_id").cast(pa.string())
    if "active" in catalogue.column_names:
        ids = ids.filter(catalogue.column("active").fill_null(True))
    return np.asarray(ids.to_numpy(zero_copy_only=False)).astype(str)


def configured_days(
    catalogue: pa.Table | None, item_ids: npt.NDArray[np.str_], days_by_category: dict[str, float]
) -> npt.NDArray[np.float64] | None:
    """Per item column: the days OMNIREC_REPURCHASE_DAYS gives its category (NaN: none), read
    when training and stored with the version's show-again policy."""
    if not days_by_category or catalogue is None:
        return None
    by_item = dict(
        zip(
            catalogue.column("item_id").cast(pa.string()).to_pylist(),
            catalogue.column("category").cast(pa.string()).to_pylist(),
            strict=True,
        )
    )
    return np.array(
        [days_by_category.get(str(by_item.get(i)), np.nan) for i in item_ids.tolist()],
        dtype=np.float64,
    )
