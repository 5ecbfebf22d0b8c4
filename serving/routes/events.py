"""Event ingestion: 202 only once Redis confirmed the write; 503 when it cannot be stored."""

from __future__ import annotations

from litestar import Controller, Response, post
from litestar.di import Provide

from omnirec.errors import StoreUnavailableError
from serving.auth import needs
from serving.engine import Engine
from serving.metrics import EVENTS
from serving.routes.common import get_engine, request_id
from serving.schemas import EventError, EventIn, EventsAccepted, EventsIn


def _ingest(engine: Engine, events: list[EventIn]) -> Response[EventsAccepted]:
    if engine.realtime is None:
        raise StoreUnavailableError("no feature store configured")
    import msgspec

    raw = [msgspec.structs.asdict(e) for e in events]
    try:
        result = engine.realtime.ingest(raw)
    except StoreUnavailableError:
        engine.breaker.trip()
        EVENTS.labels("unavailable").inc(len(events))
        raise
    EVENTS.labels("accepted").inc(result.accepted)
    EVENTS.labels("rejected").inc(len(result.rejected))
    errors = [EventError(r.index, r.field, r.message) for r in result.rejected]
    return Response(
        EventsAccepted(result.accepted, len(errors), errors, request_id()), status_code=202
    )


class EventController(Controller):
    path = "/v1/events"
    tags = ["events"]
    dependencies = {"engine": Provide(get_engine, sync_to_thread=False)}
    opt = needs("events")

    @post(
        "/", operation_id="postEvent", summary="Store one event (views, carts, purchases, returns)"
    )
    async def single(self, engine: Engine, data: EventIn) -> Response[EventsAccepted]:
        """202 with counts; a rejected event is reported with the field at fault."""
        return _ingest(engine, [data])

    @post("/bulk", operation_id="postEvents", summary="Store up to 10,000 events at once")
    async def bulk(self, engine: Engine, data: EventsIn) -> Response[EventsAccepted]:
        return _ingest(engine, list(data.events))
