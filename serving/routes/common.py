"""Parameters and helpers shared by the controllers."""

from __future__ import annotations

import random
import re
from typing import Annotated

from litestar.params import Parameter
from litestar.types import Scope

from features.schema import ID_PATTERN, KNOWN_CHANNELS
from omnirec.errors import InvalidRequestError
from serving.engine import Engine
from serving.merchandising import RuleSet
from serving.tenants import tenant_of

MAX_LIMIT = 100  # items per answer
MAX_TEXT = 128  # ids and category names
Limit = Annotated[int, Parameter(ge=1, le=MAX_LIMIT, description=f"how many items (1-{MAX_LIMIT})")]
StoreId = Annotated[
    str | None,
    Parameter(
        pattern=ID_PATTERN, max_length=MAX_TEXT, description="only items in stock at this store"
    ),
]
Channel = Annotated[
    str | None,
    Parameter(max_length=32, description="web, app, store or another channel the data knows"),
]
Category = Annotated[
    str | None, Parameter(max_length=MAX_TEXT, description="only items of this category")
]
PathId = Annotated[
    str,
    Parameter(pattern=ID_PATTERN, max_length=MAX_TEXT, description="customer id or any alias id"),
]
Availability = Annotated[
    bool,
    Parameter(description="per item, where it can be had: here, the nearest stores, online"),
]
ItemId = Annotated[str, Parameter(pattern=ID_PATTERN, max_length=MAX_TEXT, description="item id")]
PlacementName = Annotated[
    str | None,
    Parameter(
        max_length=24,
        description="a configured placement (home, product_page, cart, ...): "
        "its merchandising rules and experiment",
    ),
]
PriceBound = Annotated[
    float | None, Parameter(ge=0, description="only items at this price or above")
]
PriceCap = Annotated[float | None, Parameter(ge=0, description="only items at this price or below")]
ExcludeItems = Annotated[
    str | None,
    Parameter(max_length=4096, description="comma-separated item ids never to show"),
]
MAX_EXCLUDED = 200
_ID = re.compile(ID_PATTERN)


def get_engine(scope: Scope) -> Engine:
    """The engine of the request's tenant (its key's)."""
    return tenant_of(scope).engine


def request_id() -> str:
    """32 random hex digits, like uuid4().hex at a fifth of the cost: an id must be unique, not
    secret, and asking the kernel for randomness on every request showed in the profile. Not a
    sequence number either, which would tell callers the service's traffic."""
    return f"{random.getrandbits(128):032x}"  # the module's generator is reseeded after fork


def known_channels(engine: Engine) -> frozenset[str]:
    """web, app, store and the channels of the served snapshot's data."""
    return frozenset(KNOWN_CHANNELS).union(
        engine.live.snapshot.channels if engine.live.snapshot else []
    )


def channel_known(engine: Engine, channel: str) -> bool:
    return channel in KNOWN_CHANNELS or (
        engine.live.snapshot is not None and channel in engine.live.snapshot.channels
    )


def check_channel(engine: Engine, channel: str | None) -> str | None:
    """Channels the data knows (plus web, app, store); anything else is a 400 naming `channel`."""
    if channel is None or channel_known(engine, channel):
        return channel
    known = ", ".join(sorted(known_channels(engine)))
    raise InvalidRequestError("channel", f"unknown channel {channel!r}; known: {known}")


def store_known(engine: Engine, store_id: str) -> bool:
    """A store with stock data or events in the served snapshot (any store before a model loads)."""
    snap = engine.live.snapshot
    return snap is None or store_id in snap.stock or store_id in snap.stores


def check_store(engine: Engine, store_id: str | None) -> str | None:
    """A store the data knows; anything else is a 400 naming `store_id` (never an unfiltered
    list)."""
    if store_id is None or store_known(engine, store_id):
        return store_id
    raise InvalidRequestError("store_id", f"unknown store {store_id!r}; GET /v1/stores lists them")


def check_ids(field: str, values: list[str]) -> None:
    for i, value in enumerate(values):
        if not _ID.match(value):
            raise InvalidRequestError(f"{field}[{i}]", "invalid characters or longer than 128")


def request_rules(
    price_min: float | None, price_max: float | None, exclude_items: str | None
) -> RuleSet | None:
    """The request's own filters as a rule set (None without any); 400s name the parameter."""
    if price_min is None and price_max is None and not exclude_items:
        return None
    if price_min is not None and price_max is not None and price_min > price_max:
        raise InvalidRequestError("price_min", "is above price_max")
    excluded = [i.strip() for i in (exclude_items or "").split(",") if i.strip()]
    if len(excluded) > MAX_EXCLUDED:
        raise InvalidRequestError("exclude_items", f"more than {MAX_EXCLUDED} item ids")
    check_ids("exclude_items", excluded)
    name = f"request:{price_min}:{price_max}:{','.join(sorted(excluded))}"
    return RuleSet(
        name=name,
        price_min=price_min,
        price_max=price_max,
        exclude_items=frozenset(excluded),
        per_request=True,
    )


def check_placement(engine: Engine, placement: str | None) -> str | None:
    """A configured placement; anything else is a 400 naming `placement`."""
    engine.placements.rules_for(placement)
    return placement
