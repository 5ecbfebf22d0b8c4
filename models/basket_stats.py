"""What a customer's baskets say about each item they bought: counts, recency in days and in
baskets, their own interval, per-customer basket habits; and each customer's baskets numbered from
the last, to hold the last ones out as labels. The features of the learned re-ranker (`ranked`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# per (customer, item) bought: the columns of PurchaseStats.pairs
PAIR_FEATURES = (
    "baskets_with_item",  # baskets (purchase days) that held the item
    "share_of_baskets",  # of the customer's baskets
    # occasions decayed from the customer's last basket, half-lives 14 / 45 / 365 days
    "decayed_14d",
    "decayed_45d",
    "decayed_365d",
    "in_last_basket",
    "in_last_3_baskets",
    "in_last_10_baskets",
    "decayed_10_baskets",  # occasions decayed by baskets since, half-life 10 baskets
    "days_since_bought",  # from the customer's last basket
    "own_interval_days",  # the customer's mean days between purchases of it (NaN: bought once)
)
# per customer: the columns of PurchaseStats.per_row
ROW_FEATURES = ("baskets", "items_per_basket", "days_between_baskets")
# per item, from the repeat model: learned repeat rate, buyers (log), repurchase cycle
ITEM_FEATURES = ("repeat_rate", "log_buyers", "cycle_days")
# per candidate: the base model's score, its rank among the candidates, the own decayed part
CANDIDATE_FEATURES = (
    "base_score",
    "base_rank",
    "own_decayed",
    *PAIR_FEATURES,
    "days_since_over_cycle",
    "days_since_over_own_interval",
    *ITEM_FEATURES,
    *ROW_FEATURES,
)


@dataclass(frozen=True)
class PurchaseStats:
    """Pair statistics for every (customer row, item column) bought, sorted by row then column."""

    keys: npt.NDArray[np.int64]  # (pairs,) row * n_items + column, ascending
    pairs: npt.NDArray[np.float32]  # (pairs, len(PAIR_FEATURES))
    per_row: npt.NDArray[np.float32]  # (rows, len(ROW_FEATURES))
    n_items: int

    def lookup(
        self, rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        """(len(rows), len(PAIR_FEATURES)) for each (row, column); zeros (NaN for the day
        features) where the customer never bought the item."""
        out = np.zeros((len(rows), len(PAIR_FEATURES)), np.float32)
        out[:, PAIR_FEATURES.index("days_since_bought") :] = np.nan
        if len(self.keys) == 0 or len(rows) == 0:
            return out
        wanted = rows.astype(np.int64) * self.n_items + cols
        at = np.minimum(np.searchsorted(self.keys, wanted), len(self.keys) - 1)
        found = self.keys[at] == wanted
        out[found] = self.pairs[at[found]]
        return out


def visit_rank(rows: npt.NDArray[np.int64], days: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Per occasion: how many of its customer's purchase days came after it (0: the last)."""
    day = np.floor(days).astype(np.int64)
    if len(rows) == 0:
        return np.zeros(0, np.int64)
    width = int(day.max() - day.min()) + 1
    visit = rows * width + (day - day.min())
    unique, inverse = np.unique(visit, return_inverse=True)
    visit_row = unique // width
    # within each row, unique visits ascend by day: rank from the end = visits after it
    last_of_row = np.searchsorted(visit_row, visit_row, side="right") - 1
    rank = last_of_row - np.arange(len(unique))
    return rank[inverse].astype(np.int64)


def purchase_stats(
    rows: npt.NDArray[np.int64],
    cols: npt.NDArray[np.int64],
    days: npt.NDArray[np.float64],
    shape: tuple[int, int],
    rank: npt.NDArray[np.int64] | None = None,
) -> PurchaseStats:
    """The statistics of the occasions (one per customer, item, basket) of customers `shape[0]`
    over items `shape[1]`; vectorised (one sort). `rank`: the occasions' `visit_rank`, when the
    caller has it."""
    n_rows, n_items = shape
    rank = visit_rank(rows, days) if rank is None else rank
    last = np.full(n_rows, -np.inf)
    np.maximum.at(last, rows, days)
    first = np.full(n_rows, np.inf)
    np.minimum.at(first, rows, days)
    baskets = np.zeros(n_rows)
    np.maximum.at(baskets, rows, rank + 1.0)  # the first basket's rank + 1
    keys = rows.astype(np.int64) * n_items + cols
    order = np.argsort(keys, kind="stable")
    keys, rank, d, r = keys[order], rank[order], days[order], rows[order]
    starts = np.flatnonzero(np.r_[True, np.diff(keys) != 0])
    age = last[r] - d

    def total(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.add.reduceat(values, starts) if len(starts) else np.zeros(0)

    count = total(np.ones(len(keys)))
    pair_row = r[starts]
    last_day = np.maximum.reduceat(d, starts) if len(starts) else np.zeros(0)
    first_day = np.minimum.reduceat(d, starts) if len(starts) else np.zeros(0)
    own_interval = np.where(count > 1, (last_day - first_day) / np.maximum(count - 1, 1), np.nan)
    pairs = np.column_stack(
        [
            count,
            count / np.maximum(baskets[pair_row], 1.0),
            total(0.5 ** (age / 14.0)),
            total(0.5 ** (age / 45.0)),
            total(0.5 ** (age / 365.0)),
            total((rank < 1).astype(np.float64)),
            total((rank < 3).astype(np.float64)),
            total((rank < 10).astype(np.float64)),
            total(0.5 ** (rank / 10.0)),
            last[pair_row] - last_day,
            own_interval,
        ]
    ).astype(np.float32)
    occasions = np.bincount(rows, minlength=n_rows).astype(np.float64)
    span = np.where(baskets > 1, (last - first) / np.maximum(baskets - 1, 1), np.nan)
    per_row = np.column_stack([baskets, occasions / np.maximum(baskets, 1.0), span])
    return PurchaseStats(keys[starts], pairs, per_row.astype(np.float32), n_items)


def candidate_features(
    stats: PurchaseStats,
    rows: npt.NDArray[np.int64],
    cols: npt.NDArray[np.int64],
    base_score: npt.NDArray[np.float32],
    base_rank: npt.NDArray[np.float32],
    own: npt.NDArray[np.float32],
    per_item: npt.NDArray[np.float32],
) -> npt.NDArray[np.float32]:
    """(candidates, len(CANDIDATE_FEATURES)) for candidate (row, column) pairs; `per_item` is
    (n_items, len(ITEM_FEATURES))."""
    pair = stats.lookup(rows, cols)
    since = pair[:, PAIR_FEATURES.index("days_since_bought")]
    interval = pair[:, PAIR_FEATURES.index("own_interval_days")]
    item = per_item[cols]
    with np.errstate(divide="ignore", invalid="ignore"):
        over_cycle = since / np.maximum(item[:, ITEM_FEATURES.index("cycle_days")], 0.5)
        over_own = since / np.maximum(interval, 0.5)
    return np.column_stack(
        [base_score, base_rank, own, pair, over_cycle, over_own, item, stats.per_row[rows]]
    ).astype(np.float32)
