"""Personal recommendations: one customer's answer from their features and real-time activity,
under the rules that apply, or what is trending and popular when nothing is known of them."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from features.encoding import ITEMLIST_DECODER, Activity, CustomerFeatures
from omnirec.errors import FeatureStoreError, StoreUnavailableError
from omnirec.settings import Settings
from serving.answers import backfill, empty, popular
from serving.arrange import AS_SCORED
from serving.ask import ONLINE, Ask
from serving.candidates import (
    arranged,
    best_items,
    current_session,
    excluded,
    session_best,
    without,
)
from serving.catalogue import LoadedSnapshot
from serving.experiments.config import Variant
from serving.live import Live
from serving.merchandising import RuleSet, allowed
from serving.reads import CustomerState, all_activity
from serving.reasons import DAY, bought_reason, default_reasons, session_reason
from serving.reasons import explain as explain_items
from serving.schemas import Item, Recommendations, Source

BOUGHT_WITH_PURCHASES = 3  # explain=true: "often bought with" looks at the last three purchases

# customer id -> the variant they are in and the snapshot that answers for it
Chooser = Callable[[str], tuple[Variant | None, LoadedSnapshot | None]]
# a variant -> the rules its answer is under (the placement's, the variant's, the request's)
RulesOf = Callable[[Variant | None], RuleSet | None]


class Personal:
    """Answers for one customer at a time."""

    def __init__(self, settings: Settings, live: Live) -> None:
        self.settings = settings
        self.live = live

    async def recommend(
        self, customer: str, ask: Ask, choose: Chooser, rules_of: RulesOf
    ) -> tuple[Recommendations, Variant | None]:
        """The customer's answer and the variant it was given in. The variant of the id asked
        for is read in the same round trip as the customer; an alias is assigned as its
        customer (one more trip when that changes the model version)."""
        live = self.live
        snap = live.snapshot
        if snap is None:
            return empty(ask.request_id, customer), None
        ask = ask.stocked(ONLINE in snap.stock)
        try:
            variant, served = choose(customer)
            snap = served or snap
            state = (await live.customers(snap, [customer], follow_stock=True))[0]
            if state.customer_id != customer:
                variant, served = choose(state.customer_id)
                if served is not None and served is not snap:  # another version's features
                    state = (await live.customers(served, [state.customer_id]))[0]
                    snap = served
        except StoreUnavailableError:
            variant = choose(customer)[0]
            answer = popular(snap, ask, customer, degraded=True, rules=rules_of(variant))
            return answer, variant
        rules = rules_of(variant)
        if state.features is None and not state.recent:  # unknown or walk-in: what is hot now
            trending = await live.trending(snap, ask.channel, ask.store_id)
            answer = popular(
                snap,
                ask,
                customer,
                degraded=live.features_missing,
                trending=trending,
                rules=rules,
            )
            return answer, variant
        bought_with = await self.bought_with(snap, state.features) if ask.explain else None
        return self.answer(snap, state, ask, rules=rules, bought_with=bought_with), variant

    async def trending(self, ask: Ask, rules: RuleSet | None) -> Recommendations:
        """What is trending now (the real-time events of the last hours) at the store, on the
        channel or everywhere, then popular: the walk-in customer's list."""
        live = self.live
        snap = live.snapshot
        if snap is None:
            return empty(ask.request_id, None)
        ask = ask.stocked(ONLINE in snap.stock)
        await live.follow_stock()
        trending = await live.trending(snap, ask.channel, ask.store_id)
        return popular(
            snap, ask, None, degraded=live.features_missing, trending=trending, rules=rules
        )

    async def bought_with(
        self, snap: LoadedSnapshot, features: CustomerFeatures | None
    ) -> dict[str, str]:
        """item id -> name of one of the customer's last purchases it is often bought with."""
        if features is None or not features.purchased_items:
            return {}
        bought = np.frombuffer(features.purchased_items, np.int32)[-BOUGHT_WITH_PURCHASES:]
        names = [str(snap.item_ids[c]) for c in bought]
        try:
            lists = await self.live.together(snap, names)
        except FeatureStoreError:
            return {}
        together: dict[str, str] = {}
        for name, raw in zip(names, lists, strict=False):
            if isinstance(raw, bytes):
                for col in ITEMLIST_DECODER.decode(raw).arrays()[0]:
                    together.setdefault(str(snap.item_ids[col]), snap.names[snap.item_index[name]])
        return together

    def answer(
        self,
        snap: LoadedSnapshot,
        state: CustomerState,
        ask: Ask,
        *,
        rules: RuleSet | None = None,
        extra_exclude: npt.NDArray[np.int64] | None = None,
        bought_with: dict[str, str] | None = None,
    ) -> Recommendations:
        """The answer for one customer whose state was read; with `ask.explain`, reasons
        (`bought_with`: what the customer's purchases are often bought with, read beforehand);
        under `rules` (merchandising: filters, boosts, pins, diversity)."""
        features = state.features
        ask = ask.stocked(ONLINE in snap.stock)
        limit, store_id, category = ask.limit, ask.store_id, ask.category
        degraded = self.live.features_missing
        if features is None and not state.recent:
            return popular(snap, ask, state.customer_id, degraded=degraded, rules=rules)
        now = time.time()
        masked = excluded(snap, features, state.recent, ask.exclude_purchased, now)
        if extra_exclude is not None:
            masked = np.concatenate([masked, extra_exclude]).astype(np.int32, copy=False)
        fresh = [a for a in state.recent if a.timestamp > snap.meta.data_end]
        # only read: a writable copy is made where a path needs one (rescoring, the backfill)
        shown = allowed(snap, store_id, category, rules, now)
        pool, arrangement = (
            (limit, AS_SCORED)
            if rules is None
            else (rules.pool(limit), rules.arrangement(snap, limit, now))
        )
        session = current_session(snap, state.recent, now)
        weights = self.settings.interactions
        because: dict[int, Activity] = {}
        if session is not None:  # what they look at now moves the list
            picked, scores, because = session_best(
                snap, features, fresh, without(shown, masked), pool, weights, session
            )
            picked, scores, settled = arranged(picked, scores, arrangement, limit)
        else:
            picked, scores, settled = best_items(
                snap, features, fresh, shown, masked, pool, weights, limit, arrangement
            )
        reordered = arrangement is not AS_SCORED
        settled = settled and reordered
        items = _items(snap, picked, scores, because, features, now)
        # most ranked answers are complete and final here: no backfill, no second look
        unfinished = rules is not None and rules.reorders and (bool(rules.pins) or not settled)
        if unfinished or len(items) < limit:
            fill = backfill(
                snap, ask.channel, store_id, category, lambda: without(shown, masked, picked)
            )
            if rules is not None and rules.reorders:
                everywhere = snap.allowed(store_id, None)
                items = rules.finish(snap, items, limit, fill, everywhere, settled, reordered)
            else:
                items += fill(limit - len(items))
        if ask.explain:
            activity = all_activity(snap, features, state.recent)
            items = explain_items(items, activity, features, bought_with or {}, now)
        source: Source = "personalized" if picked.size else "popular"
        return Recommendations(
            items=items,
            source=source,
            model_version=snap.version,
            snapshot=snap.snapshot_id,
            request_id=ask.request_id,
            customer_id=state.customer_id,
            degraded=degraded,
        )


def _items(
    snap: LoadedSnapshot,
    picked: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float32],
    because: dict[int, Activity],
    features: CustomerFeatures | None,
    now: float,
) -> list[Item]:
    """The personalized items, each with its cheap reason: the session event that brought it,
    what the customer's purchases say about it, a favourite category."""
    ids, names, categories, prices = snap.id_list, snap.names, snap.category_list, snap.price_list
    cols = picked.tolist()
    reasons = default_reasons(
        cols,
        _bought_reasons(snap, features, picked, now),
        categories,
        set(features.categories) if features is not None else set(),
    )
    for k, c in enumerate(cols):
        if c in because:
            brought = because[c]
            reasons[k] = [session_reason(brought, names[snap.item_index[brought.item_id]], ids[c])]
    # round(x * 1e6) / 1e6 is round(x, 6) at a third of the cost (same doubles)
    images, pages = snap.image_list, snap.url_list
    return [
        Item(
            ids[c],
            round(s * 1e6) / 1e6,
            names[c],
            categories[c],
            prices[c],
            "personalized",
            r,
            image_url=images[c] if images else None,
            url=pages[c] if pages else None,
        )
        for c, s, r in zip(cols, scores.tolist(), reasons, strict=True)
    ]


def _bought_reasons(
    snap: LoadedSnapshot,
    features: CustomerFeatures | None,
    picked: npt.NDArray[np.int64],
    now: float,
) -> dict[int, str]:
    """Column -> 'bought 6 times, usually every 12 days: due' for the picked items the customer
    bought (in the snapshot): counts and rhythm from the model, the last time from the features."""
    if features is None or not features.purchased_items or not picked.size:
        return {}
    # a dict over a few dozen purchases (the latest time of each item wins): np.isin on these
    # small arrays cost ~50 us a request, 18 % of the recommendation route's time
    last_at = dict(
        zip(
            np.frombuffer(features.purchased_items, np.int32).tolist(),
            np.frombuffer(features.purchased_at, np.int64).tolist(),
            strict=True,
        )
    )
    cols = [c for c in picked.tolist() if c in last_at]
    if not cols:
        return {}
    row = int(snap.model.rows_of([features.customer_id])[0])
    counts, every = snap.model.purchase_rhythm(row, np.array(cols, np.int64))
    return {
        c: bought_reason(float(n), float(e), (now - last_at[c]) / DAY)
        for c, n, e in zip(cols, counts.tolist(), every.tolist(), strict=True)
    }
