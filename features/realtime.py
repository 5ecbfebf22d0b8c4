"""Real-time events: stored in a Redis stream and the customer's recent activity in one round trip.

An event may carry the caller's `event_id`: a retried event (after a timeout or a 503) is then
stored once, and so exported once; the retry is answered with the stream id of the first.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import redis
import redis.asyncio

from features.encoding import ACTIVITY_DECODER, ENCODER, Activity
from features.schema import EVENT_TYPES, ID_PATTERN, MAX_FUTURE_SECONDS
from features.store import REDIS_DOWN, RedisFeatureStore, redis_errors
from features.validation import EVENT_TYPE_SYNONYMS
from omnirec.errors import StoreUnavailableError

RECENT_KEEP = 50
EVENT_ID_TTL_SECONDS = 7 * 86_400  # how long a stored event id refuses its duplicates
CHECK_CHUNK = 200  # events validated, then written, between two yields to the event loop
# One event with an id, atomically: stored (stream + recent activity) unless its id was seen.
# KEYS: stream, recent list, id key; ARGV: stream maxlen, event, activity, keep, ttl, id ttl.
_STORE_ONCE = """
local first = redis.call('GET', KEYS[3])
if first then return {0, first} end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[2])
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('SET', KEYS[3], id, 'EX', ARGV[6])
return {1, id}
"""
_STORE_ONCE_SHA = hashlib.sha1(
    _STORE_ONCE.encode(), usedforsecurity=False
).hexdigest()  # Redis names scripts so
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
    event_id: str | None = None  # the caller's id for the event: stored once per id


STREAM_DECODER = msgspec.msgpack.Decoder(StreamEvent)


@dataclass(frozen=True)
class Rejected:
    """Why one event of a batch was refused."""

    index: int
    field: str
    message: str


@dataclass(frozen=True)
class IngestResult:
    accepted: int  # stored now or before (a retried event_id counts, once)
    stream_ids: list[str]
    rejected: list[Rejected]
    duplicates: int = 0  # accepted events whose event_id had been stored already


def check_event(
    raw: dict[str, object],
    index: int,
    max_future_seconds: float = MAX_FUTURE_SECONDS,
    now: float | None = None,
) -> StreamEvent | Rejected:
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
    at = when.timestamp()
    if at > (time.time() if now is None else now) + max_future_seconds:
        return Rejected(index, "timestamp", f"more than {max_future_seconds:,.0f} s in the future")
    if at < 0:
        return Rejected(index, "timestamp", "before 1970")
    event_id = text("event_id")
    if event_id is not None and not _ID.match(event_id):
        return Rejected(index, "event_id", "invalid characters or longer than 128")
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
        channel=channel, timestamp=int(at * 1_000_000), quantity=quantity,
        price=None if price is None else float(price), store_id=store, session_id=session,
        event_id=event_id,
    )  # fmt: skip


class RealtimeEvents:
    """Ingestion into the stream + recent-activity lists; reads of recent activity.

    `ingest` blocks (commands, tests); `ingest_async` is the service's, on a redis-py asyncio
    client, yielding to the event loop while it validates a large batch."""

    def __init__(
        self,
        store: RedisFeatureStore,
        activity_ttl_seconds: int = 90 * 86400,
        stream_maxlen: int = 10_000_000,
        max_future_seconds: float = MAX_FUTURE_SECONDS,
    ) -> None:
        self.store = store
        self.ttl = activity_ttl_seconds
        self.maxlen = stream_maxlen
        self.max_future_seconds = max_future_seconds

    @property
    def stream_key(self) -> str:
        return f"{self.store.prefix}:events"

    def recent_key(self, customer_id: str) -> str:
        return f"{self.store.prefix}:rt:{customer_id}"

    def event_id_key(self, event_id: str) -> str:
        return f"{self.store.prefix}:evid:{event_id}"

    def _alias_keys(self, events: list[StreamEvent]) -> list[str]:
        return [f"{self.store.prefix}:id:{e.customer_id}" for e in events]

    def _check(
        self, raw_events: list[dict[str, object]], start: int
    ) -> list[StreamEvent | Rejected]:
        now = time.time()
        return [check_event(raw, start + i, self.max_future_seconds, now)
                for i, raw in enumerate(raw_events)]  # fmt: skip

    def _queue(self, pipe: Any, events: list[StreamEvent], found: list[bytes | None]) -> None:
        """Queue the writes of `events` (aliases resolved through `found`) on a MULTI pipeline,
        sync or asyncio: 4 commands per event, 1 per event with an id (plus one SCRIPT LOAD)."""
        if any(e.event_id for e in events):
            pipe.script_load(_STORE_ONCE)
        for event, target in zip(events, found, strict=True):
            if target is not None and target.decode() != event.customer_id:
                event = msgspec.structs.replace(
                    event, customer_id=target.decode(), alias_id=event.customer_id
                )
            activity = Activity(event.item_id, event.event_type, event.channel, event.timestamp // 1_000_000,
                                event.store_id or "", event.quantity)  # fmt: skip
            key = self.recent_key(event.customer_id)
            encoded = ENCODER.encode(event)
            if event.event_id:
                pipe.evalsha(_STORE_ONCE_SHA, 3, self.stream_key, key, self.event_id_key(event.event_id),
                             self.maxlen, encoded, ENCODER.encode(activity), RECENT_KEEP, self.ttl,
                             EVENT_ID_TTL_SECONDS)  # fmt: skip
                continue
            pipe.xadd(self.stream_key, {b"e": encoded}, maxlen=self.maxlen, approximate=True)
            pipe.lpush(key, ENCODER.encode(activity))
            pipe.ltrim(key, 0, RECENT_KEEP - 1)
            pipe.expire(key, self.ttl)

    @staticmethod
    def _result(
        events: list[StreamEvent], replies: list[Any], rejected: list[Rejected]
    ) -> IngestResult:
        stream_ids, duplicates = [], 0
        at = 1 if any(e.event_id for e in events) else 0  # past the SCRIPT LOAD reply
        for event in events:
            if event.event_id:
                stored, stream_id = replies[at]
                duplicates += int(stored) == 0
                at += 1
            else:
                stream_id = replies[at]
                at += 4
            stream_ids.append(
                stream_id.decode() if isinstance(stream_id, bytes) else str(stream_id)
            )
        return IngestResult(len(events), stream_ids, rejected, duplicates)

    def ingest(self, raw_events: list[dict[str, object]]) -> IngestResult:
        """Validate, resolve aliases, then store each accepted event in one MULTI/EXEC round trip.

        Returns only after Redis confirmed the write; raises StoreUnavailableError otherwise.
        """
        events, rejected = _split(self._check(raw_events, 0))
        if not events:
            return IngestResult(0, [], rejected)
        with redis_errors("refused the events"):
            found = self.store.client.mget(self._alias_keys(events))
            pipe = self.store.client.pipeline(transaction=True)
            self._queue(pipe, events, found)
            replies = pipe.execute()
        return self._result(events, replies, rejected)

    async def ingest_async(
        self,
        client: redis.asyncio.Redis,  # type: ignore[type-arg]
        raw_events: list[dict[str, object]],
    ) -> IngestResult:
        """`ingest` on an asyncio client, in chunks of CHECK_CHUNK events (validate, one MGET for
        aliases, one MULTI/EXEC), yielding to the event loop between chunks so that a 10,000-event
        post never holds it for long. Returns once every chunk was confirmed; when one fails, the
        chunks before it are stored (a retry with the same event_ids stores them once)."""
        checked: list[StreamEvent | Rejected] = []
        for start in range(0, len(raw_events), CHECK_CHUNK):
            checked += self._check(raw_events[start : start + CHECK_CHUNK], start)
            await asyncio.sleep(0)
        events, rejected = _split(checked)
        results: list[IngestResult] = []
        for start in range(0, len(events), CHECK_CHUNK):
            chunk = events[start : start + CHECK_CHUNK]
            with redis_errors("refused the events"):
                found = await client.mget(self._alias_keys(chunk))
                pipe = client.pipeline(transaction=True)
                self._queue(pipe, chunk, found)
                replies = await pipe.execute()
            results.append(self._result(chunk, replies, []))
        return IngestResult(
            sum(r.accepted for r in results),
            [i for r in results for i in r.stream_ids],
            rejected,
            sum(r.duplicates for r in results),
        )

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


def _split(checked: list[StreamEvent | Rejected]) -> tuple[list[StreamEvent], list[Rejected]]:
    return (
        [c for c in checked if isinstance(c, StreamEvent)],
        [c for c in checked if isinstance(c, Rejected)],
    )
