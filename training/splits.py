"""Splits that never leak the future: global time split, leave-last-out, and random per user."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from features import arrowkit
from omnirec.errors import DataError

PROTOCOLS = ("time", "next-basket", "last-days")
MICROS_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class EventSplit:
    """Train events strictly before `cutoff`, test events from it on (until `end`); per-customer
    protocols cut each customer at their own time (`cutoff` is then the earliest such cut)."""

    train: pa.Table
    test: pa.Table
    cutoff: datetime
    end: datetime
    protocol: str = "time"

    def describe(self) -> str:
        """A line for reports: what was held out."""
        if self.protocol == "next-basket":
            return "each customer's last basket held out"
        if self.protocol == "last-days":
            return "each customer's last days held out"
        return f"time split at {self.cutoff:%Y-%m-%d %H:%M}"


def split_events(events: pa.Table, protocol: str = "time", test_days: float = 7.0) -> EventSplit:
    """The split `protocol` names: 'time' (global cut-off `test_days` before the last event),
    'next-basket' (each customer's last basket) or 'last-days' (each customer's last
    `test_days`)."""
    if protocol == "next-basket":
        return last_basket_split(events)
    if protocol == "last-days":
        return last_days_split(events, test_days)
    if protocol == "time":
        return time_split(events, test_days)
    raise DataError("<events>", f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")


def time_split(
    events: pa.Table, test_days: float = 7.0, cutoff: datetime | None = None
) -> EventSplit:
    """Train on events before the cut-off (default: test_days before the last event), test after."""
    before, cut, last = time_cut(events, test_days, cutoff)
    return EventSplit(
        train=events.filter(before), test=events.filter(pc.invert(before)), cutoff=cut, end=last
    )


def time_cut(
    events: pa.Table, test_days: float = 7.0, cutoff: datetime | None = None
) -> tuple[pa.BooleanArray, datetime, datetime]:
    """Which events fall before the cut-off (default: `test_days` before the last event), the
    cut-off and the last event's time; a DataError when that leaves either side empty."""
    if events.num_rows == 0:
        raise DataError("<events>", "no events to split")
    stamps = events.column("timestamp")
    try:
        last = pc.max(stamps).as_py()
        cut = cutoff or last - timedelta(days=test_days)
    except (OverflowError, ValueError) as exc:  # a stamp past year 9999: validation refuses those
        raise DataError(
            "<events>", f"timestamps out of range ({exc}); validate the events first"
        ) from exc
    before = pc.less(stamps, pa.scalar(cut, type=stamps.type))
    if not pc.any(before).as_py() or pc.all(before).as_py():
        raise DataError("<events>", f"cut-off {cut.isoformat()} leaves an empty train or test part")
    return before, cut, last


def _last_of_each(
    events: pa.Table, event_types: tuple[str, ...]
) -> tuple[
    npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.int64]
]:
    """Customer codes, stamps, which rows are of `event_types`, and per customer code the row of
    their last such event (-1: none)."""
    customer = arrowkit.codes(arrowkit.as_dictionary(events.column("customer_id"))).astype(np.int64)
    stamps = np.asarray(events.column("timestamp").cast(pa.int64()).to_numpy(), dtype=np.int64)
    kinds = arrowkit.as_dictionary(events.column("event_type"))
    eligible = np.append(
        np.isin(np.asarray(kinds.dictionary.to_pylist(), dtype=object), event_types), False
    )
    is_target = eligible[arrowkit.codes(kinds)]
    order = np.lexsort((stamps, customer))
    target_rows = order[is_target[order]]
    last = np.full(int(customer.max(initial=-1)) + 1, -1, dtype=np.int64)
    last[customer[target_rows]] = target_rows  # later rows overwrite earlier ones
    return customer, stamps, is_target, last


def leave_last_out(
    events: pa.Table, event_types: tuple[str, ...] = ("purchase",)
) -> tuple[pa.Table, pa.Table]:
    """Each customer's last event of `event_types` is test; train keeps only what came before it."""
    customer, stamps, _, last = _last_of_each(events, event_types)
    test_rows = last[last >= 0]
    cutoff_per_row = np.full(len(customer), np.iinfo(np.int64).max)
    has = last[customer] >= 0
    cutoff_per_row[has] = stamps[last[customer[has]]]
    train_mask = stamps < cutoff_per_row
    return events.filter(pa.array(train_mask)), events.take(pa.array(np.sort(test_rows)))


def random_per_user(
    matrix: sp.csr_matrix, test_fraction: float = 0.25, seed: int = 42
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Per-customer random split of interactions (only for comparing with published numbers).

    Each row keeps round((1 - test_fraction) * n) of its n interactions in train, the rest in test.
    """
    csr = sp.csr_matrix(matrix)
    csr.sort_indices()
    rng = np.random.default_rng(seed)
    lengths = np.diff(csr.indptr)
    row_of = np.repeat(np.arange(csr.shape[0]), lengths)
    order = np.lexsort((rng.random(csr.nnz), row_of))
    position = np.empty(csr.nnz, dtype=np.int64)
    position[order] = np.arange(csr.nnz) - csr.indptr[row_of[order]]
    keep = np.round((1.0 - test_fraction) * lengths).astype(np.int64)
    in_train = position < keep[row_of]
    coo = csr.tocoo()

    def part(mask: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=csr.shape)

    return part(in_train), part(~in_train)


def _customer_cut(
    events: pa.Table, cut: np.ndarray, test_rows: np.ndarray, protocol: str
) -> EventSplit:
    """Train: each customer's events before their `cut` (int64 micros; max for no cut); test:
    `test_rows` (bool mask)."""
    if events.num_rows == 0:
        raise DataError("<events>", "no events to split")
    customer = arrowkit.codes(arrowkit.as_dictionary(events.column("customer_id")))
    stamps = np.asarray(events.column("timestamp").cast(pa.int64()).to_numpy(), dtype=np.int64)
    train_mask = stamps < cut[customer]
    train, test = events.filter(pa.array(train_mask)), events.filter(pa.array(test_rows))
    if train.num_rows == 0 or test.num_rows == 0:
        raise DataError("<events>", f"the {protocol} split leaves an empty train or test part")
    has_cut = cut < np.iinfo(np.int64).max
    first = int(cut[has_cut].min()) if has_cut.any() else int(stamps.max())
    as_time = events.column("timestamp").type
    return EventSplit(
        train=train,
        test=test,
        cutoff=pa.scalar(first, as_time).as_py(),
        end=pa.scalar(int(stamps.max()), as_time).as_py(),
        protocol=protocol,
    )


def last_basket_split(events: pa.Table, event_types: tuple[str, ...] = ("purchase",)) -> EventSplit:
    """Leave the last basket out (next-basket protocol): each customer's last basket of
    `event_types` (its session id, or its day when it has none) is test; train keeps that
    customer's events before the basket. Other customers' events stay (the next-basket literature's
    protocol: Li et al., TOIS 2023)."""
    customer, stamps, is_target, last = _last_of_each(events, event_types)
    sessions = arrowkit.codes(arrowkit.as_dictionary(events.column("session_id"))).astype(np.int64)
    basket = np.where(sessions >= 0, sessions, -1 - stamps // MICROS_PER_DAY)
    n_customers = len(last)
    has = last >= 0
    last_basket = np.where(has, basket[np.maximum(last, 0)], np.iinfo(np.int64).min)
    test_rows = is_target & (basket == last_basket[customer])
    cut = np.full(n_customers, np.iinfo(np.int64).max)
    np.minimum.at(cut, customer[test_rows], stamps[test_rows])
    return _customer_cut(events, cut, test_rows, "next-basket")


def last_days_split(events: pa.Table, test_days: float) -> EventSplit:
    """Each customer's last `test_days` (before their own last event) are test, the rest train."""
    customer = arrowkit.codes(arrowkit.as_dictionary(events.column("customer_id"))).astype(np.int64)
    stamps = np.asarray(events.column("timestamp").cast(pa.int64()).to_numpy(), dtype=np.int64)
    last = np.full(int(customer.max(initial=-1)) + 1, np.iinfo(np.int64).min)
    np.maximum.at(last, customer, stamps)
    cut = last - int(test_days * MICROS_PER_DAY)
    return _customer_cut(events, cut, stamps >= cut[customer], "last-days")
