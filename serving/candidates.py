"""Candidates and filters: what may be shown (purchases masked, stock, category), the customer's
best items (the published shortlist, or the whole catalogue rescored), and popular fill-ins."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from features.encoding import Activity, CustomerFeatures
from models.topk import top_k
from omnirec.settings import InteractionSettings
from serving.arrange import AS_SCORED, Arrangement, arrange, shortlist
from serving.ask import ONLINE
from serving.catalogue import LoadedSnapshot
from serving.profile import open_cart
from serving.reasons import popular_reason, trending_reason
from serving.schemas import Item, Source

NO_ITEMS = np.zeros(0, np.int32)
SESSION_SECONDS = 1800  # activity this recent is the current session
SESSION_HALF_LIFE = 600.0  # a session event counts half after ten minutes
SESSION_SHARE = 0.5  # the session's share of the blended score
SESSION_EVENTS = {"view": 1.0, "favorite": 1.5, "add_to_cart": 2.0}


def excluded(
    snap: LoadedSnapshot,
    features: CustomerFeatures | None,
    recent: list[Activity],
    exclude_purchased: bool,
    now: float,
) -> npt.NDArray[np.int32]:
    """Items not to show again: what the version's show-again policy (`models.show_again`, the
    same at every door) hides among the customer's purchases in the snapshot and since, at
    `now`, and what sits in their open cart; nothing when the caller asks for everything
    (`exclude_purchased` false)."""
    if not exclude_purchased:
        return NO_ITEMS
    index = snap.item_index
    in_cart = [index[a.item_id] for a in open_cart(recent, now) if a.item_id in index]
    hidden = _hidden_purchases(snap, features, recent, now)
    if not in_cart:
        return hidden
    return np.concatenate([hidden, np.array(in_cart, np.int32)]).astype(np.int32, copy=False)


def _hidden_purchases(
    snap: LoadedSnapshot, features: CustomerFeatures | None, recent: list[Activity], now: float
) -> npt.NDArray[np.int32]:
    """The purchases (snapshot and live) the version's show-again policy hides at `now`."""
    model = snap.model
    if model.show_again.mode == "always":
        return NO_ITEMS
    cols: list[npt.NDArray[np.int32]] = []
    times: list[npt.NDArray[np.int64]] = []
    if features is not None and features.purchased_items:
        cols.append(np.frombuffer(features.purchased_items, np.int32))
        times.append(np.frombuffer(features.purchased_at, np.int64))
    index = snap.item_index
    bought_now = [
        (index[a.item_id], a.timestamp)
        for a in recent
        if a.event_type == "purchase" and a.item_id in index
    ]
    if bought_now:
        cols.append(np.array([c for c, _ in bought_now], np.int32))
        times.append(np.array([int(t) for _, t in bought_now], np.int64))
    if not cols:
        return NO_ITEMS
    items = cols[0] if len(cols) == 1 else np.concatenate(cols)
    if model.show_again.mode == "never":
        return items
    at = times[0] if len(times) == 1 else np.concatenate(times)
    own = None
    if features is not None:  # a training customer: their own rhythm, where the model knows it
        row = model.rows_of([features.customer_id])[0]
        if row >= 0:
            own = model.own_window_days(np.full(len(items), row), items.astype(np.int64))
    return items[model.show_again.hides(items, at, now, own)]


def without(
    allowed: npt.NDArray[np.bool_], *taken: npt.NDArray[np.integer]
) -> npt.NDArray[np.bool_]:
    """A fresh mask (the caller may change it): `allowed` less the item columns in `taken`."""
    mask = allowed.copy()
    for cols in taken:
        mask[cols] = False
    return mask


def best_items(
    snap: LoadedSnapshot,
    features: CustomerFeatures | None,
    fresh: list[Activity],
    allowed: npt.NDArray[np.bool_],
    excluded_items: npt.NDArray[np.int32],
    pool: int,
    weights: InteractionSettings,
    limit: int,
    arrangement: Arrangement = AS_SCORED,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], bool]:
    """Up to `limit` of the customer's best items that `allowed` (shared, only read) lets through
    and `excluded_items` does not name, in the order `arrangement` gives to the best `pool` of
    them, and whether that order is final: from the published shortlist (one compiled pass,
    `serving.arrange.shortlist`), or the whole catalogue rescored when events arrived after the
    snapshot (`fresh`) or the filters left fewer than `limit`."""
    rescoring = bool(fresh) and snap.model.uses_history
    if not rescoring and features is not None and features.candidates:
        cands = np.frombuffer(features.candidates, np.int32)
        cand_scores = np.frombuffer(features.candidate_scores, np.float32)
        picked, scores, settled, passed = shortlist(
            cands, cand_scores, allowed, excluded_items, arrangement, pool, limit
        )
        if passed >= limit or not features.vector:
            return picked, scores, settled
        fresh, rescoring = [], True  # the filters emptied the shortlist: the customer's own row
    if not rescoring:
        return np.zeros(0, np.int64), np.zeros(0, np.float32), True
    picked, scores = rescore(snap, features, fresh, without(allowed, excluded_items), pool, weights)
    return arranged(picked, scores, arrangement, limit)


def arranged(
    picked: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float32],
    arrangement: Arrangement,
    limit: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], bool]:
    """Scored candidates (best first) in the order `arrangement` gives, cut to `limit`."""
    if arrangement is AS_SCORED:
        return picked[:limit], scores[:limit], True
    return arrange(picked, scores, *arrangement, limit)


def rescore(
    snap: LoadedSnapshot,
    features: CustomerFeatures | None,
    fresh: list[Activity],
    mask: npt.NDArray[np.bool_],
    limit: int,
    weights: InteractionSettings,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Score every item from the snapshot history plus fresh events (ALS folds them in); on a big
    catalogue with an HNSW index, the index's best items that pass `mask` instead."""
    row, history = _history_row(snap, features, fresh, weights)
    if history.nnz:
        top = snap.model.approximate_top(row, history, limit * 4 + 50)
        if top is not None:
            ids, best = top[0][0], top[1][0]
            keep = ids >= 0
            keep[keep] = mask[ids[keep]]
            if keep.sum() >= limit:
                return ids[keep][:limit], best[keep][:limit]
    scores = full_scores(snap, features, fresh, weights, (row, history))
    scores[~mask] = -np.inf
    ids, best = top_k(scores[None, :], limit)
    keep = ids[0] >= 0
    return ids[0][keep], best[0][keep]


def _history_row(
    snap: LoadedSnapshot,
    features: CustomerFeatures | None,
    fresh: list[Activity],
    weights: InteractionSettings,
) -> tuple[npt.NDArray[np.int64], sp.csr_matrix]:
    """The model row (-1: fold in) and the one-row history: the snapshot's plus fresh events."""
    cols = [] if features is None else np.frombuffer(features.history_items, np.int32).tolist()
    data = [] if features is None else np.frombuffer(features.history_weights, np.float32).tolist()
    for a in fresh:
        col = snap.item_index.get(a.item_id)
        if col is not None:
            cols.append(col)
            data.append(
                weights.event_weights.get(a.event_type, 0.0)
                * weights.channel_weights.get(a.channel, 1.0)
            )
    history = sp.csr_matrix(
        (np.asarray(data, np.float32), (np.zeros(len(cols), np.int64), np.asarray(cols, np.int64))),
        shape=(1, snap.model.n_items),
    )
    history.data = np.maximum(history.data, 0)
    history.eliminate_zeros()
    row = np.array(
        [
            -1
            if fresh or features is None or not features.vector
            else snap.model.rows_of([features.customer_id])[0]
        ]
    )
    return row, history


def full_scores(
    snap: LoadedSnapshot,
    features: CustomerFeatures | None,
    fresh: list[Activity],
    weights: InteractionSettings,
    prepared: tuple[npt.NDArray[np.int64], sp.csr_matrix] | None = None,
) -> npt.NDArray[np.float32]:
    """(n_items,) long-term scores of one customer: the model over the snapshot history plus
    fresh events (popularity when nothing is known)."""
    row, history = prepared or _history_row(snap, features, fresh, weights)
    if history.nnz == 0:
        return np.array(snap.model.item_popularity(), dtype=np.float32, copy=True)
    return np.asarray(
        np.array(snap.model.scores(row, history), dtype=np.float32)[0], dtype=np.float32
    )


@dataclass(frozen=True)
class Session:
    """What the customer is looking at now: items, their weights (recency x event type) and
    the activity behind each."""

    cols: npt.NDArray[np.int64]
    weights: npt.NDArray[np.float32]
    activity: list[Activity]


def current_session(snap: LoadedSnapshot, recent: list[Activity], now: float) -> Session | None:
    """Views, saves and cart adds of the last SESSION_SECONDS (newest first in `recent`), each
    item once, weighted by event type and halved every SESSION_HALF_LIFE seconds; None if none."""
    cols: list[int] = []
    weights: list[float] = []
    activity: list[Activity] = []
    for a in recent:
        age = now - a.timestamp
        if age > SESSION_SECONDS:
            break
        col = snap.item_index.get(a.item_id)
        kind = SESSION_EVENTS.get(a.event_type)
        if col is None or kind is None or col in cols:
            continue
        cols.append(col)
        weights.append(kind * 0.5 ** (max(age, 0.0) / SESSION_HALF_LIFE))
        activity.append(a)
    if not cols:
        return None
    return Session(np.array(cols, np.int64), np.array(weights, np.float32), activity)


def session_best(
    snap: LoadedSnapshot,
    features: CustomerFeatures | None,
    fresh: list[Activity],
    mask: npt.NDArray[np.bool_],
    limit: int,
    weights: InteractionSettings,
    session: Session,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], dict[int, Activity]]:
    """Long-term scores blended with the session's item-to-item neighbours (session-kNN: each
    session item's similar items, weighted by its recency), each scaled to a peak of 1 over the
    allowed items; returns the best items, their scores and, for the items the session brought,
    the session activity that brought each."""
    long_term = full_scores(snap, features, fresh, weights)
    similar = np.maximum(snap.model.item_similarity(session.cols), 0.0) * session.weights[:, None]
    now_scores = similar.sum(axis=0)
    long_part = (1.0 - SESSION_SHARE) * _scaled(long_term, mask)
    session_part = SESSION_SHARE * _scaled(now_scores, mask)
    combined = long_part + session_part
    combined[~mask] = -np.inf
    ids, best = top_k(combined[None, :], limit)
    picked, scores = ids[0][ids[0] >= 0], best[0][ids[0] >= 0]
    brought = picked[session_part[picked] > long_part[picked]]
    because = {int(c): session.activity[int(np.argmax(similar[:, c]))] for c in brought.tolist()}
    return picked, scores, because


def _scaled(
    scores: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float32]:
    """`scores` divided by their peak over the allowed items (unchanged when that is not > 0)."""
    allowed = scores[mask]
    peak = float(allowed.max()) if allowed.size else 0.0
    return np.asarray(scores / peak if peak > 0 else scores, dtype=np.float32)


def make_item(
    snap: LoadedSnapshot, col: int, score: float, source: Source, reasons: list[str] | None = None
) -> Item:
    """The answer's item for column `col` (score rounded to six decimals)."""
    return Item(
        item_id=snap.id_list[col],
        score=round(score * 1e6) / 1e6,
        name=snap.names[col],
        category=snap.category_list[col],
        price=snap.price_list[col],
        source=source,
        reasons=reasons or [],
        image_url=snap.image_list[col] if snap.image_list else None,
        url=snap.url_list[col] if snap.url_list else None,
    )


@dataclass(frozen=True)
class TrendList:
    """A trending list read back: its scope ('store:S001', 'channel:web', 'all') and items."""

    scope: str
    cols: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32]


def trend_scopes(channel: str | None, store_id: str | None) -> list[str]:
    """The trending lists to draw from, most specific first. A store's list is that store's
    alone: what trends on the web or in another store is not trending "at this store" (popular
    items fill the rest)."""
    if store_id and store_id != ONLINE:  # the online warehouse: the channel's trends
        return [f"store:{store_id}"]
    return [f"channel:{channel}", "all"] if channel else ["all"]


def fill_trending(
    snap: LoadedSnapshot, count: int, lists: list[TrendList], mask: npt.NDArray[np.bool_]
) -> list[Item]:
    """Up to `count` trending items allowed by `mask` (which it updates), most specific first."""
    out: list[Item] = []
    for trend in lists:
        for col, score in zip(trend.cols.tolist(), trend.scores.tolist(), strict=True):
            if len(out) >= count:
                return out
            if mask[col]:
                out.append(make_item(snap, col, score, "trending", [trending_reason(trend.scope)]))
                mask[col] = False
    return out


def popular_keys(channel: str | None, store_id: str | None, category: str | None) -> list[str]:
    """The popular lists to draw from, most specific first."""
    keys = []
    if category:
        keys.append(f"category:{category}")
    if store_id:
        keys.append(f"store:{store_id}")
    if channel:
        keys.append(f"channel:{channel}")
    keys.append("all")
    return keys


def fill_popular(
    snap: LoadedSnapshot,
    count: int,
    channel: str | None,
    store_id: str | None,
    category: str | None,
    mask: npt.NDArray[np.bool_],
) -> list[Item]:
    """Up to `count` popular items allowed by `mask` (which it updates), most specific list
    first."""
    out: list[Item] = []
    for key in popular_keys(channel, store_id, category):
        lst = snap.popular.get(key)
        if lst is None:
            continue
        items, scores = lst
        keep = mask[items]
        for col, score in zip(
            items[keep][: count - len(out)], scores[keep][: count - len(out)], strict=True
        ):
            out.append(make_item(snap, int(col), float(score), "popular", [popular_reason(key)]))
            mask[col] = False
        if len(out) >= count:
            break
    if len(out) < count:  # any allowed item, most popular first (catalogue-wide)
        popularity = snap.model.item_popularity()
        order = np.argsort(-np.where(mask, popularity, -np.inf), kind="stable")[: count - len(out)]
        out += [
            make_item(snap, int(c), float(popularity[c]), "popular", ["popular right now"])
            for c in order
            if mask[c]
        ]
    return out
