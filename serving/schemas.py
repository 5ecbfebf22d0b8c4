"""Request and response messages of the HTTP API (msgspec structs; the OpenAPI document is built
from
them)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from features.schema import ID_PATTERN

Source = Literal[
    "personalized", "popular", "trending", "similar", "bought_together", "pinned", "none"
]
Id = Annotated[
    str,
    msgspec.Meta(pattern=ID_PATTERN, description="customer, alias or item id"),
]


class Availability(msgspec.Struct, frozen=True, omit_defaults=True):
    """Where an item can be had: a store (its stock level and distance from the asking store)
    or `online` (delivery)."""

    store_id: str
    quantity: int
    here: bool = False  # the store the request named
    distance_km: float | None = None


class Item(msgspec.Struct, frozen=True, omit_defaults=True):
    """One recommended item; `availability` only when asked for (availability=true)."""

    item_id: str
    score: float
    name: str
    category: str
    price: float
    source: Source
    reasons: list[str]
    availability: list[Availability] | None = None
    image_url: str | None = None  # the catalogue's, when it has the column
    url: str | None = None  # the item's page, when the catalogue has the column
    link: str | None = None  # batch answers: a tracking link that records the click (e-mails)


class Recommendations(msgspec.Struct, frozen=True):
    """An answer for one customer (or item, or order). `recommendation_id` identifies this answer
    in feedback (POST /v1/feedback); `variant` is the experiment variant that produced it
    (`default` outside every experiment)."""

    items: list[Item]
    source: Source
    model_version: int | None
    snapshot: str | None
    request_id: str
    degraded: bool = False
    customer_id: str | None = None
    recommendation_id: str = ""
    variant: str = "default"
    experiment: str | None = None
    placement: str | None = None


Placement = Annotated[str, msgspec.Meta(max_length=24, description="a configured placement")]


class BatchRequest(msgspec.Struct, frozen=True):
    """Up to the configured maximum of customers at once (the e-mail system)."""

    customer_ids: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=1000)]
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10
    channel: str | None = None
    store_id: Id | None = None
    placement: Placement | None = None  # e.g. post_purchase_email: its rules and experiment


class BatchResponse(msgspec.Struct, frozen=True):
    results: list[Recommendations]
    model_version: int | None
    request_id: str


class OrderRequest(msgspec.Struct, frozen=True):
    """A just-placed order: what to suggest next in the post-purchase e-mail."""

    customer_id: Id
    item_ids: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=200)]
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10
    store_id: Id | None = None  # click-and-collect: only what this (pickup) store has
    availability: bool = False  # per item, where it can be had
    placement: Placement | None = None


class OrdersBatchRequest(msgspec.Struct, frozen=True):
    """Many just-placed orders at once: the nightly "after your purchase" e-mails."""

    orders: Annotated[list[OrderRequest], msgspec.Meta(min_length=1, max_length=1000)]
    channel: Annotated[str, msgspec.Meta(max_length=32)] = "email"  # where they are shown


class EventIn(msgspec.Struct, frozen=True, omit_defaults=True):
    """One behavioural event; customer_id may be any alias (loyalty card, device, ...)."""

    customer_id: str
    item_id: str
    event_type: str
    channel: str
    timestamp: str | float | None = None
    quantity: int = 1
    price: float | None = None
    store_id: str | None = None
    session_id: str | None = None
    event_id: str | None = None  # your id for the event: a retry with the same id is stored once


class EventsIn(msgspec.Struct, frozen=True):
    events: Annotated[list[EventIn], msgspec.Meta(min_length=1, max_length=10_000)]


class FeedbackIn(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a customer did with a recommendation: `impression`, `click`, `add_to_cart` or
    `purchase`, with the answer's `recommendation_id` and the 1-based `position` it was shown at
    when known. A purchase without an id counts for the recommendation whose item the customer
    clicked within the attribution window."""

    type: str
    customer_id: str
    item_id: str
    recommendation_id: str | None = None
    position: int | None = None
    channel: str | None = None
    placement: str | None = None
    timestamp: str | float | None = None
    price: float | None = None  # a purchase's unit price (revenue = price x quantity)
    quantity: int = 1
    event_id: str | None = None  # your id: a retry with the same id is stored once


class FeedbackPost(msgspec.Struct, frozen=True):
    feedback: Annotated[list[FeedbackIn], msgspec.Meta(min_length=1, max_length=10_000)]


class EventError(msgspec.Struct, frozen=True):
    index: int
    field: str
    message: str


class EventsAccepted(msgspec.Struct, frozen=True):
    """202: how many were stored (acknowledged only once Redis confirmed) and why others were
    not."""

    accepted: int
    rejected: int
    errors: list[EventError]
    request_id: str
    duplicates: int = 0  # accepted events whose event_id was stored before (stored once)


class ActivityOut(msgspec.Struct, frozen=True):
    item_id: str
    name: str
    category: str
    event_type: str
    channel: str
    timestamp: int
    store_id: str | None
    description: str


class StockUpdateIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One row of the stock feed: `quantity` (the level now) or `delta` (a change), not both."""

    store_id: str
    item_id: str
    quantity: int | None = None
    delta: int | None = None


class StockIn(msgspec.Struct, frozen=True):
    updates: Annotated[list[StockUpdateIn], msgspec.Meta(min_length=1, max_length=50_000)]


class StockApplied(msgspec.Struct, frozen=True):
    """200: the rows applied (every request after this sees them) and why others were not."""

    applied: int
    rejected: int
    errors: list[EventError]
    version: int
    request_id: str


class CartItem(msgspec.Struct, frozen=True, omit_defaults=True):
    """An item in the customer's open cart: added on some channel, neither removed nor bought
    since."""

    item_id: str
    name: str
    category: str
    price: float
    channel: str
    added_at: int
    quantity: int = 1
    availability: list[Availability] | None = None


class Alias(msgspec.Struct, frozen=True):
    alias_type: str
    alias_id: str


class Profile(msgspec.Struct, frozen=True):
    """A customer as the store tablet shows them."""

    customer_id: str
    aliases: list[Alias]
    activity: list[ActivityOut]
    favourite_categories: list[str]
    cart: list[CartItem]
    first_seen: int | None
    last_seen: int | None
    known: bool
    degraded: bool
    request_id: str


FeatureState = Literal["ok", "missing", "restoring", "none"]


class Health(msgspec.Struct, frozen=True):
    """Readiness. `features`: the served snapshot is in Redis ("ok"), gone ("missing": answers
    are degraded) or being restored from MLflow ("restoring"); `durable`: Redis keeps what it
    acknowledged (append-only file or replica), None when unknown; `warnings` say what is wrong."""

    status: Literal["ok", "unavailable"]
    redis: bool
    model_version: int | None
    snapshot: str | None
    feature_age_seconds: float | None = None
    features: FeatureState = "none"
    durable: bool | None = None
    warnings: list[str] = msgspec.field(default_factory=list)
    # with several tenants: each one's served model version (None: none yet); the fields above
    # are then the first tenant's, and `status` is ok only when every tenant is
    tenants: dict[str, int | None] | None = None


class StoresOut(msgspec.Struct, frozen=True):
    """The stores with stock information (`online` is the web warehouse) and their names."""

    stores: list[str]
    names: dict[str, str]


class ErrorBody(msgspec.Struct, frozen=True):
    status_code: int
    detail: str
    field: str | None = None
