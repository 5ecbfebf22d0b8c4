"""The recommendation engine: orchestrates each question (customer, similar items, order
complements, batch, profile) over the loaded snapshot and live Redis reads.

What it delegates: reading customers (`reads`), candidates and filters (`candidates`), reasons in
plain words (`reasons`), the tablet profile (`profile`)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import numpy.typing as npt

from features.encoding import ITEMLIST_DECODER, Activity, CustomerFeatures
from features.realtime import RealtimeEvents
from features.store import RedisFeatureStore
from models.topk import top_k
from omnirec.errors import FeatureStoreError, StoreUnavailableError
from omnirec.redis_access import AutoPipeline, Command, RedisTarget, Reply, run_pipelined
from omnirec.settings import Settings
from serving.candidates import (
    best_items,
    current_session,
    excluded,
    fill_popular,
    make_item,
    session_best,
)
from serving.catalogue import LoadedSnapshot
from serving.profile import alias_key, build_profile, decode_aliases
from serving.reads import CustomerReads, CustomerState, RedisBreaker, all_activity
from serving.reasons import explain as explain_items
from serving.reasons import session_reason
from serving.schemas import Item, Profile, Recommendations, Source

BOUGHT_WITH_PURCHASES = 3  # explain=true: "often bought with" looks at the last three purchases
FETCH_CHUNK = 200  # batch-route customers read from Redis per round trip
BATCH_TURN_SECONDS = 0.002  # the batch route answers customers this long, then yields to the loop
HEAVY_AT_ONCE = 1  # batch-route calls computing at once per worker; the rest wait their turn
HEAVY_SHARE = 0.5  # at most this share of a worker's time goes to batch-route calls


class Engine:
    """Answers every recommendation question from one LoadedSnapshot plus live Redis reads."""

    def __init__(self, settings: Settings, store: RedisFeatureStore | None) -> None:
        self.settings = settings
        self.store = store
        self.realtime = (
            RealtimeEvents(
                store,
                settings.redis.activity_ttl_seconds,
                settings.redis.stream_maxlen,
                settings.max_future_seconds,
                settings.redis.event_streams,
            )
            if store
            else None
        )
        self.snapshot: LoadedSnapshot | None = None
        target, timeout = (
            (store.target, settings.redis.socket_timeout_seconds)
            if store
            else (RedisTarget("redis://127.0.0.1:1"), 0.1)
        )
        # reads and writes on the event loop: one asyncio client, its commands auto-pipelined
        self.async_client = target.async_client(timeout)
        self.pipeline = AutoPipeline(self.async_client, timeout)
        self.breaker = RedisBreaker()
        self.repurchase_days = settings.serving.repurchase_days
        # the served snapshot's features are gone from Redis (restoring): answers are degraded
        self.features_missing = False
        self._heavy = asyncio.Semaphore(HEAVY_AT_ONCE)
        self._heavy_rest_until = 0.0

    async def aclose(self) -> None:
        """Close the asyncio client's connections (on the loop that used them)."""
        await self.pipeline.aclose()
        await self.async_client.aclose()

    # ------------------------------------------------------------------ redis access
    async def redis_available(self) -> bool:
        """PING on the event loop's connection (never blocks the loop; False while the breaker is open)."""
        if self.store is None or self.breaker.open:
            return False
        try:
            await self.pipeline.checked([("PING",)])
        except FeatureStoreError:
            self.breaker.trip()
            return False
        return True

    async def snapshot_present(self, snapshot_id: str) -> bool:
        """Whether Redis still holds the snapshot (its registration is written last by a publish
        and first by a restore); raises StoreUnavailableError when Redis cannot say."""
        store = self._guard()
        reply = await self.pipeline.checked([("HEXISTS", store.meta_key, snapshot_id)])
        return bool(reply[0] == 1)

    def _guard(self) -> RedisFeatureStore:
        if self.store is None or self.breaker.open:
            raise StoreUnavailableError("Redis is unavailable (circuit open)")
        return self.store

    def _reads(self, snap: LoadedSnapshot, ids: list[str]) -> CustomerReads:
        store = self._guard()
        return CustomerReads(store.prefix, store.key(snap.snapshot_id, "c") + ":", ids)

    def fetch_customers(self, snap: LoadedSnapshot, ids: list[str]) -> list[CustomerState]:
        """Features + real-time activity for many customers, aliases resolved (blocking)."""
        reads = self._reads(snap, ids)
        try:
            client = self._guard().client
            if more := reads.take(run_pipelined(client, reads.first())):
                reads.take_aliased(run_pipelined(client, more))
        except FeatureStoreError:
            self.breaker.trip()
            raise
        return reads.states

    async def fetch_customers_async(
        self, snap: LoadedSnapshot, ids: list[str]
    ) -> list[CustomerState]:
        """`fetch_customers` on the event loop, sharing round trips with concurrent requests."""
        reads = self._reads(snap, ids)
        try:
            if more := reads.take(await self.pipeline.checked(reads.first())):
                reads.take_aliased(await self.pipeline.checked(more))
        except FeatureStoreError:
            self.breaker.trip()
            raise
        return reads.states

    async def _get_many(self, keys: list[str]) -> list[Reply]:
        """GET many keys on the event loop's connection (missing keys read as None)."""
        if not keys:
            return []
        try:
            commands: list[Command] = [("GET", key) for key in keys]
            return await self.pipeline.checked(commands)
        except FeatureStoreError:
            self.breaker.trip()
            raise

    async def _bought_with(
        self, snap: LoadedSnapshot, features: CustomerFeatures | None
    ) -> dict[str, str]:
        """item id -> name of one of the customer's last purchases it is often bought with."""
        if (
            features is None
            or not features.purchased_items
            or self.store is None
            or self.breaker.open
        ):
            return {}
        bought = np.frombuffer(features.purchased_items, np.int32)[-BOUGHT_WITH_PURCHASES:]
        names = [str(snap.item_ids[c]) for c in bought]
        try:
            keys = [self.store.key(snap.snapshot_id, "together", name) for name in names]
            lists = await self._get_many(keys)
        except FeatureStoreError:
            return {}
        together: dict[str, str] = {}
        for name, raw in zip(names, lists, strict=False):
            if isinstance(raw, bytes):
                for col in ITEMLIST_DECODER.decode(raw).arrays()[0]:
                    together.setdefault(str(snap.item_ids[col]), snap.names[snap.item_index[name]])
        return together

    # ------------------------------------------------------------------ recommendations
    async def recommend(self, customer: str, *, limit: int = 10, channel: str | None = None, store_id: str | None = None,
                  category: str | None = None, exclude_purchased: bool = True, explain: bool = False,
                  request_id: str = "") -> Recommendations:  # fmt: skip
        snap = self.snapshot
        if snap is None:
            return _empty(request_id, customer)
        try:
            state = (await self.fetch_customers_async(snap, [customer]))[0]
        except StoreUnavailableError:
            return _popular(
                snap, limit, channel, store_id, category, request_id, customer, degraded=True
            )
        bought_with = await self._bought_with(snap, state.features) if explain else None
        return self.recommend_state(snap, state, limit=limit, channel=channel, store_id=store_id, category=category,
                                    exclude_purchased=exclude_purchased, explain=explain, request_id=request_id,
                                    bought_with=bought_with)  # fmt: skip

    def recommend_state(self, snap: LoadedSnapshot, state: CustomerState, *, limit: int, channel: str | None,
                        store_id: str | None, category: str | None, exclude_purchased: bool, explain: bool,
                        request_id: str, extra_exclude: npt.NDArray[np.int64] | None = None,
                        bought_with: dict[str, str] | None = None) -> Recommendations:  # fmt: skip
        """The answer for one customer whose state was read; with `explain`, reasons (`bought_with`:
        what the customer's purchases are often bought with, read beforehand)."""
        features = state.features
        if features is None and not state.recent:
            return _popular(snap, limit, channel, store_id, category, request_id, state.customer_id,
                            degraded=self.features_missing)  # fmt: skip
        now = time.time()
        masked = excluded(
            snap, features, state.recent, exclude_purchased, now, self.repurchase_days
        )
        if extra_exclude is not None:
            masked = np.concatenate([masked, extra_exclude])
        fresh = [a for a in state.recent if a.timestamp > snap.meta.data_end]
        mask = snap.allowed(store_id, category).copy()
        mask[masked] = False
        session = current_session(snap, state.recent, now)
        because: dict[int, Activity] = {}
        if session is not None:  # what they look at now moves the list
            picked, scores, because = session_best(snap, features, fresh, mask, limit,
                                                   self.settings.interactions, session)  # fmt: skip
        else:
            picked, scores = best_items(
                snap, features, fresh, mask, limit, self.settings.interactions
            )
        ids, names, categories, prices = (
            snap.id_list,
            snap.names,
            snap.category_list,
            snap.price_list,
        )
        # round(x * 1e6) / 1e6 is round(x, 6) at a third of the cost (same doubles)
        items = [Item(ids[c], round(s * 1e6) / 1e6, names[c], categories[c], prices[c], "personalized",
                      [session_reason(because[c], snap.names[snap.item_index[because[c].item_id]])] if c in because else [])
                 for c, s in zip(picked.tolist(), scores.tolist(), strict=True)]  # fmt: skip
        if len(items) < limit:
            mask[picked] = False
            items += fill_popular(snap, limit - len(items), channel, store_id, category, mask)
        if explain:
            activity = all_activity(snap, features, state.recent)
            items = explain_items(items, activity, features, bought_with or {}, now)
        source: Source = "personalized" if picked.size else "popular"
        return Recommendations(items=items, source=source, model_version=snap.version, snapshot=snap.snapshot_id,
                               request_id=request_id, customer_id=state.customer_id, degraded=self.features_missing)  # fmt: skip

    # ------------------------------------------------------------------ items and orders
    def similar(
        self, item_id: str, *, limit: int, store_id: str | None, request_id: str
    ) -> Recommendations:
        snap = self.snapshot
        if snap is None:
            return _empty(request_id, None)
        col = snap.item_index.get(item_id)
        mask = snap.allowed(store_id, None).copy()
        if col is None:  # a new item with no interactions: popular items instead
            return _popular(snap, limit, None, store_id, None, request_id, None)
        mask[col] = False
        sims = snap.model.item_similarity(np.array([col], np.int64))
        sims[0, ~mask] = -np.inf
        ids, scores = top_k(sims, limit)
        items = [make_item(snap, int(c), float(s), "similar", [f"similar to {snap.names[col]}"])
                 for c, s in zip(ids[0], scores[0], strict=True) if c >= 0 and np.isfinite(s)]  # fmt: skip
        if len(items) < limit:
            mask[ids[0][ids[0] >= 0]] = False
            items += fill_popular(
                snap, limit - len(items), None, store_id, snap.categories[col], mask
            )
        return Recommendations(items=items, source="similar" if items and items[0].source == "similar" else "popular",
                               model_version=snap.version, snapshot=snap.snapshot_id, request_id=request_id)  # fmt: skip

    async def complements(
        self,
        customer: str,
        ordered: list[str],
        *,
        limit: int,
        store_id: str | None,
        request_id: str,
    ) -> Recommendations:
        """Bought together with the order first, then personal; never the ordered items, never out of stock."""
        snap = self.snapshot
        if snap is None:
            return _empty(request_id, customer)
        ordered_cols = np.array(
            [c for c in (snap.item_index.get(i) for i in ordered) if c is not None], np.int64
        )
        mask = snap.allowed(store_id, None).copy()
        mask[ordered_cols] = False
        items: list[Item] = []
        degraded = False
        try:
            store = self._guard()
            keys = [store.key(snap.snapshot_id, "together", snap.id_list[c]) for c in ordered_cols]
            lists = await self._get_many(keys)
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
                state = (await self.fetch_customers_async(snap, [customer]))[0]
                personal = self.recommend_state(snap, state, limit=limit - len(items), channel=None, store_id=store_id,
                                                category=None, exclude_purchased=True, explain=False,
                                                request_id=request_id, extra_exclude=np.concatenate([ordered_cols, np.flatnonzero(~mask)]))  # fmt: skip
                items += [i for i in personal.items if i.item_id not in ordered]
        except StoreUnavailableError:
            degraded = True
            items += fill_popular(snap, limit - len(items), None, store_id, None, mask)
        source: Source = items[0].source if items else "none"
        return Recommendations(items=items[:limit], source=source, model_version=snap.version, snapshot=snap.snapshot_id,
                               request_id=request_id, degraded=degraded or self.features_missing, customer_id=customer)  # fmt: skip

    def batch(self, customers: list[str], *, limit: int, channel: str | None, store_id: str | None,
              request_id: str) -> list[Recommendations]:  # fmt: skip
        """Answers for many customers (blocking: the `omnirec batch` command)."""
        snap = self.snapshot
        try:
            states = self.fetch_customers(snap, customers) if snap else None
        except StoreUnavailableError:
            states = None
        return self._batch_answers(snap, customers, states, limit, channel, store_id, request_id)

    async def batch_async(self, customers: list[str], *, limit: int, channel: str | None, store_id: str | None,
                          request_id: str) -> list[Recommendations]:  # fmt: skip
        """`batch` for the batch route, sharing the event loop fairly with light requests: the
        customers are read FETCH_CHUNK at a time and answered for BATCH_TURN_SECONDS at a time
        with a yield to the loop in between; one batch at a time per worker; and
        batches get at most HEAVY_SHARE of the worker's time (the next one waits out the rest).
        Threads were tried: under a busy CPU the GIL hand-off made storefront p99 three times worse."""
        async with self._heavy:
            await asyncio.sleep(self._heavy_rest_until - time.monotonic())
            started = time.monotonic()
            snap = self.snapshot
            states: list[CustomerState] | None = [] if snap else None
            try:
                for start in range(0, len(customers), FETCH_CHUNK):
                    if snap is not None and states is not None:
                        chunk = customers[start : start + FETCH_CHUNK]
                        states += await self.fetch_customers_async(snap, chunk)
            except StoreUnavailableError:
                states = None
            answers: list[Recommendations] = []
            turn_ends = time.monotonic() + BATCH_TURN_SECONDS
            for k, customer in enumerate(customers):
                state = [states[k]] if states is not None else None
                answers += self._batch_answers(
                    snap, [customer], state, limit, channel, store_id, request_id
                )
                if (
                    time.monotonic() > turn_ends
                ):  # a customer rescored over the catalogue takes ~1 ms
                    await asyncio.sleep(0)
                    turn_ends = time.monotonic() + BATCH_TURN_SECONDS
            spent = time.monotonic() - started
            self._heavy_rest_until = time.monotonic() + spent * (1 / HEAVY_SHARE - 1)
            return answers

    def _batch_answers(self, snap: LoadedSnapshot | None, customers: list[str], states: list[CustomerState] | None,
                       limit: int, channel: str | None, store_id: str | None, request_id: str) -> list[Recommendations]:  # fmt: skip
        if snap is None:
            return [_empty(request_id, c) for c in customers]
        if states is None:
            return [_popular(snap, limit, channel, store_id, None, request_id, c, degraded=True)
                    for c in customers]  # fmt: skip
        return [self.recommend_state(snap, s, limit=limit, channel=channel, store_id=store_id, category=None,
                                     exclude_purchased=True, explain=False, request_id=request_id) for s in states]  # fmt: skip

    # ------------------------------------------------------------------ profile
    async def resolve_alias(self, alias_type: str, value: str) -> str:
        """Customer id for an alias typed at the tablet (e-mails are matched by their SHA-256)."""
        key = alias_key(alias_type, value)
        store = self._guard()
        found = (await self._get_many([f"{store.prefix}:id:{key}"]))[0]
        return found.decode() if isinstance(found, bytes) else key

    async def profile(self, customer: str, request_id: str) -> Profile:
        """Identities, activity on every channel and favourite categories (raises
        StoreUnavailableError when Redis cannot answer: a profile has no degraded form)."""
        snap = self.snapshot
        store = self._guard()
        state = (
            (await self.fetch_customers_async(snap, [customer]))[0]
            if snap
            else CustomerState(customer, None, [])
        )
        raw_aliases = (await self._get_many([f"{store.prefix}:aliases:{state.customer_id}"]))[0]
        aliases = decode_aliases(raw_aliases if isinstance(raw_aliases, bytes) else None)
        return build_profile(snap, state, aliases, request_id)


def _popular(snap: LoadedSnapshot, limit: int, channel: str | None, store_id: str | None, category: str | None,
             request_id: str, customer: str | None, degraded: bool = False) -> Recommendations:  # fmt: skip
    mask = snap.allowed(store_id, category)
    items = fill_popular(snap, limit, channel, store_id, category, mask.copy())
    return Recommendations(items=items, source="popular" if items else "none", model_version=snap.version,
                           snapshot=snap.snapshot_id, request_id=request_id, degraded=degraded, customer_id=customer)  # fmt: skip


def _empty(request_id: str, customer: str | None) -> Recommendations:
    return Recommendations(items=[], source="none", model_version=None, snapshot=None, request_id=request_id,
                           degraded=True, customer_id=customer)  # fmt: skip


__all__ = ["CustomerState", "Engine"]
