"""Metrics against hand-computed values, and a cross-check with implicit's evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from training.metrics import coverage, ranking_metrics


def test_hand_computed_case() -> None:
    # user 0: relevant {1, 3}; recs [1, 2, 3] -> hits at ranks 1 and 3
    # user 1: relevant {5};    recs [4, 6, 7] -> no hit
    # user 2: no relevant items -> not averaged
    truth = sp.csr_matrix(([1, 1, 1], ([0, 0, 1], [1, 3, 5])), shape=(3, 8))
    recs = np.array([[1, 2, 3], [4, 6, 7], [0, 1, 2]])
    m = ranking_metrics(recs, truth, k=3)
    assert m["users"] == 2
    assert m["precision"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["recall"] == pytest.approx((1.0 + 0) / 2)
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3)
    assert m["ndcg"] == pytest.approx((dcg / idcg) / 2)
    ap = (1 / 1 + 2 / 3) / 2
    assert m["map"] == pytest.approx(ap / 2)
    assert m["hit_rate"] == pytest.approx(0.5)
    assert coverage(recs, 8) == pytest.approx(7 / 8)


def test_padding_never_counts_as_a_hit() -> None:
    truth = sp.csr_matrix(([1], ([0], [0])), shape=(1, 3))
    m = ranking_metrics(np.array([[-1, -1]]), truth, k=2)
    assert m["precision"] == 0 and m["ndcg"] == 0


def test_ndcg_agrees_with_implicit() -> None:
    from implicit.evaluation import ranking_metrics_at_k

    from models import create_model
    from omnirec.interaction_data import Interactions

    rng = np.random.default_rng(0)
    train = sp.csr_matrix((rng.random((50, 30)) < 0.2).astype(np.float32))
    test = sp.csr_matrix((rng.random((50, 30)) < 0.1).astype(np.float32))
    test = sp.csr_matrix(test - test.multiply(train > 0))
    test.eliminate_zeros()
    model = create_model("itemknn", neighbours=10, weighting="cosine")
    model.fit(Interactions(train, np.arange(50).astype(str), np.arange(30).astype(str)))
    rows = np.flatnonzero(np.diff(test.indptr) > 0)
    recs, _ = model.recommend_rows(rows, n=10)
    ours = ranking_metrics(recs, test[rows], 10)
    from implicit.nearest_neighbours import CosineRecommender

    ref = CosineRecommender(K=10)
    with pytest.warns(Warning):  # implicit warns about its own internal COO transpose
        ref.fit(train, show_progress=False)
    theirs = ranking_metrics_at_k(ref, train, test, K=10, show_progress=False)
    assert ours["ndcg"] == pytest.approx(theirs["ndcg"], abs=0.02)
    assert ours["map"] == pytest.approx(theirs["map"], abs=0.02)
