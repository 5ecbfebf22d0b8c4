"""The compiled exact top-k against numpy's stable sort, ties and short catalogues included."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from threadpoolctl import ThreadpoolController

from models import ann
from models.topk import dense_top_k, exact_top


def expected(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k best columns by a stable sort (ties: the lower column first), padded."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(scores, order, axis=1)
    pad = k - order.shape[1]
    return (
        np.pad(order, ((0, 0), (0, pad)), constant_values=-1),
        np.pad(best, ((0, 0), (0, pad)), constant_values=-np.inf),
    )


@pytest.mark.parametrize(
    ("rows", "items", "k"),
    [(64, 20_000, 200), (50, 3_001, 10), (7, 12, 5), (5, 12, 15), (9, 33, 3), (30, 1_000, 1)],
)
def test_matches_a_stable_sort(rows: int, items: int, k: int) -> None:
    rng = np.random.default_rng(rows * items + k)
    scores = rng.standard_normal((rows, items), dtype=np.float32)
    ids, best = dense_top_k(scores, k)
    want_ids, want_best = expected(scores, k)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(best, want_best)


def test_ties_negative_scores_and_a_flat_row() -> None:
    """Scores rounded to a few values (many ties across the threshold), all negative in one row,
    all equal in another."""
    rng = np.random.default_rng(3)
    scores = np.round(rng.standard_normal((40, 5_000)), 1).astype(np.float32)
    scores[1] = -np.abs(scores[1]) - 1.0
    scores[2] = 0.25
    for k in (1, 17, 200):
        ids, best = dense_top_k(scores, k)
        want_ids, want_best = expected(scores, k)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_array_equal(best, want_best)


@pytest.mark.parametrize("tile_scores", [8_000_000, 40_000, 2_000])
def test_exact_top_is_the_inner_product_top_k(
    tile_scores: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One tile (here, BLAS as configured), tiles of 20 rows and of 16 (the least) taken by the
    threads: the same exact answer, and BLAS's threads as they were afterwards."""
    monkeypatch.setattr(ann, "EXACT_TILE_SCORES", tile_scores)
    rng = np.random.default_rng(5)
    items = rng.standard_normal((2_000, 16), dtype=np.float32)
    queries = rng.standard_normal((301, 16), dtype=np.float32)
    blas_before = [lib["num_threads"] for lib in ThreadpoolController().info()]
    ids, scores = exact_top(items, queries, 50)
    assert [lib["num_threads"] for lib in ThreadpoolController().info()] == blas_before
    products = queries @ items.T
    want_ids, _ = expected(products, 50)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, np.take_along_axis(products, ids, axis=1), rtol=1e-5)


def test_exact_top_of_no_queries() -> None:
    ids, scores = exact_top(np.ones((10, 4), np.float32), np.ones((0, 4), np.float32), 3)
    assert ids.shape == scores.shape == (0, 3)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_searches_with_threads_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent's pool threads do not exist in a forked child: the child's search must not wait
    on them (it would hang)."""
    monkeypatch.setattr(ann, "EXACT_TILE_SCORES", 2_000)
    rng = np.random.default_rng(9)
    items = rng.standard_normal((500, 8), dtype=np.float32)
    queries = rng.standard_normal((100, 8), dtype=np.float32)
    want, _ = exact_top(items, queries, 5)  # the parent's pool now has threads
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: search, report whether it matched, leave at once
        signal.alarm(30)  # a hang (waiting on threads that are not there) ends the child
        ids, _ = exact_top(items, queries, 5)
        os.write(write, b"1" if np.array_equal(ids, want) else b"0")
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    assert os.waitstatus_to_exitcode(status) == 0
