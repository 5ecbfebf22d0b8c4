"""Events to a weighted customer x item CSR matrix, with the id maps both ways."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import scipy.sparse as sp

from features import arrowkit
from omnirec.interaction_data import Interactions, Occasions
from omnirec.settings import InteractionSettings

MICROS_PER_DAY = 86_400_000_000


def _encode(
    column: pa.ChunkedArray | pa.Array,
    vocabulary: npt.NDArray[np.str_] | None,
    event_rows: npt.NDArray[np.bool_] | None = None,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.str_]]:
    """Row codes and the ids they index (those of `event_rows` when given); with a vocabulary,
    unknown ids get -1."""
    values = arrowkit.as_dictionary(column)
    row_codes = arrowkit.codes(values).astype(np.int64)
    dictionary = np.asarray(values.dictionary.to_numpy(zero_copy_only=False)).astype(str)
    if vocabulary is not None:
        lookup = {v: i for i, v in enumerate(vocabulary.tolist())}
        remap = np.array([lookup.get(v, -1) for v in dictionary.tolist()], dtype=np.int32)
        return np.append(remap, -1)[row_codes], vocabulary
    counted = row_codes if event_rows is None else row_codes[event_rows]
    used = np.bincount(counted[counted >= 0], minlength=len(dictionary)) > 0
    kept = np.flatnonzero(used)
    remap = np.full(len(dictionary) + 1, -1, dtype=np.int32)  # int32: half the memory per event
    order = np.argsort(dictionary[kept], kind="stable")  # ids sorted: stable across runs
    remap[kept[order]] = np.arange(len(kept), dtype=np.int32)
    return remap[row_codes], dictionary[kept[order]]


def _lookup(
    column: pa.ChunkedArray | pa.Array, weights: dict[str, float], default: float
) -> npt.NDArray[np.float64]:
    values = arrowkit.as_dictionary(column)
    table = np.array([weights.get(v, default) for v in values.dictionary.to_pylist()] + [default])
    return np.asarray(table[arrowkit.codes(values)], dtype=np.float64)


def _is(column: pa.ChunkedArray | pa.Array, name: str) -> npt.NDArray[np.bool_]:
    values = arrowkit.as_dictionary(column)
    flags = np.array([v == name for v in values.dictionary.to_pylist()] + [False])
    return np.asarray(flags[arrowkit.codes(values)], dtype=bool)


def build_interactions(
    events: pa.Table,
    settings: InteractionSettings | None = None,
    *,
    now: datetime | None = None,
    customer_ids: npt.NDArray[np.str_] | None = None,
    item_ids: npt.NDArray[np.str_] | None = None,
    event_rows: npt.NDArray[np.bool_] | None = None,
    extra_items: npt.NDArray[np.str_] | None = None,
) -> Interactions:
    """Weighted interactions from canonical events.

    Weight of an event = event-type weight x channel weight (x quantity for purchases)
    x 0.5 ** (age / half-life) when decay is on. A return cancels its purchase: a customer's
    purchases of an item count in proportion to the units they kept. Passing `customer_ids` or
    `item_ids` fixes the rows/columns (events with other ids are left out), as a test split needs;
    `event_rows` (a mask over the events) gives what `events.filter(event_rows)` would, without
    copying the table (a time split's train part on events that barely fit in memory);
    `extra_items` (the catalogue's) are columns too, empty where no event names them (a model
    places them by their metadata: `models.content`).
    Returns an Interactions whose matrix has shape (customers, items) with non-negative float32s.
    """
    settings = settings or InteractionSettings()
    rows, customers = _encode(events.column("customer_id"), customer_ids, event_rows)
    cols, items = _encode(events.column("item_id"), item_ids, event_rows)
    if extra_items is not None and item_ids is None:
        items = np.union1d(items, np.asarray(extra_items, dtype=str))
        cols, items = _encode(events.column("item_id"), items, event_rows)
    keep = (rows >= 0) & (cols >= 0)
    if event_rows is not None:
        keep &= event_rows

    weight = _lookup(events.column("event_type"), settings.event_weights, 0.0)
    weight *= _lookup(events.column("channel"), settings.channel_weights, 1.0)
    quantities = np.asarray(events.column("quantity").to_numpy())

    def units(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
        return np.maximum(quantities[mask].astype(np.float64), 1.0)

    if settings.decay_half_life_days > 0:
        stamps = np.asarray(events.column("timestamp").cast(pa.int64()).to_numpy(), dtype=np.int64)
        if now is not None:
            reference: npt.NDArray[np.int64] | int = int(now.timestamp() * 1e6)
        elif settings.decay_reference == "customer":  # each customer's own last event
            last = np.full(len(customers), np.iinfo(np.int64).min)
            np.maximum.at(last, rows[keep], stamps[keep])
            reference = np.where(rows >= 0, last[np.maximum(rows, 0)], stamps)
        else:
            reference = int((stamps if event_rows is None else stamps[event_rows]).max(initial=0))
        age_days = np.maximum(reference - stamps, 0) / MICROS_PER_DAY
        weight *= np.power(0.5, age_days / settings.decay_half_life_days)

    purchase = _is(events.column("event_type"), "purchase") & keep
    returned = _is(events.column("event_type"), "return") & keep
    other = keep & ~purchase & ~returned
    shape = (len(customers), len(items))

    def matrix(mask: npt.NDArray[np.bool_], data: npt.NDArray[np.float64]) -> sp.csr_matrix:
        """The masked events' `data` (one value per masked event) summed per customer x item."""
        return sp.csr_matrix((data, (rows[mask], cols[mask])), shape=shape, dtype=np.float64)

    # per-event arrays only where needed: at 100M events each full float64 array is 800 MB
    total = matrix(other, weight[other])
    if purchase.any():
        bought_units_each = units(purchase)
        bought = matrix(
            purchase, weight[purchase] * quantity_confidence(bought_units_each, settings)
        )
        bought_units = matrix(purchase, bought_units_each)
        del bought_units_each
        if returned.any():
            kept_units = bought_units - matrix(returned, units(returned))
            fraction = kept_units.multiply(bought_units.power(-1.0)).tocsr()
            fraction.data = np.clip(fraction.data, 0.0, 1.0)
            bought = bought.multiply(fraction).tocsr()
        total = total + bought
    total = sp.csr_matrix(total, dtype=np.float32)
    total.data = np.maximum(total.data, 0)
    total.eliminate_zeros()
    total.sort_indices()
    occasions = _occasions(events, rows, cols, purchase) if purchase.any() else None
    last_bought = times_bought = None
    if purchase.any():
        stamps = np.asarray(events.column("timestamp").cast(pa.int64()).to_numpy(), dtype=np.int64)
        _, last_bought, times_bought = kept_purchases(
            rows, cols, stamps // 1_000_000, quantities, purchase, returned, shape
        )
    return Interactions(
        matrix=total,
        customer_ids=customers,
        item_ids=items,
        occasions=occasions,
        last_bought=last_bought,
        times_bought=times_bought,
    )


def kept_purchases(
    rows: npt.NDArray[np.integer[Any]],
    cols: npt.NDArray[np.integer[Any]],
    at: npt.NDArray[np.int64],
    quantity: npt.NDArray[np.integer[Any]],
    bought: npt.NDArray[np.bool_],
    returned: npt.NDArray[np.bool_],
    shape: tuple[int, int],
) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """(units kept, epoch seconds of the last purchase, purchases) per customer x item, over
    the items a customer bought and did not return in full: what the show-again policy and the
    reasons ("bought 6 times") read at every door (this, the snapshot's features and Spark's
    `spark_interactions` agree)."""

    def summed(mask: npt.NDArray[np.bool_]) -> sp.csr_matrix:
        units = np.maximum(quantity[mask].astype(np.float64), 1.0)
        return sp.csr_matrix((units, (rows[mask], cols[mask])), shape=shape, dtype=np.float64)

    units = summed(bought)
    if returned.any():
        units = sp.csr_matrix(units - summed(returned))
        units.data = np.maximum(units.data, 0)
    units.eliminate_zeros()
    units.sort_indices()
    keys = rows[bought].astype(np.int64) * shape[1] + cols[bought]
    order = np.argsort(keys, kind="stable")
    keys, times = keys[order], at[bought][order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, np.diff(keys) != 0]) if len(keys) else np.zeros(0, int)
    last = np.maximum.reduceat(times, starts) if len(starts) else np.zeros(0)
    pair = keys[starts]
    at_matrix = sp.csr_matrix(
        (last, (pair // shape[1], pair % shape[1])), shape=shape, dtype=np.float64
    )
    kept = units > 0
    count = sp.csr_matrix(
        (np.diff(np.r_[starts, len(keys)]).astype(np.float32), (pair // shape[1], pair % shape[1])),
        shape=shape,
    )
    return (
        units,
        sp.csr_matrix(at_matrix.multiply(kept), dtype=np.float64),
        sp.csr_matrix(count.multiply(kept), dtype=np.float32),
    )


def quantity_confidence(
    units: npt.NDArray[np.float64], settings: InteractionSettings
) -> npt.NDArray[np.float64]:
    """How much a purchase of `units` counts: 1 + log(units) by default (Hu, Koren and Volinsky
    2008's log confidence: 1 unit = 1, 10 units = 3.3), or units capped at `max_quantity`."""
    if settings.quantity_scaling == "log":
        return 1.0 + np.log(np.maximum(units, 1.0))
    return np.minimum(units, settings.max_quantity)


def _occasions(
    events: pa.Table,
    rows: npt.NDArray[np.int32],
    cols: npt.NDArray[np.int32],
    purchase: npt.NDArray[np.bool_],
) -> Occasions:
    """One entry per (customer, item, basket) among the purchases (`purchase` rows), at the
    basket's first purchase of the item."""
    stamps = np.asarray(events.column("timestamp").cast(pa.int64()).to_numpy(), dtype=np.int64)
    day = stamps[purchase] // MICROS_PER_DAY
    sessions = arrowkit.as_dictionary(events.column("session_id"))
    basket = arrowkit.codes(sessions).astype(np.int64)[purchase]
    n_sessions = len(sessions.dictionary)
    # no session id: the purchases of one customer on one day are one basket
    basket = np.where(basket >= 0, basket, n_sessions + day - day.min(initial=0))
    row, col, at = rows[purchase], cols[purchase], stamps[purchase]
    order = np.lexsort((at, basket, col, row))  # an occasion is when its first purchase was
    row, col, at, basket = row[order], col[order], at[order], basket[order]
    first = np.r_[True, (np.diff(row) != 0) | (np.diff(col) != 0) | (np.diff(basket) != 0)]
    return Occasions(
        rows=row[first].astype(np.int64),
        cols=col[first].astype(np.int64),
        days=at[first] / MICROS_PER_DAY,
    )
