"""Splits never leak the future into training."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import scipy.sparse as sp

from features.validation import validate_events
from omnirec.errors import DataError
from training.splits import (
    last_basket_split,
    last_days_split,
    leave_last_out,
    random_per_user,
    split_events,
    time_split,
)


def make_events() -> pa.Table:
    rows = [
        ("a", "x", "view", 1),
        ("a", "y", "purchase", 2),
        ("a", "z", "purchase", 5),
        ("b", "x", "purchase", 3),
        ("b", "y", "view", 6),
        ("c", "z", "view", 4),
    ]
    raw = pa.table(
        {
            "customer_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": [r[2] for r in rows],
            "channel": ["web"] * len(rows),
            "timestamp": [f"2026-10-0{r[3]}T00:00:00Z" for r in rows],
        }
    )
    return validate_events(raw).accepted


def test_time_split_train_strictly_before_test() -> None:
    split = time_split(make_events(), cutoff=datetime(2026, 10, 4, tzinfo=UTC))
    assert pc.max(split.train["timestamp"]).as_py() < pc.min(split.test["timestamp"]).as_py()
    assert split.train.num_rows == 3 and split.test.num_rows == 3
    inner = time_split(split.train, test_days=1)  # validation carved from the training part only
    assert pc.max(inner.test["timestamp"]).as_py() < split.cutoff


def test_time_split_refuses_empty_parts() -> None:
    with pytest.raises(DataError, match="empty"):
        time_split(make_events(), cutoff=datetime(2030, 1, 1, tzinfo=UTC))


def test_leave_last_out_keeps_only_the_past_in_train() -> None:
    train, test = leave_last_out(make_events())
    pairs = {(r["customer_id"], r["item_id"]) for r in test.to_pylist()}
    assert pairs == {("a", "z"), ("b", "x")}
    train_rows = train.to_pylist()
    assert ("b", "y") not in {
        (r["customer_id"], r["item_id"]) for r in train_rows
    }  # after b's last purchase
    assert all(r["timestamp"].day < 5 for r in train_rows if r["customer_id"] == "a")
    assert any(r["customer_id"] == "c" for r in train_rows)  # no purchase: all history is train


def test_random_per_user_is_disjoint_and_stratified() -> None:
    rng = np.random.default_rng(1)
    matrix = sp.csr_matrix((rng.random((30, 40)) < 0.3).astype(np.float32))
    train, test = random_per_user(matrix, 0.25, seed=42)
    assert train.multiply(test).nnz == 0
    assert (train + test - matrix).nnz == 0
    lengths = np.diff(matrix.indptr)
    assert np.array_equal(np.diff(train.indptr), np.round(0.75 * lengths).astype(int))
    again, _ = random_per_user(matrix, 0.25, seed=42)
    assert (again != train).nnz == 0


def basket_events() -> pa.Table:
    """a: baskets b1 (day 1) and b2 (day 5, two lines); b: one basket; c: two undated baskets."""
    rows = [
        ("a", "x", "b1", 1),
        ("a", "y", "b2", 5),
        ("a", "z", "b2", 5),
        ("a", "v", None, 3),
        ("b", "x", "b3", 2),
        ("c", "y", None, 2),
        ("c", "z", None, 6),
    ]
    raw = pa.table(
        {
            "customer_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": ["purchase" if r[1] != "v" else "view" for r in rows],
            "channel": ["store"] * len(rows),
            "session_id": [r[2] for r in rows],
            "timestamp": [f"2026-10-0{r[3]}T00:00:00Z" for r in rows],
        }
    )
    return validate_events(raw).accepted


def pairs(table: pa.Table) -> set[tuple[str, str]]:
    return set(zip(table["customer_id"].to_pylist(), table["item_id"].to_pylist(), strict=True))


def test_next_basket_holds_out_each_customers_whole_last_basket() -> None:
    split = last_basket_split(basket_events())
    assert pairs(split.test) == {("a", "y"), ("a", "z"), ("b", "x"), ("c", "z")}
    # each customer's train part ends before their own basket; b's only basket leaves b new
    assert pairs(split.train) == {("a", "x"), ("a", "v"), ("c", "y")}
    assert split.protocol == "next-basket" and "last basket" in split.describe()


def test_last_days_per_customer() -> None:
    split = last_days_split(basket_events(), test_days=1.5)
    assert pairs(split.test) == {("a", "y"), ("a", "z"), ("b", "x"), ("c", "z")}
    assert ("a", "v") in pairs(split.train) and ("c", "y") in pairs(split.train)


def test_unknown_protocol_is_refused() -> None:
    with pytest.raises(DataError, match="unknown protocol"):
        split_events(basket_events(), "random")
