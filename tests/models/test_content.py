"""Items without events placed by the catalogue: scored from the known items most like them, their
similar items their own kind, stored with the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from models import load_model
from models.content import COLD_SHARE
from omnirec.interaction_data import Interactions
from training.content_features import item_content
from training.fitting import fit_model

ITEMS = np.array(["tea1", "tea2", "tea3", "shoe1", "shoe2", "tea-new", "shoe-new"])
CATALOGUE = pa.table(
    {
        "item_id": ITEMS.tolist(),
        "name": [
            "Green tea",
            "Black tea",
            "Mint tea",
            "Trail shoe",
            "Road shoe",
            "Jasmine tea",
            "Hiking shoe",
        ],
        "category": ["tea", "tea", "tea", "shoes", "shoes", "tea", "shoes"],
        "brand": ["Leaf", "Leaf", "Leaf", "Run", "Run", "Leaf", "Run"],
        "price": [4.0, 4.5, 5.0, 80.0, 90.0, 4.2, 85.0],
    }
)


def data() -> Interactions:
    """40 tea drinkers and 40 runners; nobody has bought the two new items yet."""
    rows, cols = [], []
    for c in range(80):
        for item in (0, 1, 2) if c < 40 else (3, 4):
            if (c + item) % 3:
                rows.append(c)
                cols.append(item)
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(80, len(ITEMS)))
    return Interactions(matrix, np.array([f"c{i}" for i in range(80)]), ITEMS)


def test_new_items_reach_the_customers_whose_taste_fits(tmp_path: Path) -> None:
    content = item_content(CATALOGUE, ITEMS)
    for kind, params in (("als", {"factors": 4, "iterations": 10}), ("itemknn", {}), ("ease", {})):
        model = fit_model(kind, params, data(), 7, exclude_bought=False, content=content)
        assert model.cold is not None
        scores = model.scores(np.array([0, 50]), model.history_rows(np.array([0, 50])))
        tea_new, shoe_new = 5, 6
        assert scores[0, tea_new] > scores[0, shoe_new]  # the tea drinker: the new tea
        assert scores[1, shoe_new] > scores[1, tea_new]  # the runner: the new shoe
        # a share of what its kind scores, never above the best of them
        assert 0 < scores[0, tea_new] <= COLD_SHARE * scores[0, :3].max() + 1e-6
        similar, _ = model.similar_items(np.array([tea_new]), n=3)
        assert set(ITEMS[similar[0]]) == {"tea1", "tea2", "tea3"}  # its own kind
        loaded = load_model(model.save(tmp_path / kind))
        assert np.allclose(
            loaded.scores(np.array([0]), loaded.history_rows(np.array([0]))), scores[:1]
        )
