"""Does the show-again window predict when customers buy again? Each customer's last basket is
held out; for every item they had bought before it, the days since their last purchase of it are
set against the item's learned cycle, and the table shows how often the held-out basket holds the
item again, by that ratio, and for the items the policy calls due and not yet due.

`./dev bench repurchase` prints it for a data folder (Complete Journey by default)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from features.interactions import build_interactions
from models.repeat import RepeatExploreRecommender
from models.show_again import SECONDS_PER_DAY
from omnirec.interaction_data import Interactions
from training.splits import last_basket_split

RATIO_EDGES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, np.inf)


@dataclass(frozen=True)
class TimingRow:
    """One line of the table: the pairs in a bucket and the share bought again."""

    label: str
    pairs: int
    rebought: int

    @property
    def rate(self) -> float:
        return self.rebought / self.pairs if self.pairs else 0.0


@dataclass(frozen=True)
class TimingTable:
    """Rebuy rates by days since purchase / cycle, and due against not due."""

    by_ratio: list[TimingRow]
    by_policy: list[TimingRow]
    customers: int

    def markdown(self) -> str:
        def rows(title: str, lines: list[TimingRow]) -> list[str]:
            out = [f"| {title} | pairs | bought again in the held-out basket |", "|---|---|---|"]
            out += [f"| {r.label} | {r.pairs:,} | {r.rate:.2%} |" for r in lines]
            return out

        return "\n".join(
            [
                f"{self.customers:,} customers, each one's last basket held out",
                "",
                *rows("days since last purchase / item cycle", self.by_ratio),
                "",
                *rows("show-again policy at the basket", self.by_policy),
            ]
        )


def timing_table(events: pa.Table, model: RepeatExploreRecommender | None = None) -> TimingTable:
    """The table for canonical `events` (the repeat model is fitted on the train part unless
    given, fitted on it)."""
    split = last_basket_split(events)
    train = build_interactions(split.train)
    if model is None:
        model = RepeatExploreRecommender()
        model.fit(train)
    bought = train.last_bought
    if bought is None:
        return TimingTable([], [], 0)
    test = build_interactions(split.test, customer_ids=train.customer_ids, item_ids=train.item_ids)
    at = _basket_time(split.test, train)
    rows = np.repeat(np.arange(bought.shape[0]), np.diff(bought.indptr))
    cols = bought.indices.astype(np.int64)
    has_basket = np.isfinite(at[rows])
    rows, cols, last = rows[has_basket], cols[has_basket], bought.data[has_basket]
    again = np.asarray(sp.csr_matrix(test.matrix > 0)[rows, cols]).ravel().astype(bool)
    age_days = (at[rows] - last) / SECONDS_PER_DAY
    ratio = age_days / np.maximum(model.cycle_days[cols], 0.5)
    by_ratio = []
    for low, high in pairwise(RATIO_EDGES):
        inside = (ratio >= low) & (ratio < high)
        label = f"{low:g} - {high:g}" if np.isfinite(high) else f">= {low:g}"
        by_ratio.append(TimingRow(label, int(inside.sum()), int(again[inside].sum())))
    own = model.own_window_days(rows.astype(np.int64), cols)
    window = np.where(np.isnan(own), model.window_days[cols], own)
    hidden = age_days < window
    never = np.isinf(window)
    mine = ~np.isnan(own)  # the customer's own rhythm decides
    by_policy = [
        TimingRow("due (shown again)", int((~hidden).sum()), int(again[~hidden].sum())),
        TimingRow(
            "  of which own rhythm known",
            int((~hidden & mine).sum()),
            int(again[~hidden & mine].sum()),
        ),
        TimingRow(
            "not yet due (hidden)",
            int((hidden & ~never).sum()),
            int(again[hidden & ~never].sum()),
        ),
        TimingRow("never again (hidden)", int(never.sum()), int(again[never].sum())),
    ]
    return TimingTable(by_ratio, by_policy, int(np.isfinite(at).sum()))


def _basket_time(test: pa.Table, train: Interactions) -> npt.NDArray[np.float64]:
    """Per training customer: epoch seconds of their held-out basket (inf: none)."""
    first = test.group_by("customer_id").aggregate([("timestamp", "min")])
    index = {c: i for i, c in enumerate(train.customer_ids.tolist())}
    at = np.full(len(train.customer_ids), np.inf)
    ids = first.column("customer_id").to_pylist()
    stamps = pc.cast(first.column("timestamp_min"), pa.int64()).to_numpy() / 1e6
    for customer, stamp in zip(ids, stamps, strict=True):
        row = index.get(str(customer))
        if row is not None:
            at[row] = stamp
    return at
