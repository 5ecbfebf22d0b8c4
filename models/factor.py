"""Matrix-factorisation recommenders from implicit: ALS (with fold-in) and BPR."""

from __future__ import annotations

from typing import Any, Self

import implicit.gpu
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from implicit.als import AlternatingLeastSquares
from implicit.bpr import BayesianPersonalizedRanking
from implicit.recommender_base import ModelFitError
from threadpoolctl import threadpool_limits

from models.ann import ANN_MIN_ITEMS, ItemIndex
from models.base import InteractionData, Recommender, check_finite
from models.topk import exact_top
from omnirec.errors import ModelError


class _FactorModel(Recommender):
    """Shared storage and scoring for models with user and item factors; catalogues of
    `ann_min_items` items or more also get an HNSW index (models.ann) for their top-k."""

    user_factors: npt.NDArray[np.float32]
    item_factors: npt.NDArray[np.float32]
    index: ItemIndex | None = None
    ann_min_items: int = ANN_MIN_ITEMS

    def fit(self, interactions: InteractionData) -> Self:
        super().fit(interactions)
        self.index = (
            ItemIndex.build(self.item_factors) if self.n_items >= self.ann_min_items else None
        )
        return self

    def approximate_top(
        self, rows: npt.NDArray[np.int64], history: sp.csr_matrix, k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]] | None:
        """The k best items per row from the HNSW index, or None without one (brute force)."""
        if self.index is None:
            return None
        return self.index.search(self.user_vectors(rows, history), min(k, self.n_items))

    def score(self, rows: npt.NDArray[np.int64], history: sp.csr_matrix) -> npt.NDArray[np.float32]:
        vectors = self.user_vectors(rows, history)
        return np.asarray(vectors @ self.item_factors.T, dtype=np.float32)

    def user_vectors(
        self, rows: npt.NDArray[np.int64], history: sp.csr_matrix
    ) -> npt.NDArray[np.float32]:
        """Factor vectors for rows; unknown rows (-1) get zeros unless the model can fold in."""
        vectors = self.user_factors[np.where(rows >= 0, rows, 0)].copy()
        vectors[rows < 0] = 0
        return vectors

    def candidates(
        self, rows: npt.NDArray[np.int64], n: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Top-n by compiled k-selection (threads, the GIL released): exact (BLAS blocks and
        `models.topk`), or from the HNSW index on a big catalogue; several times numpy's
        argpartition over the dense block (`./dev bench publish`)."""
        k = min(n, self.n_items)
        query = np.ascontiguousarray(self.user_factors[rows], dtype=np.float32)
        if self.index is not None:  # a big catalogue: the HNSW graph
            ids, scores = self.index.search(query, k)
        else:  # exact: blocked products + the compiled selection in threads
            ids, scores = exact_top(self.item_factors, query, k)
        if k < n:
            ids = np.pad(ids, ((0, 0), (0, n - k)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, n - k)), constant_values=-np.inf)
        return ids, scores

    def customer_vectors(self) -> npt.NDArray[np.float32]:
        return self.user_factors

    def item_similarity(self, columns: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        norms = np.linalg.norm(self.item_factors, axis=1) + 1e-9
        unit = self.item_factors / norms[:, None]
        return np.asarray(unit[columns] @ unit.T, dtype=np.float32)

    def _forget_rows(self, rows: npt.NDArray[np.int64]) -> None:
        self.user_factors[rows] = 0.0

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        arrays: dict[str, npt.NDArray[Any]] = {
            "user_factors": self.user_factors,
            "item_factors": self.item_factors,
        }
        if self.index is not None:
            arrays["ann_index"] = self.index.to_array()
        return arrays

    def _restore(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        users, items = arrays.get("user_factors"), arrays.get("item_factors")
        if users is None or items is None:
            from omnirec.errors import ModelFormatError

            raise ModelFormatError(f"{self.kind}: user_factors / item_factors missing")
        check_finite("item_factors", items, (len(self.item_ids), None))
        check_finite("user_factors", users, (len(self.customer_ids), items.shape[1]))
        self.user_factors = users.astype(np.float32)
        self.item_factors = items.astype(np.float32)
        ann = arrays.get("ann_index")
        self.index = (
            ItemIndex.from_array(ann, len(self.item_ids), items.shape[1])
            if ann is not None
            else None
        )


class ALSRecommender(_FactorModel):
    """implicit's AlternatingLeastSquares (CUDA when available); folds new history in."""

    kind = "als"
    uses_history = True

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 2.0,
        iterations: int = 15,
        seed: int = 42,
        use_gpu: bool | None = None,
    ) -> None:
        super().__init__(
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            iterations=iterations,
            seed=seed,
        )
        self.use_gpu = implicit.gpu.HAS_CUDA if use_gpu is None else use_gpu
        self._gram: npt.NDArray[np.float64] | None = None

    def _fit(self, matrix: sp.csr_matrix) -> None:
        p = self.params
        with threadpool_limits(1, "blas"):  # implicit's advice; it checks at construction
            model = AlternatingLeastSquares(
                factors=p["factors"],
                regularization=p["regularization"],
                alpha=p["alpha"],
                iterations=p["iterations"],
                random_state=p["seed"],
                use_gpu=self.use_gpu,
            )
            model.fit(matrix, show_progress=False)
        if self.use_gpu:
            model = model.to_cpu()
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)
        self._gram = None

    def user_vectors(
        self, rows: npt.NDArray[np.int64], history: sp.csr_matrix
    ) -> npt.NDArray[np.float32]:
        """Stored vectors for known rows; folded in from `history` for the rest."""
        vectors = super().user_vectors(rows, history)
        unknown = np.flatnonzero(rows < 0)
        if len(unknown):
            vectors[unknown] = self.fold_in(history[unknown])
        return vectors

    def fold_in(self, history: sp.csr_matrix) -> npt.NDArray[np.float32]:
        """Least-squares user vectors for history rows, item factors fixed (implicit's
        recalculate_user).

        x_u = (Y^T Y + Y^T (C_u - I) Y + lambda I)^-1 Y^T C_u p_u with C_u = alpha * r_u, exactly as
        implicit's least-squares step (a Cholesky solve per customer).
        """
        factors = self.item_factors.shape[1]
        if self._gram is None:  # Y^T Y once per model (in float64, like the solve)
            y = self.item_factors.astype(np.float64)
            self._gram = y.T @ y
        reg = float(self.params["regularization"]) * np.eye(factors)
        alpha = float(self.params["alpha"])
        out = np.zeros((history.shape[0], factors), dtype=np.float32)
        csr = sp.csr_matrix(history)
        for r in range(csr.shape[0]):  # one small solve per customer with fresh events
            lo, hi = csr.indptr[r], csr.indptr[r + 1]
            if lo == hi:
                continue
            cols, conf = csr.indices[lo:hi], alpha * csr.data[lo:hi].astype(np.float64)
            # only the rows of the customer's items in float64 (the whole catalogue's copy cost
            # 1.5 ms per rescored customer on 20k items)
            yu = self.item_factors[cols].astype(np.float64)
            a = self._gram + (yu.T * (conf - 1.0)) @ yu + reg
            b = yu.T @ conf
            out[r] = np.linalg.solve(a, b)
        return out


class BPRRecommender(_FactorModel):
    """implicit's BayesianPersonalizedRanking."""

    kind = "bpr"

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.05,
        regularization: float = 0.01,
        iterations: int = 100,
        seed: int = 42,
    ) -> None:
        super().__init__(
            factors=factors,
            learning_rate=learning_rate,
            regularization=regularization,
            iterations=iterations,
            seed=seed,
        )

    def _fit(self, matrix: sp.csr_matrix) -> None:
        p = self.params
        model = BayesianPersonalizedRanking(
            factors=p["factors"],
            learning_rate=p["learning_rate"],
            regularization=p["regularization"],
            iterations=p["iterations"],
            random_state=p["seed"],
            use_gpu=False,
        )
        try:
            with threadpool_limits(1, "blas"):
                model.fit(matrix, show_progress=False)
        except ModelFitError as exc:
            raise ModelError(
                f"bpr diverged ({exc}); lower learning_rate or raise regularization"
            ) from exc
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)
