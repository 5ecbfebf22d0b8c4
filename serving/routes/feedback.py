"""Feedback on recommendations: 202 once stored in the event streams (like events), counted per
variant, placement and channel on /metrics, purchases attributed to the click before them."""

from __future__ import annotations

from collections.abc import Collection

import msgspec
from litestar import Controller, Response, post
from litestar.di import Provide

from omnirec.errors import EventBacklogFullError, StoreUnavailableError
from serving.auth import needs
from serving.engine import Engine
from serving.experiments.config import DEFAULT_VARIANT
from serving.metrics import ATTRIBUTED, ATTRIBUTED_REVENUE, EVENTS, FEEDBACK
from serving.routes.common import channel_known, get_engine, request_id
from serving.schemas import EventError, EventsAccepted, FeedbackPost

OTHER = "other"  # the label of names the configuration does not know (bounded label values)
NONE = "none"


def _labels(
    engine: Engine, experiment_name: str | None, variant: str | None, placement: str | None
) -> tuple[str, str, str]:
    """(experiment, variant, placement) as metric labels: configured names, `none` for an
    absent one, `other` for a name the configuration does not know (label values stay bounded)."""

    def known(name: str | None, names: Collection[str]) -> str:
        return NONE if name is None else name if name in names else OTHER

    experiment = engine.experiments.by_name(experiment_name) if experiment_name else None
    variants = [v.name for v in experiment.variants] if experiment else [DEFAULT_VARIANT]
    experiment_label = known(experiment_name, [experiment.name] if experiment else [])
    return (
        experiment_label,
        known(variant, variants),
        known(placement, engine.placements.placements),
    )


def count_attributed(
    engine: Engine,
    experiment: str | None,
    variant: str | None,
    placement: str | None,
    revenue: float,
) -> None:
    """One purchase attributed to a recommendation, and its revenue, on /metrics."""
    labels = _labels(engine, experiment, variant, placement)
    ATTRIBUTED.labels(*labels).inc()
    ATTRIBUTED_REVENUE.labels(*labels).inc(revenue)


class FeedbackController(Controller):
    path = "/v1/feedback"
    tags = ["feedback"]
    dependencies = {"engine": Provide(get_engine, sync_to_thread=False)}
    opt = needs("events")

    @post(
        "/",
        operation_id="postFeedback",
        status_code=202,
        summary="Store impressions, clicks, add-to-carts and purchases of recommended items",
    )
    async def post_feedback(self, engine: Engine, data: FeedbackPost) -> Response[EventsAccepted]:
        """202 once stored (durable like events, exported beside them); a rejected record is
        reported with the field at fault; 503 while Redis cannot store."""
        if engine.live.feedback is None or engine.live.breaker.open:
            EVENTS.labels("unavailable").inc(len(data.feedback))
            raise StoreUnavailableError("Redis is unavailable")
        raw = [msgspec.structs.asdict(f) for f in data.feedback]
        try:
            result = await engine.live.feedback.store(
                engine.live.pipeline.checked, raw, engine.placements.placements
            )
        except EventBacklogFullError:
            EVENTS.labels("backlog_full").inc(len(raw))
            raise
        except StoreUnavailableError:
            engine.live.breaker.trip()
            raise
        for event in result.stored:
            experiment, variant, placement = _labels(
                engine, event.experiment, event.variant, event.placement
            )
            channel = event.channel or "unknown"
            if channel != "unknown" and not channel_known(engine, channel):
                channel = OTHER  # free text from the caller: the label's values stay bounded
            FEEDBACK.labels(event.feedback_type, experiment, variant, placement, channel).inc()
        for event in result.attributed:
            count_attributed(
                engine,
                event.experiment,
                event.variant,
                event.placement,
                (event.price or 0.0) * event.quantity,
            )
        errors = [EventError(r.index, r.field, r.message) for r in result.rejected]
        body = EventsAccepted(result.accepted, len(errors), errors, request_id(), result.duplicates)
        return Response(body, status_code=202)
