"""Recommendations for customers, items and orders, and in batches (storefront, e-mail, tablet)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
from litestar import Controller, MediaType, Response, get, post
from litestar.di import Provide
from litestar.response import Stream
from litestar.types import Scope, Send

from serving.ask import Ask
from serving.auth import needs
from serving.batch import with_links
from serving.engine import Engine
from serving.fastpath import FAST_PATH, bool_value, id_value, int_value, query_params, send_json
from serving.metrics import FALLBACKS, HEAVY
from serving.openapi import response
from serving.routes.common import (
    MAX_LIMIT,
    MAX_TEXT,
    Availability,
    Category,
    Channel,
    ExcludeItems,
    ItemId,
    Limit,
    PathId,
    PlacementName,
    PriceBound,
    PriceCap,
    StoreId,
    channel_known,
    check_channel,
    check_placement,
    check_store,
    get_engine,
    request_id,
    request_rules,
    store_known,
)
from serving.schemas import (
    BatchRequest,
    BatchResponse,
    OrderRequest,
    OrdersBatchRequest,
    Recommendations,
)
from serving.tenants import tenant_of

ENCODER = msgspec.json.Encoder()


async def for_customer_fast(scope: Scope, body: bytes, send: Send) -> bool:
    """`for_customer` for well-formed requests, as plain ASGI (see serving.fastpath)."""
    customer = id_value(scope["path_params"].get("customer_id"))
    query = query_params(scope["query_string"])
    if customer is None or query is None or "" in query.values():
        return False
    limit = int_value(query.get("limit", "10"), 1, MAX_LIMIT)
    exclude_purchased = bool_value(query.get("exclude_purchased", "true"))
    explain = bool_value(query.get("explain", "false"))
    with_availability = bool_value(query.get("availability", "false"))
    channel, store_id, category = query.get("channel"), query.get("store_id"), query.get("category")
    placement = query.get("placement")
    engine = tenant_of(scope).engine
    if (
        limit is None
        or exclude_purchased is None
        or explain is None
        or with_availability is None
        or (
            store_id is not None
            and (id_value(store_id) is None or not store_known(engine, store_id))
        )
        or (category is not None and len(category) > MAX_TEXT)
        or (channel is not None and not channel_known(engine, channel))
        or (placement is not None and placement not in engine.placements.placements)
        or not REQUEST_RULES.isdisjoint(query)
    ):
        return False
    ask = Ask(
        limit=limit,
        channel=channel,
        store_id=store_id,
        category=category,
        exclude_purchased=exclude_purchased,
        explain=explain,
        availability=with_availability,
        placement=placement,
        request_id=request_id(),
    )
    answer = await engine.recommend(customer, ask)
    await send_json(send, ENCODER.encode(_count("customer", answer)))
    return True


REQUEST_RULES = frozenset({"price_min", "price_max", "exclude_items"})  # the typed handler's
STREAM_CHUNK = 10  # batch answers encoded per piece of the streamed body (~1,000 items, < 1 ms)


async def _batch_body(
    results: list[Recommendations], version: int | None, rid: str
) -> AsyncIterator[bytes]:
    """A BatchResponse as JSON, encoded STREAM_CHUNK answers at a time (each piece a short hold
    of the event loop, sent before the next is encoded)."""
    head = ENCODER.encode(BatchResponse([], version, rid))
    opening, _, closing = head.partition(b'"results":[]')
    yield opening + b'"results":['
    for start in range(0, len(results), STREAM_CHUNK):
        piece = b",".join(ENCODER.encode(r) for r in results[start : start + STREAM_CHUNK])
        yield (b"," if start else b"") + piece
        await asyncio.sleep(0)  # sending does not wait while the socket takes it: let others run
    yield b"]" + closing


SEND_PIECE = 256 * 1024  # bytes of a finished answer handed to the server at a time


async def _pieces(body: bytes) -> AsyncIterator[bytes]:
    """A finished answer (up to ~10 MB) sent a piece at a time, yielding in between, so that
    copying it into the socket's buffer is never one long hold of the event loop."""
    view = memoryview(body)
    for start in range(0, len(view), SEND_PIECE):
        yield bytes(view[start : start + SEND_PIECE])
        await asyncio.sleep(0)


def _count(route: str, answer: Recommendations) -> Recommendations:
    if answer.degraded:
        FALLBACKS.labels(route, "degraded").inc()
    elif answer.source == "popular":
        FALLBACKS.labels(route, "popular").inc()
    return answer


def checked_ask(
    engine: Engine,
    *,
    limit: int,
    channel: str | None = None,
    store_id: str | None = None,
    category: str | None = None,
    availability: bool = False,
    placement: str | None = None,
    exclude_purchased: bool = True,
    explain: bool = False,
) -> Ask:
    """A typed handler's question: channel, store and placement checked (each a 400 naming it
    when the data or the configuration does not know it), with a fresh request id."""
    return Ask(
        limit=limit,
        channel=check_channel(engine, channel),
        store_id=check_store(engine, store_id),
        category=category,
        exclude_purchased=exclude_purchased,
        explain=explain,
        availability=availability,
        placement=check_placement(engine, placement),
        request_id=request_id(),
    )


class RecommendationController(Controller):
    path = "/v1"
    tags = ["recommendations"]
    dependencies = {"engine": Provide(get_engine, sync_to_thread=False)}
    opt = needs("recommend", "tablet", "public")  # batch and orders: `recommend` only

    @get(
        "/customers/{customer_id:str}/recommendations",
        operation_id="recommendForCustomer",
        summary="Personalized recommendations for a customer (any alias)",
        opt={FAST_PATH: for_customer_fast},
    )
    async def for_customer(
        self,
        engine: Engine,
        customer_id: PathId,
        limit: Limit = 10,
        channel: Channel = None,
        store_id: StoreId = None,
        category: Category = None,
        exclude_purchased: bool = True,
        explain: bool = False,
        availability: Availability = False,
        placement: PlacementName = None,
        price_min: PriceBound = None,
        price_max: PriceCap = None,
        exclude_items: ExcludeItems = None,
    ) -> Recommendations:
        """Unknown customers get what is trending and popular for the channel, store or category
        (source 'trending' or 'popular'). With `placement`, that placement's merchandising rules
        and experiment apply; `price_min`, `price_max` and `exclude_items` narrow this answer."""
        return _count(
            "customer",
            await engine.recommend(
                customer_id,
                checked_ask(
                    engine,
                    limit=limit,
                    channel=channel,
                    store_id=store_id,
                    category=category,
                    exclude_purchased=exclude_purchased,
                    explain=explain,
                    availability=availability,
                    placement=placement,
                ),
                request_rules(price_min, price_max, exclude_items),
            ),
        )

    @get(
        "/items/{item_id:str}/similar",
        operation_id="similarItems",
        summary="Items similar to an item",
    )
    async def similar(
        self,
        engine: Engine,
        item_id: ItemId,
        limit: Limit = 10,
        store_id: StoreId = None,
        availability: Availability = False,
        placement: PlacementName = None,
    ) -> Recommendations:
        """A new item with no interactions gets popular items (source 'popular'); the
        placement's filters apply."""
        await engine.live.follow_stock()
        ask = checked_ask(
            engine,
            limit=limit,
            store_id=store_id,
            availability=availability,
            placement=placement,
        )
        answer = engine.items.similar(item_id, ask, engine.placements.rules_for(placement))
        return _count("similar", engine.labelled(answer, ask))

    @get(
        "/trending",
        operation_id="trending",
        summary="What is trending now at a store, on a channel or everywhere, then popular "
        "(walk-in customers)",
    )
    async def trending(
        self,
        engine: Engine,
        limit: Limit = 10,
        channel: Channel = None,
        store_id: StoreId = None,
        category: Category = None,
        availability: Availability = False,
        placement: PlacementName = None,
        price_min: PriceBound = None,
        price_max: PriceCap = None,
        exclude_items: ExcludeItems = None,
    ) -> Recommendations:
        """From the real-time events of the last hours (source 'trending'), filled with the
        snapshot's popular items (source 'popular'); every item says which."""
        return _count(
            "trending",
            await engine.trending(
                checked_ask(
                    engine,
                    limit=limit,
                    channel=channel,
                    store_id=store_id,
                    category=category,
                    availability=availability,
                    placement=placement,
                ),
                request_rules(price_min, price_max, exclude_items),
            ),
        )

    @get(
        "/customers/{customer_id:str}/cart/complements",
        operation_id="cartComplements",
        summary="What completes the customer's open cart (added on any channel)",
    )
    async def cart_complements(
        self,
        engine: Engine,
        customer_id: PathId,
        limit: Limit = 10,
        store_id: StoreId = None,
        availability: Availability = False,
        placement: PlacementName = None,
    ) -> Recommendations:
        """Bought together with the cart's items, then personal; never what is in the cart."""
        ask = checked_ask(
            engine,
            limit=limit,
            store_id=store_id,
            availability=availability,
            placement=placement,
        )
        rules = engine.placements.rules_for(placement)
        answer = await engine.items.cart_complements(customer_id, ask, rules)
        return _count("cart", engine.labelled(answer, ask))

    @post(
        "/orders/complements",
        operation_id="orderComplements",
        status_code=200,
        opt=needs("recommend"),
        summary="Post-purchase suggestions for an order (bought together, then personal)",
    )
    async def complements(self, engine: Engine, data: OrderRequest) -> Recommendations:
        """Never the ordered items, never out of stock at `store_id`."""
        ask = checked_ask(
            engine,
            limit=data.limit,
            store_id=data.store_id,
            availability=data.availability,
            placement=data.placement,
        )
        rules = engine.placements.rules_for(data.placement)
        answer = await engine.items.complements(data.customer_id, list(data.item_ids), ask, rules)
        return _count("complements", engine.labelled(answer, ask))

    @post(
        "/orders/complements/batch",
        operation_id="orderComplementsBatch",
        status_code=200,
        opt=needs("recommend"),
        summary="Post-purchase suggestions for up to 1,000 orders in one call (the nightly "
        "e-mails), each item with its tracking link",
        responses={200: response(BatchResponse, description="one answer per order, in order")},
    )
    async def orders_batch(self, engine: Engine, data: OrdersBatchRequest) -> Stream:
        """Each order as `POST /v1/orders/complements` answers it (never its items), answer k's
        recommendation id ending in `-k` and naming the channel; one order at a time, so
        storefront requests keep flowing meanwhile."""
        rid = request_id()
        channel = check_channel(engine, data.channel)
        results = []
        for k, order in enumerate(data.orders):
            ask = checked_ask(
                engine,
                limit=order.limit,
                channel=channel,
                store_id=order.store_id,
                availability=order.availability,
                placement=order.placement,
            ).but(request_id=rid)
            rules = engine.placements.rules_for(order.placement)
            answer = await engine.items.complements(
                order.customer_id, list(order.item_ids), ask, rules
            )
            answer = engine.lab.labelled(answer, rid, None, None, ask.placement, k, channel)
            results.append(
                _count("complements", with_links(engine.links, answer, order.customer_id))
            )
        version = engine.live.snapshot.version if engine.live.snapshot else None
        return Stream(_batch_body(results, version, rid), media_type=MediaType.JSON)

    @post(
        "/recommendations/batch",
        operation_id="batchRecommendations",
        status_code=200,
        opt=needs("recommend"),
        summary="Recommendations for up to 1,000 customers in one call (the e-mail system)",
        responses={200: response(BatchResponse, description="one answer per customer, in order")},
    )
    async def batch(
        self, engine: Engine, data: BatchRequest, scope: Scope
    ) -> Response[bytes] | Stream:
        """Computed in the worker's heavy-request process (serving.heavy) when it is up; else
        here, a few answers at a time (up to 100,000 items in all), yielding to the event loop in
        between, so storefront requests keep flowing meanwhile."""
        rid = request_id()
        channel, store_id = check_channel(engine, data.channel), check_store(engine, data.store_id)
        placement = check_placement(engine, data.placement)
        heavy = tenant_of(scope).heavy
        if heavy is not None and (
            answer := await heavy.batch(
                list(data.customer_ids), data.limit, channel, store_id, rid, placement
            )
        ):
            HEAVY.labels("batch", "process").inc()
            FALLBACKS.labels("batch", "degraded").inc(answer.degraded)
            return Stream(_pieces(answer.body), media_type=MediaType.JSON)
        HEAVY.labels("batch", "worker").inc()
        results = await engine.batches.answer(
            list(data.customer_ids),
            Ask(
                limit=data.limit,
                channel=channel,
                store_id=store_id,
                placement=placement,
                request_id=rid,
            ),
        )
        version = engine.live.snapshot.version if engine.live.snapshot else None
        return Stream(_batch_body(results, version, rid), media_type=MediaType.JSON)
