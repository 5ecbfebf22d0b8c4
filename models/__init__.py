"""Recommenders behind one interface; save and load without pickle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from models.base import FORMAT_VERSION, Recommender
from models.factor import ALSRecommender, BPRRecommender
from models.neighbours import EASERecommender, ItemKNNRecommender
from models.popularity import BuyAgainRecommender, PopularityRecommender
from models.ranked import RankedRepeatRecommender
from models.repeat import RepeatExploreRecommender
from omnirec.errors import ModelError, ModelFormatError

MODEL_KINDS: dict[str, type[Recommender]] = {
    cls.kind: cls
    for cls in (
        ALSRecommender,
        BPRRecommender,
        ItemKNNRecommender,
        EASERecommender,
        PopularityRecommender,
        BuyAgainRecommender,
        RepeatExploreRecommender,
        RankedRepeatRecommender,
    )
}

__all__ = [
    "MODEL_KINDS",
    "ALSRecommender",
    "BPRRecommender",
    "BuyAgainRecommender",
    "EASERecommender",
    "ItemKNNRecommender",
    "PopularityRecommender",
    "RankedRepeatRecommender",
    "Recommender",
    "RepeatExploreRecommender",
    "create_model",
    "load_model",
]


def create_model(kind: str, **params: Any) -> Recommender:
    """A new, unfitted model of `kind` with `params`."""
    try:
        cls = MODEL_KINDS[kind]
    except KeyError as exc:
        raise ModelError(f"unknown model kind {kind!r}; known: {', '.join(MODEL_KINDS)}") from exc
    try:
        return cls(**params)
    except TypeError as exc:
        raise ModelError(f"{kind}: bad parameters {params}: {exc}") from exc


def load_model(folder: Path) -> Recommender:
    """Load a model saved by `Recommender.save` (arrays with allow_pickle=False, JSON metadata)."""
    meta_path, arrays_path = folder / "model.json", folder / "arrays.npz"
    if not meta_path.exists() or not arrays_path.exists():
        raise ModelFormatError(f"{folder}: not a saved omnirec model (model.json + arrays.npz)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{meta_path}: not JSON: {exc}") from exc
    if meta.get("format") != FORMAT_VERSION:
        raise ModelFormatError(f"{meta_path}: format {meta.get('format')} is not {FORMAT_VERSION}")
    cls = MODEL_KINDS.get(str(meta.get("kind")))
    if cls is None:
        raise ModelFormatError(f"{meta_path}: unknown kind {meta.get('kind')!r}")
    try:
        with np.load(arrays_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as exc:
        raise ModelFormatError(f"{arrays_path}: refused ({exc})") from exc
    return cls._from_arrays(meta, arrays)
