"""Real-time events: stored in a Redis stream and the customer's recent activity in one round trip."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
import redis

from features.encoding import ACTIVITY_DECODER, ENCODER, Activity
from features.schema import EVENT_TYPES, ID_PATTERN
from features.store import REDIS_DOWN, RedisFeatureStore
from features.validation import EVENT_TYPE_SYNONYMS
from omnirec.errors import FeatureStoreError, StoreUnavailableError

RECENT_KEEP = 50
_ID = re.compile(ID_PATTERN)
_CHANNEL = re.compile(r"^[a-z][a-z0-9_\-]{0,31}$")


class StreamEvent(msgspec.Struct, array_like=True, frozen=True):
    """A canonical event as stored in the stream (customer already resolved)."""

    customer_id: str
    item_id: str
    event_type: str
    channel: str
    timestamp: int  # epoch microseconds
    quantity: int = 1
    price: float | None = None
    store_id: str | None = None
    session_id: str | None = None
    alias_id: str | None = None  # what the caller sent, when it was an alias


STREAM_DECODER = msgspec.msgpack.Decoder(StreamEvent)


@dataclass(frozen=True)
class Rejected:
    """Why one event of a batch was refused."""

    index: int
    field: str
    message: str


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    stream_ids: list[str]
    rejected: list[Rejected]


def check_event(raw: dict[str, object], index: int) -> StreamEvent | Rejected:
    """Validate one event as the bulk validator would; returns the event or why it is refused."""

    def text(name: str) -> str | None:
        value = raw.get(name)
        return None if value is None or value == "" else str(value).strip()

    for name in ("customer_id", "item_id"):
        value = text(name)
        if value is None:
            return Rejected(index, name, "missing")
        if not _ID.match(value):
            return Rejected(index, name, "invalid characters or longer than 128")
    event_type = (text("event_type") or "").lower()
    event_type = EVENT_TYPE_SYNONYMS.get(event_type, event_type)
    if event_type not in EVENT_TYPES:
        return Rejected(index, "event_type", f"not one of {', '.join(EVENT_TYPES)}")
    channel = (text("channel") or "").lower()
    if not _CHANNEL.match(channel):
        return Rejected(index, "channel", "missing or not a lowercase name")
    stamp = raw.get("timestamp")
    try:
        if stamp is None:
            when = datetime.now(UTC)
        elif isinstance(stamp, int | float):
            when = datetime.fromtimestamp(float(stamp), UTC)
        else:
            when = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
            when = when if when.tzinfo else when.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        return Rejected(index, "timestamp", "unparsable")
    quantity = raw.get("quantity", 1)
    if (
        not isinstance(quantity, int)
        or isinstance(quantity, bool)
        or quantity <= 0
        or quantity > 1_000_000
    ):
        return Rejected(index, "quantity", "must be a positive whole number")
    price = raw.get("price")
    if price is not None and (
        not isinstance(price, int | float) or isinstance(price, bool) or price < 0
    ):
        return Rejected(index, "price", "negative or not a number")
    store = text("store_id")
    if store is not None and not _ID.match(store):
        return Rejected(index, "store_id", "invalid characters or too long")
    session = text("session_id")
    if session is not None and len(session) > 128:
        return Rejected(index, "session_id", "longer than 128")
    return StreamEvent(
        customer_id=str(text("customer_id")), item_id=str(text("item_id")), event_type=event_type,
        channel=channel, timestamp=int(when.timestamp() * 1_000_000), quantity=quantity,
        price=None if price is None else float(price), store_id=store, session_id=session,
    )  # fmt: skip


class RealtimeEvents:
    """Ingestion into the stream + recent-activity lists; reads of recent activity."""

    def __init__(
        self,
        store: RedisFeatureStore,
        activity_ttl_seconds: int = 90 * 86400,
        stream_maxlen: int = 10_000_000,
    ) -> None:
        self.store = store
        self.ttl = activity_ttl_seconds
        self.maxlen = stream_maxlen

    @property
    def stream_key(self) -> str:
        return f"{self.store.prefix}:events"

    def recent_key(self, customer_id: str) -> str:
        return f"{self.store.prefix}:rt:{customer_id}"

    def resolve(self, ids: list[str]) -> list[str]:
        """Customer ids for any alias ids (one MGET); ids that are no alias stay as they are."""
        if not ids:
            return []
        found = self.store.read_keys([f"{self.store.prefix}:id:{i}" for i in ids])
        return [i if v is None else v.decode() for i, v in zip(ids, found, strict=True)]

    def ingest(self, raw_events: list[dict[str, object]]) -> IngestResult:
        """Validate, resolve aliases, then store each accepted event in one MULTI/EXEC round trip.

        Returns only after Redis confirmed the write; raises StoreUnavailableError otherwise.
        """
        checked = [check_event(raw, i) for i, raw in enumerate(raw_events)]
        events = [c for c in checked if isinstance(c, StreamEvent)]
        rejected = [c for c in checked if isinstance(c, Rejected)]
        if not events:
            return IngestResult(0, [], rejected)
        customers = self.resolve([e.customer_id for e in events])
        events = [
            msgspec.structs.replace(
                e, customer_id=c, alias_id=e.customer_id if c != e.customer_id else None
            )
            for e, c in zip(events, customers, strict=True)
        ]
        pipe = self.store.client.pipeline(transaction=True)
        for event in events:
            pipe.xadd(
                self.stream_key, {b"e": ENCODER.encode(event)}, maxlen=self.maxlen, approximate=True
            )
            activity = Activity(event.item_id, event.event_type, event.channel, event.timestamp // 1_000_000,
                                event.store_id or "", event.quantity)  # fmt: skip
            key = self.recent_key(event.customer_id)
            pipe.lpush(key, ENCODER.encode(activity))
            pipe.ltrim(key, 0, RECENT_KEEP - 1)
            pipe.expire(key, self.ttl)
        try:
            replies = pipe.execute()
        except REDIS_DOWN as exc:
            raise StoreUnavailableError(f"Redis unavailable: {type(exc).__name__}") from exc
        except redis.RedisError as exc:
            raise FeatureStoreError(f"Redis refused the events: {exc}") from exc
        stream_ids = [r.decode() for r in replies[0::4]]
        return IngestResult(len(events), stream_ids, rejected)

    def recent(
        self, customer_ids: list[str], limit: int = RECENT_KEEP
    ) -> dict[str, list[Activity]]:
        """Newest-first real-time activity per customer (one pipelined round trip)."""
        if not customer_ids:
            return {}
        pipe = self.store.client.pipeline(transaction=False)
        for customer in customer_ids:
            pipe.lrange(self.recent_key(customer), 0, limit - 1)
        try:
            replies = pipe.execute()
        except REDIS_DOWN as exc:
            raise StoreUnavailableError(f"Redis unavailable: {type(exc).__name__}") from exc
        return {
            c: [ACTIVITY_DECODER.decode(v) for v in values]
            for c, values in zip(customer_ids, replies, strict=True)
        }
