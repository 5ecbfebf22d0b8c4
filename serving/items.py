"""Questions about items: similar items, the complements of an order (the post-purchase e-mail)
and of the customer's open cart."""

from __future__ import annotations

import time

import numpy as np

from features.encoding import ITEMLIST_DECODER
from models.topk import top_k
from omnirec.errors import StoreUnavailableError
from serving.answers import empty, popular
from serving.ask import Ask
from serving.availability import located
from serving.candidates import fill_popular, make_item
from serving.live import Live
from serving.merchandising import RuleSet, allowed_copy
from serving.personal import Personal
from serving.profile import open_cart
from serving.reads import all_activity
from serving.schemas import Item, Recommendations, Source


class ItemQuestions:
    """Answers that start from items rather than from a customer's taste."""

    def __init__(self, live: Live, personal: Personal) -> None:
        self.live = live
        self.personal = personal

    def similar(self, item_id: str, ask: Ask, rules: RuleSet | None = None) -> Recommendations:
        """Items like `item_id`, under the filters of `rules`."""
        snap = self.live.snapshot
        if snap is None:
            return empty(ask.request_id, None)
        limit, store_id = ask.limit, ask.store_id
        col = snap.item_index.get(item_id)
        mask = allowed_copy(snap, store_id, None, rules, time.time())
        if col is None:  # a new item with no interactions: popular items instead
            return popular(snap, ask.but(channel=None, category=None), None, rules=rules)
        mask[col] = False
        sims = snap.model.item_similarity(np.array([col], np.int64))
        sims[0, ~mask] = -np.inf
        ids, scores = top_k(sims, limit)
        items = [
            make_item(snap, int(c), float(s), "similar", [f"similar to {snap.names[col]}"])
            for c, s in zip(ids[0], scores[0], strict=True)
            if c >= 0 and np.isfinite(s)
        ]
        if len(items) < limit:
            mask[ids[0][ids[0] >= 0]] = False
            items += fill_popular(
                snap, limit - len(items), None, store_id, snap.categories[col], mask
            )
        answer = Recommendations(
            items=items,
            source="similar" if items and items[0].source == "similar" else "popular",
            model_version=snap.version,
            snapshot=snap.snapshot_id,
            request_id=ask.request_id,
        )
        return located(snap, answer, store_id) if ask.availability else answer

    async def complements(
        self, customer: str, ordered: list[str], ask: Ask, rules: RuleSet | None = None
    ) -> Recommendations:
        """Bought together with the order first, then personal; never the ordered items, never
        out of stock (at `store_id`, the pickup store for click-and-collect), never what the
        filters of `rules` keep out."""
        await self.live.follow_stock()
        answer = await self._complements(customer, ordered, ask, rules)
        return located(self.live.snapshot, answer, ask.store_id) if ask.availability else answer

    async def cart_complements(
        self, customer: str, ask: Ask, rules: RuleSet | None = None
    ) -> Recommendations:
        """What completes the customer's open cart (added on any channel, not removed or
        bought)."""
        snap = self.live.snapshot
        if snap is None:
            return empty(ask.request_id, customer)
        try:
            state = (await self.live.customers(snap, [customer]))[0]
        except StoreUnavailableError:
            return popular(
                snap, ask.but(channel=None, category=None), customer, degraded=True, rules=rules
            )
        cart = [a.item_id for a in open_cart(all_activity(snap, state.features, state.recent))]
        if not cart:
            plain = ask.but(channel=None, category=None, exclude_purchased=True, explain=False)
            answer = self.personal.answer(snap, state, plain, rules=rules)
            return located(snap, answer, ask.store_id) if ask.availability else answer
        return await self.complements(state.customer_id, cart, ask, rules)

    async def _complements(
        self, customer: str, ordered: list[str], ask: Ask, rules: RuleSet | None
    ) -> Recommendations:
        live = self.live
        snap = live.snapshot
        if snap is None:
            return empty(ask.request_id, customer)
        limit = ask.limit
        ordered_cols = np.array(
            [c for c in (snap.item_index.get(i) for i in ordered) if c is not None], np.int64
        )
        mask = allowed_copy(snap, ask.store_id, None, rules, time.time())
        mask[ordered_cols] = False
        items: list[Item] = []
        degraded = False
        try:
            lists = await live.together(snap, [snap.id_list[c] for c in ordered_cols])
            total: dict[int, float] = {}
            origin: dict[int, int] = {}
            for source_col, raw in zip(ordered_cols, lists, strict=True):
                if isinstance(raw, bytes):
                    cols, scores = ITEMLIST_DECODER.decode(raw).arrays()
                    for c, s in zip(cols.tolist(), scores.tolist(), strict=True):
                        total[c] = total.get(c, 0.0) + s
                        origin.setdefault(c, int(source_col))
            for c, s in sorted(total.items(), key=lambda kv: -kv[1]):
                if mask[c] and len(items) < limit:
                    reason = f"often bought with {snap.names[origin[c]]}"
                    items.append(make_item(snap, c, s, "bought_together", [reason]))
                    mask[c] = False
            if len(items) < limit:
                state = (await live.customers(snap, [customer]))[0]
                rest = ask.but(
                    limit=limit - len(items),
                    channel=None,
                    category=None,
                    exclude_purchased=True,
                    explain=False,
                )
                shown = np.concatenate([ordered_cols, np.flatnonzero(~mask)])
                personal = self.personal.answer(snap, state, rest, extra_exclude=shown)
                items += [i for i in personal.items if i.item_id not in ordered]
        except StoreUnavailableError:
            degraded = True
            items += fill_popular(snap, limit - len(items), None, ask.store_id, None, mask)
        source: Source = items[0].source if items else "none"
        return Recommendations(
            items=items[:limit],
            source=source,
            model_version=snap.version,
            snapshot=snap.snapshot_id,
            request_id=ask.request_id,
            degraded=degraded or live.features_missing,
            customer_id=customer,
        )
