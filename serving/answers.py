"""What every question's answer is built from when it is not personal: the popular (and
trending) list under the same rules, the backfill that completes a short answer, and the empty
answer of a worker that has no snapshot yet. Pure functions of a loaded snapshot."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from serving.ask import Ask
from serving.candidates import TrendList, fill_popular, fill_trending
from serving.catalogue import LoadedSnapshot
from serving.merchandising import RuleSet, allowed_copy
from serving.schemas import Item, Recommendations, Source


def backfill(
    snap: LoadedSnapshot,
    channel: str | None,
    store_id: str | None,
    category: str | None,
    mask: Callable[[], npt.NDArray[np.bool_]],
) -> Callable[[int], list[Item]]:
    """Popular items that pass `mask()` (the same filters, less what the answer holds), `n` at a
    time; the mask is made only when some are asked for (most ranked answers never need them)."""

    def fill(n: int) -> list[Item]:
        return fill_popular(snap, n, channel, store_id, category, mask())

    return fill


def popular(
    snap: LoadedSnapshot,
    ask: Ask,
    customer: str | None,
    *,
    degraded: bool = False,
    trending: list[TrendList] | None = None,
    rules: RuleSet | None = None,
) -> Recommendations:
    """What is trending, then popular, for the store, channel and category asked, under
    `rules`."""
    limit, channel, store_id, category = ask.limit, ask.channel, ask.store_id, ask.category
    mask = allowed_copy(snap, store_id, category, rules, time.time())
    pool = limit if rules is None else rules.pool(limit)
    items = fill_trending(snap, pool, trending or [], mask)
    items += fill_popular(snap, pool - len(items), channel, store_id, category, mask)
    if rules is not None:
        items = rules.reordered(snap, items, time.time())
        if rules.reorders:
            fill = backfill(snap, channel, store_id, category, lambda: mask)
            items = rules.finish(snap, items, limit, fill, snap.allowed(store_id, None))
        else:
            items = items[:limit]
    source: Source = items[0].source if items else "none"
    return Recommendations(
        items=items,
        source=source,
        model_version=snap.version,
        snapshot=snap.snapshot_id,
        request_id=ask.request_id,
        degraded=degraded,
        customer_id=customer,
    )


def empty(request_id: str, customer: str | None) -> Recommendations:
    """The answer of a worker that has no snapshot loaded yet."""
    return Recommendations(
        items=[],
        source="none",
        model_version=None,
        snapshot=None,
        request_id=request_id,
        degraded=True,
        customer_id=customer,
    )
