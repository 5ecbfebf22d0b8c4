"""Popularity: the baseline every model is compared with, and the fallback for unknown customers."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from models.base import Recommender, check_finite


class PopularityRecommender(Recommender):
    """Scores every item by its total interaction strength (recency comes from the weights'
    decay)."""

    kind = "popularity"

    def __init__(self, binary: bool = False) -> None:
        super().__init__(binary=binary)
        self.popularity: npt.NDArray[np.float32] = np.zeros(0, np.float32)

    def _fit(self, matrix: sp.csr_matrix) -> None:
        if self.params["binary"]:
            counts = np.bincount(matrix.indices, minlength=matrix.shape[1])
        else:
            counts = np.asarray(matrix.sum(axis=0)).ravel()
        self.popularity = np.asarray(counts, dtype=np.float32)

    def score(self, rows: npt.NDArray[np.int64], history: sp.csr_matrix) -> npt.NDArray[np.float32]:
        return np.broadcast_to(self.popularity, (len(rows), len(self.popularity)))

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"popularity": self.popularity}

    def _restore(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        check_finite("popularity", arrays["popularity"], (len(self.item_ids),))
        self.popularity = arrays["popularity"].astype(np.float32)


class BuyAgainRecommender(Recommender):
    """The customer's own most frequent items (a strong baseline for groceries), then popularity."""

    kind = "buy_again"
    uses_history = True

    def __init__(self) -> None:
        super().__init__()
        self.popularity: npt.NDArray[np.float32] = np.zeros(0, np.float32)

    def _fit(self, matrix: sp.csr_matrix) -> None:
        self.popularity = np.asarray(matrix.sum(axis=0), dtype=np.float32).ravel()

    def score(self, rows: npt.NDArray[np.int64], history: sp.csr_matrix) -> npt.NDArray[np.float32]:
        tiebreak = self.popularity / (self.popularity.max() + 1.0)  # < 1: own items always first
        own = np.asarray(history.toarray(), dtype=np.float32)
        return np.asarray(own + tiebreak[None, :], dtype=np.float32)

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"popularity": self.popularity}

    def _restore(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.popularity = arrays["popularity"].astype(np.float32)
