"""The request tallies read at scrape time say what prometheus_client's own Counter and
Histogram would have said for the same requests."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from serving.metrics import LATENCY_BUCKETS, RequestTallies


def test_request_tallies_match_prometheus_client_counter_and_histogram() -> None:
    observations = [
        ("GET", "/v1/customers/{customer_id}/recommendations", 200, "none", 0.0004),
        ("GET", "/v1/customers/{customer_id}/recommendations", 200, "none", 0.0005),  # on a bound
        ("GET", "/v1/customers/{customer_id}/recommendations", 404, "none", 0.003),
        ("POST", "/v1/events", 202, "north", 0.04),
        ("POST", "/v1/events", 202, "north", 7.0),  # above every bound
        ("GET", "unmatched", 404, "none", 0.0001),
    ]
    ours = RequestTallies()
    theirs = CollectorRegistry()
    requests = Counter(
        "omnirec_requests", "h", ["method", "route", "status", "tenant"], registry=theirs
    )
    latency = Histogram(
        "omnirec_request_duration_seconds",
        "h",
        ["method", "route"],
        buckets=LATENCY_BUCKETS,
        registry=theirs,
    )
    for method, route, status, tenant, seconds in observations:
        ours.observe(method, route, status, tenant, seconds)
        requests.labels(method, route, str(status), tenant).inc()
        latency.labels(method, route).observe(seconds)
    registry = CollectorRegistry()
    registry.register(ours)

    def samples(text: bytes) -> set[str]:  # prometheus_client adds _created samples; we do not
        return {
            line.rsplit(" ", 1)[0] + " " + str(float(line.rsplit(" ", 1)[1]))
            for line in text.decode().splitlines()
            if line and not line.startswith("#") and "_created" not in line
        }

    assert samples(generate_latest(registry)) == samples(generate_latest(theirs))
