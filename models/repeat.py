"""Repeat and explore for repeat-purchase retail, in the family of TIFU-KNN (Hu et al., SIGIR 2020).

A customer's own part is a time-decayed frequency vector over their purchase occasions (baskets),
decayed from that customer's own last purchase, weighted by how often each item is bought again
at all (a learned, shrunk repeat rate: coffee high, a television near zero). The explore part is
the mean vector of the customer's nearest customers (cosine over the same vectors). Both are
blended: `own_weight` x own + (1 - own_weight) x neighbours.

From the same occasions it learns, per item, the repurchase cycle (days between a customer's
purchases of it) and which items are almost never bought again (bought once by enough customers);
and per customer, for the items they bought at least OWN_MIN_PURCHASES times, their own rhythm:
the item is not due again for OWN_DUE_SHARE of their own mean interval. The show-again policy
(`models.show_again`, mode `when_due`) reads both. On Complete Journey the item's cycle does not
tell when a customer buys again (the shorter the time since, the likelier the rebuy, at every
ratio to the cycle), while a customer's own rhythm does: their rebuy rate rises from 4.8 % in the
first quarter of their interval to 8.0 % at half of it (`./dev bench repurchase`).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from models.base import InteractionData, Recommender, check_finite
from models.rows import as_arrays, emptied, from_arrays
from models.topk import top_k
from omnirec.errors import ModelFormatError

NEIGHBOUR_BLOCK = 256  # customers whose neighbours are searched at once (bounds the dense block)
MIN_INTERVALS = 5  # an item's own cycle needs this many repeat buyers; fewer: its shrunk mean
NEVER_AGAIN_RATE = 0.02  # fewer repeat buyers than this share: not suggested again once bought
OWN_MIN_PURCHASES = 3  # a customer's own rhythm for an item needs this many purchase occasions
OWN_DUE_SHARE = 0.25  # ... and the item is not due again for this share of their mean interval


class PurchaseOccasions(Protocol):
    """One entry per (customer row, item column, basket) with its day
    (`omnirec.interaction_data.Occasions`)."""

    @property
    def rows(self) -> npt.NDArray[np.int64]: ...

    @property
    def cols(self) -> npt.NDArray[np.int64]: ...

    @property
    def days(self) -> npt.NDArray[np.float64]: ...


class RepeatExploreRecommender(Recommender):
    """TIFU-KNN-style repeat + explore with learned repeat rates and repurchase cycles."""

    kind = "repeat"
    uses_history = True
    due_share = OWN_DUE_SHARE

    def __init__(
        self,
        half_life_days: float = 180.0,
        neighbours: int = 100,
        own_weight: float = 0.7,
        shrinkage: float = 5.0,
        min_buyers: int = 20,
        basket_prior: float = 0.0,
    ) -> None:
        super().__init__(
            half_life_days=half_life_days,
            neighbours=neighbours,
            own_weight=own_weight,
            shrinkage=shrinkage,
            min_buyers=min_buyers,
            basket_prior=basket_prior,
        )
        self.baskets: npt.NDArray[np.float32] = np.zeros(0, np.float32)
        self.repeat_rate: npt.NDArray[np.float32] = np.zeros(0, np.float32)
        self.cycle_days: npt.NDArray[np.float32] = np.zeros(0, np.float32)
        self.window_days: npt.NDArray[np.float32] = np.zeros(0, np.float32)
        self.own_window: sp.csr_matrix = sp.csr_matrix((0, 0), dtype=np.float32)
        self._unit: sp.csr_matrix | None = None

    # ----------------------------------------------------------------- fitting
    def fit(self, interactions: InteractionData) -> RepeatExploreRecommender:
        """Fit on the purchase occasions when the data carries them (else each non-zero of the
        matrix is one occasion, undated)."""
        super().fit(interactions)
        occasions: PurchaseOccasions | None = getattr(interactions, "occasions", None)
        matrix = self.history
        if occasions is None or len(occasions.rows) == 0:
            coo = matrix.tocoo()
            rows, cols = coo.row.astype(np.int64), coo.col.astype(np.int64)
            days = np.zeros(len(rows))
        else:
            rows, cols, days = occasions.rows, occasions.cols, occasions.days
        self.history = self._own_vectors(rows, cols, days, matrix.shape)
        self._learn_cycles(rows, cols, days, matrix.shape[1])
        visits = np.unique(rows * 1_000_000 + np.floor(days).astype(np.int64))  # customer-days
        self.baskets = np.bincount(visits // 1_000_000, minlength=matrix.shape[0]).astype(
            np.float32
        )
        self._unit = None
        return self

    def _fit(self, matrix: sp.csr_matrix) -> None:
        """Everything is learned from the occasions in `fit`."""

    def _own_vectors(
        self,
        rows: npt.NDArray[np.int64],
        cols: npt.NDArray[np.int64],
        days: npt.NDArray[np.float64],
        shape: tuple[int, int],
    ) -> sp.csr_matrix:
        """Occasions decayed from each customer's own last one, scaled to a maximum of 1 per row."""
        last = np.full(shape[0], -np.inf)
        np.maximum.at(last, rows, days)
        weight = np.power(0.5, (last[rows] - days) / float(self.params["half_life_days"]))
        own = _rows_scaled(sp.csr_matrix((weight, (rows, cols)), shape=shape), "max")
        own.sort_indices()
        return own

    def _learn_cycles(
        self,
        rows: npt.NDArray[np.int64],
        cols: npt.NDArray[np.int64],
        days: npt.NDArray[np.float64],
        n_items: int,
    ) -> None:
        """Repeat rate, cycle and not-due window per item from each buyer's occasions."""
        order = np.lexsort((days, cols, rows))
        r, c, d = rows[order], cols[order], days[order]
        starts = np.flatnonzero(np.r_[True, (np.diff(r) != 0) | (np.diff(c) != 0)])
        count = np.diff(np.r_[starts, len(r)])
        first, last = d[starts], d[np.r_[starts[1:], len(d)] - 1]
        pair_item = c[starts]
        buyers = np.bincount(pair_item, minlength=n_items).astype(np.float64)
        repeaters = np.bincount(pair_item[count >= 2], minlength=n_items).astype(np.float64)
        prior = repeaters.sum() / max(1.0, buyers.sum())
        shrink = float(self.params["shrinkage"])
        self.repeat_rate = ((repeaters + shrink * prior) / (buyers + shrink)).astype(np.float32)

        again = count >= 2
        interval = np.maximum((last[again] - first[again]) / (count[again] - 1), 0.5)
        items = pair_item[again]
        overall = float(np.exp(np.log(interval).mean())) if len(interval) else 30.0
        logs = np.bincount(items, np.log(interval), minlength=n_items)
        seen = np.bincount(items, minlength=n_items)
        self.cycle_days = np.exp(
            (logs + MIN_INTERVALS * np.log(overall)) / (seen + MIN_INTERVALS)
        ).astype(np.float32)

        never = (buyers >= int(self.params["min_buyers"])) & (repeaters < NEVER_AGAIN_RATE * buyers)
        self.window_days = np.where(never, np.inf, 0.0).astype(np.float32)
        own = count >= OWN_MIN_PURCHASES
        mean_interval = (last[own] - first[own]) / (count[own] - 1)
        self.own_window = sp.csr_matrix(
            (
                (OWN_DUE_SHARE * mean_interval).astype(np.float32),
                (r[starts][own], pair_item[own]),
            ),
            shape=(int(self.history.shape[0]), n_items),
        )
        self.own_window.sort_indices()

    # ----------------------------------------------------------------- scoring
    def score(self, rows: npt.NDArray[np.int64], history: sp.csr_matrix) -> npt.NDArray[np.float32]:
        own = _rows_scaled(history, "max")
        weight = self._own_weights(rows)[:, None]
        scores = np.asarray(own.toarray() * np.sqrt(self.repeat_rate)[None, :] * weight)
        if (weight < 1.0).any() and self.history.shape[0] > 1:
            scores += (1.0 - weight) * self._neighbour_vectors(rows, own)
        return scores.astype(np.float32, copy=False)

    def _own_weights(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """The own part's share per row: `own_weight`, or with `basket_prior` k, n / (n + k) for a
        customer with n baskets (short histories lean on their neighbours)."""
        weight = np.full(len(rows), float(self.params["own_weight"]), np.float32)
        prior = float(self.params.get("basket_prior", 0.0))
        known = rows >= 0
        if prior > 0 and known.any() and len(self.baskets) == len(self.customer_ids):
            n = self.baskets[rows[known]]
            weight[known] = n / (n + prior)
        return weight

    def _neighbour_vectors(
        self, rows: npt.NDArray[np.int64], own: sp.csr_matrix
    ) -> npt.NDArray[np.float32]:
        """Mean own vector of each row's nearest training customers (the row itself excluded)."""
        unit = self._unit_vectors()
        k = min(int(self.params["neighbours"]), unit.shape[0] - 1)
        out = np.zeros(own.shape, np.float32)
        query = _rows_scaled(own, "l2")
        for start in range(0, own.shape[0], NEIGHBOUR_BLOCK):
            block = slice(start, start + NEIGHBOUR_BLOCK)
            sims = np.asarray((query[block] @ unit.T).toarray(), dtype=np.float32)
            block_rows = rows[block]
            known = np.flatnonzero(block_rows >= 0)
            sims[known, block_rows[known]] = -np.inf
            ids, best = top_k(sims, k)
            valid = (ids >= 0) & (best > 0)
            m = len(ids)
            weights = sp.csr_matrix(
                (
                    np.full(valid.sum(), 1.0 / max(k, 1), np.float32),
                    (np.repeat(np.arange(m), valid.sum(axis=1)), ids[valid]),
                ),
                shape=(m, unit.shape[0]),
            )
            out[block] = (weights @ self.history).toarray()
        return out

    def _unit_vectors(self) -> sp.csr_matrix:
        if self._unit is None:
            self._unit = _rows_scaled(self.history, "l2")
        return self._unit

    def repurchase_window_days(self) -> npt.NDArray[np.float32]:
        """Per item: days after a purchase before it is suggested again (inf: never again)."""
        return self.window_days

    def own_window_days(
        self, rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float64]:
        """Per (training customer row, item column): the customer's own not-due window in days
        (NaN where their rhythm is not known, or for -1 rows)."""
        out = np.full(len(rows), np.nan)
        known = rows >= 0
        if self.own_window.shape[0] == 0 or not known.any():
            return out
        found = np.asarray(self.own_window[rows[known], cols[known]]).ravel()
        out[known] = np.where(found > 0, found, np.nan)
        return out

    def _forget_rows(self, rows: npt.NDArray[np.int64]) -> None:
        self.own_window = emptied(self.own_window, rows)
        if len(self.baskets) == self.own_window.shape[0]:
            self.baskets[rows] = 0.0
        self._unit = None

    # ----------------------------------------------------------------- storage
    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "repeat_rate": self.repeat_rate,
            "cycle_days": self.cycle_days,
            "window_days": self.window_days,
            "baskets": self.baskets,
            **as_arrays("own_window", self.own_window),
        }

    def _restore(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        n = len(self.item_ids)
        try:
            rate, cycle, window = (arrays[k] for k in ("repeat_rate", "cycle_days", "window_days"))
        except KeyError as exc:
            raise ModelFormatError(f"repeat: {exc.args[0]} missing") from exc
        check_finite("repeat_rate", rate, (n,))
        check_finite("cycle_days", cycle, (n,))
        if window.shape != (n,) or np.isnan(window).any():
            raise ModelFormatError(f"window_days has shape {window.shape} or NaN, expected ({n},)")
        self.repeat_rate, self.cycle_days = rate.astype(np.float32), cycle.astype(np.float32)
        self.window_days = window.astype(np.float32)
        baskets = arrays.get("baskets", np.zeros(len(self.customer_ids), np.float32))
        check_finite("baskets", baskets, (len(self.customer_ids),))
        self.baskets = baskets.astype(np.float32)
        shape = (len(self.customer_ids), n)
        own = from_arrays(arrays, "own_window", shape)
        self.own_window = sp.csr_matrix(shape, dtype=np.float32) if own is None else own


def _rows_scaled(matrix: sp.csr_matrix, by: str) -> sp.csr_matrix:
    """float32 rows divided by their maximum (`by` "max") or their length ("l2"); empty rows
    stay."""
    m = sp.csr_matrix(matrix, dtype=np.float32)
    size = (
        np.asarray(m.max(axis=1).toarray()).ravel()
        if by == "max"
        else np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    )
    return sp.csr_matrix(sp.diags(1.0 / np.where(size > 0, size, 1.0)) @ m, dtype=np.float32)
