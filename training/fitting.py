"""One model of a kind fitted on a matrix: the step that selection, tuning, the benchmark and
the pipeline share."""

from __future__ import annotations

import sys
from typing import Any

from models import create_model
from models.base import Recommender
from omnirec.interaction_data import Interactions


def fit_model(
    kind: str,
    params: dict[str, Any],
    interactions: Interactions,
    seed: int,
    *,
    serving_index: bool = True,
) -> Recommender:
    """Create and fit a model; ALS and BPR get the seed unless params name one. Without
    `serving_index` (a model only evaluated, never published), no HNSW index is built."""
    if kind in {"als", "bpr"}:
        params = {"seed": seed, **params}
    model = create_model(kind, **params)
    if not serving_index and hasattr(model, "ann_min_items"):
        model.ann_min_items = sys.maxsize
    return model.fit(interactions)
