"""The recommender interface: batch-first like implicit's, (ids, scores) out, id maps owned here."""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from models.content import COLD_SHARE, content_neighbours
from models.rows import as_arrays, emptied, from_arrays, taken
from models.show_again import ShowAgain
from models.topk import mask_rows, top_k
from omnirec.errors import ModelError, ModelFormatError

FORMAT_VERSION = 1
BLOCK_ROWS = 2048  # customers scored at once: bounds memory at BLOCK_ROWS x items floats
BLOCK_FLOATS = 1 << 24  # ... and at this many floats (64 MiB) for large catalogues


class InteractionData(Protocol):
    """What a model is fitted on: a customers x items matrix and the ids of its rows and columns.

    `omnirec.interaction_data.Interactions` is one; models never import the data layer.
    """

    @property
    def matrix(self) -> sp.csr_matrix: ...

    @property
    def customer_ids(self) -> npt.NDArray[np.str_]: ...

    @property
    def item_ids(self) -> npt.NDArray[np.str_]: ...


def purchases_of(interactions: InteractionData, name: str) -> sp.csr_matrix | None:
    """The data's `last_bought` (epoch seconds of the last purchase per customer x item, net of
    returns) or `times_bought` (how many purchases), when it carries them (`Interactions`)."""
    found = getattr(interactions, name, None)
    return None if found is None else sp.csr_matrix(found, dtype=np.float64)


class Recommender(ABC):
    """A fitted model over a fixed catalogue; rows are customers, columns are items.

    Subclasses implement `_fit`, `score` and the array (de)serialisation; everything about ids,
    history, filtering, batching and storage lives here.
    """

    kind: ClassVar[str]
    #: True when `score` reads the customer's history (so new events change the answer at once)
    uses_history: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = params
        self.customer_ids: npt.NDArray[np.str_] = np.array([], dtype=str)
        self.item_ids: npt.NDArray[np.str_] = np.array([], dtype=str)
        self.history: sp.csr_matrix = sp.csr_matrix((0, 0), dtype=np.float32)
        self._customer_index: dict[str, int] = {}
        self._item_index: dict[str, int] = {}
        self._popularity: npt.NDArray[np.float32] | None = None
        # when each customer last bought each item (epoch seconds), and what may come back
        self.last_bought: sp.csr_matrix | None = None
        self.times_bought: sp.csr_matrix | None = None  # purchases per customer x item
        self.show_again = ShowAgain()
        # items with no events, each scored from the known items most like it (models.content)
        self.cold: sp.csr_matrix | None = None
        self._placed: tuple[sp.csr_matrix, npt.NDArray[np.int64], sp.csr_matrix] | None = None

    # ----------------------------------------------------------------- fitting
    def fit(self, interactions: InteractionData) -> Self:
        """Fit on a customers x items matrix; returns self."""
        matrix = sp.csr_matrix(interactions.matrix, dtype=np.float32)
        if matrix.nnz == 0:
            raise ModelError(f"{self.kind}: cannot fit on an empty interaction matrix")
        self.customer_ids = np.asarray(interactions.customer_ids, dtype=str)
        self.item_ids = np.asarray(interactions.item_ids, dtype=str)
        self.history = matrix
        self.last_bought = purchases_of(interactions, "last_bought")
        self.times_bought = purchases_of(interactions, "times_bought")
        self._index()
        self._fit(matrix)
        return self

    @abstractmethod
    def _fit(self, matrix: sp.csr_matrix) -> None: ...

    # ----------------------------------------------------------------- scoring
    @abstractmethod
    def score(self, rows: npt.NDArray[np.int64], history: sp.csr_matrix) -> npt.NDArray[np.float32]:
        """Scores (len(rows), n_items) for customers `rows` (-1: unknown) with `history` rows."""

    def scores(
        self, rows: npt.NDArray[np.int64], history: sp.csr_matrix
    ) -> npt.NDArray[np.float32]:
        """`score`, with each item that had no events scored as COLD_SHARE of the similarity-
        weighted mean score of the known items most like it (when the catalogue placed some)."""
        dense = np.array(self.score(rows, history), dtype=np.float32, copy=True)
        cold = self.cold
        if cold is not None and cold.nnz:
            if self._placed is None or self._placed[0] is not cold:  # once per placement
                placed = np.flatnonzero(np.diff(cold.indptr))
                self._placed = (cold, placed, sp.csr_matrix(cold[placed]))
            _, placed, weights = self._placed
            borrowed = np.asarray(weights @ dense.T).T
            dense[:, placed] = COLD_SHARE * np.maximum(borrowed, 0.0)
        return dense

    def place_cold(self, content: sp.csr_matrix) -> int:
        """Place the items that had no events in training by the catalogue's `content` rows (one
        per item column); returns how many were placed."""
        known = np.diff(sp.csr_matrix(self.history).tocsc().indptr) > 0
        self.cold = content_neighbours(content, known)
        return int((np.diff(self.cold.indptr) > 0).sum())

    def recommend_rows(
        self,
        rows: npt.NDArray[np.int64],
        history: sp.csr_matrix | None = None,
        n: int = 10,
        *,
        exclude_seen: bool = True,
        exclude: sp.csr_matrix | None = None,
        allowed: npt.NDArray[np.bool_] | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Top-n item columns per row: (ids (m, n), scores (m, n)), padded with -1.

        `history` defaults to the training rows; `exclude` masks further items per row;
        `allowed` (n_items,) keeps only those items (stock, category, active).
        """
        rows = np.asarray(rows, dtype=np.int64)
        if history is None:
            history = self.history_rows(rows)
        ids = np.empty((len(rows), n), np.int64)
        scores = np.empty((len(rows), n), np.float32)
        step = max(16, min(BLOCK_ROWS, BLOCK_FLOATS // max(1, self.n_items)))
        for start in range(0, len(rows), step):
            block = slice(start, start + step)
            dense = self.scores(rows[block], history[block])
            cold = (rows[block] < 0) & (np.diff(history[block].indptr) == 0)
            if cold.any():  # nothing known about them: the popular items
                dense[cold] = self.item_popularity()
            if exclude_seen:
                mask_rows(dense, history[block])
            if exclude is not None:
                mask_rows(dense, exclude[block])
            if allowed is not None:
                dense[:, ~allowed] = -np.inf
            ids[block], scores[block] = top_k(dense, n)
        return ids, scores

    def candidates(
        self, rows: npt.NDArray[np.int64], n: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The best `n` items of each training customer `rows` (bought items included): what
        publishing stores per customer. Models with a faster exact path override it."""
        return self.recommend_rows(rows, n=n, exclude_seen=False)

    def approximate_top(
        self, rows: npt.NDArray[np.int64], history: sp.csr_matrix, k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]] | None:
        """The k best items per row from an approximate index, for models that keep one over a
        big catalogue; None: score the whole catalogue."""
        return None

    def customer_vectors(self) -> npt.NDArray[np.float32] | None:
        """(n_customers, factors) latent vectors of the training customers, or None for models
        that have none (neighbourhood and popularity models)."""
        return None

    def repurchase_window_days(self) -> npt.NDArray[np.float32] | None:
        """Per item, days after a purchase before it may be suggested again (inf: never), for
        models that learned repurchase cycles; None: serving excludes what was bought."""
        return None

    def own_window_days(
        self, rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float64] | None:
        """Per (training customer row, item column): the customer's own not-due window in days
        (NaN: not known), for models that learn customers' rhythms; None: none do."""
        return None

    def purchase_rhythm(
        self, row: int, cols: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]:
        """For training customer `row` and item columns `cols`: how many times they bought each
        (0: never, or not known) and their own days between purchases (NaN where the model
        learns no rhythm): what a reason says ("bought 6 times, usually every 12 days")."""
        counts = np.zeros(len(cols), np.float32)
        times = self.times_bought
        if times is not None and 0 <= row < times.shape[0]:
            start, end = times.indptr[row], times.indptr[row + 1]
            order = np.argsort(times.indices[start:end])
            mine, values = times.indices[start:end][order], times.data[start:end][order]
            if len(mine):
                at = np.minimum(np.searchsorted(mine, cols), len(mine) - 1)
                found = mine[at] == cols
                counts[found] = values[at[found]]
        own = self.own_window_days(np.full(len(cols), row), cols)
        return counts, (np.full(len(cols), np.nan) if own is None else own / self.due_share)

    #: the share of a customer's own interval an item is not due for (models with rhythms)
    due_share: float = 1.0

    def item_popularity(self) -> npt.NDArray[np.float32]:
        """Total interaction strength per item in the training history (cold-start scores)."""
        if self._popularity is None or len(self._popularity) != self.n_items:
            self._popularity = np.asarray(self.history.sum(axis=0), dtype=np.float32).ravel()
        return self._popularity

    def history_rows(self, rows: npt.NDArray[np.int64]) -> sp.csr_matrix:
        """Training history of `rows` (empty for -1)."""
        return taken(self.history, rows, self.n_items, np.float32)

    def hidden_rows(
        self, rows: npt.NDArray[np.int64], now: npt.NDArray[np.float64]
    ) -> sp.csr_matrix:
        """(len(rows), items) 0/1: what the stored policy hides from training customers `rows`
        (-1: nobody) at `now` (epoch seconds per row), from their last purchases."""
        rows = np.asarray(rows, np.int64)
        bought = taken(self.last_bought, rows, self.n_items, np.float64)
        own = None
        if self.show_again.mode == "when_due" and bought.nnz:
            pair_rows = rows[np.repeat(np.arange(len(rows)), np.diff(bought.indptr))]
            found = self.own_window_days(pair_rows, bought.indices.astype(np.int64))
            if found is not None:
                own = sp.csr_matrix((found, bought.indices, bought.indptr), shape=bought.shape)
        return self.show_again.hidden(bought, np.asarray(now, np.float64), own)

    def recommend(
        self,
        customer_ids: Sequence[str],
        n: int = 10,
        *,
        now: float | None = None,
        apply_policy: bool = True,
    ) -> tuple[list[list[str]], list[list[float]]]:
        """Item ids and scores for each customer id (unknown customers score from no history),
        without what the stored show-again policy hides at `now` (epoch seconds; default: the
        current time) unless `apply_policy` is False."""
        rows = self.rows_of(customer_ids)
        at = time.time() if now is None else now
        hidden = self.hidden_rows(rows, np.full(len(rows), at)) if apply_policy else None
        ids, scores = self.recommend_rows(rows, n=n, exclude_seen=False, exclude=hidden)
        items = [[str(self.item_ids[i]) for i in row if i >= 0] for row in ids]
        values = [
            [float(s) for s, i in zip(srow, row, strict=True) if i >= 0]
            for srow, row in zip(scores, ids, strict=True)
        ]
        return items, values

    def similar_items(
        self, columns: npt.NDArray[np.int64], n: int = 10
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Most similar items per item column (the item itself excluded): (ids, scores)."""
        columns = np.asarray(columns, dtype=np.int64)
        sims = self.item_similarity(columns)
        if self.cold is not None and self.cold.nnz:  # a cold item's similar items: its own kind
            placed = np.diff(self.cold.indptr)[columns] > 0
            if placed.any():
                sims[placed] = self.cold[columns[placed]].toarray()
        sims[np.arange(len(columns)), columns] = -np.inf
        return top_k(sims, n)

    def item_similarity(self, columns: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """(len(columns), n_items) similarity; default: co-occurrence cosine in the history."""
        cols = self.history[:, columns].T.tocsr()
        norms = np.sqrt(np.asarray(self.history.multiply(self.history).sum(axis=0))).ravel() + 1e-9
        co = (cols @ self.history).toarray()
        return np.asarray(co / norms[columns][:, None] / norms[None, :], dtype=np.float32)

    # ----------------------------------------------------------------- ids
    def _index(self) -> None:
        self._customer_index = {c: i for i, c in enumerate(self.customer_ids.tolist())}
        self._item_index = {c: i for i, c in enumerate(self.item_ids.tolist())}

    def rows_of(self, customer_ids: Sequence[str]) -> npt.NDArray[np.int64]:
        """Row per customer id, -1 when unknown."""
        return np.array([self._customer_index.get(c, -1) for c in customer_ids], dtype=np.int64)

    def columns_of(self, item_ids: Sequence[str]) -> npt.NDArray[np.int64]:
        """Column per item id, -1 when unknown."""
        return np.array([self._item_index.get(i, -1) for i in item_ids], dtype=np.int64)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    # ----------------------------------------------------------------- erasure
    def forget_customers(self, customer_ids: Sequence[str]) -> int:
        """Erase customers from this model (the right to erasure): their ids become
        placeholders and every row the model keeps about them (history, purchases, their own
        factors or rhythm) is emptied; returns how many it held. The items' side was learned
        from everyone and stays until the next training (docs/operations.md)."""
        rows = self.rows_of(list(customer_ids))
        rows = rows[rows >= 0]
        if len(rows) == 0:
            return 0
        ids = self.customer_ids.astype(object)
        ids[rows] = [f"~erased~{r}" for r in rows.tolist()]
        self.customer_ids = ids.astype(str)
        self.history = emptied(self.history, rows)
        if self.last_bought is not None:
            self.last_bought = emptied(self.last_bought, rows)
        if self.times_bought is not None:
            self.times_bought = emptied(self.times_bought, rows)
        self._forget_rows(rows)
        self._index()
        return len(rows)

    def _forget_rows(self, rows: npt.NDArray[np.int64]) -> None:  # noqa: B027 (a hook)
        """Models that keep more per customer (factors, rhythms) empty those rows too."""

    # ----------------------------------------------------------------- storage
    @abstractmethod
    def _arrays(self) -> dict[str, npt.NDArray[Any]]: ...

    @abstractmethod
    def _restore(self, arrays: dict[str, npt.NDArray[Any]]) -> None: ...

    def save(self, folder: Path) -> Path:
        """Write model.json (metadata) and arrays.npz (no pickle) into `folder`; returns it."""
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {
            "customer_ids": self.customer_ids.astype(str),
            "item_ids": self.item_ids.astype(str),
            **as_arrays("history", self.history),
            **as_arrays("bought", self.last_bought),
            **as_arrays("times", self.times_bought),
            **as_arrays("cold", self.cold),
            **{f"m_{k}": v for k, v in self._arrays().items()},
        }
        if self.show_again.window_days is not None:
            arrays["show_again_window"] = self.show_again.window_days
        np.savez(folder / "arrays.npz", **arrays)  # type: ignore[arg-type]
        meta = {
            "format": FORMAT_VERSION,
            "kind": self.kind,
            "params": self.params,
            "customers": len(self.customer_ids),
            "items": len(self.item_ids),
            "show_again": self.show_again.meta(),
        }
        (folder / "model.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        return folder

    @classmethod
    def _from_arrays(cls, meta: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]) -> Recommender:
        model = cls(**meta.get("params", {}))
        model.customer_ids = arrays["customer_ids"].astype(str)
        model.item_ids = arrays["item_ids"].astype(str)
        n_c, n_i = len(model.customer_ids), len(model.item_ids)
        if (n_c, n_i) != (meta.get("customers"), meta.get("items")):
            raise ModelFormatError(f"id arrays ({n_c}, {n_i}) disagree with model.json")
        history = from_arrays(arrays, "history", (n_c, n_i))
        if history is None:
            raise ModelFormatError("history matrix missing")
        model.history = history
        model.last_bought = from_arrays(arrays, "bought", (n_c, n_i))
        model.times_bought = from_arrays(arrays, "times", (n_c, n_i))
        model.cold = from_arrays(arrays, "cold", (n_i, n_i))
        model.show_again = ShowAgain.restore(
            meta.get("show_again"), arrays.get("show_again_window"), n_i
        )
        model._index()
        model._restore({k[2:]: v for k, v in arrays.items() if k.startswith("m_")})
        return model


def check_finite(name: str, array: npt.NDArray[Any], shape: tuple[int | None, ...]) -> None:
    """Refuse arrays with NaN/inf or the wrong shape (None matches any size)."""
    if array.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(array.shape, shape, strict=True)
    ):
        raise ModelFormatError(f"{name} has shape {array.shape}, expected {shape}")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise ModelFormatError(f"{name} contains NaN or infinite values")
