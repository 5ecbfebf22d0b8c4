"""The data contract: canonical Arrow schemas for events, catalogue, stock and identity map."""

from __future__ import annotations

import pyarrow as pa

EVENT_TYPES: tuple[str, ...] = (
    "view",
    "favorite",
    "add_to_cart",
    "remove_from_cart",
    "purchase",
    "return",
)
KNOWN_CHANNELS: tuple[str, ...] = ("web", "app", "store", "email")
ALIAS_TYPES: tuple[str, ...] = (
    "customer",
    "loyalty_card",
    "account",
    "email_sha256",
    "phone",
    "device",
)
# Python's re (the API, real-time events): `\Z` is the end of the text (`$` also matches before a
# trailing newline); pyarrow's RE2 (file validation) has no `\Z`, and its `$` is the end of the text
# One pattern for Python's re (the API), JSON Schema (the OpenAPI document: ECMA regexes have no
# `\Z`) and, less its look-ahead, RE2 (pyarrow) and Java (Spark): `$` is the end of the text
# there; in Python it would also match before a trailing newline, which `(?!\n)` refuses.
ID_BODY = r"^[A-Za-z0-9+][A-Za-z0-9_.:@+\-]{0,127}"
END_OF_TEXT = r"(?!\n)$"
ID_PATTERN = ID_BODY + END_OF_TEXT
ID_PATTERN_RE2 = ID_BODY + "$"
TIMESTAMP = pa.timestamp("us", tz="UTC")
# an event stamped later than this after "now" is refused (ingestion, validation, import): a day
# covers clock skew and local times sent without their offset, and keeps 2100-01-01 out
MAX_FUTURE_SECONDS = 86_400.0

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
STORES = pa.schema(
    [
        pa.field("store_id", pa.string(), nullable=False),
        pa.field("latitude", pa.float64()),
        pa.field("longitude", pa.float64()),
    ]
)
IDENTITY = pa.schema(
    [
        pa.field("alias_type", pa.string(), nullable=False),
        pa.field("alias_id", pa.string(), nullable=False),
        pa.field("customer_id", pa.string(), nullable=False),
    ]
)
