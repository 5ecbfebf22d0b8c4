"""The merchandising pass over one answer's scored candidates, compiled (numba): boosts, a
stable sort, the diversity cap and the cut in one call of ~2 µs instead of a dozen numpy calls and
a Python loop (`./dev bench experiments`, the engine alone: a boost cost 10 µs an answer that way,
a filter + boosts + bury + diversity cap 19 µs; now 5 and 7 µs, the rest outside this pass).

`shortlist` runs the same pass fused with the selection that comes before it on the usual path
(a customer's published candidates, the first ones the filters and exclusions let through): one
compiled call an answer, with or without rules, instead of a catalogue-long mask copied and
written per request, five numpy calls and a second dispatch for the rules.

Compiled when this module is imported (the types are fixed below) and cached on disk (beside the
module, else in the user's cache folder; the image compiles it at build), so no request waits for
the compiler; with nowhere to write, it is compiled in memory at import."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from numba import types

from omnirec.compiled import jit

NO_FACTORS = np.zeros(0, np.float32)  # no boosts: the scores as they come
NO_CODES = np.zeros(0, np.int32)  # no diversity cap
FEW_EXCLUDED = 16  # up to this many excluded items are looked up one by one, more in a mask


class Arrangement(NamedTuple):
    """What the pass applies: per item column, boost factors (empty: none) and the diversity
    column's codes (empty: no cap), at most `max_items` per code in the first `top`."""

    factors: npt.NDArray[np.float32] = NO_FACTORS
    codes: npt.NDArray[np.int32] = NO_CODES
    max_items: int = 0
    top: int = 0


AS_SCORED = Arrangement()  # no rules that reorder: the candidates in their scored order


@jit()
def _arrange_in_place(
    picked: Any, scores: Any, factors: Any, codes: Any, max_items: int, top: int, limit: int
) -> int:
    """Rewrites `picked` (item columns, best first) and `scores` so that their first `kept`
    entries are the first `limit` in the order the rules give, with their scores; returns
    2 * kept + (1 if that order is final else 0).

    factors (per item column; empty: none): the scores, shifted to start at 0 among the
    candidates, times the factor, reorder them (stable: ties keep their order); the scores
    returned are those products scaled to a peak of 1.
    codes (per item column; empty: no cap): in the top `top`, at most `max_items` per code; an
    item over the cap moves below the top, which the next items that fit fill. Final means the
    top is full (else the caller fills it from other candidates)."""
    n = picked.shape[0]
    values = scores.copy()
    order = np.arange(n)
    if factors.shape[0] > 0 and n > 0:
        floor = scores.min()
        for p in range(n):
            values[p] = (scores[p] - floor) * factors[picked[p]]
        order = np.argsort(-values, kind="mergesort")
        peak = values[order[0]]
        for p in range(n):
            values[p] = values[p] / peak if peak > 0 else np.float32(1.0)
    settled = True
    if codes.shape[0] > 0:
        head = np.empty(n, np.int64)  # positions in `order`
        rest = np.empty(n, np.int64)
        head_codes = np.empty(n, np.int32)
        heads = rests = 0
        for p in range(n):
            code = codes[picked[order[p]]]
            same = 0
            for h in range(heads):
                if head_codes[h] == code:
                    same += 1
            if heads < top and same < max_items:
                head[heads] = order[p]
                head_codes[heads] = code
                heads += 1
            else:
                rest[rests] = order[p]
                rests += 1
            if heads == top and heads + rests >= limit:  # the answer is decided
                break
        settled = heads == top
        for h in range(heads):
            order[h] = head[h]
        for r in range(rests):
            order[heads + r] = rest[r]
    kept = min(limit, n)
    items = picked[order[:kept]]  # gathered before they are written over
    for p in range(kept):
        picked[p] = items[p]
        scores[p] = values[order[p]]
    return int(2 * kept + (1 if settled else 0))


# the answer is written over the inputs and only its length and whether it is final come back:
# returning arrays costs each call two boxings (numba unpickles their types in Python), ~2.5 us
# of a request once the caches have gone cold between requests
_I64, _F32 = types.Array(types.int64, 1, "C"), types.Array(types.float32, 1, "C")
_READ_F32 = types.Array(types.float32, 1, "C", readonly=True)  # writable arrays match these too
_READ_I32 = types.Array(types.int32, 1, "C", readonly=True)
_READ_BOOL = types.Array(types.bool_, 1, "C", readonly=True)
_ARRANGE = types.int64(_I64, _F32, _READ_F32, _READ_I32, types.int64, types.int64, types.int64)
_SHORTLIST = types.int64(
    _READ_I32,
    _READ_F32,
    _READ_BOOL,
    _READ_I32,
    _READ_F32,
    _READ_I32,
    types.int64,
    types.int64,
    types.int64,
    types.int64,
    _I64,
    _F32,
)


@jit(_ARRANGE)
def _arrange(
    picked: Any, scores: Any, factors: Any, codes: Any, max_items: int, top: int, limit: int
) -> int:
    return _arrange_in_place(picked, scores, factors, codes, max_items, top, limit)  # type: ignore[no-any-return]


@jit()
def _select(
    candidates: Any,
    candidate_scores: Any,
    allowed: Any,
    excluded: Any,
    blocked: Any,
    pool: int,
    items: Any,
    scores: Any,
) -> int:
    """Writes into `items` and `scores` the first `pool` candidates that `allowed` lets through
    and `excluded` (or, when there are many, the mask `blocked` made of them) does not name;
    returns how many, times 2, plus 1 if candidates remained unread."""
    n_items = allowed.shape[0]
    many = blocked.shape[0] > 0
    passed = 0
    total = min(candidates.shape[0], candidate_scores.shape[0])
    for p in range(total):
        if passed == pool:
            return 2 * passed + 1
        col = candidates[p]
        if col < 0 or col >= n_items or not allowed[col]:
            continue
        if many:
            if blocked[col]:
                continue
        else:
            seen = False
            for other in excluded:
                if other == col:
                    seen = True
                    break
            if seen:
                continue
        items[passed] = col
        scores[passed] = candidate_scores[p]
        passed += 1
    return 2 * passed


@jit(_SHORTLIST)
def _shortlist(
    candidates: Any,
    candidate_scores: Any,
    allowed: Any,
    excluded: Any,
    factors: Any,
    codes: Any,
    max_items: int,
    top: int,
    pool: int,
    limit: int,
    items: Any,
    scores: Any,
) -> int:
    """Writes into `items` and `scores` the first `pool` candidates (best first) that `allowed`
    (per item column) lets through and `excluded` does not name, arranges them (see
    `_arrange_in_place`) and returns passed * 2**32 + that pass's packed answer. When a
    diversity cap cannot fill its top from the pool, every candidate that passes is arranged
    instead (the customer's own items fill the gaps before popular ones have to)."""
    n_items = allowed.shape[0]
    blocked = np.zeros(n_items if excluded.shape[0] > FEW_EXCLUDED else 0, np.bool_)
    if blocked.shape[0] > 0:
        for col in excluded:
            if 0 <= col < n_items:
                blocked[col] = True
    selected = _select(
        candidates, candidate_scores, allowed, excluded, blocked, pool, items, scores
    )
    passed = selected >> 1
    packed = _arrange_in_place(
        items[:passed], scores[:passed], factors, codes, max_items, top, limit
    )
    if codes.shape[0] > 0 and packed % 2 == 0 and selected % 2 == 1:  # the top has gaps
        deeper = min(items.shape[0], candidates.shape[0])
        passed = (
            _select(candidates, candidate_scores, allowed, excluded, blocked, deeper, items, scores)
            >> 1
        )
        packed = _arrange_in_place(
            items[:passed], scores[:passed], factors, codes, max_items, top, limit
        )
    return int((passed << 32) + packed)


Arranged = tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], bool]


def arrange(
    picked: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float32],
    factors: npt.NDArray[np.float32],
    codes: npt.NDArray[np.int32],
    max_items: int,
    top: int,
    limit: int,
) -> Arranged:
    """(items, scores, final): see `_arrange_in_place`. `picked` and `scores` are rearranged in
    place when they are writable contiguous arrays of the kernel's types (else copies are), and
    the answer is their first entries."""
    try:  # no checks first: asking an array for its flags and dtype costs more than the pass
        packed = int(_arrange(picked, scores, factors, codes, max_items, top, limit))
    except TypeError:  # read-only, strided or of other types: no compiled version takes them
        picked, scores = np.array(picked, np.int64), np.array(scores, np.float32)
        factors = np.ascontiguousarray(factors, np.float32)
        packed = int(
            _arrange(
                picked,
                scores,
                factors,
                np.ascontiguousarray(codes, np.int32),
                max_items,
                top,
                limit,
            )
        )
    kept = packed >> 1
    return picked[:kept], scores[:kept], bool(packed & 1)


def shortlist(
    candidates: npt.NDArray[np.int32],
    candidate_scores: npt.NDArray[np.float32],
    allowed: npt.NDArray[np.bool_],
    excluded: npt.NDArray[np.int32],
    arrangement: Arrangement,
    pool: int,
    limit: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], bool, int]:
    """The first `pool` of a customer's candidates (item columns, best first, with their scores)
    that `allowed` lets through and `excluded` does not name, arranged and cut to `limit`: (items,
    scores, final, how many passed). One compiled call; the inputs are only read. Under a
    diversity cap whose top the pool cannot fill, every candidate that passes is arranged."""
    room = max(pool, len(candidates)) if len(arrangement.codes) else pool
    items, scores = np.empty(room, np.int64), np.empty(room, np.float32)
    factors, codes, max_items, top = arrangement
    try:
        packed = int(
            _shortlist(
                candidates,
                candidate_scores,
                allowed,
                excluded,
                factors,
                codes,
                max_items,
                top,
                pool,
                limit,
                items,
                scores,
            )
        )
    except TypeError:  # strided or of other types: as the compiled version takes them
        packed = int(
            _shortlist(
                np.ascontiguousarray(candidates, np.int32),
                np.ascontiguousarray(candidate_scores, np.float32),
                np.ascontiguousarray(allowed, np.bool_),
                np.ascontiguousarray(excluded, np.int32),
                np.ascontiguousarray(factors, np.float32),
                np.ascontiguousarray(codes, np.int32),
                int(max_items),
                int(top),
                pool,
                limit,
                items,
                scores,
            )
        )
    kept = (packed & 0xFFFFFFFF) >> 1
    return items[:kept], scores[:kept], bool(packed & 1), packed >> 32
