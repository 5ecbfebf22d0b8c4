"""Every model's contract on a small matrix whose right answer is known (implicit's test-mixin
idea)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from models import MODEL_KINDS, create_model, load_model
from models.base import Recommender
from omnirec.errors import ModelFormatError, ModelTooLargeError
from omnirec.interaction_data import Interactions

LEARNERS = ["als", "bpr", "itemknn", "ease"]
PARAMS = {
    "als": {"factors": 2, "regularization": 0.01, "alpha": 5.0, "iterations": 20},
    "bpr": {"factors": 8, "learning_rate": 0.05, "iterations": 300},
    "itemknn": {"neighbours": 10},
    "ease": {"l2": 1.0},
}


def block_matrix() -> Interactions:
    """Two tastes: customers 0-19 like items 0-4, customers 20-39 like items 5-9.

    Customer c misses item c % 5 of their block, the one each model must find first.
    """
    rows, cols = [], []
    for c in range(40):
        block = 0 if c < 20 else 5
        missing = block + c % 5
        for item in range(block, block + 5):
            if item != missing:
                rows.append(c)
                cols.append(item)
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(40, 12))
    return Interactions(
        matrix, np.array([f"c{i}" for i in range(40)]), np.array([f"i{i}" for i in range(12)])
    )


@pytest.fixture(scope="module")
def fitted() -> dict[str, Recommender]:
    data = block_matrix()
    return {kind: create_model(kind, **PARAMS[kind]).fit(data) for kind in LEARNERS}


@pytest.mark.parametrize("kind", LEARNERS)
def test_recommends_the_missing_item_of_the_right_taste(
    fitted: dict[str, Recommender], kind: str
) -> None:
    model = fitted[kind]
    rows = np.arange(40)
    ids, scores = model.recommend_rows(rows, n=3)
    expected = np.where(rows < 20, 0, 5) + rows % 5
    assert (ids[:, 0] == expected).mean() >= 0.9, kind
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first


@pytest.mark.parametrize("kind", LEARNERS)
def test_seen_items_are_excluded_unless_asked(fitted: dict[str, Recommender], kind: str) -> None:
    model = fitted[kind]
    ids, _ = model.recommend_rows(np.array([0]), n=12)
    seen = set(model.history[0].indices.tolist())
    assert seen.isdisjoint(set(ids[0][ids[0] >= 0].tolist()))
    assert (ids[0] == -1).sum() == len(seen)  # padded, never a seen item
    with_seen, _ = model.recommend_rows(np.array([0]), n=12, exclude_seen=False)
    assert seen <= set(with_seen[0].tolist())


@pytest.mark.parametrize("kind", LEARNERS)
def test_similar_items_stay_in_their_block(fitted: dict[str, Recommender], kind: str) -> None:
    ids, _ = fitted[kind].similar_items(np.array([1, 7]), n=3)
    assert set(ids[0].tolist()) <= {0, 2, 3, 4} and set(ids[1].tolist()) <= {5, 6, 8, 9}


@pytest.mark.parametrize("kind", [*LEARNERS, "popularity"])
def test_save_load_round_trip(fitted: dict[str, Recommender], kind: str, tmp_path: Path) -> None:
    model = fitted.get(kind) or create_model(kind).fit(block_matrix())
    loaded = load_model(model.save(tmp_path / kind))
    assert type(loaded) is type(model) and loaded.params == model.params
    rows = np.arange(40)
    np.testing.assert_array_equal(
        loaded.recommend_rows(rows, n=5)[0], model.recommend_rows(rows, n=5)[0]
    )
    assert loaded.recommend(["c0", "c25"], n=2) == model.recommend(["c0", "c25"], n=2)


def test_load_refuses_nan_factors_and_bad_shapes(
    fitted: dict[str, Recommender], tmp_path: Path
) -> None:
    folder = fitted["als"].save(tmp_path / "als")
    with np.load(folder / "arrays.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["m_item_factors"][3, 1] = np.nan
    np.savez(folder / "arrays.npz", **arrays)
    with pytest.raises(ModelFormatError, match="NaN"):
        load_model(folder)
    arrays["m_item_factors"] = np.zeros((5, 4), np.float32)
    np.savez(folder / "arrays.npz", **arrays)
    with pytest.raises(ModelFormatError, match="shape"):
        load_model(folder)


def test_load_refuses_pickled_arrays(fitted: dict[str, Recommender], tmp_path: Path) -> None:
    folder = fitted["ease"].save(tmp_path / "ease")
    with np.load(folder / "arrays.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["m_weights"] = np.array([{"evil": "payload"}], dtype=object)  # needs pickle to load
    np.savez(folder / "arrays.npz", **arrays)
    with pytest.raises(ModelFormatError, match="refused"):
        load_model(folder)


def test_unknown_customer_gets_popular_items(fitted: dict[str, Recommender]) -> None:
    items, _ = fitted["als"].recommend(["stranger"], n=3)
    popularity = np.asarray(fitted["als"].history.sum(axis=0)).ravel()
    assert set(items[0]) <= {f"i{i}" for i in np.flatnonzero(popularity == popularity.max())}


def test_als_fold_in_matches_implicit_and_follows_new_history(
    fitted: dict[str, Recommender],
) -> None:
    from implicit.cpu.als import AlternatingLeastSquares

    model = fitted["als"]
    reference = AlternatingLeastSquares(factors=2, regularization=0.01, alpha=5.0, use_cg=False)
    reference.user_factors = model.user_factors.copy()
    reference.item_factors = model.item_factors.copy()
    history = model.history[3]
    expected = reference.recalculate_user(0, history)
    np.testing.assert_allclose(model.fold_in(history)[0], expected, rtol=1e-3, atol=1e-4)  # type: ignore[attr-defined]
    # a customer unknown at training time who viewed two items of block B gets block B items
    fresh = sp.csr_matrix((np.ones(2, np.float32), ([0, 0], [6, 7])), shape=(1, 12))
    ids, _ = model.recommend_rows(np.array([-1]), fresh, n=3)
    assert set(ids[0].tolist()) <= {5, 8, 9}


def test_ease_refuses_a_catalogue_too_large() -> None:
    with pytest.raises(ModelTooLargeError, match="max_items"):
        create_model("ease", max_items=10).fit(block_matrix())


def test_every_kind_is_constructible() -> None:
    assert set(MODEL_KINDS) >= {"als", "bpr", "itemknn", "ease", "popularity"}


def test_factor_candidates_match_the_dense_path(fitted: dict[str, Recommender]) -> None:
    """Publishing's compiled top-k (faiss's exact search) picks what the dense block + argpartition
    does."""
    model = fitted["als"]
    rows = np.arange(40)
    fast_ids, fast_scores = model.candidates(rows, 12)  # all 12 items, some padding-free
    slow_ids, slow_scores = Recommender.candidates(model, rows, 12)
    np.testing.assert_allclose(fast_scores, slow_scores, rtol=1e-5, atol=1e-6)
    assert (np.sort(fast_ids, axis=1) == np.sort(slow_ids, axis=1)).all()
    padded, _ = model.candidates(rows, 15)  # more than the catalogue: padded with -1
    assert (padded[:, 12:] == -1).all()
