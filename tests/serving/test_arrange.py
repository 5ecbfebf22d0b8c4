"""The compiled merchandising pass (serving.arrange) against a plain Python statement of the same
rules, on random candidate lists with ties, and on a list worked out by hand; and the shortlist
pass that selects a customer's candidates before it, against the same selection in Python."""

from __future__ import annotations

import numpy as np
import pytest

from serving.arrange import (
    AS_SCORED,
    FEW_EXCLUDED,
    NO_CODES,
    NO_FACTORS,
    Arrangement,
    arrange,
    shortlist,
)


def _reference(
    picked: list[int],
    scores: list[float],
    factors: list[float] | None,
    codes: list[int] | None,
    max_items: int,
    top: int,
    limit: int,
) -> tuple[list[int], list[float], bool]:
    """The rules as the README states them, one item at a time."""
    values = list(scores)
    order = list(range(len(picked)))
    if factors is not None and picked:
        floor = min(scores)
        values = [(s - floor) * factors[c] for s, c in zip(scores, picked, strict=True)]
        order.sort(key=lambda p: -values[p])  # stable: ties keep their order
        peak = values[order[0]]
        values = [v / peak if peak > 0 else 1.0 for v in values]
    settled = True
    if codes is not None:
        head: list[int] = []
        rest: list[int] = []
        for p in order:
            code = codes[picked[p]]
            if len(head) < top and sum(codes[picked[h]] == code for h in head) < max_items:
                head.append(p)
            else:
                rest.append(p)
        settled = len(head) == top
        order = head + rest
    kept = order[:limit]
    return [picked[p] for p in kept], [values[p] for p in kept], settled


@pytest.mark.parametrize("seed", range(40))
def test_the_compiled_pass_matches_the_rules_as_written(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_items, n = 200, int(rng.integers(0, 60))
    picked = rng.choice(n_items, n, replace=False).astype(np.int64)
    scores = np.sort(rng.integers(0, 8, n).astype(np.float32) / 8)[::-1].copy()  # ties
    factors = rng.choice([0.5, 1.0, 1.5, 2.0], n_items).astype(np.float32)
    codes = rng.integers(0, 4, n_items).astype(np.int32)
    max_items, top, limit = (
        int(rng.integers(1, 4)),
        int(rng.integers(1, 11)),
        int(rng.integers(1, 11)),
    )
    top = min(top, limit)
    for use_factors in (False, True):
        for use_codes in (False, True):
            got_items, got_scores, got_settled = arrange(
                picked.copy(),
                scores.copy(),
                factors if use_factors else NO_FACTORS,
                codes if use_codes else NO_CODES,
                max_items if use_codes else 0,
                top if use_codes else 0,
                limit,
            )
            want_items, want_scores, want_settled = _reference(
                picked.tolist(),
                scores.tolist(),
                factors.tolist() if use_factors else None,
                codes.tolist() if use_codes else None,
                max_items,
                top,
                limit,
            )
            assert got_items.tolist() == want_items, (use_factors, use_codes)
            np.testing.assert_allclose(got_scores, want_scores, rtol=1e-6)
            assert got_settled == want_settled or not use_codes


def test_a_boost_and_a_cap_worked_out_by_hand() -> None:
    # items 0..5 best first; item 3 (x2) overtakes items 0, 1 and 2; at most one per code in the
    # top 3: items 1 and 2 (code 0, like item 0 above them) move below it, item 4 fills it
    picked = np.array([0, 1, 2, 3, 4, 5], np.int64)
    scores = np.array([1.0, 0.9, 0.8, 0.7, 0.6, 0.0], np.float32)
    factors = np.array([1, 1, 1, 2, 1, 1], np.float32)
    codes = np.array([0, 0, 0, 2, 3, 0], np.int32)
    items, values, settled = arrange(picked.copy(), scores.copy(), factors, codes, 1, 3, 5)
    # boosted: 3 -> 1.4, 0 -> 1.0, 1 -> 0.9, 2 -> 0.8, 4 -> 0.6, 5 -> 0.0
    assert items.tolist() == [3, 0, 4, 1, 2]
    np.testing.assert_allclose(values, [1.0, 1.0 / 1.4, 0.6 / 1.4, 0.9 / 1.4, 0.8 / 1.4], rtol=1e-6)
    assert settled
    # a cap of one per code in a top of 4 over codes 0, 1, 0, 0: only two codes, the top stays short
    items, _, settled = arrange(
        picked[:4], scores[:4], NO_FACTORS, np.array([0, 1, 0, 0], np.int32), 1, 4, 4
    )
    assert items.tolist() == [0, 1, 2, 3] and not settled


def test_the_answer_is_written_over_writable_inputs_and_read_only_ones_are_copied() -> None:
    picked = np.array([0, 1, 2, 3, 4], np.int64)
    scores = np.array([1.0, 0.9, 0.8, 0.7, 0.0], np.float32)  # shifted to 0 at the last
    factors = np.array([1, 1, 1, 4, 1], np.float32)  # item 3: 0.7 x 4 overtakes item 0
    items, values, _ = arrange(picked, scores, factors, NO_CODES, 0, 0, 2)
    assert items.tolist() == [3, 0] and picked[:2].tolist() == [3, 0]  # in place: no copy made
    assert np.shares_memory(items, picked) and np.shares_memory(values, scores)
    frozen = np.frombuffer(np.arange(5, dtype=np.int64).tobytes(), np.int64)  # read-only
    frozen_scores = np.frombuffer(
        np.array([1.0, 0.9, 0.8, 0.7, 0.0], np.float32).tobytes(), np.float32
    )
    items, _, _ = arrange(frozen, frozen_scores, factors, NO_CODES, 0, 0, 2)
    assert items.tolist() == [3, 0] and frozen.tolist() == [0, 1, 2, 3, 4]
    items, _, _ = arrange(
        np.arange(8)[::2], scores, NO_FACTORS, NO_CODES, 0, 0, 3
    )  # a strided view
    assert items.tolist() == [0, 2, 4]


def _frozen(values: np.ndarray) -> np.ndarray:
    """`values` as a read-only array, like the candidates decoded from a customer's record."""
    return np.frombuffer(values.tobytes(), values.dtype)


def _expected(
    chosen: list[tuple[int, float]], arrangement: Arrangement, limit: int
) -> tuple[list[int], list[float], bool]:
    """The rules as written over (item, score) pairs already selected."""
    factors, codes = arrangement.factors, arrangement.codes
    return _reference(
        [c for c, _ in chosen],
        [s for _, s in chosen],
        factors.tolist() if len(factors) else None,
        codes.tolist() if len(codes) else None,
        arrangement.max_items,
        arrangement.top,
        limit,
    )


@pytest.mark.parametrize("seed", range(30))
def test_the_shortlist_selects_as_written_then_arranges(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n_items = 300
    n = int(rng.integers(0, 120))
    candidates = rng.choice(n_items, n, replace=False).astype(np.int32)
    candidates[rng.random(n) < 0.03] = -1  # columns outside the catalogue are never shown
    scores = np.sort(rng.integers(0, 8, n).astype(np.float32) / 8)[::-1].copy()
    allowed = rng.random(n_items) < 0.8
    # a few excluded items are looked up one by one, many through a mask: both ways
    count = int(rng.choice([0, 3, FEW_EXCLUDED, FEW_EXCLUDED + 1, 150]))
    excluded = rng.integers(-5, n_items + 5, count).astype(np.int32)
    factors = rng.choice([0.5, 1.0, 1.5, 2.0], n_items).astype(np.float32)
    limit = int(rng.integers(1, 11))
    pool = limit * int(rng.integers(1, 5))
    every = [
        (int(c), float(s))
        for c, s in zip(candidates, scores, strict=True)
        if 0 <= c < n_items and allowed[c] and c not in set(excluded.tolist())
    ]
    codes = rng.integers(0, int(rng.choice([2, 4, 12])), n_items).astype(np.int32)  # 2: a short top
    for arrangement in (AS_SCORED, Arrangement(factors), Arrangement(factors, codes, 2, limit)):
        items, got_scores, settled, passed = shortlist(
            _frozen(candidates), _frozen(scores), allowed, excluded, arrangement, pool, limit
        )
        passing = every[:pool]
        want_items, want_scores, want_settled = _expected(passing, arrangement, limit)
        if len(arrangement.codes) and not want_settled:  # the cap's top has gaps: every candidate
            passing = every
            want_items, want_scores, want_settled = _expected(passing, arrangement, limit)
        assert passed == len(passing)
        assert items.tolist() == want_items
        np.testing.assert_allclose(got_scores, want_scores, rtol=1e-6)
        assert settled == want_settled


def test_the_shortlist_only_reads_its_inputs_and_takes_other_layouts() -> None:
    candidates = np.array([4, 2, 7, 1, 0], np.int32)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5], np.float32)
    allowed = np.ones(8, bool)
    allowed[7] = False
    allowed.flags.writeable = False  # the shared mask of the catalogue
    excluded = np.array([2], np.int32)
    factors = np.ones(8, np.float32)
    factors[1] = 5.0  # item 1: (0.6 - 0.5) x 5 overtakes item 4's 0.9 - 0.5
    items, values, _, passed = shortlist(
        candidates, scores, allowed, excluded, Arrangement(factors), 3, 2
    )
    assert (items.tolist(), passed) == ([1, 4], 3)
    np.testing.assert_allclose(values, [1.0, 0.4 / 0.5], rtol=1e-5)
    assert candidates.tolist() == [4, 2, 7, 1, 0] and scores.tolist() == pytest.approx(
        [0.9, 0.8, 0.7, 0.6, 0.5]
    )
    # strided views and other integer types are converted, not refused
    wide = np.array([4, -9, 2, -9, 1, -9], np.int64)[::2]
    items, _, _, passed = shortlist(
        wide, scores[:3], allowed, np.array([], np.int64), AS_SCORED, 5, 5
    )
    assert (items.tolist(), passed) == ([4, 2, 1], 3)
