"""Item-based recommenders: implicit's item-kNN (cosine / BM25) and EASE (closed form)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
from implicit.utils import ParameterWarning

from models.base import Recommender, check_finite
from omnirec.errors import ModelFormatError, ModelTooLargeError


class ItemKNNRecommender(Recommender):
    """implicit's item-item nearest neighbours; scores = history x similarity (K per item)."""

    kind = "itemknn"
    uses_history = True

    def __init__(
        self, neighbours: int = 100, weighting: str = "bm25", k1: float = 1.2, b: float = 0.75
    ) -> None:
        super().__init__(neighbours=neighbours, weighting=weighting, k1=k1, b=b)
        self.similarity: sp.csr_matrix = sp.csr_matrix((0, 0), dtype=np.float32)

    def _fit(self, matrix: sp.csr_matrix) -> None:
        p = self.params
        if p["weighting"] == "bm25":
            model: Any = BM25Recommender(K=p["neighbours"], K1=p["k1"], B=p["b"])
        else:
            model = CosineRecommender(K=p["neighbours"])
        with warnings.catch_warnings():
            # implicit 0.7 transposes internally into a COO matrix and then warns about it
            warnings.filterwarnings("ignore", category=ParameterWarning)
            model.fit(matrix, show_progress=False)
        self.similarity = sp.csr_matrix(model.similarity, dtype=np.float32)

    def score(self, rows: npt.NDArray[np.int64], history: sp.csr_matrix) -> npt.NDArray[np.float32]:
        return np.asarray((history @ self.similarity).toarray(), dtype=np.float32)

    def item_similarity(self, columns: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return np.asarray(self.similarity[columns].toarray(), dtype=np.float32)

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        s = self.similarity
        return {"sim_data": s.data, "sim_indices": s.indices, "sim_indptr": s.indptr}

    def _restore(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        n = len(self.item_ids)
        try:
            self.similarity = sp.csr_matrix(
                (arrays["sim_data"], arrays["sim_indices"], arrays["sim_indptr"]), shape=(n, n)
            )
        except (KeyError, ValueError) as exc:
            raise ModelFormatError(f"itemknn similarity is malformed: {exc}") from exc
        check_finite("similarity", self.similarity.data, (None,))


class EASERecommender(Recommender):
    """Embarrassingly Shallow Autoencoder (Steck 2019): B = I - P diagMat(1 / diag(P)), P = (X'X +
    lambda I)^-1."""

    kind = "ease"
    uses_history = True

    def __init__(self, l2: float = 300.0, max_items: int = 20_000) -> None:
        super().__init__(l2=l2, max_items=max_items)
        self.weights: npt.NDArray[np.float32] = np.zeros((0, 0), np.float32)

    def _fit(self, matrix: sp.csr_matrix) -> None:
        n = matrix.shape[1]
        if n > int(self.params["max_items"]):
            gib = n * n * 4 * 3 / 2**30
            raise ModelTooLargeError(
                f"EASE needs a dense {n:,} x {n:,} item matrix (about {gib:.1f} GiB while "
                "fitting); "
                f"this catalogue is over max_items={self.params['max_items']:,}. "
                "Use als or itemknn, or raise max_items on a machine with the memory."
            )
        binary = matrix.copy()
        binary.data = np.ones_like(binary.data)
        # float32 throughout (half the memory of float64: 17k items fit in about 3.3 GiB while
        # fitting); the l2 on the diagonal keeps the inverse well conditioned
        gram = (binary.T @ binary).toarray().astype(np.float32)
        gram[np.diag_indices(n)] += float(self.params["l2"])
        precision = np.linalg.inv(gram)
        del gram
        precision /= -np.diag(precision).copy()  # each column by its own diagonal
        precision[np.diag_indices(n)] = 0.0
        self.weights = np.asarray(precision, dtype=np.float32)

    def score(self, rows: npt.NDArray[np.int64], history: sp.csr_matrix) -> npt.NDArray[np.float32]:
        binary = history.copy()
        binary.data = np.ones_like(binary.data)
        return np.asarray(binary @ self.weights, dtype=np.float32)

    def item_similarity(self, columns: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return np.asarray(self.weights[columns], dtype=np.float32).copy()

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"weights": self.weights}

    def _restore(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        n = len(self.item_ids)
        if "weights" not in arrays:
            raise ModelFormatError("ease: weights missing")
        check_finite("weights", arrays["weights"], (n, n))
        self.weights = arrays["weights"].astype(np.float32)
