"""The HNSW item index: recall against brute force, stored without pickle, used by factor models
over big catalogues."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from implicit.cpu.topk import topk

from models import load_model
from models.ann import ItemIndex
from models.factor import ALSRecommender
from omnirec.errors import ModelFormatError
from tests.models.test_contract import PARAMS, block_matrix


def test_recall_against_brute_force_and_a_byte_round_trip() -> None:
    rng = np.random.default_rng(1)
    items = rng.standard_normal((5_000, 16)).astype(np.float32)
    queries = rng.standard_normal((200, 16)).astype(np.float32)
    truth, _ = topk(items, queries, 10, num_threads=1)
    index = ItemIndex.build(items)
    ids, scores = index.search(queries, 10)
    recall = np.mean(
        [len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), truth.tolist(), strict=True)]
    )
    assert recall >= 0.95
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    again = ItemIndex.from_array(index.to_array(), 5_000, 16)
    np.testing.assert_array_equal(again.search(queries, 10)[0], ids)
    with pytest.raises(ModelFormatError, match="holds 5000 x 16"):
        ItemIndex.from_array(index.to_array(), 4_000, 16)
    with pytest.raises(ModelFormatError):
        ItemIndex.from_array(np.frombuffer(b"not an index at all", np.uint8), 5_000, 16)


def test_a_factor_model_over_a_big_catalogue_keeps_its_index(tmp_path: Path) -> None:
    model = ALSRecommender(**PARAMS["als"])
    model.ann_min_items = 10  # the block matrix's 12 items count as big here
    model.fit(block_matrix())
    assert model.index is not None and model.index.size == 12
    rows = np.arange(40)
    fast, _ = model.candidates(rows, 5)
    exact, _ = topk(model.item_factors, model.user_factors[rows], 5, num_threads=1)
    assert np.mean(np.sort(fast, axis=1) == np.sort(exact, axis=1)) == 1.0
    loaded = load_model(model.save(tmp_path / "m"))  # arrays.npz read with allow_pickle=False
    assert isinstance(loaded, ALSRecommender) and loaded.index is not None
    np.testing.assert_array_equal(loaded.candidates(rows, 5)[0], fast)
    top = loaded.approximate_top(rows[:3], loaded.history_rows(rows[:3]), 4)
    assert top is not None and top[0].shape == (3, 4)
    small = ALSRecommender(**PARAMS["als"]).fit(block_matrix())
    assert small.index is None and small.approximate_top(rows, small.history_rows(rows), 4) is None
