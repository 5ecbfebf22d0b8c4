"""Event ingestion: 202 only once Redis confirmed the write; 503 when it cannot be stored."""

from __future__ import annotations

import msgspec
from litestar import Controller, Response, post
from litestar.di import Provide

from omnirec.errors import StoreUnavailableError
from serving.auth import needs
from serving.engine import Engine
from serving.metrics import EVENTS
from serving.routes.common import get_engine, request_id
from serving.schemas import EventError, EventIn, EventsAccepted, EventsIn


async def _ingest(engine: Engine, events: list[EventIn]) -> Response[EventsAccepted]:
    """Store on the event loop's asyncio client; 503 at once while the breaker is open."""
    if engine.realtime is None or engine.breaker.open:
        EVENTS.labels("unavailable").inc(len(events))
        raise StoreUnavailableError("Redis is unavailable")
    raw = [msgspec.structs.asdict(e) for e in events]
    try:
        result = await engine.realtime.ingest_async(engine.pipeline.checked, raw)
    except StoreUnavailableError:
        engine.breaker.trip()
        EVENTS.labels("unavailable").inc(len(events))
        raise
    EVENTS.labels("accepted").inc(result.accepted - result.duplicates)
    EVENTS.labels("duplicate").inc(result.duplicates)
    EVENTS.labels("rejected").inc(len(result.rejected))
    errors = [EventError(r.index, r.field, r.message) for r in result.rejected]
    body = EventsAccepted(result.accepted, len(errors), errors, request_id(), result.duplicates)
    return Response(body, status_code=202)


class EventController(Controller):
    path = "/v1/events"
    tags = ["events"]
    dependencies = {"engine": Provide(get_engine, sync_to_thread=False)}
    opt = needs("events")

    @post(
        "/",
        operation_id="postEvent",
        status_code=202,
        summary="Store one event (views, carts, purchases, returns)",
    )
    async def single(self, engine: Engine, data: EventIn) -> Response[EventsAccepted]:
        """202 with counts; a rejected event is reported with the field at fault."""
        return await _ingest(engine, [data])

    @post(
        "/bulk",
        operation_id="postEvents",
        status_code=202,
        summary="Store up to 10,000 events at once",
    )
    async def bulk(self, engine: Engine, data: EventsIn) -> Response[EventsAccepted]:
        return await _ingest(engine, list(data.events))
