"""Real-time events: each stored in one of the event streams, then pushed onto the customer's
recent-activity list.

Keys on a Redis Cluster: a customer's events go to stream `{prefix:events:N}` (N from a hash of the
customer, so one customer's events stay in order), and an event's id key lives beside its stream
(`{prefix:events:N}:id:<event_id>`, same hash tag, same slot), so storing an event once per id is
one script on one slot. The recent-activity list (`prefix:rt:<customer>`) is a cache of the
streams, written right after them: the streams are the record the export reads.

An event may carry the caller's `event_id`: a retried event (after a timeout or a 503) is then
stored once, and so exported once; the retry is answered with the stream id of the first.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import msgspec

from features.encoding import ACTIVITY_DECODER, ENCODER, Activity
from features.event_rules import EVENT_RULES, check_record
from features.schema import MAX_FUTURE_SECONDS
from features.store import RedisFeatureStore
from features.trending import TrendEvent, Trending
from omnirec.errors import EventBacklogFullError, StoreUnavailableError
from omnirec.redis_access import AutoPipeline, Command, Reply, Steps, drive, run_pipelined

log = logging.getLogger(__name__)

RECENT_KEEP = 50
EVENT_ID_TTL_SECONDS = 7 * 86_400  # how long a stored event id refuses its duplicates
CHECK_CHUNK = 200  # events validated, then written, between two yields to the event loop
# One event with an id, on one slot: added to the stream unless its id was seen.
# KEYS: stream, id key; ARGV: event, id ttl, field ('e' event, 'f' feedback).
_STORE_ONCE = """
local first = redis.call('GET', KEYS[2])
if first then return {0, first} end
local id = redis.call('XADD', KEYS[1], '*', ARGV[3], ARGV[1])
redis.call('SET', KEYS[2], id, 'EX', ARGV[2])
return {1, id}
"""


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


class Stored(Protocol):
    """What the streams hold: events and feedback (each with its customer and optional id)."""

    @property
    def customer_id(self) -> str: ...
    @property
    def event_id(self) -> str | None: ...


S = TypeVar("S", bound=Stored)


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
    purchases: list[StreamEvent] = field(default_factory=list)  # stored now (for attribution)


def check_event(
    raw: dict[str, object],
    index: int,
    max_future_seconds: float = MAX_FUTURE_SECONDS,
    now: float | None = None,
) -> StreamEvent | Rejected:
    """One posted event against the event rules (`features.event_rules`, as every other door
    reads them); returns the event or why it is refused."""
    values, refusal = check_record(
        raw, EVENT_RULES, time.time() if now is None else now, max_future_seconds
    )
    if refusal is not None:
        return Rejected(index, refusal.field, refusal.message)

    def text(name: str) -> str | None:
        value = values.get(name)
        return None if value is None else str(value)

    price = values.get("price")
    return StreamEvent(
        customer_id=str(values["customer_id"]),
        item_id=str(values["item_id"]),
        event_type=str(values["event_type"]),
        channel=str(values["channel"]),
        timestamp=int(float(values["timestamp"]) * 1_000_000),  # type: ignore[arg-type]
        quantity=int(values["quantity"]),  # type: ignore[call-overload]
        price=None if price is None else float(price),  # type: ignore[arg-type]
        store_id=text("store_id"),
        session_id=text("session_id"),
        event_id=text("event_id"),
    )


class RealtimeEvents:
    """Ingestion into the event streams + recent-activity lists; reads of recent activity.

    `ingest` blocks (commands, tests); `ingest_async` is the service's, on its auto-pipeline,
    yielding to the event loop while it validates a large batch."""

    def __init__(
        self,
        store: RedisFeatureStore,
        activity_ttl_seconds: int = 90 * 86400,
        backlog_limit: int = 10_000_000,
        max_future_seconds: float = MAX_FUTURE_SECONDS,
        streams: int = 8,
        trend_weights: dict[str, float] | None = None,
    ) -> None:
        self.store = store
        self.trending = Trending(store.prefix, trend_weights)
        # the stores an event may name (the service's served data), None: any
        self.known_stores: Callable[[], Collection[str] | None] | None = None
        self.ttl = activity_ttl_seconds
        self.backlog_limit = backlog_limit
        self.backlog = 0  # the fullest stream's length at the last write (omnirec_event_backlog)
        self.max_future_seconds = max_future_seconds
        self.streams = streams

    def stream_key(self, stream: int) -> str:
        return self.store.keys.stream(stream)

    @property
    def stream_keys(self) -> list[str]:
        return [self.stream_key(n) for n in range(self.streams)]

    def stream_of(self, customer_id: str) -> int:
        return zlib.crc32(customer_id.encode()) % self.streams

    def recent_key(self, customer_id: str) -> str:
        return self.store.keys.recent(customer_id)

    def event_id_key(self, stream: int, event_id: str) -> str:
        return self.store.keys.event_id(stream, event_id)

    def _check(
        self, raw_events: list[dict[str, object]], start: int
    ) -> list[StreamEvent | Rejected]:
        now = time.time()
        checked = [
            check_event(raw, start + i, self.max_future_seconds, now)
            for i, raw in enumerate(raw_events)
        ]
        stores = self.known_stores() if self.known_stores is not None else None
        if stores:
            checked = [
                Rejected(start + k, "store_id", "not a store of the served data")
                if isinstance(c, StreamEvent)
                and c.store_id is not None
                and c.store_id not in stores
                else c
                for k, c in enumerate(checked)
            ]
        return checked

    def alias_reads(self, events: Sequence[Stored]) -> list[Command]:
        """The alias of each event's customer, then the length of every stream (the backlog)."""
        reads: list[Command] = [("GET", self.store.keys.alias(e.customer_id)) for e in events]
        return reads + [("XLEN", key) for key in self.stream_keys]

    def admitted(self, events: list[S], replies: list[Reply]) -> list[S]:
        """`alias_reads`' replies read: the events with their customers resolved, once the
        backlog shows room for them (EventBacklogFullError otherwise: nothing is trimmed)."""
        lengths = [int(n or 0) for n in replies[len(events) :]]
        self.backlog = max(lengths, default=0)
        if self.backlog + len(events) > self.backlog_limit:
            raise EventBacklogFullError(sum(lengths))
        return self.resolved(events, replies[: len(events)])

    @staticmethod
    def resolved(events: list[S], found: list[Reply]) -> list[S]:
        """Events whose customer_id was an alias, rewritten to the customer (alias kept)."""
        return [
            msgspec.structs.replace(e, customer_id=t.decode(), alias_id=e.customer_id)  # type: ignore[type-var]
            if isinstance(t, bytes) and t.decode() != e.customer_id
            else e
            for e, t in zip(events, found, strict=True)
        ]

    def stream_writes(self, events: Sequence[Stored], field: str = "e") -> list[Command]:
        """One command per event: XADD, or the store-once script for an event with an id; the
        entry's one field is `e` for an event, `f` for feedback (serving.feedback)."""
        commands: list[Command] = []
        for event in events:
            stream = self.stream_of(event.customer_id)
            encoded = ENCODER.encode(event)
            if event.event_id:
                commands.append(
                    (
                        "EVAL",
                        _STORE_ONCE,
                        2,
                        self.stream_key(stream),
                        self.event_id_key(stream, event.event_id),
                        encoded,
                        EVENT_ID_TTL_SECONDS,
                        field,
                    )
                )
            else:
                commands.append(("XADD", self.stream_key(stream), "*", field, encoded))
        return commands

    def _activity_writes(self, stored: list[StreamEvent]) -> list[Command]:
        """Push newly stored events onto their customers' recent lists (3 commands per customer)
        and count them in the hour's trending sets."""
        by_customer: dict[str, list[bytes]] = {}
        for event in stored:
            activity = Activity(
                event.item_id,
                event.event_type,
                event.channel,
                event.timestamp // 1_000_000,
                event.store_id or "",
                event.quantity,
            )
            by_customer.setdefault(event.customer_id, []).append(ENCODER.encode(activity))
        commands: list[Command] = []
        for customer, activities in by_customer.items():
            key = self.recent_key(customer)
            commands += [
                ("LPUSH", key, *activities),
                ("LTRIM", key, 0, RECENT_KEEP - 1),
                ("EXPIRE", key, self.ttl),
            ]
        trend = (
            TrendEvent(
                e.item_id,
                e.event_type,
                e.channel,
                e.store_id,
                e.timestamp // 1_000_000,
                e.customer_id,
            )
            for e in stored
        )
        return commands + self.trending.writes(trend, time.time())

    @staticmethod
    def stored(events: list[S], replies: list[Reply]) -> tuple[list[str], list[S]]:
        """Stream ids of `events` and those stored now (not duplicates of an earlier id)."""
        stream_ids, fresh = [], []
        for event, reply in zip(events, replies, strict=True):
            if event.event_id:
                stored, stream_id = reply
                if int(stored):
                    fresh.append(event)
            else:
                stream_id = reply
                fresh.append(event)
            stream_ids.append(
                stream_id.decode() if isinstance(stream_id, bytes) else str(stream_id)
            )
        return stream_ids, fresh

    def _store(self, events: list[StreamEvent]) -> Steps[IngestResult]:
        """Resolve aliases, write the streams, then the recent lists: three round trips. The
        answer is the streams': once they confirmed, the events are stored (a failed list write
        is logged, and the customer's real-time activity misses them until the next event)."""
        events = self.admitted(events, (yield self.alias_reads(events)))
        stream_ids, fresh = self.stored(events, (yield self.stream_writes(events)))
        if fresh:
            try:
                yield self._activity_writes(fresh)
            except StoreUnavailableError as exc:
                log.warning(
                    "%d stored events missed the recent-activity lists: %s", len(fresh), exc
                )
        purchases = [e for e in fresh if e.event_type == "purchase"]
        return IngestResult(len(events), stream_ids, [], len(events) - len(fresh), purchases)

    def ingest(self, raw_events: list[dict[str, object]]) -> IngestResult:
        """Validate, resolve aliases, store (blocking). Returns only after Redis confirmed the
        streams' writes; raises StoreUnavailableError otherwise."""
        events, rejected = _split(self._check(raw_events, 0))
        if not events:
            return IngestResult(0, [], rejected)
        stored = drive(self.store.client, self._store(events))
        return IngestResult(
            stored.accepted, stored.stream_ids, rejected, stored.duplicates, stored.purchases
        )

    async def ingest_async(
        self, pipeline: AutoPipeline, raw_events: list[dict[str, object]]
    ) -> IngestResult:
        """`ingest` on the service's auto-pipeline, CHECK_CHUNK events at a time, yielding to the
        event loop between chunks so that a 10,000-event post never holds it for long. Returns
        once every chunk was confirmed; when one fails, the chunks before it are stored (a retry
        with the same event_ids stores them once)."""
        checked: list[StreamEvent | Rejected] = []
        for start in range(0, len(raw_events), CHECK_CHUNK):
            checked += self._check(raw_events[start : start + CHECK_CHUNK], start)
            await asyncio.sleep(0)
        events, rejected = _split(checked)
        results = [
            await pipeline.drive(self._store(events[start : start + CHECK_CHUNK]))
            for start in range(0, len(events), CHECK_CHUNK)
        ]
        return IngestResult(
            sum(r.accepted for r in results),
            [i for r in results for i in r.stream_ids],
            rejected,
            sum(r.duplicates for r in results),
            [p for r in results for p in r.purchases],
        )

    def recent(
        self, customer_ids: list[str], limit: int = RECENT_KEEP
    ) -> dict[str, list[Activity]]:
        """Newest-first real-time activity per customer (one pipelined round trip)."""
        if not customer_ids:
            return {}
        replies = run_pipelined(
            self.store.client,
            [("LRANGE", self.recent_key(c), 0, limit - 1) for c in customer_ids],
        )
        return {
            c: [ACTIVITY_DECODER.decode(v) for v in values]
            for c, values in zip(customer_ids, replies, strict=True)
        }


def _split(checked: list[StreamEvent | Rejected]) -> tuple[list[StreamEvent], list[Rejected]]:
    return (
        [c for c in checked if isinstance(c, StreamEvent)],
        [c for c in checked if isinstance(c, Rejected)],
    )
