"""Offline evaluation in time order: metrics at k sliced by channel and by new vs returning
customer."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from features.interactions import build_interactions
from models.base import Recommender
from models.popularity import PopularityRecommender
from models.show_again import ShowAgain
from omnirec.interaction_data import Interactions
from training.metrics import coverage, ranking_metrics
from training.splits import EventSplit

ALL = "all"
REPEAT = "repeat"  # test items the customer had bought before
EXPLORE = "explore"  # test items new to the customer
NEW_ITEMS = "new_items"  # test items nobody bought or viewed in training (placed by metadata)


@dataclass(frozen=True)
class EvaluationSet:
    """Truth matrices for one split: rows are evaluated customers, columns the training items."""

    train: Interactions
    rows: npt.NDArray[np.int64]  # training rows of the returning customers evaluated
    truth: dict[str, sp.csr_matrix]  # slice -> (len(rows), items) relevant items
    new_truth: dict[str, sp.csr_matrix] = field(
        default_factory=dict
    )  # slice -> (new customers, items)
    exclude_seen: bool = True
    # when each evaluated row is asked (epoch seconds): the split's cut-off, or the customer's own
    now: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))


def _binary(matrix: sp.csr_matrix) -> sp.csr_matrix:
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    out.data[:] = 1.0
    out.eliminate_zeros()
    return out


def _channel_names(events: pa.Table) -> list[str]:
    values = pc.unique(events.column("channel").cast(pa.string())).to_pylist()
    return sorted(str(v) for v in values if v is not None)


def build_evaluation_set(
    split: EventSplit,
    train: Interactions,
    *,
    relevant_types: tuple[str, ...] = ("purchase",),
    exclude_seen: bool = True,
    max_users: int | None = 20_000,
    seed: int = 42,
) -> EvaluationSet:
    """Truth from the test period: items each customer bought (by default) after the cut-off.

    With `exclude_seen`, items the customer bought in training are not counted as relevant (the
    `never` show-again policy hides them). Returning customers are sampled down to `max_users`
    (seeded) to bound the cost on large data. Each is asked at the split's cut-off, or at their
    own (per-customer protocols), which is when the show-again policy is applied.
    """
    test = split.test.filter(
        pc.is_in(split.test.column("event_type").cast(pa.string()), pa.array(list(relevant_types)))
    )
    slices: dict[str, pa.Table] = {ALL: test}
    for channel in _channel_names(test):
        slices[f"channel={channel}"] = test.filter(
            pc.equal(test.column("channel").cast(pa.string()), channel)
        )

    def truth_for(table: pa.Table, customers: npt.NDArray[np.str_] | None) -> Interactions:
        return build_interactions(table, customer_ids=customers, item_ids=train.item_ids)

    returning_all = {
        name: _binary(truth_for(t, train.customer_ids).matrix) for name, t in slices.items()
    }
    seen = (
        _binary(train.last_bought)
        if train.last_bought is not None
        else sp.csr_matrix(train.shape, dtype=np.float32)
    )
    if exclude_seen:
        returning_all = {n: _binary(m - m.multiply(seen)) for n, m in returning_all.items()}
    else:  # what they bought before (repeat) and what is new to them (explore), apart
        repeat = _binary(returning_all[ALL].multiply(seen))
        returning_all[REPEAT] = repeat
        returning_all[EXPLORE] = _binary(returning_all[ALL] - repeat)
    cold = sp.diags((np.diff(train.matrix.tocsc().indptr) == 0).astype(np.float32))
    if cold.diagonal().any():  # the catalogue's items without events: their own slice
        returning_all[NEW_ITEMS] = _binary(returning_all[ALL] @ cold)
    rows = np.flatnonzero(np.diff(returning_all[ALL].indptr) > 0)
    if max_users is not None and len(rows) > max_users:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_users, replace=False))
    truth = {name: sp.csr_matrix(m[rows]) for name, m in returning_all.items()}

    known = pa.array(train.customer_ids.tolist(), pa.string())
    new_events = {
        name: t.filter(pc.invert(pc.is_in(t.column("customer_id").cast(pa.string()), known)))
        for name, t in slices.items()
    }
    new_truth: dict[str, sp.csr_matrix] = {}
    if new_events[ALL].num_rows:
        new_customers = truth_for(new_events[ALL], None).customer_ids
        new_truth = {
            name: _binary(truth_for(t, new_customers).matrix) for name, t in new_events.items()
        }
        if not exclude_seen:  # a new customer has nothing to repeat
            new_truth[EXPLORE] = new_truth[ALL]
            new_truth[REPEAT] = sp.csr_matrix(new_truth[ALL].shape, dtype=np.float32)
        if NEW_ITEMS in returning_all:
            new_truth[NEW_ITEMS] = _binary(new_truth[ALL] @ cold)
    return EvaluationSet(train, rows, truth, new_truth, exclude_seen, _asked_at(split, train)[rows])


def _asked_at(split: EventSplit, train: Interactions) -> npt.NDArray[np.float64]:
    """Per training customer: when they are asked (epoch seconds): the cut-off of a time split,
    else the customer's first test event (their own cut)."""
    cutoff = split.cutoff.timestamp()
    at = np.full(len(train.customer_ids), cutoff)
    if split.protocol == "time" or split.test.num_rows == 0:
        return at
    first = split.test.group_by("customer_id").aggregate([("timestamp", "min")])
    ids = first.column("customer_id").cast(pa.string())
    position = pc.index_in(ids, value_set=pa.array(train.customer_ids.tolist(), pa.string()))
    found = np.asarray(position.fill_null(-1).to_numpy(), dtype=np.int64)
    stamps = pc.cast(first.column("timestamp_min"), pa.int64()).to_numpy() / 1e6
    at[found[found >= 0]] = stamps[found >= 0]
    return at


def evaluate(
    model: Recommender, evaluation: EvaluationSet, fallback: Recommender, k: int = 10
) -> dict[str, dict[str, float]]:
    """Metrics per slice: 'returning', 'new', 'all' and each channel ('channel=web', ...).

    Returning customers are scored by `model`; new customers by `fallback` (what serving does).
    """
    # the model's own view of the history (a repeat model keeps decayed occasions, not the
    # matrix), less what its show-again policy hides when each customer is asked
    recs, _ = policy_recommendations(model, evaluation.rows, evaluation.now, k)
    results: dict[str, dict[str, float]] = {}
    results["returning"] = ranking_metrics(recs, evaluation.truth[ALL], k)
    new_recs = np.zeros((0, k), np.int64)
    if evaluation.new_truth:
        n_new = evaluation.new_truth[ALL].shape[0]
        empty = sp.csr_matrix((n_new, evaluation.train.matrix.shape[1]), dtype=np.float32)
        new_recs, _ = fallback.recommend_rows(
            np.full(n_new, -1, np.int64), empty, n=k, exclude_seen=False
        )
        results["new"] = ranking_metrics(new_recs, evaluation.new_truth[ALL], k)
    for name, truth in evaluation.truth.items():
        combined_recs = np.vstack([recs, new_recs]) if evaluation.new_truth else recs
        combined_truth = (
            sp.vstack([truth, evaluation.new_truth[name]]).tocsr()
            if evaluation.new_truth
            else truth
        )
        results[name] = ranking_metrics(combined_recs, combined_truth, k)
    results[ALL]["coverage"] = coverage(recs, evaluation.train.matrix.shape[1])
    return results


def policy_recommendations(
    model: Recommender, rows: npt.NDArray[np.int64], now: npt.NDArray[np.float64], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The top `k` item columns of training customers `rows` asked at `now` (epoch seconds per
    row), without what the model's show-again policy hides: the pyfunc and the service answer
    the same."""
    return model.recommend_rows(rows, n=k, exclude_seen=False, exclude=model.hidden_rows(rows, now))


def popularity_baseline(train: Interactions, exclude_bought: bool = True) -> PopularityRecommender:
    """The popularity model from the same training data (the baseline of every report), bought
    items excluded or kept as the run's policy says."""
    model = PopularityRecommender()
    model.fit(train)
    model.show_again = ShowAgain("never" if exclude_bought else "always")
    return model


def flat_metrics(
    results: dict[str, dict[str, float]], k: int, prefix: str = ""
) -> dict[str, float]:
    """{'ndcg_at_10': ..., 'channel_web.ndcg_at_10': ...} for MLflow (slices other than 'all'
    prefixed)."""
    flat: dict[str, float] = {}
    for slice_name, metrics in results.items():
        scope = "" if slice_name == ALL else slice_name.replace("=", "_") + "."
        for metric, value in metrics.items():
            name = metric if metric in {"users", "coverage"} else f"{metric}_at_{k}"
            flat[f"{prefix}{scope}{name}"] = float(value)
    return flat
