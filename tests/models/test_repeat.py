"""The repeat + explore model on hand-made purchase histories whose right answers are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from models import load_model
from models.repeat import RepeatExploreRecommender
from omnirec.interaction_data import Interactions, Occasions

COFFEE, TV, MILK, TEA = 0, 1, 2, 3
ITEMS = np.array(["coffee", "tv", "milk", "tea"])


def histories() -> Interactions:
    """40 customers: each buys coffee every 14 days (8 times) and a TV once; customers 0-19 also
    buy milk every 7 days; customers 20-39 buy tea every 7 days; customer 40 bought coffee and
    a TV once, and milk once, long ago."""
    rows: list[int] = []
    cols: list[int] = []
    days: list[float] = []

    def buy(customer: int, item: int, day: float) -> None:
        rows.append(customer)
        cols.append(item)
        days.append(day)

    for c in range(40):
        for k in range(8):
            buy(c, COFFEE, 100 + 14 * k + c % 3)
        buy(c, TV, 120 + c)
        for k in range(16):
            buy(c, MILK if c < 20 else TEA, 100 + 7 * k)
    buy(40, COFFEE, 200)
    buy(40, TV, 200)
    buy(40, MILK, 60)
    r, c, d = np.array(rows), np.array(cols), np.array(days)
    matrix = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(41, 4))
    customers = np.array([f"c{i}" for i in range(41)])
    return Interactions(matrix, customers, ITEMS, Occasions(r, c, d))


@pytest.fixture(scope="module")
def model() -> RepeatExploreRecommender:
    return RepeatExploreRecommender(neighbours=10, min_buyers=20).fit(histories())


def test_learns_cycles_and_what_is_never_bought_again(model: RepeatExploreRecommender) -> None:
    assert model.repeat_rate[COFFEE] > 0.9 > 0.1 > model.repeat_rate[TV]
    assert 12 < model.cycle_days[COFFEE] < 16 and 6 < model.cycle_days[MILK] < 8
    window = model.repurchase_window_days()
    assert window[TV] == np.inf  # 40 buyers, none bought one again
    assert window[MILK] == window[COFFEE] == 0  # the item's cycle alone does not hide it
    # each customer's own rhythm does: a quarter of their own interval
    rows = np.array([0, 0, 25, 40])
    own = model.own_window_days(rows, np.array([COFFEE, MILK, TEA, COFFEE]))
    assert np.allclose(own[:3], [14 / 4, 7 / 4, 7 / 4], atol=0.2)
    assert np.isnan(own[3])  # customer 40 bought coffee once: no rhythm of their own


def test_repeat_items_rank_above_one_offs(model: RepeatExploreRecommender) -> None:
    ids, _ = model.recommend_rows(np.array([0, 25]), n=3, exclude_seen=False)
    assert ids[0, 0] in {COFFEE, MILK} and ids[1, 0] in {COFFEE, TEA}
    assert TV not in ids[0, :2] and TV not in ids[1, :2]


def test_explore_comes_from_the_nearest_customers(model: RepeatExploreRecommender) -> None:
    """Customer 40 bought milk once long ago: their neighbours (milk buyers) rank milk above tea,
    which they never bought and which only the other half of the customers buy."""
    ids, _ = model.recommend_rows(np.array([40]), n=4, exclude_seen=False)
    order = ids[0].tolist()
    assert order.index(MILK) < order.index(TEA)
    assert order[0] == COFFEE


def test_own_history_decays_from_each_customers_own_last_purchase(
    model: RepeatExploreRecommender,
) -> None:
    own = model.history.toarray()
    assert own[40, COFFEE] == pytest.approx(1.0)  # their last purchase: full weight
    assert own[40, MILK] == pytest.approx(0.5 ** (140 / 180.0), rel=1e-4)


def test_save_and_load_round_trip(model: RepeatExploreRecommender, tmp_path: Path) -> None:
    loaded = load_model(model.save(tmp_path / "m"))
    assert isinstance(loaded, RepeatExploreRecommender)
    np.testing.assert_array_equal(loaded.window_days, model.window_days)
    rows = np.arange(41)
    np.testing.assert_array_equal(
        loaded.recommend_rows(rows, n=3, exclude_seen=False)[0],
        model.recommend_rows(rows, n=3, exclude_seen=False)[0],
    )


def test_without_occasions_each_interaction_is_one(tmp_path: Path) -> None:
    data = histories()
    bare = Interactions(data.matrix, data.customer_ids, data.item_ids)
    fitted = RepeatExploreRecommender(neighbours=5).fit(bare)
    assert fitted.history.shape == (41, 4) and np.isfinite(fitted.cycle_days).all()


def test_short_histories_lean_on_their_neighbours(tmp_path: Path) -> None:
    """With basket_prior k, the own part's share is n / (n + k) for a customer with n baskets."""
    model = RepeatExploreRecommender(neighbours=10, basket_prior=10.0).fit(histories())
    assert model.baskets[40] == 2  # day 60 (milk), day 200 (coffee and a TV)
    weights = model._own_weights(np.array([0, 40, -1]))
    assert weights[1] == pytest.approx(2 / 12)
    assert weights[0] == pytest.approx(model.baskets[0] / (model.baskets[0] + 10))
    assert weights[2] == pytest.approx(0.7)  # unknown (fresh) history: the fixed share
    loaded = load_model(model.save(tmp_path / "m"))
    assert isinstance(loaded, RepeatExploreRecommender)
    np.testing.assert_array_equal(loaded.baskets, model.baskets)
