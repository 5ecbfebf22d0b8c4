"""Prometheus metrics beyond the per-route ones Litestar's middleware records."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

FALLBACKS = Counter(
    "omnirec_fallbacks_total", "answers served from a fallback", ["route", "reason"]
)
MODEL_VERSION = Gauge("omnirec_model_version", "registered model version being served")
FEATURE_AGE = Gauge(
    "omnirec_feature_age_seconds", "age of the newest event in the served feature snapshot"
)
EVENTS = Counter("omnirec_events_total", "events posted", ["outcome"])
