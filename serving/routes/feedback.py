"""Feedback on recommendations: 202 once stored in the event streams (like events), counted per
variant, placement and channel on /metrics, purchases attributed to the click before them."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from typing import Any

import msgspec
from litestar import Controller, Request, Response, post
from litestar.di import Provide

from features.feedback import FeedbackResult, RecommendationRef, parse_recommendation_id
from omnirec.errors import EventBacklogFullError, StoreUnavailableError
from serving.auth import needs, only_public
from serving.engine import Engine
from serving.experiments.config import DEFAULT_VARIANT
from serving.metrics import (
    ATTRIBUTED,
    ATTRIBUTED_BY_CHANNEL,
    ATTRIBUTED_REVENUE,
    ATTRIBUTED_REVENUE_BY_CHANNEL,
    EVENTS,
    FEEDBACK,
)
from serving.routes.common import channel_known, get_engine, request_id
from serving.schemas import EventError, EventsAccepted, FeedbackPost

PUBLIC_TYPES = frozenset({"impression", "click"})  # what a widget in a visitor's page may post
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


def channel_label(engine: Engine, channel: str | None) -> str:
    """A channel as a metric label: a channel the service knows, `none`, or `other` (free text
    from callers never makes new series)."""
    if channel is None:
        return NONE
    return channel if channel_known(engine, channel) else OTHER


def count_attributed(
    engine: Engine,
    ref: RecommendationRef,
    bought_on: str | None,
    revenue: float,
) -> None:
    """One purchase attributed to a recommendation, and its revenue, on /metrics: per
    experiment, variant and placement, and per channel it was shown on and bought on."""
    labels = _labels(engine, ref.experiment, ref.variant, ref.placement)
    revenue = revenue if math.isfinite(revenue) and revenue > 0 else 0.0
    ATTRIBUTED.labels(*labels).inc()
    ATTRIBUTED_REVENUE.labels(*labels).inc(revenue)
    channels = (channel_label(engine, ref.channel), channel_label(engine, bought_on))
    ATTRIBUTED_BY_CHANNEL.labels(*channels).inc()
    ATTRIBUTED_REVENUE_BY_CHANNEL.labels(*channels).inc(revenue)


def count_feedback(engine: Engine, result: FeedbackResult) -> None:
    """Stored feedback per type, experiment, variant, placement and channel, and the purchases
    attributed, on /metrics."""
    for event in result.stored:
        experiment, variant, placement = _labels(
            engine, event.experiment, event.variant, event.placement
        )
        channel = "unknown" if event.channel is None else channel_label(engine, event.channel)
        FEEDBACK.labels(event.feedback_type, experiment, variant, placement, channel).inc()
    for event in result.attributed:
        ref = parse_recommendation_id(event.recommendation_id or "")
        if ref is not None:
            ref = dataclasses.replace(ref, placement=event.placement)
            count_attributed(engine, ref, event.channel, (event.price or 0.0) * event.quantity)


class FeedbackController(Controller):
    path = "/v1/feedback"
    tags = ["feedback"]
    dependencies = {"engine": Provide(get_engine, sync_to_thread=False)}
    opt = needs("events", "public")

    @post(
        "/",
        operation_id="postFeedback",
        status_code=202,
        summary="Store impressions, clicks, add-to-carts and purchases of recommended items",
    )
    async def post_feedback(
        self, engine: Engine, data: FeedbackPost, request: Request[Any, Any, Any]
    ) -> Response[EventsAccepted]:
        """202 once stored (durable like events, exported beside them); a rejected record is
        reported with the field at fault; 503 while Redis cannot store. A `public` key (the
        storefront widget's) posts impressions and clicks only."""
        if engine.live.feedback is None or engine.live.breaker.open:
            EVENTS.labels("unavailable").inc(len(data.feedback))
            raise StoreUnavailableError("Redis is unavailable")
        raw = [msgspec.structs.asdict(f) for f in data.feedback]
        try:
            result = await engine.live.feedback.store(
                engine.live.pipeline.checked,
                raw,
                engine.placements.placements,
                PUBLIC_TYPES if only_public(request.scope) else None,
            )
        except EventBacklogFullError:
            EVENTS.labels("backlog_full").inc(len(raw))
            raise
        except StoreUnavailableError:
            engine.live.breaker.trip()
            raise
        count_feedback(engine, result)
        errors = [EventError(r.index, r.field, r.message) for r in result.rejected]
        body = EventsAccepted(result.accepted, len(errors), errors, request_id(), result.duplicates)
        return Response(body, status_code=202)
