"""What a worker holds live: the snapshot it serves (and the other model versions experiments
name), its Redis connection with the breaker in front of it, the live stock it follows and the
trending lists it caches.

Every Redis read of the request path goes through here, on the event loop's auto-pipelined
connection; the blocking callers (`omnirec batch`, the heavy-request process) drive the same
steps on a blocking client (`omnirec.redis_access.drive`).
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import numpy.typing as npt

from features.feedback import FeedbackLog
from features.realtime import RealtimeEvents
from features.stock import LiveStock
from features.store import RedisFeatureStore
from omnirec.errors import FeatureStoreError, StoreUnavailableError
from omnirec.redis_access import AutoPipeline, Command, RedisTarget, Reply, Steps, T, drive
from omnirec.settings import Settings
from serving.candidates import TrendList, trend_scopes
from serving.catalogue import LoadedSnapshot
from serving.reads import CustomerReads, CustomerState, RedisBreaker


class Live:
    """The worker's live state; the rooms of the engine read it, the runtime swaps snapshots."""

    def __init__(self, settings: Settings, store: RedisFeatureStore | None) -> None:
        self.settings = settings
        self.store = store
        redis = settings.redis
        self.realtime = (
            RealtimeEvents(
                store,
                redis.activity_ttl_seconds,
                redis.backlog_limit,
                settings.max_future_seconds,
                redis.event_streams,
                settings.interactions.event_weights,
            )
            if store
            else None
        )
        if self.realtime is not None:  # an event's store must be one the served data knows
            self.realtime.known_stores = self._known_stores
        self.feedback = (
            FeedbackLog(
                self.realtime,
                settings.serving.attribution_hours * 3600,
                settings.max_future_seconds,
            )
            if self.realtime
            else None
        )
        target, timeout = (
            (store.target, redis.socket_timeout_seconds)
            if store
            else (RedisTarget("redis://127.0.0.1:1"), 0.1)
        )
        # reads and writes on the event loop: one asyncio client, its commands auto-pipelined
        self.async_client = target.async_client(timeout)
        self.pipeline = AutoPipeline(self.async_client, timeout)
        self.breaker = RedisBreaker()
        self.live_stock = LiveStock(store.prefix if store else redis.prefix)
        self._stock_reread: asyncio.Future[None] | None = None
        # what is served: the champion's snapshot, and the other versions experiments name
        self.snapshot: LoadedSnapshot | None = None
        self.versions: dict[int, LoadedSnapshot] = {}
        self.model_refs: dict[str, int] = {}  # alias or v<N> -> version (the runtime resolves)
        # the served snapshot's features are gone from Redis (restoring): answers are degraded
        self.features_missing = False
        # (snapshot, scope) -> (expires, item columns, scores) of a trending list
        self._trending: dict[
            tuple[str, str], tuple[float, npt.NDArray[np.int64], npt.NDArray[np.float32]]
        ] = {}

    async def aclose(self) -> None:
        """Close the asyncio client's connections (on the loop that used them)."""
        await self.pipeline.aclose()
        await self.async_client.aclose()

    # ------------------------------------------------------------------ what is served
    def snapshot_for(self, model: str) -> LoadedSnapshot | None:
        """The loaded snapshot a model reference (alias, v<N>) points at, or None."""
        snap = self.snapshot
        version = self.model_refs.get(model)
        if version is None or (snap is not None and version == snap.version):
            return snap if version is not None or model == "champion" else None
        return self.versions.get(version)

    # ------------------------------------------------------------------ redis
    def guard(self) -> RedisFeatureStore:
        """The store, or StoreUnavailableError while there is none or the breaker is open."""
        if self.store is None or self.breaker.open:
            raise StoreUnavailableError("Redis is unavailable (circuit open)")
        return self.store

    async def run(self, steps: Steps[T]) -> T:
        """Run Redis steps on the event loop; StoreUnavailableError at once while the breaker
        is open, and a failure trips it."""
        self.guard()
        try:
            return await self.pipeline.drive(steps)
        except FeatureStoreError:
            self.breaker.trip()
            raise

    def run_blocking(self, steps: Steps[T]) -> T:
        """Run Redis steps on a blocking client (batch commands, the heavy-request process)."""
        client = self.guard().client
        try:
            return drive(client, steps)
        except FeatureStoreError:
            self.breaker.trip()
            raise

    async def redis_available(self) -> bool:
        """PING on the event loop's connection (never blocks the loop; False while the breaker
        is open)."""
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
        store = self.guard()
        reply = await self.pipeline.checked([("HEXISTS", store.meta_key, snapshot_id)])
        return bool(reply[0] == 1)

    async def get_many(self, keys: list[str]) -> list[Reply]:
        """GET many keys on the event loop's connection (missing keys read as None)."""
        if not keys:
            return []
        commands: list[Command] = [("GET", key) for key in keys]
        return await self.run(_replies(commands))

    # ------------------------------------------------------------------ customers
    def customer_steps(
        self, snap: LoadedSnapshot, ids: list[str], follow_stock: bool = False
    ) -> Steps[list[CustomerState]]:
        """Features + real-time activity of `ids`, aliases resolved (a second trip only for
        them); with `follow_stock`, the stock changes since the last request in the same trip.
        Raises StoreUnavailableError at once while the breaker is open (which it leaves as is)."""
        reads = CustomerReads(self.guard().keys, snap.snapshot_id, ids)
        return self._read_customers(snap, reads, follow_stock)

    def _read_customers(
        self, snap: LoadedSnapshot, reads: CustomerReads, follow_stock: bool
    ) -> Steps[list[CustomerState]]:
        commands = reads.first()
        if follow_stock:
            commands.append(self.live_stock.changes_command(snap.stock_last_id))
        replies = yield commands
        if follow_stock and self._take_stock(snap, replies.pop()):
            self._reread_stock_soon(snap)
        if more := reads.take(replies):
            reads.take_aliased((yield more))
        return reads.states

    async def customers(
        self, snap: LoadedSnapshot, ids: list[str], *, follow_stock: bool = False
    ) -> list[CustomerState]:
        """Many customers' states on the event loop, sharing round trips with other requests."""
        return await self.run(self.customer_steps(snap, ids, follow_stock))

    def customers_blocking(self, snap: LoadedSnapshot, ids: list[str]) -> list[CustomerState]:
        """`customers` for the blocking callers."""
        return self.run_blocking(self.customer_steps(snap, ids, False))

    # ------------------------------------------------------------------ live stock
    def _stock_steps(self) -> Steps[bool]:
        """Apply the stock changes since the last read; True when every level must be read
        again (the worker fell behind the trimmed change log)."""
        snap = self.snapshot
        if snap is None or self.store is None or self.breaker.open:
            return False
        reply = yield [self.live_stock.changes_command(snap.stock_last_id)]
        return self._take_stock(snap, reply[0])

    async def follow_stock(self) -> None:
        """Apply the stock changes since the last request (one round trip; none while Redis is
        down: answers then use the levels last seen)."""
        snap = self.snapshot
        try:
            behind = await self.run(self._stock_steps())
        except FeatureStoreError:
            return
        if behind and snap is not None:
            self._reread_stock_soon(snap)

    def follow_stock_blocking(self) -> None:
        """`follow_stock` for the blocking callers (`omnirec batch`, the heavy-request process)."""
        snap = self.snapshot
        if snap is None or self.store is None:
            return
        try:
            behind = drive(self.store.client, self._stock_steps())
        except FeatureStoreError:
            return
        if behind:
            self._reread_stock(snap)

    def _take_stock(self, snap: LoadedSnapshot, reply: Reply) -> bool:
        changes = LiveStock.decode_changes(reply, snap.stock_last_id, snap.stock_version)
        if changes.gap:
            return True
        if changes.items:
            snap.apply_levels(
                changes.stores, changes.items, changes.levels, changes.version, changes.last_id
            )
        return False

    def _reread_stock(self, snap: LoadedSnapshot) -> None:
        """Every store's levels again (blocking: a thread's or a command's work)."""
        if self.store is None:
            return
        try:
            levels, version, last_id = self.live_stock.read_all(
                self.store.client, snap.item_index, len(snap.item_ids)
            )
        except FeatureStoreError:
            return
        snap.set_levels(levels, version, last_id)

    def _reread_stock_soon(self, snap: LoadedSnapshot) -> None:
        """`_reread_stock` in a thread, once at a time; answers use the levels last seen
        meanwhile."""
        if self._stock_reread is None or self._stock_reread.done():
            self._stock_reread = asyncio.ensure_future(asyncio.to_thread(self._reread_stock, snap))

    def _known_stores(self) -> frozenset[str] | None:
        """The stores of the served snapshot (events, stock, locations, `online`); None before
        one is loaded (events are then not checked for their store)."""
        snap = self.snapshot
        return None if snap is None else snap.known_stores

    # ------------------------------------------------------------------ trending
    async def trending(
        self, snap: LoadedSnapshot, channel: str | None, store_id: str | None
    ) -> list[TrendList]:
        """The trending lists for the store, the channel and everywhere (most specific first),
        each read at most once per OMNIREC_TRENDING_REFRESH_SECONDS per worker; none while Redis
        is down."""
        now = time.time()
        scopes = trend_scopes(channel, store_id)
        stale = [s for s in scopes if self._trending.get((snap.snapshot_id, s), (0.0,))[0] <= now]
        if stale and self.realtime is not None and not self.breaker.open:
            trending = self.realtime.trending
            minimum = self.settings.serving.trending_min_customers
            try:
                lists = await self.run(trending.read(stale, now, minimum))
            except FeatureStoreError:
                lists = {}
            for scope, merged in lists.items():
                pairs = [(snap.item_index[i], v) for i, v in merged if i in snap.item_index]
                cols = np.array([c for c, _ in pairs], np.int64)
                scores = np.array([v for _, v in pairs], np.float32)
                expires = now + self.settings.serving.trending_refresh_seconds
                self._trending[(snap.snapshot_id, scope)] = (expires, cols, scores)
        out = []
        for scope in scopes:
            cached = self._trending.get((snap.snapshot_id, scope))
            if cached is not None and len(cached[1]):
                out.append(TrendList(scope, cached[1], cached[2]))
        return out

    # ------------------------------------------------------------------ item lists, identities
    async def together(self, snap: LoadedSnapshot, item_ids: list[str]) -> list[Reply]:
        """The "bought together" list of each item (None where it has none)."""
        store = self.guard()
        keys = [store.keys.snapshot(snap.snapshot_id, "together", i) for i in item_ids]
        return await self.get_many(keys)

    async def alias_owner(self, alias: str) -> str | None:
        """The customer an alias (`card:...`, `device:...`) belongs to, or None."""
        store = self.guard()
        found = (await self.get_many([store.keys.alias(alias)]))[0]
        return found.decode() if isinstance(found, bytes) else None

    async def aliases_of(self, customer: str) -> bytes | None:
        """The encoded list of a customer's aliases, or None."""
        store = self.guard()
        found = (await self.get_many([store.keys.aliases(customer)]))[0]
        return found if isinstance(found, bytes) else None


def _replies(commands: list[Command]) -> Steps[list[Reply]]:
    """One round trip, its replies as they are."""
    replies = yield commands
    return replies
