"""One model of a kind fitted on a matrix: the step that selection, tuning, the benchmark and
the pipeline share."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from models import create_model
from models.base import Recommender
from models.show_again import choose_policy
from omnirec.interaction_data import Interactions


def fit_model(
    kind: str,
    params: dict[str, Any],
    interactions: Interactions,
    seed: int,
    *,
    serving_index: bool = True,
    exclude_bought: bool = True,
    due: bool = True,
    configured_days: npt.NDArray[np.float64] | None = None,
    content: sp.csr_matrix | None = None,
) -> Recommender:
    """Create and fit a model; ALS and BPR get the seed unless params name one. Without
    `serving_index` (a model only evaluated, never published), no HNSW index is built. The
    model carries the show-again policy (`models.show_again.choose_policy`) that every door
    applies: bought items excluded, or kept (when due, for models that learn windows). With
    `content` (the catalogue's metadata per item column), items without events are placed by it."""
    if kind in {"als", "bpr"}:
        params = {"seed": seed, **params}
    model = create_model(kind, **params)
    if not serving_index and hasattr(model, "ann_min_items"):
        model.ann_min_items = sys.maxsize
    model.fit(interactions)
    if content is not None:
        model.place_cold(content)
    model.show_again = choose_policy(
        model.n_items,
        model.repurchase_window_days(),
        exclude_bought=exclude_bought,
        due=due,
        configured_days=configured_days,
    )
    return model
