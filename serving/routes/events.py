"""Event ingestion: 202 only once Redis confirmed the write; 503 when it cannot be stored."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, post
from litestar.di import Provide
from litestar.types import Scope, Send

from features.realtime import IngestResult
from omnirec.errors import EventBacklogFullError, StoreUnavailableError
from serving.auth import needs
from serving.engine import Engine
from serving.fastpath import FAST_PATH, send_json
from serving.metrics import EVENT_BACKLOG, EVENTS, HEAVY
from serving.routes.common import get_engine, request_id
from serving.routes.feedback import count_attributed
from serving.schemas import EventError, EventIn, EventsAccepted, EventsIn
from serving.tenants import tenant_of

ENCODER = msgspec.json.Encoder()


def sent_as_is(body: bytes, many: bool) -> list[dict[str, object]]:
    """The events as the client sent them (JSON values, their types unchanged): the request's
    struct has checked their shape, but converts loosely (`"3"` to 3), and whether a value is
    of the right type is for the event rules to say, per event (`features.event_rules`)."""
    decoded = msgspec.json.decode(body)
    events = decoded["events"] if many else [decoded]
    return [e if isinstance(e, dict) else {} for e in events]


async def _ingest(engine: Engine, raw: list[dict[str, object]]) -> Response[EventsAccepted]:
    """Store on the event loop's auto-pipeline; 503 at once while the breaker is open."""
    events = raw
    if engine.live.realtime is None or engine.live.breaker.open:
        EVENTS.labels("unavailable").inc(len(events))
        raise StoreUnavailableError("Redis is unavailable")
    try:
        result = await engine.live.realtime.ingest_async(engine.live.pipeline, raw)
    except EventBacklogFullError:
        EVENTS.labels("backlog_full").inc(len(events))
        raise
    except StoreUnavailableError:
        engine.live.breaker.trip()
        EVENTS.labels("unavailable").inc(len(events))
        raise
    finally:
        EVENT_BACKLOG.set(engine.live.realtime.backlog)
    await _attribute(engine, result)
    return Response(_accepted(result), status_code=202)


async def _attribute(engine: Engine, result: IngestResult) -> None:
    """Purchases that follow a click on a recommended item (within the attribution window)
    count for that recommendation's variant on /metrics: one more round trip, only when the post
    held purchases; the events are stored whatever happens here."""
    if not result.purchases or engine.live.feedback is None:
        return
    try:
        found = await engine.live.feedback.clicked(engine.live.pipeline.checked, result.purchases)
    except StoreUnavailableError:
        return
    for event, ref in found:
        count_attributed(engine, ref, event.channel, (event.price or 0.0) * event.quantity)


def _accepted(result: IngestResult) -> EventsAccepted:
    EVENTS.labels("accepted").inc(result.accepted - result.duplicates)
    EVENTS.labels("duplicate").inc(result.duplicates)
    EVENTS.labels("rejected").inc(len(result.rejected))
    errors = [EventError(r.index, r.field, r.message) for r in result.rejected]
    return EventsAccepted(result.accepted, len(errors), errors, request_id(), result.duplicates)


async def bulk_in_process(scope: Scope, body: bytes, send: Send) -> bool:
    """Fast path of the bulk route: the body is decoded, validated and stored in the worker's
    heavy-request process (serving.heavy), so a 10,000-event post never holds the event loop.
    Declines (the typed handler answers, here) while that process is not up, when the body is
    not valid (Litestar's 400) and when Redis is unavailable (the handler's 503)."""
    tenant = tenant_of(scope)
    engine, heavy = tenant.engine, tenant.heavy
    if heavy is None or engine.live.realtime is None or engine.live.breaker.open:
        return False
    try:
        result = await heavy.ingest(body)
    except EventBacklogFullError:
        return False  # the handler answers the 503, here: Redis itself is fine
    except StoreUnavailableError:
        engine.live.breaker.trip()
        return False
    if not isinstance(result, IngestResult):
        return False
    HEAVY.labels("events", "process").inc()
    await _attribute(engine, result)
    await send_json(send, ENCODER.encode(_accepted(result)), status=202)
    return True


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
    async def single(
        self, engine: Engine, data: EventIn, request: Request[Any, Any, Any]
    ) -> Response[EventsAccepted]:
        """202 with counts; a rejected event is reported with the field at fault."""
        return await _ingest(engine, sent_as_is(await request.body(), many=False))

    @post(
        "/bulk",
        operation_id="postEvents",
        status_code=202,
        summary="Store up to 10,000 events at once",
        opt={FAST_PATH: bulk_in_process},
    )
    async def bulk(
        self, engine: Engine, data: EventsIn, request: Request[Any, Any, Any]
    ) -> Response[EventsAccepted]:
        """Stored in the heavy-request process when it is up (`bulk_in_process`), else here."""
        HEAVY.labels("events", "worker").inc()
        return await _ingest(engine, sent_as_is(await request.body(), many=True))
