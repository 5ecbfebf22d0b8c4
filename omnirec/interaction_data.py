"""What a model is fitted on, as the data layer builds it: a customers x items matrix with the
ids of its rows and columns, and the purchase occasions repeat models learn from.

It sits on the ground floor so that `features` (which builds it) and `models` (which fit on it)
share one definition without `models` importing the data layer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp


@dataclass(frozen=True)
class Occasions:
    """Distinct purchase occasions: one entry per (customer row, item column, basket), where a
    basket is the event's session id (or its day when it has none); `days` is when (days since
    1970). Repeat-purchase models learn frequencies, recency and cycles from these."""

    rows: npt.NDArray[np.int64]
    cols: npt.NDArray[np.int64]
    days: npt.NDArray[np.float64]


@dataclass(frozen=True)
class Interactions:
    """A customers x items CSR matrix of confidences and the ids of its rows and columns."""

    matrix: sp.csr_matrix
    customer_ids: npt.NDArray[np.str_]
    item_ids: npt.NDArray[np.str_]
    occasions: Occasions | None = None
    # epoch seconds of each customer's last purchase of each item they kept (net of returns)
    last_bought: sp.csr_matrix | None = None
    times_bought: sp.csr_matrix | None = None  # ... and how many purchases of it (the reasons)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.matrix.shape[0]), int(self.matrix.shape[1]))

    def item_index(self) -> dict[str, int]:
        """item id -> column."""
        return {str(c): i for i, c in enumerate(self.item_ids)}
