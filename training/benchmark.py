"""Quality benchmarks with printed figures: MovieLens 100K (published protocol), Complete Journey,
synthetic."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import scipy.sparse as sp

from features.dataset import load_dataset
from features.generator import GeneratorConfig, generate
from features.importers import import_dataset
from features.interactions import build_interactions
from features.validation import validate_events
from omnirec.interaction_data import Interactions
from omnirec.settings import Settings
from training.evaluation import (
    ALL,
    EXPLORE,
    REPEAT,
    EvaluationSet,
    build_evaluation_set,
    evaluate,
    popularity_baseline,
)
from training.fitting import fit_model
from training.report import Results, markdown_table
from training.selection import DEFAULT_BUDGET_SECONDS, compare, select_model
from training.splits import random_per_user, split_events, time_split
from training.tuning import tune

MODELS = ("popularity", "als", "bpr", "itemknn", "ease")
PUBLISHED = {"BiVAE": 0.4751, "BPR (cornac)": 0.4420, "SAR": 0.3825}


def matrix_evaluation(
    train: sp.csr_matrix, test: sp.csr_matrix, customers: np.ndarray, items: np.ndarray
) -> EvaluationSet:
    """An evaluation set from two matrices with the same shape (random per-user protocol); each
    rating is a consumption, so the `never` show-again policy removes every seen item (the
    published protocol)."""
    test = sp.csr_matrix(test)
    test.data[:] = 1.0
    rows = np.flatnonzero(np.diff(test.indptr) > 0)
    consumed = sp.csr_matrix(train, dtype=np.float64, copy=True)
    consumed.data[:] = 1.0  # when does not matter: `never` hides whatever was consumed
    return EvaluationSet(
        Interactions(sp.csr_matrix(train, dtype=np.float32), customers, items, None, consumed),
        rows,
        {ALL: test[rows]},
        now=np.zeros(len(rows)),
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
    """Per-user random 75/25 split (seed 42), every rating an interaction, seen items removed,
    k=10."""
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
        print(
            f"{kind:<11} nDCG@10 {m['ndcg']:.4f}  P@10 {m['precision']:.4f}  R@10 "
            f"{m['recall']:.4f}  "
            f"MAP@10 {m['map']:.4f}  fit {fit_seconds:.2f}s  params {params}",
            flush=True,
        )
    _, chosen = compare(
        val_set,
        seed=settings.seed,
        k=10,
        exclude_seen=True,
        budget_seconds=DEFAULT_BUDGET_SECONDS,
        say=lambda _: None,
    )
    model = fit_model(chosen.kind, chosen.params, test_set.train, settings.seed)
    metrics = evaluate(model, test_set, model, 10)
    results["default pipeline"] = metrics
    m = metrics[ALL]
    print(
        f"default pipeline (chose {chosen.label} on validation) nDCG@10 {m['ndcg']:.4f}  "
        f"P@10 {m['precision']:.4f}  R@10 {m['recall']:.4f}  MAP@10 {m['map']:.4f}",
        flush=True,
    )
    print(
        "published (Microsoft Recommenders, same protocol): "
        + ", ".join(f"{k} {v}" for k, v in PUBLISHED.items())
    )
    return results


NEXT_BASKET_MODELS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("popularity", {}),
    ("buy_again", {}),
    ("repeat", {}),
    ("repeat_ranked", {}),
    ("itemknn", {}),
    ("als", {"factors": 64, "regularization": 20.0, "alpha": 2.0, "iterations": 15}),
    ("bpr", {}),
)


def completejourney(shared: Path, settings: Settings, trials: int) -> dict[str, Results]:
    """The full Complete Journey (1.47M purchase lines, 2,469 households): next basket (each
    household's last basket held out) and each household's last 28 days, bought items kept, every
    model beside the default pipeline (model chosen on a validation part), repeat/explore apart."""
    folder = shared / "completejourney-full"
    if not folder.exists():
        folder = shared / "completejourney-sample"
    events = validate_events(import_dataset("completejourney", folder).events).accepted
    out: dict[str, Results] = {}
    for protocol, days in (("next-basket", 0.0), ("last-days", 28.0)):
        split = split_events(events, protocol, days)
        train = build_interactions(split.train, settings.interactions)
        evaluation = build_evaluation_set(split, train, exclude_seen=False, max_users=None)
        fallback = popularity_baseline(train, exclude_bought=False)
        results: Results = {}
        print(
            f"\n== Complete Journey ({folder.name}, {events.num_rows:,} purchase lines): "
            f"{split.describe()}, {len(evaluation.rows):,} households, k=10, bought items kept =="
        )
        for kind, params in NEXT_BASKET_MODELS:
            started = time.perf_counter()
            model = fit_model(kind, params, train, settings.seed, exclude_bought=False)
            fit_seconds = time.perf_counter() - started
            results[kind] = evaluate(model, evaluation, fallback, 10)
            results[kind][ALL]["fit_seconds"] = fit_seconds
        # the same models on the previous quantity weighting (units capped at 10), for comparison
        linear = msgspec.structs.replace(settings.interactions, quantity_scaling="linear")
        linear_train = build_interactions(split.train, linear)
        for kind, params in NEXT_BASKET_MODELS:
            if kind in {"buy_again", "als"}:
                model = fit_model(kind, params, linear_train, settings.seed, exclude_bought=False)
                results[f"{kind} (linear quantities)"] = evaluate(model, evaluation, fallback, 10)
        # buy-again with a 90-day decay (from each household's own last purchase): the strongest
        # plain baseline found by hand before the repeat model existed
        decayed = msgspec.structs.replace(settings.interactions, decay_half_life_days=90.0)
        model = fit_model(
            "buy_again",
            {},
            build_interactions(split.train, decayed),
            settings.seed,
            exclude_bought=False,
        )
        results["buy_again (90-day decay)"] = evaluate(model, evaluation, fallback, 10)
        started = time.perf_counter()
        selection = select_model(
            split.train,
            settings,
            protocol=protocol,
            test_days=days or 7.0,
            relevant=("purchase",),
            exclude_seen=None,
            say=lambda _: None,
        )
        model = fit_model(
            selection.best.kind,
            selection.best.params,
            train,
            settings.seed,
            exclude_bought=selection.exclude_seen,
            due=selection.best.due,
        )
        results["default pipeline"] = evaluate(model, evaluation, fallback, 10)
        results["default pipeline"][ALL]["fit_seconds"] = time.perf_counter() - started
        print(
            f"default pipeline chose {selection.best.label} on validation "
            f"({selection.validation_customers:,} households)"
        )
        print(_split_table(results))
        lift = {
            m: results["default pipeline"][ALL][m] / max(1e-9, results["buy_again"][ALL][m]) - 1
            for m in ("recall", "ndcg")
        }
        print(
            f"default pipeline vs buy-again: Recall@10 {lift['recall']:+.1%}, "
            f"NDCG@10 {lift['ndcg']:+.1%}"
        )
        out[protocol] = results
    return out


def _split_table(results: Results) -> str:
    """Recall and nDCG at 10 on all held-out items, the repeat and the explore ones, and fit
    time."""
    lines = [
        "| model | R@10 | nDCG@10 | repeat R@10 | repeat nDCG@10 | explore R@10 | fit |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, slices in results.items():
        a, r, e = slices[ALL], slices.get(REPEAT, {}), slices.get(EXPLORE, {})
        lines.append(
            f"| {name} | {a['recall']:.4f} | {a['ndcg']:.4f} | {r.get('recall', 0):.4f} | "
            f"{r.get('ndcg', 0):.4f} | {e.get('recall', 0):.4f} | {a.get('fit_seconds', 0):.1f} s |"
        )
    return "\n".join(lines)


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
        results = {
            "als (default)": evaluate(model, evaluation, fallback, 10),
            "popularity": evaluate(fallback, evaluation, fallback, 10),
        }
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
