"""The recommendation engine: per-request logic over the loaded snapshot and the Redis features."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from features.encoding import (
    CUSTOMER_DECODER,
    EVENT_NAMES,
    ITEMLIST_DECODER,
    Activity,
    CustomerFeatures,
)
from features.realtime import RealtimeEvents
from features.store import RedisFeatureStore
from models.topk import top_k
from omnirec.errors import FeatureStoreError, StoreUnavailableError
from omnirec.settings import Settings
from serving.catalogue import LoadedSnapshot
from serving.fastredis import (
    AsyncPipelinedReader,
    Packed,
    PipelinedReader,
    Reply,
    packed_get,
    packed_recent,
)
from serving.schemas import ActivityOut, Alias, Item, Profile, Recommendations, Source

DAY = 86_400
VERBS = {
    "view": "viewed",
    "favorite": "saved",
    "add_to_cart": "added to cart",
    "purchase": "bought",
    "return": "returned",
}
PLACES = {"web": "on the web", "app": "in the app", "store": "in store"}


def when_words(timestamp: int, now: float) -> str:
    """'today', 'yesterday', '3 days ago', ... for a reason a person reads."""
    days = int((now - timestamp) // DAY)
    if days <= 0:
        return "today"
    if days == 1:
        return "yesterday"
    if days < 14:
        return f"{days} days ago"
    return f"{days // 7} weeks ago"


def describe(activity: Activity, now: float) -> str:
    verb = VERBS.get(activity.event_type, activity.event_type)
    place = PLACES.get(activity.channel, f"via {activity.channel}")
    if activity.channel == "store" and activity.store_id:
        place = f"in store {activity.store_id}"
    return f"{verb} {place} {when_words(activity.timestamp, now)}"


@dataclass
class CustomerState:
    """What Redis knows about one customer right now."""

    customer_id: str
    features: CustomerFeatures | None
    recent: list[Activity]  # real-time, newest first


class CustomerReads:
    """The Redis commands that read customers (alias, features, real-time activity), packed in the
    Redis protocol, and their replies read back: one round trip, a second only for aliases."""

    def __init__(self, prefix: str, features_prefix: str, ids: list[str]) -> None:
        self.alias_prefix = f"{prefix}:id:".encode()
        self.activity_prefix = f"{prefix}:rt:".encode()
        self.features_prefix = features_prefix.encode()
        self.ids = ids
        self.states: list[CustomerState] = []
        self.aliased: list[tuple[int, str]] = []

    def _customer(self, raw_id: bytes) -> bytes:
        return packed_get(self.features_prefix + raw_id) + packed_recent(
            self.activity_prefix + raw_id
        )

    def first(self) -> Packed:
        payload = b"".join(
            packed_get(self.alias_prefix + raw_id) + self._customer(raw_id)
            for raw_id in (ident.encode() for ident in self.ids)
        )
        return Packed(payload, 3 * len(self.ids))

    def take(self, replies: list[Reply]) -> Packed | None:
        """Read the first replies; returns the commands for the ids that turned out to be aliases."""
        for i, ident in enumerate(self.ids):
            alias_target, raw, recent = replies[3 * i : 3 * i + 3]
            if isinstance(alias_target, bytes) and alias_target.decode() != ident:
                self.aliased.append((i, alias_target.decode()))
            self.states.append(_state(ident, raw, recent))
        if not self.aliased:
            return None
        payload = b"".join(self._customer(customer.encode()) for _, customer in self.aliased)
        return Packed(payload, 2 * len(self.aliased))

    def take_aliased(self, replies: list[Reply]) -> None:
        for k, (i, customer) in enumerate(self.aliased):
            self.states[i] = _state(customer, replies[2 * k], replies[2 * k + 1])


class RedisBreaker:
    """Stops calling Redis for a moment after it failed, so a dead Redis costs no time per request."""

    def __init__(self, cooldown: float = 1.0) -> None:
        self.cooldown = cooldown
        self.down_until = 0.0

    @property
    def open(self) -> bool:
        return time.monotonic() < self.down_until

    def trip(self) -> None:
        self.down_until = time.monotonic() + self.cooldown

    def reset(self) -> None:
        self.down_until = 0.0


class Engine:
    """Answers every recommendation question from one LoadedSnapshot plus live Redis reads."""

    def __init__(self, settings: Settings, store: RedisFeatureStore | None) -> None:
        self.settings = settings
        self.store = store
        self.realtime = (
            RealtimeEvents(store, settings.redis.activity_ttl_seconds, settings.redis.stream_maxlen)
            if store
            else None
        )
        self.snapshot: LoadedSnapshot | None = None
        url, timeout = (
            (store.url, settings.redis.socket_timeout_seconds)
            if store
            else ("redis://127.0.0.1:1", 0.1)
        )
        self.reader = PipelinedReader(url, timeout)
        self.async_reader = AsyncPipelinedReader(url, timeout)
        self.breaker = RedisBreaker()
        self.repurchase_days = settings.serving.repurchase_days

    def close(self) -> None:
        self.reader.close()
        self.async_reader.close()

    # ------------------------------------------------------------------ redis access
    def redis_available(self) -> bool:
        if self.store is None:
            return False
        if self.breaker.open:
            return False
        try:
            self.store.ping()
        except FeatureStoreError:
            self.breaker.trip()
            return False
        return True

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
            if more := reads.take(self.reader.execute_packed(reads.first())):
                reads.take_aliased(self.reader.execute_packed(more))
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
            if more := reads.take(await self.async_reader.execute_packed(reads.first())):
                reads.take_aliased(await self.async_reader.execute_packed(more))
        except FeatureStoreError:
            self.breaker.trip()
            raise
        return reads.states

    async def _get_many(self, keys: list[str]) -> list[Reply]:
        """GET many keys on the event loop's connection (missing keys read as None)."""
        if not keys:
            return []
        try:
            return await self.async_reader.execute([(b"GET", key.encode()) for key in keys])
        except FeatureStoreError:
            self.breaker.trip()
            raise

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
            return self._popular(
                snap, limit, channel, store_id, category, request_id, customer, degraded=True
            )
        return self.recommend_state(snap, state, limit=limit, channel=channel, store_id=store_id, category=category,
                                    exclude_purchased=exclude_purchased, explain=explain, request_id=request_id)  # fmt: skip

    def recommend_state(self, snap: LoadedSnapshot, state: CustomerState, *, limit: int, channel: str | None,
                        store_id: str | None, category: str | None, exclude_purchased: bool, explain: bool,
                        request_id: str, extra_exclude: npt.NDArray[np.int64] | None = None) -> Recommendations:  # fmt: skip
        features = state.features
        if features is None and not state.recent:
            return self._popular(
                snap, limit, channel, store_id, category, request_id, state.customer_id
            )
        now = time.time()
        allowed = snap.allowed(store_id, category)
        excluded = self._excluded(snap, features, state.recent, exclude_purchased, now)
        if extra_exclude is not None:
            excluded = np.concatenate([excluded, extra_exclude])
        fresh = [a for a in state.recent if a.timestamp > snap.meta.data_end]
        mask = allowed.copy()
        mask[excluded] = False
        picked: npt.NDArray[np.int64]
        scores: npt.NDArray[np.float32]
        if fresh and snap.model.uses_history:
            picked, scores = self._rescore(snap, features, fresh, mask, limit)
        elif features is not None and features.candidates:
            cands = np.frombuffer(features.candidates, np.int32)
            cand_scores = np.frombuffer(features.candidate_scores, np.float32)
            keep = mask[cands]
            picked, scores = cands[keep][:limit].astype(np.int64), cand_scores[keep][:limit]
            if (
                len(picked) < limit and features.vector
            ):  # filters emptied the shortlist: score everything
                picked, scores = self._rescore(snap, features, [], mask, limit)
        else:
            picked, scores = np.zeros(0, np.int64), np.zeros(0, np.float32)
        ids, names, categories, prices = (
            snap.id_list,
            snap.names,
            snap.category_list,
            snap.price_list,
        )
        # round(x * 1e6) / 1e6 is round(x, 6) at a third of the cost (same doubles)
        items = [Item(ids[c], round(s * 1e6) / 1e6, names[c], categories[c], prices[c], "personalized", [])
                 for c, s in zip(picked.tolist(), scores.tolist(), strict=True)]  # fmt: skip
        if len(items) < limit:
            mask[picked] = False
            items += self._fill_popular(snap, limit - len(items), channel, store_id, category, mask)
        if explain:
            items = self._explain(snap, items, features, state.recent, store_id, channel, now)
        source: Source = "personalized" if picked.size else "popular"
        return Recommendations(items=items, source=source, model_version=snap.version, snapshot=snap.snapshot_id,
                               request_id=request_id, customer_id=state.customer_id)  # fmt: skip

    def _excluded(self, snap: LoadedSnapshot, features: CustomerFeatures | None, recent: list[Activity],
                  exclude_purchased: bool, now: float) -> npt.NDArray[np.int32]:  # fmt: skip
        """Items not to show again: bought (within the category's repurchase window, where one is
        configured) in the snapshot or since. Duplicates are harmless to the masks that use this."""
        if not exclude_purchased:
            return _NO_ITEMS
        parts: list[npt.NDArray[np.int32]] = []
        if features is not None and features.purchased_items:
            items = np.frombuffer(features.purchased_items, np.int32)
            if self.repurchase_days:
                at = np.frombuffer(features.purchased_at, np.int64)
                items = items[(now - at) < snap.repurchase_seconds(self.repurchase_days)[items]]
            parts.append(items)
        index = snap.item_index
        bought_now = [
            index[a.item_id] for a in recent if a.event_type == "purchase" and a.item_id in index
        ]
        if bought_now:
            parts.append(np.array(bought_now, np.int32))
        if not parts:
            return _NO_ITEMS
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _rescore(self, snap: LoadedSnapshot, features: CustomerFeatures | None, fresh: list[Activity],
                 mask: npt.NDArray[np.bool_], limit: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:  # fmt: skip
        """Score every item from the snapshot history plus fresh events (ALS folds them in)."""
        weights = self.settings.interactions
        cols = [] if features is None else np.frombuffer(features.history_items, np.int32).tolist()
        data = (
            [] if features is None else np.frombuffer(features.history_weights, np.float32).tolist()
        )
        for a in fresh:
            col = snap.item_index.get(a.item_id)
            if col is not None:
                cols.append(col)
                data.append(
                    weights.event_weights.get(a.event_type, 0.0)
                    * weights.channel_weights.get(a.channel, 1.0)
                )
        history = sp.csr_matrix((np.asarray(data, np.float32), (np.zeros(len(cols), np.int64), np.asarray(cols, np.int64))),
                                shape=(1, snap.model.n_items))  # fmt: skip
        history.data = np.maximum(history.data, 0)
        row = np.array(
            [
                -1
                if fresh or features is None or not features.vector
                else snap.model.rows_of([features.customer_id])[0]
            ]
        )
        scores = np.array(snap.model.score(row, history), dtype=np.float32, copy=True)
        if history.nnz == 0:
            scores[0] = snap.model.item_popularity()
        scores[0, ~mask] = -np.inf
        ids, best = top_k(scores, limit)
        keep = ids[0] >= 0
        return ids[0][keep], best[0][keep]

    def _popular(self, snap: LoadedSnapshot, limit: int, channel: str | None, store_id: str | None, category: str | None,
                 request_id: str, customer: str | None, degraded: bool = False) -> Recommendations:  # fmt: skip
        mask = snap.allowed(store_id, category)
        items = self._fill_popular(snap, limit, channel, store_id, category, mask.copy())
        return Recommendations(items=items, source="popular" if items else "none", model_version=snap.version,
                               snapshot=snap.snapshot_id, request_id=request_id, degraded=degraded, customer_id=customer)  # fmt: skip

    def _fill_popular(self, snap: LoadedSnapshot, count: int, channel: str | None, store_id: str | None,
                      category: str | None, mask: npt.NDArray[np.bool_]) -> list[Item]:  # fmt: skip
        out: list[Item] = []
        for key in _popular_keys(channel, store_id, category):
            lst = snap.popular.get(key)
            if lst is None:
                continue
            items, scores = lst
            keep = mask[items]
            for col, score in zip(
                items[keep][: count - len(out)], scores[keep][: count - len(out)], strict=True
            ):
                out.append(
                    self._item(snap, int(col), float(score), "popular", [_popular_reason(key)])
                )
                mask[col] = False
            if len(out) >= count:
                break
        if len(out) < count:  # any allowed item, most popular first (catalogue-wide)
            popularity = snap.model.item_popularity()
            order = np.argsort(-np.where(mask, popularity, -np.inf), kind="stable")[
                : count - len(out)
            ]
            out += [
                self._item(snap, int(c), float(popularity[c]), "popular", ["popular right now"])
                for c in order
                if mask[c]
            ]
        return out

    def _item(
        self,
        snap: LoadedSnapshot,
        col: int,
        score: float,
        source: Source,
        reasons: list[str] | None = None,
    ) -> Item:
        return Item(item_id=snap.id_list[col], score=round(score * 1e6) / 1e6, name=snap.names[col],
                    category=snap.category_list[col], price=snap.price_list[col], source=source,
                    reasons=reasons or [])  # fmt: skip

    def _explain(self, snap: LoadedSnapshot, items: list[Item], features: CustomerFeatures | None,
                 recent: list[Activity], store_id: str | None, channel: str | None, now: float) -> list[Item]:  # fmt: skip
        seen: dict[str, str] = {}
        for a in _all_activity(snap, features, recent):
            if a.event_type in {"view", "add_to_cart", "favorite"} and a.item_id not in seen:
                seen[a.item_id] = describe(a, now)
        together: dict[str, str] = {}
        if (
            features is not None
            and features.purchased_items
            and self.store is not None
            and not self.breaker.open
        ):
            bought = np.frombuffer(features.purchased_items, np.int32)[-3:]
            names = [str(snap.item_ids[c]) for c in bought]
            try:
                lists = self.store.read_many(snap.snapshot_id, "together", names)
            except FeatureStoreError:
                lists = []
            for name, raw in zip(names, lists, strict=False):
                if raw:
                    for col in ITEMLIST_DECODER.decode(raw).arrays()[0]:
                        together.setdefault(
                            str(snap.item_ids[col]), snap.names[snap.item_index[name]]
                        )
        favourites = set(features.categories) if features else set()
        out = []
        for item in items:
            reasons = list(item.reasons)
            if item.item_id in seen:
                reasons.insert(0, seen[item.item_id])
            if item.item_id in together:
                reasons.append(f"often bought with {together[item.item_id]}")
            if item.source == "personalized" and item.category in favourites:
                reasons.append(f"you often shop {item.category}")
            if not reasons:
                reasons.append("matches your recent activity")
            out.append(
                Item(
                    item.item_id,
                    item.score,
                    item.name,
                    item.category,
                    item.price,
                    item.source,
                    reasons,
                )
            )
        return out

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
            return self._popular(snap, limit, None, store_id, None, request_id, None)
        mask[col] = False
        sims = snap.model.item_similarity(np.array([col], np.int64))
        sims[0, ~mask] = -np.inf
        ids, scores = top_k(sims, limit)
        items = [self._item(snap, int(c), float(s), "similar", [f"similar to {snap.names[col]}"])
                 for c, s in zip(ids[0], scores[0], strict=True) if c >= 0 and np.isfinite(s)]  # fmt: skip
        if len(items) < limit:
            mask[ids[0][ids[0] >= 0]] = False
            items += self._fill_popular(
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
                    items.append(
                        self._item(
                            snap,
                            c,
                            s,
                            "bought_together",
                            [f"often bought with {snap.names[origin[c]]}"],
                        )
                    )
                    mask[c] = False
            if len(items) < limit:
                state = (await self.fetch_customers_async(snap, [customer]))[0]
                personal = self.recommend_state(snap, state, limit=limit - len(items), channel=None, store_id=store_id,
                                                category=None, exclude_purchased=True, explain=False,
                                                request_id=request_id, extra_exclude=np.concatenate([ordered_cols, np.flatnonzero(~mask)]))  # fmt: skip
                items += [i for i in personal.items if i.item_id not in ordered]
        except StoreUnavailableError:
            degraded = True
            items += self._fill_popular(snap, limit - len(items), None, store_id, None, mask)
        source: Source = items[0].source if items else "none"
        return Recommendations(items=items[:limit], source=source, model_version=snap.version, snapshot=snap.snapshot_id,
                               request_id=request_id, degraded=degraded, customer_id=customer)  # fmt: skip

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
        """`batch` on the event loop (the batch route)."""
        snap = self.snapshot
        try:
            states = await self.fetch_customers_async(snap, customers) if snap else None
        except StoreUnavailableError:
            states = None
        return self._batch_answers(snap, customers, states, limit, channel, store_id, request_id)

    def _batch_answers(self, snap: LoadedSnapshot | None, customers: list[str], states: list[CustomerState] | None,
                       limit: int, channel: str | None, store_id: str | None, request_id: str) -> list[Recommendations]:  # fmt: skip
        if snap is None:
            return [_empty(request_id, c) for c in customers]
        if states is None:
            return [self._popular(snap, limit, channel, store_id, None, request_id, c, degraded=True)
                    for c in customers]  # fmt: skip
        return [self.recommend_state(snap, s, limit=limit, channel=channel, store_id=store_id, category=None,
                                     exclude_purchased=True, explain=False, request_id=request_id) for s in states]  # fmt: skip

    # ------------------------------------------------------------------ profile
    def resolve_alias(self, alias_type: str, value: str) -> str:
        """Customer id for an alias typed at the tablet (e-mails are matched by their SHA-256)."""
        if alias_type in {"email", "email_sha256"} and "@" in value:
            value = hashlib.sha256(value.strip().lower().encode()).hexdigest()
        if alias_type == "phone":
            value = "".join(ch for ch in value if ch.isdigit() or ch == "+")
        store = self._guard()
        found = store.read_keys([f"{store.prefix}:id:{value}"])[0]
        return found.decode() if found else value

    def profile(self, customer: str, request_id: str) -> Profile:
        snap = self.snapshot
        store = self._guard()
        state = (
            self.fetch_customers(snap, [customer])[0] if snap else CustomerState(customer, None, [])
        )
        raw_aliases = store.read_keys([f"{store.prefix}:aliases:{state.customer_id}"])[0]
        aliases = [Alias(t, a) for t, a in (_decode_aliases(raw_aliases) if raw_aliases else [])]
        now = time.time()
        activity = []
        events = _all_activity(snap, state.features, state.recent)[:40] if snap else []
        for a in events:
            assert snap is not None
            col = snap.item_index.get(a.item_id)
            activity.append(ActivityOut(
                item_id=a.item_id, name=snap.names[col] if col is not None else a.item_id,
                category=str(snap.categories[col]) if col is not None else "unknown", event_type=a.event_type,
                channel=a.channel, timestamp=a.timestamp, store_id=a.store_id or None, description=describe(a, now),
            ))  # fmt: skip
        f = state.features
        return Profile(customer_id=state.customer_id, aliases=aliases, activity=activity,
                       favourite_categories=list(f.categories) if f else [],
                       first_seen=f.first_seen if f else None, last_seen=max([*([f.last_seen] if f else []), *(a.timestamp for a in state.recent[:1])], default=None),
                       known=f is not None or bool(state.recent), degraded=False, request_id=request_id)  # fmt: skip


def _state(customer: str, raw: object, recent: object) -> CustomerState:
    features = CUSTOMER_DECODER.decode(raw) if isinstance(raw, bytes) else None
    activity = (
        [_activity(v) for v in recent if isinstance(v, bytes)] if isinstance(recent, list) else []
    )
    return CustomerState(customer, features, activity)


def _activity(raw: bytes) -> Activity:
    from features.encoding import ACTIVITY_DECODER

    return ACTIVITY_DECODER.decode(raw)


def _decode_aliases(raw: bytes) -> list[tuple[str, str]]:
    import msgspec

    return [(str(t), str(a)) for t, a in msgspec.msgpack.decode(raw)]


def _all_activity(
    snap: LoadedSnapshot | None, features: CustomerFeatures | None, recent: list[Activity]
) -> list[Activity]:
    """Real-time events (newest first) followed by the snapshot's recent events (newest first)."""
    out = list(recent)
    if snap is not None and features is not None and features.recent_items:
        items = np.frombuffer(features.recent_items, np.int32)
        types = np.frombuffer(features.recent_types, np.uint8)
        channels = np.frombuffer(features.recent_channels, np.uint8)
        at = np.frombuffer(features.recent_at, np.int64)
        stores = np.frombuffer(features.recent_stores, np.int16)
        newest_rt = min((a.timestamp for a in recent), default=None)
        for i in range(len(items) - 1, -1, -1):
            if items[i] < 0 or (
                newest_rt is not None and at[i] >= newest_rt and at[i] > snap.meta.data_end
            ):
                continue
            out.append(Activity(str(snap.item_ids[items[i]]), EVENT_NAMES.get(int(types[i]), "view"),
                                snap.channels[channels[i]] if channels[i] < len(snap.channels) else "unknown",
                                int(at[i]), snap.stores[stores[i]] if 0 <= stores[i] < len(snap.stores) else ""))  # fmt: skip
    return out


_NO_ITEMS = np.zeros(0, np.int32)


def _popular_keys(channel: str | None, store_id: str | None, category: str | None) -> list[str]:
    keys = []
    if category:
        keys.append(f"category:{category}")
    if store_id:
        keys.append(f"store:{store_id}")
    if channel:
        keys.append(f"channel:{channel}")
    keys.append("all")
    return keys


def _popular_reason(key: str) -> str:
    kind, _, value = key.partition(":")
    if kind == "store":
        return "popular at this store"
    if kind == "channel":
        return f"popular {PLACES.get(value, 'on ' + value)}"
    if kind == "category":
        return f"popular in {value}"
    return "popular right now"


def _empty(request_id: str, customer: str | None) -> Recommendations:
    return Recommendations(items=[], source="none", model_version=None, snapshot=None, request_id=request_id,
                           degraded=True, customer_id=customer)  # fmt: skip


__all__ = ["CustomerState", "Engine", "describe", "when_words"]
