"""What a feature snapshot holds, computed from a model and the events it was trained on:
the catalogue in the model's item order, popular lists, bought-together lists, stock bitmaps and
one feature record per customer (candidates scored by the model, history, recent activity).

Longer than our 400 lines on purpose: every part of a snapshot is computed here, from one
model and one data set, so that the local and the Spark publisher write the same one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from features import arrowkit
from features.encoding import ENCODER, EVENT_CODES, Catalogue, ItemList
from features.interactions import kept_purchases
from models.base import Recommender
from omnirec.progress import Progress
from omnirec.settings import Settings

RECENT_PER_CUSTOMER = 20
POPULAR_PER_GROUP = 500
TOGETHER_PER_ITEM = 20
CANDIDATE_BLOCK = 4096  # customers scored at once when publishing
SCORED_AHEAD = 2  # blocks scored ahead of the one being encoded and written (in a thread)


@dataclass(frozen=True)
class EventArrays:
    """Events as sorted numpy columns (by customer, then time)."""

    customers: npt.NDArray[np.str_]  # distinct customer ids
    indptr: npt.NDArray[np.int64]  # per customer start in the sorted arrays
    item_col: npt.NDArray[np.int32]  # model column, -1 when the model has no such item
    etype: npt.NDArray[np.uint8]
    channel: npt.NDArray[np.uint8]
    channels: list[str]
    at: npt.NDArray[np.int64]
    store: npt.NDArray[np.int16]
    stores: list[str]
    quantity: npt.NDArray[np.int32]


def _codes_in(column: pa.ChunkedArray | pa.Array, vocabulary: list[str]) -> npt.NDArray[np.int64]:
    """Each row's position in `vocabulary` (-1 for null or absent)."""
    values = arrowkit.as_dictionary(column)
    position = pc.index_in(
        values.dictionary.cast(pa.string()), value_set=pa.array(vocabulary, pa.string())
    )
    table = np.append(np.asarray(position.fill_null(-1).to_numpy(zero_copy_only=False)), -1)
    return np.asarray(table[arrowkit.codes(values)], dtype=np.int64)


def vocabulary(column: pa.ChunkedArray | pa.Array) -> list[str]:
    """The distinct non-null values of a column, sorted (channel and store codes index these)."""
    values = arrowkit.compact(arrowkit.as_dictionary(column))
    return sorted(str(v) for v in values.dictionary.to_pylist() if v is not None)


def event_arrays(
    events: pa.Table,
    model: Recommender,
    *,
    channels: list[str] | None = None,
    stores: list[str] | None = None,
) -> EventArrays:
    """The events as EventArrays; channel and store codes index `channels` and `stores` (by
    default the sorted values of these events: a part of the events passes the whole's)."""
    customer = arrowkit.compact(arrowkit.as_dictionary(events.column("customer_id")))
    cust_codes = arrowkit.codes(customer)
    item = arrowkit.as_dictionary(events.column("item_id"))
    item_map = np.append(
        model.columns_of([str(v) for v in item.dictionary.to_pylist()]), -1
    ).astype(np.int32)
    item_col = item_map[arrowkit.codes(item)]
    etype_dict = arrowkit.as_dictionary(events.column("event_type"))
    etype_map = np.array(
        [EVENT_CODES.get(str(v), 0) for v in etype_dict.dictionary.to_pylist()] + [0], np.uint8
    )
    channels = vocabulary(events.column("channel")) if channels is None else channels
    stores = vocabulary(events.column("store_id")) if stores is None else stores
    channel = _codes_in(events.column("channel"), channels)
    store = _codes_in(events.column("store_id"), stores)
    at = (
        np.asarray(events.column("timestamp").cast(pa.int64()).to_numpy(), dtype=np.int64)
        // 1_000_000
    )
    order = np.lexsort((at, cust_codes))
    counts = np.bincount(cust_codes, minlength=len(customer.dictionary))
    return EventArrays(
        customers=np.asarray(customer.dictionary.to_pylist(), dtype=str),
        indptr=np.r_[0, np.cumsum(counts)].astype(np.int64),
        item_col=item_col[order],
        etype=etype_map[arrowkit.codes(etype_dict)][order],
        channel=channel[order].astype(np.uint8),
        channels=channels,
        at=at[order],
        store=store[order].astype(np.int16),
        stores=stores,
        quantity=np.asarray(events.column("quantity").to_numpy(), dtype=np.int32)[order],
    )


def purchases(ev: EventArrays, n_items: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(kept units, last purchase time) per customer x item, purchases net of returns
    (`features.interactions.kept_purchases`, as the model's own copy)."""
    rows = np.repeat(np.arange(len(ev.customers)), np.diff(ev.indptr))
    ok = ev.item_col >= 0
    units, last_at, _ = kept_purchases(
        rows,
        ev.item_col,
        ev.at,
        ev.quantity,
        ok & (ev.etype == EVENT_CODES["purchase"]),
        ok & (ev.etype == EVENT_CODES["return"]),
        (len(ev.customers), n_items),
    )
    return units, last_at


def _top_per_row(
    matrix: sp.csr_matrix, k: int
) -> Iterator[tuple[int, npt.NDArray[np.int32], npt.NDArray[np.float32]]]:
    matrix = sp.csr_matrix(matrix)
    for r in range(matrix.shape[0]):
        lo, hi = matrix.indptr[r], matrix.indptr[r + 1]
        if lo == hi:
            continue
        data, cols = matrix.data[lo:hi], matrix.indices[lo:hi]
        best = np.argsort(-data, kind="stable")[:k]
        yield r, cols[best].astype(np.int32), data[best].astype(np.float32)


def _group_popularity(
    ev: EventArrays,
    group: npt.NDArray[np.integer],
    n_groups: int,
    n_items: int,
    weights: npt.NDArray[np.float64],
) -> sp.csr_matrix:
    ok = (ev.item_col >= 0) & (group >= 0) & (weights != 0)
    return sp.csr_matrix((weights[ok], (group[ok], ev.item_col[ok])), shape=(n_groups, n_items))


def _event_weights(ev: EventArrays, settings: Settings) -> npt.NDArray[np.float64]:
    by_code = np.zeros(len(EVENT_CODES))
    for name, code in EVENT_CODES.items():
        by_code[code] = settings.interactions.event_weights.get(name, 0.0)
    return by_code[ev.etype]


@dataclass(frozen=True)
class CategoryCodes:
    """Each item column's category as a code into `names` (sorted category names)."""

    names: npt.NDArray[np.str_]
    codes: npt.NDArray[np.int64]

    @classmethod
    def of(cls, catalogue: Catalogue) -> CategoryCodes:
        names, codes = np.unique(np.asarray(catalogue.categories, dtype=str), return_inverse=True)
        return cls(names, codes.astype(np.int64))


@dataclass(frozen=True)
class GroupPopularity:
    """Weighted events per channel x item and weighted purchases per store x item; rows follow
    `channels` and `stores`."""

    by_channel: sp.csr_matrix
    channels: list[str]
    by_store: sp.csr_matrix
    stores: list[str]

    @classmethod
    def of(cls, ev: EventArrays, n_items: int, settings: Settings) -> GroupPopularity:
        weights = _event_weights(ev, settings)
        purchase_w = np.where(ev.etype == EVENT_CODES["purchase"], weights, 0.0)
        return cls(
            _group_popularity(ev, ev.channel.astype(np.int64), len(ev.channels), n_items, weights),
            ev.channels,
            _group_popularity(ev, ev.store.astype(np.int64), len(ev.stores), n_items, purchase_w),
            ev.stores,
        )


def popular_lists(
    model: Recommender, groups: GroupPopularity, categories: CategoryCodes
) -> list[tuple[str, bytes]]:
    """Encoded popular lists: overall (the model's history), per channel (weighted events),
    per store (weighted purchases) and per category (overall within it)."""
    n_items = model.n_items
    lists: list[tuple[str, bytes]] = []
    overall = model.item_popularity()
    top = np.argsort(-overall, kind="stable")[:POPULAR_PER_GROUP]
    lists.append(("all", ENCODER.encode(ItemList.of(top, overall[top]))))
    for r, items, scores in _top_per_row(groups.by_channel, POPULAR_PER_GROUP):
        lists.append((f"channel:{groups.channels[r]}", ENCODER.encode(ItemList.of(items, scores))))
    for r, items, scores in _top_per_row(groups.by_store, POPULAR_PER_GROUP):
        lists.append((f"store:{groups.stores[r]}", ENCODER.encode(ItemList.of(items, scores))))
    by_category = sp.csr_matrix(
        (overall, (categories.codes, np.arange(n_items))), shape=(len(categories.names), n_items)
    )
    for r, items, scores in _top_per_row(by_category, POPULAR_PER_GROUP):
        lists.append(
            (f"category:{categories.names[r]}", ENCODER.encode(ItemList.of(items, scores)))
        )
    return lists


def bought_together(units: sp.csr_matrix, item_ids: list[str]) -> Iterator[tuple[str, bytes]]:
    """Per item, the items bought by the same customers (co-purchase, cosine-normalised)."""
    bought = sp.csr_matrix(units > 0, dtype=np.float32)
    co = sp.csr_matrix(bought.T @ bought)
    co.setdiag(0)
    co.eliminate_zeros()
    pop = np.asarray(bought.sum(axis=0)).ravel() + 1e-9
    co = sp.csr_matrix(sp.diags(1 / np.sqrt(pop)) @ co @ sp.diags(1 / np.sqrt(pop)))
    return (
        (item_ids[r], ENCODER.encode(ItemList.of(items, scores)))
        for r, items, scores in _top_per_row(co, TOGETHER_PER_ITEM)
    )


def catalogue_of(
    model: Recommender, table: pa.Table | None, channels: list[str], stores: list[str]
) -> Catalogue:
    """Names, categories, prices and active flags (from the catalogue `table`, when there is
    one) in the model's item order."""
    ids = [str(i) for i in model.item_ids.tolist()]
    names, cats, prices, active = (
        list(ids),
        ["unknown"] * len(ids),
        [0.0] * len(ids),
        [True] * len(ids),
    )
    if table is not None:
        cols = model.columns_of([str(v) for v in table.column("item_id").to_pylist()])
        for col, name, cat, price, act in zip(
            cols,
            table.column("name").to_pylist(),
            table.column("category").to_pylist(),
            table.column("price").to_pylist(),
            table.column("active").to_pylist(),
            strict=True,
        ):
            if col >= 0:
                names[col] = name or ids[col]
                cats[col] = cat or "unknown"
                prices[col] = float(price) if price is not None else 0.0
                active[col] = bool(act) if act is not None else True
    texts, numbers = _attributes(model, table)
    return Catalogue(
        item_ids=ids,
        names=names,
        categories=cats,
        prices=prices,
        active=active,
        channels=channels,
        stores=stores,
        texts=texts,
        numbers=numbers,
    )


CONTRACT_COLUMNS = frozenset({"item_id", "name", "category", "price", "active"})


def _attributes(
    model: Recommender, table: pa.Table | None
) -> tuple[dict[str, list[str]], dict[str, list[float]]]:
    """The catalogue's own columns in the model's item order: text ("" where unknown) and
    numbers (NaN where unknown)."""
    texts: dict[str, list[str]] = {}
    numbers: dict[str, list[float]] = {}
    if table is None:
        return texts, numbers
    cols = model.columns_of([str(v) for v in table.column("item_id").to_pylist()])
    found = cols >= 0
    for name in table.column_names:
        if name in CONTRACT_COLUMNS:
            continue
        column = table.column(name)
        if pa.types.is_string(column.type):
            values = np.full(model.n_items, "", dtype=object)
            raw = np.asarray(column.fill_null("").to_numpy(zero_copy_only=False), dtype=object)
            values[cols[found]] = raw[found]
            texts[name] = [str(v) for v in values.tolist()]
        elif pa.types.is_floating(column.type):
            numbers_of = np.full(model.n_items, np.nan)
            raw_numbers = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
            numbers_of[cols[found]] = raw_numbers[found]
            numbers[name] = numbers_of.tolist()
    return texts, numbers


def stock_bitmaps(stock: pa.Table | None, model: Recommender) -> Iterator[tuple[str, bytes]]:
    """(store id, bitmap over the model's item columns of what that store has in stock)."""
    if stock is None:
        return
    stores = arrowkit.as_dictionary(stock.column("store_id"))
    store_codes = arrowkit.codes(stores)
    cols = model.columns_of([str(v) for v in stock.column("item_id").to_pylist()])
    qty = np.asarray(stock.column("quantity").to_numpy(zero_copy_only=False))
    ok = (cols >= 0) & (qty > 0)
    for code, name in enumerate(stores.dictionary.to_pylist()):
        mask = np.zeros(model.n_items, dtype=bool)
        mask[cols[ok & (store_codes == code)]] = True
        yield str(name), np.packbits(mask).tobytes()


def customer_entries(
    model: Recommender,
    ev: EventArrays,
    last_bought: sp.csr_matrix,
    categories: CategoryCodes,
    n_candidates: int,
    progress: Progress | None = None,
) -> Iterator[tuple[str, bytes]]:
    """(customer id, encoded CustomerFeatures) per customer with events: the model's best
    `n_candidates` items, the training history, purchases, top categories and recent activity."""
    from features.customer_records import CustomerColumns, EventColumns, encode_block  # numba

    cat_codes, cat_names = categories.codes, categories.names
    customer_ids = ev.customers.tolist()
    rows = model.rows_of(customer_ids)
    history = model.history
    vectors = model.customer_vectors()
    n_cat = len(cat_names)
    per_customer = np.repeat(np.arange(len(ev.customers)), np.diff(ev.indptr))
    valid = ev.item_col >= 0
    cat_counts = sp.csr_matrix(
        (np.ones(valid.sum()), (per_customer[valid], cat_codes[ev.item_col[valid]])),
        shape=(len(ev.customers), max(1, n_cat)),
    )
    columns = CustomerColumns.of(
        ev.customers,
        history.indptr,
        history.indices,
        history.data,
        last_bought.indptr,
        last_bought.indices,
        last_bought.data,
        [str(name) for name in cat_names.tolist()],
    )
    events = EventColumns(ev.indptr, ev.item_col, ev.etype, ev.channel, ev.at, ev.store)
    block = CANDIDATE_BLOCK

    def block_records(start: int) -> tuple[bytes, list[int]]:
        """The records of the block from `start` (compiled: see features.customer_records)."""
        stop = min(start + block, len(ev.customers))
        block_rows = rows[start:stop]
        known = block_rows >= 0
        cand_ids = np.full((len(block_rows), n_candidates), -1, np.int64)
        cand_scores = np.zeros((len(block_rows), n_candidates), np.float32)
        if known.any():
            cand_ids[known], cand_scores[known] = model.candidates(block_rows[known], n_candidates)
        cat_block = cat_counts[start:stop].toarray()
        top_cats = np.argsort(-cat_block, axis=1)[:, :3]
        bought_in = np.take_along_axis(cat_block, top_cats, axis=1) > 0
        favourite = np.where(bought_in, top_cats, -1)
        block_vectors = None if vectors is None else vectors[np.maximum(block_rows, 0)]
        return encode_block(
            columns,
            events,
            start,
            stop,
            block_rows,
            block_vectors,
            cand_ids,
            cand_scores,
            favourite,
            RECENT_PER_CUSTOMER,
        )

    # the next blocks are scored and encoded in a thread (the selection and the encoding release
    # the GIL) while this one is written: SCORED_AHEAD of them, so that the scoring never waits
    starts = range(0, len(ev.customers), block)
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead: deque[Future[tuple[bytes, list[int]]]] = deque(
            pool.submit(block_records, start) for start in starts[:SCORED_AHEAD]
        )
        for position, start in enumerate(starts):
            records, offsets = ahead.popleft().result()
            if position + SCORED_AHEAD < len(starts):
                ahead.append(pool.submit(block_records, starts[position + SCORED_AHEAD]))
            stop = min(start + block, len(ev.customers))
            for customer, (lo, hi) in zip(customer_ids[start:stop], pairwise(offsets), strict=True):
                yield customer, records[lo:hi]
            if progress is not None:
                progress.update(stop - start)
