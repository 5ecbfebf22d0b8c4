"""The data contract: canonical Arrow schemas for events, catalogue, stock and identity map."""

from __future__ import annotations

import pyarrow as pa

EVENT_TYPES: tuple[str, ...] = ("view", "favorite", "add_to_cart", "purchase", "return")
KNOWN_CHANNELS: tuple[str, ...] = ("web", "app", "store")
ALIAS_TYPES: tuple[str, ...] = (
    "customer",
    "loyalty_card",
    "account",
    "email_sha256",
    "phone",
    "device",
)
ID_PATTERN = r"^[A-Za-z0-9+][A-Za-z0-9_.:@+\-]{0,127}$"
TIMESTAMP = pa.timestamp("us", tz="UTC")

EVENTS = pa.schema(
    [
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("timestamp", TIMESTAMP, nullable=False),
        pa.field("quantity", pa.int32(), nullable=False),
        pa.field("price", pa.float64()),
        pa.field("store_id", pa.string()),
        pa.field("session_id", pa.string()),
    ]
)
EVENT_REQUIRED: tuple[str, ...] = ("customer_id", "item_id", "event_type", "channel", "timestamp")
EVENT_OPTIONAL: tuple[str, ...] = ("quantity", "price", "store_id", "session_id")

CATALOGUE = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("category", pa.string()),
        pa.field("price", pa.float64()),
        pa.field("active", pa.bool_()),
    ]
)
STOCK = pa.schema(
    [
        pa.field("store_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("quantity", pa.int32(), nullable=False),
    ]
)
IDENTITY = pa.schema(
    [
        pa.field("alias_type", pa.string(), nullable=False),
        pa.field("alias_id", pa.string(), nullable=False),
        pa.field("customer_id", pa.string(), nullable=False),
    ]
)
