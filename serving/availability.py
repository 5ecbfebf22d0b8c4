"""Where an item can be had: at the asking store, at the nearest other stores that have it (by
distance between store locations), and online with delivery."""

from __future__ import annotations

import msgspec
import numpy as np

from serving.ask import ONLINE
from serving.catalogue import LoadedSnapshot
from serving.schemas import Availability, Item, Recommendations

NEAREST_SHOWN = 3


def availability_many(
    snap: LoadedSnapshot, cols: list[int], store_id: str | None
) -> list[list[Availability]]:
    """For each column: the asking store (with its level, even 0), the NEAREST_SHOWN nearest
    other stores holding the item (stores without a location after those with one; the ones with
    the most first when no location is known), then online."""
    names = snap.level_stores
    if not names or not cols:
        return [[] for _ in cols]
    levels = snap.level_matrix[:, cols]  # (stores, items)
    distances = snap.distances_from(store_id)
    here = names.index(store_id) if store_id in names else -1
    online = names.index(ONLINE) if ONLINE in names else -1
    others = levels > 0
    for row in (here, online):
        if row >= 0:
            others[row] = False
    if np.isfinite(distances).any():  # nearest first: one order of the stores for every item
        order = np.argsort(distances, kind="stable")
        ranked = others[order]
        shown = ranked & (np.cumsum(ranked, axis=0) <= NEAREST_SHOWN)
        positions, items = np.nonzero(shown)
        nearest: list[list[int]] = [[] for _ in cols]
        for position, j in sorted(
            zip(positions.tolist(), items.tolist(), strict=True), key=lambda pj: pj[1]
        ):
            nearest[j].append(int(order[position]))
    else:  # no locations to go by: the stores with the most first
        nearest = []
        for j in range(len(cols)):
            rows = np.flatnonzero(others[:, j])
            nearest.append(
                rows[np.argsort(-levels[rows, j], kind="stable")[:NEAREST_SHOWN]].tolist()
            )
    asked = store_id is not None and store_id != ONLINE
    out: list[list[Availability]] = []
    for j in range(len(cols)):
        column = levels[:, j].tolist()
        where: list[Availability] = []
        if asked:
            where.append(
                Availability(str(store_id), max(0, column[here]) if here >= 0 else 0, here=True)
            )
        for r in nearest[j]:
            km = float(distances[r])
            where.append(
                Availability(names[r], column[r], distance_km=round(km, 1) if km < np.inf else None)
            )
        if online >= 0 and column[online] > 0:
            where.append(Availability(ONLINE, column[online], here=store_id == ONLINE))
        out.append(where)
    return out


def availability(snap: LoadedSnapshot, col: int, store_id: str | None) -> list[Availability]:
    """`availability_many` for one column."""
    return availability_many(snap, [col], store_id)[0]


def with_availability(snap: LoadedSnapshot, items: list[Item], store_id: str | None) -> list[Item]:
    """`items`, each with where it can be had."""
    cols = [snap.item_index.get(item.item_id, -1) for item in items]
    known = [c for c in cols if c >= 0]
    found = iter(availability_many(snap, known, store_id))
    return [
        msgspec.structs.replace(item, availability=next(found) if col >= 0 else [])
        for item, col in zip(items, cols, strict=True)
    ]


def located(
    snap: LoadedSnapshot | None, answer: Recommendations, store_id: str | None
) -> Recommendations:
    """`answer` with, per item, where it can be had (as it is without a snapshot)."""
    if snap is None:
        return answer
    return msgspec.structs.replace(answer, items=with_availability(snap, answer.items, store_id))
