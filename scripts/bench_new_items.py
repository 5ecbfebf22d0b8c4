"""New items reach customers (`./dev bench new-items [--data FOLDER]`, Complete Journey by default):
a time split whose test weeks bring items nobody bought before; the catalogue's items are model
columns, and those without events are placed by their metadata (`models.content`). Printed for
the fast families: recall@10 on the held-out purchases of new items, against "new items of the
customer's favourite categories" (what a rule would do), and recall@10 on everything, with and
without the placement (the known items must not lose)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from features.importers import import_completejourney
from features.interactions import build_interactions
from features.validation import validate_events
from models.base import Recommender
from training.content_features import item_content, listed_items
from training.evaluation import ALL, NEW_ITEMS, EvaluationSet, build_evaluation_set, evaluate
from training.fitting import fit_model
from training.metrics import ranking_metrics
from training.splits import time_split

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "completejourney-full"
MODELS = (("repeat", {}), ("als", {"factors": 64, "regularization": 20.0, "alpha": 2.0}))
TEST_DAYS = 28.0


def _category_rule(evaluation: EvaluationSet, categories: np.ndarray, k: int) -> np.ndarray:
    """Per evaluated customer: the new items of their most bought categories, in catalogue
    order (nothing else is known of a new item)."""
    train = evaluation.train
    cold = np.flatnonzero(np.diff(train.matrix.tocsc().indptr) == 0)
    codes, names = np.unique(categories, return_inverse=True)[1], None
    del names
    n_cat = int(codes.max()) + 1
    bought = sp.csr_matrix(train.matrix[evaluation.rows] > 0, dtype=np.float32)
    taste = np.asarray(
        (
            bought
            @ sp.csr_matrix(
                (np.ones(len(codes)), (np.arange(len(codes)), codes)), shape=(len(codes), n_cat)
            )
        ).todense()
    )
    out = np.full((len(evaluation.rows), k), -1, np.int64)
    cold_codes = codes[cold]
    for r in range(len(evaluation.rows)):
        order = np.argsort(-taste[r][cold_codes], kind="stable")[:k]
        out[r, : len(order)] = cold[order]
    return out


def bench_new_items(folder: Path | None = None) -> None:
    source = folder or SHARED
    imported = import_completejourney(source)
    events = validate_events(imported.events, str(source)).accepted
    catalogue = imported.catalogue
    assert catalogue is not None
    split = time_split(events, TEST_DAYS)
    listed = listed_items(catalogue)
    train = build_interactions(split.train, extra_items=listed)
    evaluation = build_evaluation_set(split, train, exclude_seen=False)
    cold = int((np.diff(train.matrix.tocsc().indptr) == 0).sum())
    new_buyers = int((np.diff(evaluation.truth[NEW_ITEMS].indptr) > 0).sum())
    print(
        f"{source.name}: {split.describe()}; {train.shape[1]:,} item columns, {cold:,} without "
        f"events; {new_buyers:,} of {len(evaluation.rows):,} returning customers bought new items"
    )
    started = time.perf_counter()
    content = item_content(catalogue, train.item_ids)
    print(f"item metadata: {content.shape[1]:,} features ({time.perf_counter() - started:.1f} s)")
    categories = np.array(
        [str(c) for c in _by_item(catalogue, "category", train.item_ids)], dtype=object
    )
    rule = _category_rule(evaluation, categories, 10)
    truth = evaluation.truth[NEW_ITEMS]
    print("| model | new for you: recall@10 | whole list: recall@10 | placement |")
    print("|---|---|---|---|")
    rule_recall = ranking_metrics(rule, truth, 10)["recall"]
    print(f"| new items of the favourite categories | {rule_recall:.4f} | - | - |")
    for kind, params in MODELS:
        model = fit_model(kind, params, train, 42, exclude_bought=False, due=False)
        plain = _measure(model, evaluation)
        started = time.perf_counter()
        placed = model.place_cold(content)
        took = time.perf_counter() - started
        with_content = _measure(model, evaluation)
        print(f"| {kind} | {plain[0]:.4f} | {plain[1]:.4f} | none |")
        print(
            f"| {kind} + metadata | {with_content[0]:.4f} | {with_content[1]:.4f} | "
            f"{placed:,} items in {took:.1f} s |"
        )


def _measure(model: Recommender, evaluation: EvaluationSet) -> tuple[float, float]:
    """(recall@10 of a "new for you" list: the new items ranked by the model, recall@10 of the
    whole list)."""
    results = evaluate(model, evaluation, model, 10)
    cold = np.flatnonzero(np.diff(evaluation.train.matrix.tocsc().indptr) == 0)
    allowed = np.zeros(model.n_items, bool)
    allowed[cold] = True
    ids, _ = model.recommend_rows(evaluation.rows, n=10, exclude_seen=False, allowed=allowed)
    return ranking_metrics(ids, evaluation.truth[NEW_ITEMS], 10)["recall"], results[ALL]["recall"]


def _by_item(catalogue, column: str, item_ids: np.ndarray) -> list[object]:  # type: ignore[no-untyped-def]
    table = catalogue.to_pydict()
    at = dict(zip(table["item_id"], table[column], strict=True))
    return [at.get(i, "") for i in item_ids.tolist()]


__all__ = ["bench_new_items"]
