"""The learned next-basket re-ranker on baskets whose right answer the repeat model gets wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from models import load_model
from models.basket_stats import PAIR_FEATURES, purchase_stats, visit_rank
from models.ranked import RankedRepeatRecommender
from models.repeat import RepeatExploreRecommender
from omnirec.errors import ModelError
from omnirec.interaction_data import Interactions, Occasions

CUSTOMERS, ITEMS, BASKETS = 300, 40, 12


def alternating() -> tuple[Interactions, np.ndarray, np.ndarray]:
    """Each customer has two own items, A and B, bought in alternate weekly baskets (A in even
    weeks, B in odd ones), beside two random items a basket. The last basket (week 11) held B,
    so the next one holds A: the decayed frequency puts B (the most recent) first, while the
    pattern 'not in the last basket, in the one before' is learnable from the earlier baskets.
    Returns the data and each customer's A and B."""
    rng = np.random.default_rng(7)
    own = np.stack([rng.choice(ITEMS, 2, replace=False) for _ in range(CUSTOMERS)])
    rows, cols, days = [], [], []
    for c in range(CUSTOMERS):
        for week in range(BASKETS):
            day = 100.0 + 7 * week + c % 3
            basket = {int(own[c, week % 2])} | {int(i) for i in rng.choice(ITEMS, 2)}
            for item in basket:
                rows.append(c)
                cols.append(item)
                days.append(day)
    r, c_, d = np.array(rows), np.array(cols), np.array(days)
    matrix = sp.csr_matrix((np.ones(len(r), np.float32), (r, c_)), shape=(CUSTOMERS, ITEMS))
    data = Interactions(
        matrix,
        np.array([f"c{i}" for i in range(CUSTOMERS)]),
        np.array([f"i{i}" for i in range(ITEMS)]),
        Occasions(r, c_, d),
    )
    return data, own[:, 0], own[:, 1]


@pytest.fixture(scope="module")
def data() -> tuple[Interactions, np.ndarray, np.ndarray]:
    return alternating()


@pytest.fixture(scope="module")
def ranked(data: tuple[Interactions, np.ndarray, np.ndarray]) -> RankedRepeatRecommender:
    return RankedRepeatRecommender(levels=4, candidates=10, neighbours=20).fit(data[0])


def test_the_ranker_learns_what_the_decayed_frequency_misses(
    data: tuple[Interactions, np.ndarray, np.ndarray], ranked: RankedRepeatRecommender
) -> None:
    interactions, due, last = data
    rows = np.arange(CUSTOMERS)
    base = RepeatExploreRecommender(half_life_days=90.0, shrinkage=20.0, neighbours=20).fit(
        interactions
    )
    base_top = base.recommend_rows(rows, n=1, exclude_seen=False)[0][:, 0]
    ranked_top = ranked.recommend_rows(rows, n=1, exclude_seen=False)[0][:, 0]
    assert np.mean(base_top == due) < 0.5 < np.mean(base_top == last)  # mostly the most recent
    assert np.mean(ranked_top == due) > 0.9  # the one due in the next basket first


def test_reranked_candidates_score_above_the_rest(ranked: RankedRepeatRecommender) -> None:
    _, scores = ranked.recommend_rows(np.array([0, 1]), n=ITEMS, exclude_seen=False)
    assert (scores[:, :10] > 1.0).all() and (scores[:, 10:] < 1.0).all()
    assert (np.diff(scores, axis=1) <= 0).all()


def test_unknown_customers_get_the_repeat_models_scores(ranked: RankedRepeatRecommender) -> None:
    history = ranked.history_rows(np.array([3]))
    folded = ranked.score(np.array([-1]), history)
    plain = RepeatExploreRecommender.score(ranked, np.array([-1]), history)
    np.testing.assert_allclose(folded, plain)


def test_save_load_round_trip_without_pickle(
    ranked: RankedRepeatRecommender, tmp_path: Path
) -> None:
    loaded = load_model(ranked.save(tmp_path / "m"))
    assert isinstance(loaded, RankedRepeatRecommender)
    rows = np.arange(20)
    np.testing.assert_allclose(
        loaded.score(rows, loaded.history_rows(rows)),
        ranked.score(rows, ranked.history_rows(rows)),
        rtol=1e-6,
    )
    with np.load(tmp_path / "m" / "arrays.npz", allow_pickle=False) as npz:
        assert str(npz["m_ranker"]).startswith("tree")


def test_refuses_data_without_baskets() -> None:
    matrix = sp.csr_matrix(np.eye(3, dtype=np.float32))
    data = Interactions(matrix, np.array(["a", "b", "c"]), np.array(["x", "y", "z"]))
    with pytest.raises(ModelError, match="baskets"):
        RankedRepeatRecommender().fit(data)


def test_basket_statistics_by_hand() -> None:
    """One customer, baskets on days 10, 17 and 24: item 0 in all three, item 1 on day 10 only."""
    rows = np.array([0, 0, 0, 0])
    cols = np.array([0, 1, 0, 0])
    days = np.array([10.0, 10.5, 17.2, 24.0])
    assert visit_rank(rows, days).tolist() == [2, 2, 1, 0]
    stats = purchase_stats(rows, cols, days, (1, 3))
    pairs = stats.lookup(np.array([0, 0, 0]), np.array([0, 1, 2]))
    col = {name: k for k, name in enumerate(PAIR_FEATURES)}
    assert pairs[0, col["baskets_with_item"]] == 3 and pairs[1, col["baskets_with_item"]] == 1
    assert pairs[0, col["in_last_basket"]] == 1 and pairs[1, col["in_last_3_baskets"]] == 1
    assert pairs[1, col["days_since_bought"]] == pytest.approx(13.5)
    assert pairs[0, col["own_interval_days"]] == pytest.approx(7.0)
    assert np.isnan(pairs[1, col["own_interval_days"]])  # bought once
    assert pairs[2, col["baskets_with_item"]] == 0 and np.isnan(pairs[2, col["days_since_bought"]])
    assert stats.per_row[0].tolist() == pytest.approx([3.0, 4 / 3, 7.0])
