"""Quality benchmarks with printed figures: MovieLens 100K (published protocol), Complete Journey, synthetic."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from features.dataset import load_dataset
from features.generator import GeneratorConfig, generate
from features.importers import import_dataset
from features.interactions import Interactions, build_interactions
from features.validation import validate_events
from omnirec.settings import Settings
from training.evaluation import (
    ALL,
    EvaluationSet,
    build_evaluation_set,
    evaluate,
    popularity_baseline,
)
from training.pipeline import fit_model
from training.report import markdown_table
from training.splits import random_per_user, time_split
from training.tuning import tune

MODELS = ("popularity", "als", "bpr", "itemknn", "ease")
PUBLISHED = {"BiVAE": 0.4751, "BPR (cornac)": 0.4420, "SAR": 0.3825}


def matrix_evaluation(
    train: sp.csr_matrix, test: sp.csr_matrix, customers: np.ndarray, items: np.ndarray
) -> EvaluationSet:
    """An evaluation set from two matrices with the same shape (random per-user protocol)."""
    test = sp.csr_matrix(test)
    test.data[:] = 1.0
    rows = np.flatnonzero(np.diff(test.indptr) > 0)
    return EvaluationSet(
        Interactions(sp.csr_matrix(train, dtype=np.float32), customers, items),
        rows,
        {ALL: test[rows]},
    )


def _binary(matrix: sp.csr_matrix) -> sp.csr_matrix:
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    out.data[:] = 1.0
    return out


def _tuned_fit(
    kind: str, validation: EvaluationSet, train: Interactions, trials: int, seed: int
) -> tuple[Any, dict[str, Any], float]:
    best = tune(kind, validation, trials=trials, seed=seed) if kind != "popularity" else None
    params = best.params if best else {}
    started = time.perf_counter()
    model = fit_model(kind, params, train, seed)
    return model, params, time.perf_counter() - started


def movielens(
    shared: Path, settings: Settings, trials: int
) -> dict[str, dict[str, dict[str, float]]]:
    """Per-user random 75/25 split (seed 42), every rating an interaction, seen items removed, k=10."""
    imported = import_dataset("movielens", shared / "movielens-100k")
    inter = build_interactions(validate_events(imported.events).accepted)
    matrix = _binary(inter.matrix)
    train, test = random_per_user(matrix, 0.25, seed=42)
    inner, validation = random_per_user(train, 0.25, seed=43)  # tuning never sees the test part
    val_set = matrix_evaluation(inner, validation, inter.customer_ids, inter.item_ids)
    test_set = matrix_evaluation(train, test, inter.customer_ids, inter.item_ids)
    results: dict[str, dict[str, dict[str, float]]] = {}
    print("\n== MovieLens 100K: per-user random 75/25 (seed 42), k=10, seen items removed ==")
    for kind in MODELS:
        model, params, fit_seconds = _tuned_fit(
            kind, val_set, test_set.train, trials, settings.seed
        )
        metrics = evaluate(model, test_set, model, 10)
        metrics[ALL]["fit_seconds"] = fit_seconds
        results[kind] = metrics
        m = metrics[ALL]
        print(f"{kind:<11} nDCG@10 {m['ndcg']:.4f}  P@10 {m['precision']:.4f}  R@10 {m['recall']:.4f}  "
              f"MAP@10 {m['map']:.4f}  fit {fit_seconds:.2f}s  params {params}", flush=True)  # fmt: skip
    print(
        "published (Microsoft Recommenders, same protocol): "
        + ", ".join(f"{k} {v}" for k, v in PUBLISHED.items())
    )
    return results


def completejourney(
    shared: Path, settings: Settings, trials: int
) -> dict[str, dict[str, dict[str, float]]]:
    """Real store purchases; time split (last 28 days); with and without excluding purchased items."""
    imported = import_dataset("completejourney", shared / "completejourney-sample")
    events = validate_events(imported.events).accepted
    # items bought at least twice before the test period: a 20k-item catalogue where most items
    # were bought once is noise for every model, and EASE's dense item x item inverse stays small
    cut = time_split(events, test_days=28)
    counts = pc.value_counts(cut.train.column("item_id").cast(pa.string()))
    frequent = pc.filter(counts.field("values"), pc.greater_equal(counts.field("counts"), 2))
    events = events.filter(pc.is_in(events.column("item_id").cast(pa.string()), frequent))
    split = time_split(events, test_days=28)
    train = build_interactions(split.train, settings.interactions)
    inner_split = time_split(split.train, test_days=28)
    inner = build_interactions(inner_split.train, settings.interactions)
    results: dict[str, dict[str, dict[str, float]]] = {}
    print(
        f"\n== Complete Journey sample: time split at {split.cutoff:%Y-%m-%d} (28 test days), k=10 =="
    )
    for exclude_seen in (True, False):
        evaluation = build_evaluation_set(split, train, exclude_seen=exclude_seen, max_users=None)
        validation = build_evaluation_set(
            inner_split, inner, exclude_seen=exclude_seen, max_users=None
        )
        fallback = popularity_baseline(train)
        label = "exclude purchased" if exclude_seen else "keep purchased"
        for kind in ("buy_again", *MODELS):
            if kind == "buy_again" and exclude_seen:
                continue  # with purchased items removed it is popularity
            try:
                model, _, _ = _tuned_fit(
                    kind if kind != "buy_again" else "popularity",
                    validation,
                    train,
                    max(3, trials // 3),
                    settings.seed,
                )
                if kind == "buy_again":
                    model = fit_model("buy_again", {}, train, settings.seed)
            except Exception as exc:  # a model that refuses this catalogue is reported, not hidden
                print(f"{kind}: skipped ({exc})")
                continue
            results[f"{kind} ({label})"] = evaluate(model, evaluation, fallback, 10)
    print(markdown_table(results, 10))
    return results


def synthetic(settings: Settings) -> dict[str, dict[str, dict[str, float]]]:
    """The default pipeline (ALS, default weights) against popularity, sliced by channel."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(
            GeneratorConfig(customers=20_000, items=2_000, days=90, seed=settings.seed), Path(tmp)
        )
        dataset = load_dataset(tmp)
        split = time_split(dataset.events, 7)
        train = build_interactions(split.train, settings.interactions)
        evaluation = build_evaluation_set(split, train)
        fallback = popularity_baseline(train)
        model = fit_model("als", {}, train, settings.seed)
        results = {"als (default)": evaluate(model, evaluation, fallback, 10),
                   "popularity": evaluate(fallback, evaluation, fallback, 10)}  # fmt: skip
    print("\n== Synthetic omnichannel (20k customers, 2k items, 90 days; 7 test days) ==")
    for slice_name in sorted(results["popularity"], key=lambda s: (s != ALL, s)):
        print(f"-- {slice_name}")
        print(markdown_table(results, 10, slice_name))
    ratio = results["als (default)"][ALL]["ndcg"] / max(1e-9, results["popularity"][ALL]["ndcg"])
    print(f"ALS / popularity nDCG@10 = {ratio:.2f}x")
    return results


def run_benchmarks(suite: str, shared: Path, settings: Settings, trials: int = 15) -> None:
    """Run one suite or all and print their tables."""
    if suite in {"movielens", "all"}:
        movielens(shared, settings, trials)
    if suite in {"completejourney", "all"}:
        completejourney(shared, settings, trials)
    if suite in {"synthetic", "all"}:
        synthetic(settings)
