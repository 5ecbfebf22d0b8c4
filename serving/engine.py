"""The recommendation engine: orchestrates each question (customer, similar items, order
complements, batch, profile) over the loaded snapshot and live Redis reads.

What it delegates: reading customers (`reads`), candidates and filters (`candidates`), reasons in
plain words (`reasons`), the tablet profile (`profile`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import msgspec
import numpy as np
import numpy.typing as npt

from features.encoding import ITEMLIST_DECODER, Activity, CustomerFeatures
from features.feedback import FeedbackLog, recommendation_id
from features.realtime import RealtimeEvents
from features.stock import LiveStock
from features.store import RedisFeatureStore
from features.trending import HOURS_READ
from models.topk import top_k
from omnirec.errors import FeatureStoreError, StoreUnavailableError
from omnirec.redis_access import AutoPipeline, Command, RedisTarget, Reply, run_pipelined
from omnirec.settings import Settings
from serving.arrange import AS_SCORED
from serving.availability import with_availability
from serving.candidates import (
    TrendList,
    arranged,
    best_items,
    current_session,
    excluded,
    fill_popular,
    fill_trending,
    make_item,
    session_best,
    trend_scopes,
    without,
)
from serving.catalogue import LoadedSnapshot
from serving.experiments import (
    DEFAULT_VARIANT,
    Experiment,
    Variant,
    load_experiments,
)
from serving.guardrail import VariantHealth
from serving.merchandising import RuleSet, load_placements
from serving.metrics import VARIANT_ANSWERS, VARIANT_STOPPED
from serving.profile import alias_key, build_profile, decode_aliases, open_cart
from serving.reads import CustomerReads, CustomerState, RedisBreaker, all_activity
from serving.reasons import explain as explain_items
from serving.reasons import session_reason
from serving.schemas import Item, Profile, Recommendations, Source
from serving.shadow import Shadow, ShadowJob

log = logging.getLogger("omnirec.serving")
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
                settings.interactions.event_weights,
            )
            if store
            else None
        )
        self.feedback = (
            FeedbackLog(
                self.realtime,
                settings.serving.attribution_hours * 3600,
                settings.max_future_seconds,
            )
            if self.realtime
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
        self.live_stock = LiveStock(store.prefix if store else settings.redis.prefix)
        self._stock_reread: asyncio.Future[None] | None = None
        # the served snapshot's features are gone from Redis (restoring): answers are degraded
        self.features_missing = False
        self._trending: dict[
            tuple[str, str], tuple[float, npt.NDArray[np.int64], npt.NDArray[np.float32]]
        ] = {}
        self._heavy = asyncio.Semaphore(HEAVY_AT_ONCE)
        self._heavy_rest_until = 0.0
        # merchandising and experiments (configuration files, validated here: a bad file stops
        # the service from starting, with the file and rule named)
        self.placements = load_placements(settings.serving.placements_file)
        self.experiments = load_experiments(settings.serving.experiments_file, self.placements)
        self.health = VariantHealth()
        VARIANT_ANSWERS.watch(self.health)  # /metrics counts the answers from its tallies
        self.shadow = Shadow(self)
        self.versions: dict[int, LoadedSnapshot] = {}  # other model versions experiments serve
        self.model_refs: dict[str, int] = {}  # alias or v<N> -> version (the runtime resolves)

    async def aclose(self) -> None:
        """Close the asyncio client's connections (on the loop that used them)."""
        await self.pipeline.aclose()
        await self.async_client.aclose()

    # ------------------------------------------------------------------ redis access
    async def redis_available(self) -> bool:
        """PING on the event loop's connection (never blocks the loop; False while the breaker is
        open)."""
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
        self, snap: LoadedSnapshot, ids: list[str], *, follow_stock: bool = False
    ) -> list[CustomerState]:
        """`fetch_customers` on the event loop, sharing round trips with concurrent requests;
        with `follow_stock`, the stock changes since the last request come in the same trip."""
        reads = self._reads(snap, ids)
        commands = reads.first()
        if follow_stock:
            commands.append(self.live_stock.changes_command(snap.stock_last_id))
        try:
            replies = await self.pipeline.checked(commands)
            if follow_stock and self._take_stock(snap, replies.pop()):
                self._reread_stock_soon(snap)
            if more := reads.take(replies):
                reads.take_aliased(await self.pipeline.checked(more))
        except FeatureStoreError:
            self.breaker.trip()
            raise
        return reads.states

    async def follow_stock(self) -> None:
        """Apply the stock changes since the last request (one round trip; none while Redis is
        down: answers then use the levels last seen)."""
        snap = self.snapshot
        if snap is None or self.store is None or self.breaker.open:
            return
        try:
            reply = await self.pipeline.checked(
                [self.live_stock.changes_command(snap.stock_last_id)]
            )
        except FeatureStoreError:
            self.breaker.trip()
            return
        if self._take_stock(snap, reply[0]):
            self._reread_stock_soon(snap)

    def follow_stock_blocking(self) -> None:
        """`follow_stock` for the blocking paths (`omnirec batch`, the heavy-request process)."""
        snap = self.snapshot
        if snap is None or self.store is None or self.breaker.open:
            return
        try:
            reply = run_pipelined(
                self.store.client, [self.live_stock.changes_command(snap.stock_last_id)]
            )
        except FeatureStoreError:
            return
        if self._take_stock(snap, reply[0]):
            self._reread_stock(snap)

    def _take_stock(self, snap: LoadedSnapshot, reply: Reply) -> bool:
        """Apply a change-log read; True when the worker fell behind the trimmed log and must
        read every level again."""
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

    # ------------------------------------------------------------------ experiments
    def snapshot_for(self, model: str) -> LoadedSnapshot | None:
        """The loaded (model, snapshot) pair a model reference (alias, v<N>) points at, or None."""
        snap = self.snapshot
        version = self.model_refs.get(model)
        if version is None or (snap is not None and version == snap.version):
            return snap if version is not None or model == "champion" else None
        return self.versions.get(version)

    def choose(
        self, experiment: Experiment | None, customer_id: str
    ) -> tuple[Variant | None, LoadedSnapshot | None]:
        """The customer's variant and what answers for it: the control when the assigned
        variant is stopped by the guardrail or its model is not loaded (yet)."""
        if experiment is None:
            return None, self.snapshot
        variant = experiment.assign(customer_id)
        if variant is not experiment.control and not self.health.is_stopped(
            experiment.name, variant.name
        ):
            snap = self.snapshot_for(variant.model)
            if snap is not None:
                return variant, snap
        control = experiment.control
        return control, self.snapshot_for(control.model) or self.snapshot

    def _record(
        self, experiment: Experiment, variant: Variant, seconds: float, failed: bool
    ) -> None:
        """Count a variant's answer; log and show the variants the guardrail stops."""
        for name in self.health.record(experiment, variant.name, seconds, failed):
            VARIANT_STOPPED.labels(experiment.name, name).set(1)
            log.warning(
                "experiment %s: variant %s stopped by its guardrail (%s); its customers get %s",
                experiment.name,
                name,
                self.health.stopped[(experiment.name, name)],
                experiment.control.name,
            )

    @staticmethod
    def labelled(
        answer: Recommendations,
        request_id: str,
        experiment: Experiment | None,
        variant: Variant | None,
        placement: str | None,
        index: int | None = None,
    ) -> Recommendations:
        """`answer` with its recommendation id, variant, experiment and placement."""
        name = variant.name if variant is not None else DEFAULT_VARIANT
        in_experiment = experiment.name if experiment is not None and variant is not None else None
        return msgspec.structs.replace(
            answer,
            recommendation_id=recommendation_id(request_id, in_experiment, name, placement, index),
            variant=name,
            experiment=in_experiment,
            placement=placement,
        )

    # ------------------------------------------------------------------ recommendations
    async def recommend(
        self,
        customer: str,
        *,
        limit: int = 10,
        channel: str | None = None,
        store_id: str | None = None,
        category: str | None = None,
        exclude_purchased: bool = True,
        explain: bool = False,
        request_id: str = "",
        availability: bool = False,
        placement: str | None = None,
        request_rules: RuleSet | None = None,
    ) -> Recommendations:
        """One customer's answer, in the variant of the experiment covering the placement and
        channel (if any), under the placement's, the variant's and the request's rules."""
        base_rules = self.placements.rules_for(placement)
        experiment = self.experiments.find(placement, channel)
        started = time.perf_counter()
        answer, variant = await self._recommend(
            customer,
            limit,
            channel,
            store_id,
            category,
            exclude_purchased,
            explain,
            request_id,
            experiment,
            base_rules,
            request_rules,
        )
        if experiment is not None and variant is not None:
            self._record(experiment, variant, time.perf_counter() - started, answer.degraded)
            if not answer.degraded and answer.customer_id and self.shadow.sampled(experiment):
                self.shadow.offer(
                    ShadowJob(
                        experiment,
                        answer.customer_id,
                        [i.item_id for i in answer.items],
                        limit,
                        channel,
                        store_id,
                        category,
                        combined_rules(base_rules, variant, request_rules),
                        request_id,
                    )
                )
        answer = self.with_availability(answer, store_id, availability)
        return self.labelled(answer, request_id, experiment, variant, placement)

    async def _recommend(
        self,
        customer: str,
        limit: int,
        channel: str | None,
        store_id: str | None,
        category: str | None,
        exclude_purchased: bool,
        explain: bool,
        request_id: str,
        experiment: Experiment | None,
        base_rules: RuleSet | None,
        request_rules: RuleSet | None,
    ) -> tuple[Recommendations, Variant | None]:
        snap = self.snapshot
        if snap is None:
            return _empty(request_id, customer), None
        try:
            # the variant of the id asked for, read in the same round trip as the customer;
            # an alias is assigned as its customer (one more trip when that changes the model)
            variant, served = self.choose(experiment, customer)
            snap = served or snap
            state = (await self.fetch_customers_async(snap, [customer], follow_stock=True))[0]
            if state.customer_id != customer and experiment is not None:
                variant, served = self.choose(experiment, state.customer_id)
                if served is not None and served is not snap:  # another model version's features
                    state = (await self.fetch_customers_async(served, [state.customer_id]))[0]
                    snap = served
        except StoreUnavailableError:
            variant = self.choose(experiment, customer)[0]
            rules = combined_rules(base_rules, variant, request_rules)
            return _popular(
                snap,
                limit,
                channel,
                store_id,
                category,
                request_id,
                customer,
                degraded=True,
                rules=rules,
            ), variant
        rules = combined_rules(base_rules, variant, request_rules)
        if state.features is None and not state.recent:  # unknown or walk-in: what is hot now
            trending = await self.load_trending(snap, channel, store_id)
            return _popular(
                snap,
                limit,
                channel,
                store_id,
                category,
                request_id,
                customer,
                degraded=self.features_missing,
                trending=trending,
                rules=rules,
            ), variant
        bought_with = await self._bought_with(snap, state.features) if explain else None
        return self.recommend_state(
            snap,
            state,
            limit=limit,
            channel=channel,
            store_id=store_id,
            category=category,
            exclude_purchased=exclude_purchased,
            explain=explain,
            request_id=request_id,
            bought_with=bought_with,
            rules=rules,
        ), variant

    async def trending(
        self,
        *,
        limit: int,
        channel: str | None,
        store_id: str | None,
        category: str | None,
        request_id: str,
        availability: bool = False,
        placement: str | None = None,
        request_rules: RuleSet | None = None,
    ) -> Recommendations:
        """What is trending now (the real-time events of the last hours) at the store, on the
        channel or everywhere, then popular: the walk-in customer's list."""
        rules = combined_rules(self.placements.rules_for(placement), None, request_rules)
        snap = self.snapshot
        if snap is None:
            return self.labelled(_empty(request_id, None), request_id, None, None, placement)
        await self.follow_stock()
        trending = await self.load_trending(snap, channel, store_id)
        answer = _popular(
            snap,
            limit,
            channel,
            store_id,
            category,
            request_id,
            None,
            degraded=self.features_missing,
            trending=trending,
            rules=rules,
        )
        answer = self.with_availability(answer, store_id, availability)
        return self.labelled(answer, request_id, None, None, placement)

    async def load_trending(
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
            commands = [c for scope in stale for c in trending.reads(scope, now)]
            try:
                replies = await self.pipeline.checked(commands)
            except FeatureStoreError:
                self.breaker.trip()
                replies = []
            for k, scope in enumerate(stale if replies else []):
                merged = trending.merge(replies[k * HOURS_READ : (k + 1) * HOURS_READ])
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

    def with_availability(
        self, answer: Recommendations, store_id: str | None, wanted: bool = True
    ) -> Recommendations:
        """`answer` with, per item, where it can be had (when `wanted`)."""
        snap = self.snapshot
        if snap is None or not wanted:
            return answer
        return msgspec.structs.replace(
            answer, items=with_availability(snap, answer.items, store_id)
        )

    def recommend_state(
        self,
        snap: LoadedSnapshot,
        state: CustomerState,
        *,
        limit: int,
        channel: str | None,
        store_id: str | None,
        category: str | None,
        exclude_purchased: bool,
        explain: bool,
        request_id: str,
        extra_exclude: npt.NDArray[np.int64] | None = None,
        bought_with: dict[str, str] | None = None,
        rules: RuleSet | None = None,
    ) -> Recommendations:
        """The answer for one customer whose state was read; with `explain`, reasons (`bought_with`:
        what the customer's purchases are often bought with, read beforehand); under `rules`
        (merchandising: filters, boosts, pins, diversity)."""
        features = state.features
        if features is None and not state.recent:
            return _popular(
                snap,
                limit,
                channel,
                store_id,
                category,
                request_id,
                state.customer_id,
                degraded=self.features_missing,
                rules=rules,
            )
        now = time.time()
        masked = excluded(
            snap, features, state.recent, exclude_purchased, now, self.repurchase_days
        )
        if extra_exclude is not None:
            masked = np.concatenate([masked, extra_exclude]).astype(np.int32, copy=False)
        fresh = [a for a in state.recent if a.timestamp > snap.meta.data_end]
        # only read: a writable copy is made where a path needs one (rescoring, the backfill)
        allowed = shared_allowed(snap, store_id, category, rules, now)
        pool, arrangement = (
            (limit, AS_SCORED)
            if rules is None
            else (rules.pool(limit), rules.arrangement(snap, limit, now))
        )
        session = current_session(snap, state.recent, now)
        because: dict[int, Activity] = {}
        if session is not None:  # what they look at now moves the list
            picked, scores, because = session_best(
                snap,
                features,
                fresh,
                without(allowed, masked),
                pool,
                self.settings.interactions,
                session,
            )
            picked, scores, settled = arranged(picked, scores, arrangement, limit)
        else:
            picked, scores, settled = best_items(
                snap,
                features,
                fresh,
                allowed,
                masked,
                pool,
                self.settings.interactions,
                limit,
                arrangement,
            )
        reordered = arrangement is not AS_SCORED
        settled = settled and reordered
        ids, names, categories, prices = (
            snap.id_list,
            snap.names,
            snap.category_list,
            snap.price_list,
        )
        # round(x * 1e6) / 1e6 is round(x, 6) at a third of the cost (same doubles)
        items = [
            Item(
                ids[c],
                round(s * 1e6) / 1e6,
                names[c],
                categories[c],
                prices[c],
                "personalized",
                [session_reason(because[c], snap.names[snap.item_index[because[c].item_id]])]
                if c in because
                else [],
            )
            for c, s in zip(picked.tolist(), scores.tolist(), strict=True)
        ]
        # most ranked answers are complete and final here: no backfill, no second look
        unfinished = rules is not None and rules.reorders and (bool(rules.pins) or not settled)
        if unfinished or len(items) < limit:
            backfill = _backfill(
                snap, channel, store_id, category, lambda: without(allowed, masked, picked)
            )
            if rules is not None and rules.reorders:
                items = rules.finish(
                    snap, items, limit, backfill, snap.allowed(store_id, None), settled, reordered
                )
            else:
                items += backfill(limit - len(items))
        if explain:
            activity = all_activity(snap, features, state.recent)
            items = explain_items(items, activity, features, bought_with or {}, now)
        source: Source = "personalized" if picked.size else "popular"
        return Recommendations(
            items=items,
            source=source,
            model_version=snap.version,
            snapshot=snap.snapshot_id,
            request_id=request_id,
            customer_id=state.customer_id,
            degraded=self.features_missing,
        )

    # ------------------------------------------------------------------ items and orders
    def similar(
        self,
        item_id: str,
        *,
        limit: int,
        store_id: str | None,
        request_id: str,
        rules: RuleSet | None = None,
    ) -> Recommendations:
        """Items like `item_id`, under the filters of `rules`."""
        snap = self.snapshot
        if snap is None:
            return _empty(request_id, None)
        col = snap.item_index.get(item_id)
        mask = allowed_under(snap, store_id, None, rules, time.time())
        if col is None:  # a new item with no interactions: popular items instead
            return _popular(snap, limit, None, store_id, None, request_id, None, rules=rules)
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
        return Recommendations(
            items=items,
            source="similar" if items and items[0].source == "similar" else "popular",
            model_version=snap.version,
            snapshot=snap.snapshot_id,
            request_id=request_id,
        )

    async def complements(
        self,
        customer: str,
        ordered: list[str],
        *,
        limit: int,
        store_id: str | None,
        request_id: str,
        availability: bool = False,
        rules: RuleSet | None = None,
    ) -> Recommendations:
        """Bought together with the order first, then personal; never the ordered items, never
        out of stock (at `store_id`, the pickup store for click-and-collect), never what the
        filters of `rules` keep out."""
        await self.follow_stock()
        answer = await self._complements(
            customer, ordered, limit=limit, store_id=store_id, request_id=request_id, rules=rules
        )
        return self.with_availability(answer, store_id, availability)

    async def cart_complements(
        self,
        customer: str,
        *,
        limit: int,
        store_id: str | None,
        request_id: str,
        availability: bool = False,
        rules: RuleSet | None = None,
    ) -> Recommendations:
        """What completes the customer's open cart (added on any channel, not removed or bought)."""
        snap = self.snapshot
        if snap is None:
            return _empty(request_id, customer)
        try:
            state = (await self.fetch_customers_async(snap, [customer]))[0]
        except StoreUnavailableError:
            return _popular(
                snap, limit, None, store_id, None, request_id, customer, degraded=True, rules=rules
            )
        cart = [a.item_id for a in open_cart(all_activity(snap, state.features, state.recent))]
        if not cart:
            answer = self.recommend_state(
                snap,
                state,
                limit=limit,
                channel=None,
                store_id=store_id,
                category=None,
                exclude_purchased=True,
                explain=False,
                request_id=request_id,
                rules=rules,
            )
            return self.with_availability(answer, store_id, availability)
        return await self.complements(
            state.customer_id,
            cart,
            limit=limit,
            store_id=store_id,
            request_id=request_id,
            availability=availability,
            rules=rules,
        )

    async def _complements(
        self,
        customer: str,
        ordered: list[str],
        *,
        limit: int,
        store_id: str | None,
        request_id: str,
        rules: RuleSet | None,
    ) -> Recommendations:
        snap = self.snapshot
        if snap is None:
            return _empty(request_id, customer)
        ordered_cols = np.array(
            [c for c in (snap.item_index.get(i) for i in ordered) if c is not None], np.int64
        )
        mask = allowed_under(snap, store_id, None, rules, time.time())
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
                personal = self.recommend_state(
                    snap,
                    state,
                    limit=limit - len(items),
                    channel=None,
                    store_id=store_id,
                    category=None,
                    exclude_purchased=True,
                    explain=False,
                    request_id=request_id,
                    extra_exclude=np.concatenate([ordered_cols, np.flatnonzero(~mask)]),
                )
                items += [i for i in personal.items if i.item_id not in ordered]
        except StoreUnavailableError:
            degraded = True
            items += fill_popular(snap, limit - len(items), None, store_id, None, mask)
        source: Source = items[0].source if items else "none"
        return Recommendations(
            items=items[:limit],
            source=source,
            model_version=snap.version,
            snapshot=snap.snapshot_id,
            request_id=request_id,
            degraded=degraded or self.features_missing,
            customer_id=customer,
        )

    def batch(
        self,
        customers: list[str],
        *,
        limit: int,
        channel: str | None,
        store_id: str | None,
        request_id: str,
        placement: str | None = None,
        first_index: int = 0,
    ) -> list[Recommendations]:
        """Answers for many customers (blocking: the `omnirec batch` command, the heavy-request
        process); answer k's recommendation id ends in `-<first_index + k>`."""
        self.follow_stock_blocking()
        snap = self.snapshot
        experiment = self.experiments.find(placement, channel)
        try:
            states = self.fetch_customers(snap, customers) if snap else None
            assigned = self._assigned(experiment, customers, states)
            if states is not None:
                for served, ks in _other_versions(snap, assigned):
                    again = self.fetch_customers(served, [states[k].customer_id for k in ks])
                    for k, one in zip(ks, again, strict=True):
                        states[k] = one
        except StoreUnavailableError:
            states = None
            assigned = self._assigned(experiment, customers, None)
        return self._batch_answers(
            snap,
            customers,
            states,
            assigned,
            limit,
            channel,
            store_id,
            request_id,
            placement,
            experiment,
            first_index,
        )

    def _assigned(
        self,
        experiment: Experiment | None,
        customers: list[str],
        states: list[CustomerState] | None,
    ) -> list[tuple[Variant | None, LoadedSnapshot | None]]:
        """Each customer's variant and the snapshot that answers for it."""
        ids = customers if states is None else [s.customer_id for s in states]
        return [self.choose(experiment, c) for c in ids]

    async def batch_async(
        self,
        customers: list[str],
        *,
        limit: int,
        channel: str | None,
        store_id: str | None,
        request_id: str,
        placement: str | None = None,
    ) -> list[Recommendations]:
        """`batch` for the batch route, sharing the event loop fairly with light requests: the
        customers are read FETCH_CHUNK at a time and answered for BATCH_TURN_SECONDS at a time
        with a yield to the loop in between; one batch at a time per worker; and
        batches get at most HEAVY_SHARE of the worker's time (the next one waits out the rest).
        Threads were tried: under a busy CPU the GIL hand-off made storefront p99 three times
        worse."""
        async with self._heavy:
            await asyncio.sleep(self._heavy_rest_until - time.monotonic())
            await self.follow_stock()
            started = time.monotonic()
            snap = self.snapshot
            experiment = self.experiments.find(placement, channel)
            states: list[CustomerState] | None = [] if snap else None
            try:
                for start in range(0, len(customers), FETCH_CHUNK):
                    if snap is not None and states is not None:
                        chunk = customers[start : start + FETCH_CHUNK]
                        states += await self.fetch_customers_async(snap, chunk)
                assigned = self._assigned(experiment, customers, states)
                for served, ks in _other_versions(snap, assigned):
                    fetched = states or []
                    again = await self.fetch_customers_async(
                        served, [fetched[k].customer_id for k in ks]
                    )
                    for k, one in zip(ks, again, strict=True):
                        fetched[k] = one
            except StoreUnavailableError:
                states = None
                assigned = self._assigned(experiment, customers, None)
            answers: list[Recommendations] = []
            turn_ends = time.monotonic() + BATCH_TURN_SECONDS
            for k, customer in enumerate(customers):
                state = [states[k]] if states is not None else None
                answers += self._batch_answers(
                    snap,
                    [customer],
                    state,
                    [assigned[k]],
                    limit,
                    channel,
                    store_id,
                    request_id,
                    placement,
                    experiment,
                    k,
                )
                if (
                    time.monotonic() > turn_ends
                ):  # a customer rescored over the catalogue takes ~1 ms
                    await asyncio.sleep(0)
                    turn_ends = time.monotonic() + BATCH_TURN_SECONDS
            spent = time.monotonic() - started
            self._heavy_rest_until = time.monotonic() + spent * (1 / HEAVY_SHARE - 1)
            return answers

    def _batch_answers(
        self,
        snap: LoadedSnapshot | None,
        customers: list[str],
        states: list[CustomerState] | None,
        assigned: list[tuple[Variant | None, LoadedSnapshot | None]],
        limit: int,
        channel: str | None,
        store_id: str | None,
        request_id: str,
        placement: str | None,
        experiment: Experiment | None,
        first_index: int,
    ) -> list[Recommendations]:
        base_rules = self.placements.rules_for(placement)
        answers = []
        for k, customer in enumerate(customers):
            variant, served = assigned[k]
            rules = combined_rules(base_rules, variant, None)
            if snap is None:
                answer = _empty(request_id, customer)
            elif states is None:
                answer = _popular(
                    snap,
                    limit,
                    channel,
                    store_id,
                    None,
                    request_id,
                    customer,
                    degraded=True,
                    rules=rules,
                )
            else:
                answer = self.recommend_state(
                    served or snap,
                    states[k],
                    limit=limit,
                    channel=channel,
                    store_id=store_id,
                    category=None,
                    exclude_purchased=True,
                    explain=False,
                    request_id=request_id,
                    rules=rules,
                )
            answers.append(
                self.labelled(answer, request_id, experiment, variant, placement, first_index + k)
            )
        return answers

    # ------------------------------------------------------------------ profile
    async def resolve_alias(self, alias_type: str, value: str) -> str:
        """Customer id for an alias typed at the tablet (e-mails are matched by their SHA-256)."""
        key = alias_key(alias_type, value)
        store = self._guard()
        found = (await self._get_many([f"{store.prefix}:id:{key}"]))[0]
        return found.decode() if isinstance(found, bytes) else key

    async def profile(self, customer: str, request_id: str, store_id: str | None = None) -> Profile:
        """Identities, activity on every channel and favourite categories (raises
        StoreUnavailableError when Redis cannot answer: a profile has no degraded form)."""
        snap = self.snapshot
        store = self._guard()
        state = (
            (await self.fetch_customers_async(snap, [customer], follow_stock=True))[0]
            if snap
            else CustomerState(customer, None, [])
        )
        raw_aliases = (await self._get_many([f"{store.prefix}:aliases:{state.customer_id}"]))[0]
        aliases = decode_aliases(raw_aliases if isinstance(raw_aliases, bytes) else None)
        return build_profile(snap, state, aliases, request_id, store_id)


def _other_versions(
    snap: LoadedSnapshot | None, assigned: list[tuple[Variant | None, LoadedSnapshot | None]]
) -> list[tuple[LoadedSnapshot, list[int]]]:
    """(snapshot, positions of its customers) for the customers answered by another model
    version than the champion's."""
    groups: dict[int, tuple[LoadedSnapshot, list[int]]] = {}
    for k, (_, served) in enumerate(assigned):
        if served is not None and served is not snap:
            groups.setdefault(served.version, (served, []))[1].append(k)
    return list(groups.values())


def shared_allowed(
    snap: LoadedSnapshot,
    store_id: str | None,
    category: str | None,
    rules: RuleSet | None,
    now: float,
) -> npt.NDArray[np.bool_]:
    """The items that may be shown: active, in stock at `store_id`, in `category`, and allowed by
    the filters of `rules`; shared with other requests (read-only) where it is cached."""
    if rules is None or not rules.filters:
        return snap.allowed(store_id, category)
    if rules.per_request:
        return np.logical_and(snap.allowed(store_id, category), rules.mask(snap, now))
    # a placement's or a variant's rules: their mask and the stock's, together, cached (no
    # element-wise and of two catalogue-long masks per request)
    return snap.allowed(store_id, category, (rules.mask_key(now), lambda: rules.mask(snap, now)))


def allowed_under(
    snap: LoadedSnapshot,
    store_id: str | None,
    category: str | None,
    rules: RuleSet | None,
    now: float,
) -> npt.NDArray[np.bool_]:
    """`shared_allowed` as a fresh mask (the caller changes it)."""
    return shared_allowed(snap, store_id, category, rules, now).copy()


def combined_rules(
    placement: RuleSet | None, variant: Variant | None, request: RuleSet | None
) -> RuleSet | None:
    """The placement's rules, then the variant's, then the request's (each narrowing)."""
    rules = placement
    for more in (variant.rules if variant is not None else None, request):
        if more is not None:
            rules = more if rules is None else rules.then(more)
    return rules


def _backfill(
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


def _popular(
    snap: LoadedSnapshot,
    limit: int,
    channel: str | None,
    store_id: str | None,
    category: str | None,
    request_id: str,
    customer: str | None,
    degraded: bool = False,
    trending: list[TrendList] | None = None,
    rules: RuleSet | None = None,
) -> Recommendations:
    mask = allowed_under(snap, store_id, category, rules, time.time())
    pool = limit if rules is None else rules.pool(limit)
    items = fill_trending(snap, pool, trending or [], mask)
    items += fill_popular(snap, pool - len(items), channel, store_id, category, mask)
    if rules is not None:
        items = rules.reordered(snap, items, time.time())
        items = (
            rules.finish(
                snap,
                items,
                limit,
                _backfill(snap, channel, store_id, category, lambda: mask),
                snap.allowed(store_id, None),
            )
            if rules.reorders
            else items[:limit]
        )
    source: Source = items[0].source if items else "none"
    return Recommendations(
        items=items,
        source=source,
        model_version=snap.version,
        snapshot=snap.snapshot_id,
        request_id=request_id,
        degraded=degraded,
        customer_id=customer,
    )


def _empty(request_id: str, customer: str | None) -> Recommendations:
    return Recommendations(
        items=[],
        source="none",
        model_version=None,
        snapshot=None,
        request_id=request_id,
        degraded=True,
        customer_id=customer,
    )


__all__ = ["CustomerState", "Engine"]
