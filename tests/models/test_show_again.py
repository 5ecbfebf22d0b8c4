"""The show-again policy on its own: the three modes, a customer's own rhythm, storage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from models import load_model
from models.popularity import PopularityRecommender
from models.show_again import ShowAgain, choose_policy
from omnirec.errors import ModelFormatError
from omnirec.interaction_data import Interactions

DAY = 86_400.0
NOW = 1_800_000_000.0


def test_modes() -> None:
    cols, at = np.array([0, 1, 2]), np.array([NOW - 1 * DAY, NOW - 5 * DAY, NOW - 50 * DAY])
    assert ShowAgain("never").hides(cols, at, NOW).tolist() == [True, True, True]
    assert ShowAgain("always").hides(cols, at, NOW).tolist() == [False, False, False]
    due = ShowAgain("when_due", np.array([3.0, 3.0, np.inf], np.float32))
    assert due.hides(cols, at, NOW).tolist() == [True, False, True]
    # the customer's own window, where known, replaces the item's (never-again stays never)
    own = np.array([np.nan, 10.0, 1.0])
    assert due.hides(cols, at, NOW, own).tolist() == [True, True, True]
    with pytest.raises(ModelFormatError):
        ShowAgain("when_due")


def test_choice_and_configured_days() -> None:
    window = np.array([0.0, np.inf, 0.0], np.float32)
    assert choose_policy(3, window, exclude_bought=True).mode == "never"
    assert choose_policy(3, None, exclude_bought=False).mode == "always"
    assert choose_policy(3, window, exclude_bought=False, due=False).mode == "always"
    kept = choose_policy(3, window, exclude_bought=False)
    assert kept.mode == "when_due" and kept.window_days is not None
    configured = np.array([np.nan, np.nan, 14.0])
    excluded = choose_policy(3, None, exclude_bought=True, configured_days=configured)
    assert excluded.window_days is not None
    assert excluded.window_days.tolist() == [np.inf, np.inf, 14.0]


def test_stored_with_the_model_and_applied_by_recommend(tmp_path: Path) -> None:
    matrix = sp.csr_matrix(np.array([[3, 1, 0], [0, 2, 1]], np.float32))
    bought = sp.csr_matrix(np.array([[NOW - DAY, 0, 0], [0, NOW - 9 * DAY, 0]]))
    data = Interactions(matrix, np.array(["a", "b"]), np.array(["x", "y", "z"]), None, bought)
    model = PopularityRecommender().fit(data)
    model.show_again = ShowAgain("when_due", np.array([5.0, 5.0, 5.0], np.float32))
    items, _ = model.recommend(["a", "b"], n=3, now=NOW)
    assert items == [["y", "z"], ["x", "y", "z"]]  # a bought x a day ago; b's y is due
    loaded = load_model(model.save(tmp_path / "m"))
    assert loaded.show_again.mode == "when_due"
    assert loaded.recommend(["a", "b"], n=3, now=NOW) == model.recommend(["a", "b"], n=3, now=NOW)
    everything, _ = loaded.recommend(["a"], n=3, now=NOW, apply_policy=False)
    assert set(everything[0]) == {"x", "y", "z"}
