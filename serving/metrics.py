"""Prometheus metrics: a lean per-route request middleware and the service's own gauges/counters."""

from __future__ import annotations

import bisect
import itertools
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from serving.auth import TENANT_STATE

FALLBACKS = Counter(
    "omnirec_fallbacks_total", "answers served from a fallback", ["route", "reason"]
)
MODEL_VERSION = Gauge("omnirec_model_version", "registered model version being served")
FEATURE_AGE = Gauge(
    "omnirec_feature_age_seconds", "age of the newest event in the served feature snapshot"
)
FAST_PATHS = Counter(
    "omnirec_fast_path_total", "requests a fast path served or declined", ["handler", "outcome"]
)
SNAPSHOT_MISSING = Counter(
    "omnirec_snapshot_missing_total",
    "checks that found the served feature snapshot gone from Redis",
)
STOCK_RESTORES = Counter(
    "omnirec_stock_restores_total", "live stock written back to Redis after it lost it"
)
SNAPSHOT_RESTORES = Counter(
    "omnirec_snapshot_restores_total", "feature snapshots restored into Redis from MLflow"
)
REDIS_DURABLE = Gauge(
    "omnirec_redis_durable", "1 when Redis keeps acknowledged writes (append-only file or replica)"
)
HEAVY = Counter(
    "omnirec_heavy_requests_total",
    "batch calls and bulk event posts, by where they were computed (process or worker)",
    ["route", "where"],
)
EVENTS = Counter("omnirec_events_total", "events posted", ["outcome"])
EVENT_BACKLOG = Gauge(
    "omnirec_event_backlog",
    "events the fullest event stream holds, waiting for export (at the last post; new events are "
    "refused at OMNIREC_EVENT_BACKLOG_LIMIT)",
)
LOADED_BYTES = Gauge(
    "omnirec_loaded_model_bytes",
    "memory of a loaded model version and its catalogue, per worker",
    ["version", "role"],
)


class Tallied(Protocol):
    """One variant's counts (serving.experiments.guardrail.Tally)."""

    @property
    def answers(self) -> int: ...

    @property
    def failures(self) -> int: ...


class Judged(Protocol):
    """One measure of a variant against the control, round by round
    (serving.experiments.guardrail.Comparison)."""

    @property
    def rounds(self) -> int: ...

    @property
    def worse(self) -> int: ...

    @property
    def last(self) -> float: ...


class Tallies(Protocol):
    """What keeps them (serving.experiments.guardrail.VariantHealth): (experiment, variant) ->
    counts,
    and the guardrail's rounds."""

    @property
    def tallies(self) -> Mapping[tuple[str, str], Tallied]: ...

    def rounds(self) -> Iterable[tuple[str, str, str, Judged]]: ...


class VariantAnswers(Collector):
    """`omnirec_variant_answers_total{experiment, variant, outcome}`: each variant's answers,
    `ok` or `degraded`, read when /metrics is scraped from the guardrail's tallies of this
    process's engines, so that an answer bumps one count (the tally) instead of two; and the
    guardrail's rounds, `omnirec_guardrail_rounds_total{experiment, variant, measure, verdict}`
    (`errors` or `latency`; `worse` or `ok`) and `omnirec_guardrail_last_round{...}` (the last
    round's p99 over the control's, or its error share less the control's): how near a
    variant is to its stop."""

    def __init__(self) -> None:
        self._sources: weakref.WeakSet[Any] = weakref.WeakSet()

    def watch(self, source: Tallies) -> None:
        self._sources.add(source)

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "omnirec_variant_answers",
            "answers per experiment variant",
            labels=["experiment", "variant", "outcome"],
        )
        totals: dict[tuple[str, str], list[int]] = {}
        for source in list(self._sources):
            for key, tally in list(source.tallies.items()):
                counts = totals.setdefault(key, [0, 0])
                counts[0] += tally.answers - tally.failures
                counts[1] += tally.failures
        for (experiment, variant), (ok, degraded) in sorted(totals.items()):
            family.add_metric([experiment, variant, "ok"], ok)
            family.add_metric([experiment, variant, "degraded"], degraded)
        yield family
        labels = ["experiment", "variant", "measure"]
        rounds = CounterMetricFamily(
            "omnirec_guardrail_rounds",
            "guardrail rounds judged, per verdict",
            labels=[*labels, "verdict"],
        )
        last = GaugeMetricFamily(
            "omnirec_guardrail_last_round",
            "the last round's p99 ratio to the "
            "control (latency) or error share increase over it (errors)",
            labels=labels,
        )
        for source in list(self._sources):
            for experiment, variant, measure, judged in source.rounds():
                rounds.add_metric([experiment, variant, measure, "worse"], judged.worse)
                rounds.add_metric(
                    [experiment, variant, measure, "ok"], judged.rounds - judged.worse
                )
                if judged.rounds:
                    last.add_metric([experiment, variant, measure], judged.last)
        yield rounds
        yield last


VARIANT_ANSWERS = VariantAnswers()
REGISTRY.register(VARIANT_ANSWERS)
VARIANT_STOPPED = Gauge(
    "omnirec_variant_stopped",
    "1 when the guardrail stopped a variant in this worker",
    ["experiment", "variant"],
)
FEEDBACK = Counter(
    "omnirec_feedback_total",
    "feedback events stored",
    ["type", "experiment", "variant", "placement", "channel"],
)
SHADOW = Counter(
    "omnirec_shadow_total",
    "shadow (challenger) answers computed off the request path",
    ["experiment", "outcome"],
)
SHADOW_OVERLAP = Histogram(
    "omnirec_shadow_overlap",
    "share of the served items the shadow model also put in its list",
    ["experiment"],
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
SHADOW_RANK_CORRELATION = Histogram(
    "omnirec_shadow_rank_correlation",
    "Kendall's tau of the shared items' ranks (served vs shadow)",
    ["experiment"],
    buckets=(-0.5, 0.0, 0.25, 0.5, 0.75, 0.9, 1.0),
)
ATTRIBUTED = Counter(
    "omnirec_attributed_purchases_total",
    "purchases within the attribution window of a click on a recommendation",
    ["experiment", "variant", "placement"],
)
ATTRIBUTED_REVENUE = Counter(
    "omnirec_attributed_revenue_total",
    "revenue of attributed purchases (price x quantity)",
    ["experiment", "variant", "placement"],
)
ATTRIBUTED_BY_CHANNEL = Counter(
    "omnirec_attributed_purchases_by_channel_total",
    "attributed purchases by the channel the recommendation was shown on and the one it was "
    "bought on (an e-mail's suggestion bought in store: shown_on=email, bought_on=store)",
    ["shown_on", "bought_on"],
)
ATTRIBUTED_REVENUE_BY_CHANNEL = Counter(
    "omnirec_attributed_revenue_by_channel_total",
    "revenue of attributed purchases by the channel shown on and the channel bought on",
    ["shown_on", "bought_on"],
)
LINK_CLICKS = Counter(
    "omnirec_tracking_link_clicks_total",
    "e-mail tracking links followed: click recorded, not recorded (Redis unavailable), rejected "
    "or a link this service did not sign",
    ["outcome"],
)
STOCK = Counter("omnirec_stock_updates_total", "stock feed rows", ["outcome"])
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class RequestTallies(Collector):
    """`omnirec_requests_total{method, route, status, tenant}` (tenant: the key's, one of
    OMNIREC_TENANTS, else none) and `omnirec_request_duration_seconds{method, route}`, counted in
    plain ints on the event loop's thread and turned into metric families when /metrics is
    scraped. Three prometheus_client calls per request (each takes a lock) were a quarter of
    what the service's middleware added to Litestar's liveness route."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int, str], list[int]] = {}
        # per (method, route): counts per bucket (the last: above every bound), and their sum
        self.timings: dict[tuple[str, str], tuple[list[int], list[float]]] = {}

    def observe(self, method: str, route: str, status: int, tenant: str, seconds: float) -> None:
        key = (method, route, status, tenant)
        count = self.counts.get(key)
        if count is None:
            count = self.counts[key] = [0]
        count[0] += 1
        timing = self.timings.get((method, route))
        if timing is None:
            timing = self.timings[(method, route)] = ([0] * (len(LATENCY_BUCKETS) + 1), [0.0])
        timing[0][bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        timing[1][0] += seconds

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "omnirec_requests",
            "HTTP requests (tenant: the key's, one of OMNIREC_TENANTS, else none)",
            labels=["method", "route", "status", "tenant"],
        )
        for (method, route, status, tenant), count in sorted(self.counts.items()):
            requests.add_metric([method, route, str(status), tenant], count[0])
        yield requests
        latency = HistogramMetricFamily(
            "omnirec_request_duration_seconds", "HTTP request latency", labels=["method", "route"]
        )
        bounds = [*map(str, LATENCY_BUCKETS), "+Inf"]
        for (method, route), (buckets, total) in sorted(self.timings.items()):
            cumulative = list(itertools.accumulate(buckets))
            latency.add_metric(
                [method, route], list(zip(bounds, cumulative, strict=True)), total[0]
            )
        yield latency


REQUEST_TALLIES = RequestTallies()
REGISTRY.register(REQUEST_TALLIES)


def metrics_middleware(app: ASGIApp) -> ASGIApp:
    """Counts and times every HTTP request by route template (never by raw path: ids stay out)."""
    observe = REQUEST_TALLIES.observe

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await app(scope, receive, capture)
        except HTTPException as exc:  # 401, 403, 400s raised before any answer was started
            status[0] = exc.status_code
            raise
        finally:
            state = scope.get("state")
            observe(
                scope.get("method", "GET"),
                scope.get("path_template") or "unmatched",
                status[0],
                (state.get(TENANT_STATE) if state else None) or "none",  # configured names
                time.perf_counter() - started,
            )

    return middleware
