"""Liveness, readiness and an admin reload."""

from __future__ import annotations

import time
from typing import cast

import msgspec
from litestar import Controller, Response, get, post
from litestar.datastructures import State
from litestar.types import Scope
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from serving.auth import needs
from serving.metrics import FEATURE_AGE, MODEL_VERSION
from serving.schemas import FeatureState, Health
from serving.tenants import Tenant, Tenants, tenant_of


class HealthController(Controller):
    path = "/health"
    tags = ["health"]

    @get("/live", operation_id="liveness", summary="The process is up")
    async def live(self) -> dict[str, str]:
        return {"status": "ok"}

    @get(
        "/ready",
        operation_id="readiness",
        summary="Ready: Redis reachable and a model loaded (else 503)",
    )
    async def ready(self, state: State) -> Response[Health]:
        """503 without Redis or a loaded model (for any tenant); 200 otherwise, with what is
        degraded and why (features being restored, a Redis that would lose acknowledged
        events)."""
        tenants: Tenants = state.tenants
        bodies = [await _readiness(t) for t in tenants.all]
        body = bodies[0]
        if len(bodies) > 1:
            body = msgspec.structs.replace(
                body,
                status="ok" if all(b.status == "ok" for b in bodies) else "unavailable",
                warnings=[
                    f"tenant {t.name}: {w}"
                    for t, b in zip(tenants.all, bodies, strict=True)
                    for w in b.warnings
                ],
                tenants={
                    str(t.name): b.model_version for t, b in zip(tenants.all, bodies, strict=True)
                },
            )
        return Response(body, status_code=200 if body.status == "ok" else 503)


async def _readiness(tenant: Tenant) -> Health:
    engine, runtime = tenant.engine, tenant.runtime
    snap = engine.live.snapshot
    redis_ok = await engine.live.redis_available()
    age = time.time() - snap.meta.data_end if snap else None
    if snap and tenant.name is None:
        MODEL_VERSION.set(snap.version)
        FEATURE_AGE.set(age or 0)
    ok = redis_ok and snap is not None
    warnings = [w for w in (runtime.durability, runtime.last_error) if w]
    warnings += runtime.rule_problems + list(runtime.experiment_problems.values())
    warnings += [
        f"experiment {e} variant {v} stopped by its guardrail: {why}"
        for (e, v), why in engine.lab.health.stopped.items()
    ]
    realtime = engine.live.realtime
    if realtime is not None and realtime.backlog > 0.8 * realtime.backlog_limit:
        warnings.append(
            f"{realtime.backlog:,} events wait for export in one stream: new events are "
            f"refused at {realtime.backlog_limit:,} (run `omnirec export-events`)"
        )
    if runtime.stock is not None and runtime.stock.state == "missing":
        warnings.append("the live stock is not in Redis: restoring it from the last levels seen")
    if runtime.snapshot_state in {"missing", "restoring"}:
        warnings.append(
            "the feature snapshot is not in Redis: answers are degraded until it is restored"
        )
    return Health(
        "ok" if ok else "unavailable",
        redis_ok,
        snap.version if snap else None,
        snap.snapshot_id if snap else None,
        age,
        cast(FeatureState, runtime.snapshot_state),
        runtime.durable,
        warnings,
    )


class AdminController(Controller):
    path = "/v1/admin"
    tags = ["admin"]
    opt = needs("admin")

    @post(
        "/reload",
        operation_id="reloadModel",
        status_code=200,
        summary="Check the champion alias now",
    )
    async def reload(self, scope: Scope) -> dict[str, object]:
        """The key's tenant's champion, checked now."""
        import asyncio

        tenant = tenant_of(scope)
        swapped = await asyncio.to_thread(tenant.runtime.try_refresh)
        snap = tenant.engine.live.snapshot
        return {
            "swapped": swapped,
            "model_version": snap.version if snap else None,
            "features": tenant.runtime.snapshot_state,
            "error": tenant.runtime.last_error,
        }


# Litestar adds the charset to a text type itself
METRICS_TYPE = CONTENT_TYPE_LATEST.removesuffix("; charset=utf-8")


class MetricsController(Controller):
    """Prometheus's text exposition format, documented as such (not as JSON)."""

    path = "/metrics"
    tags = ["operations"]

    @get(
        "/",
        operation_id="metrics",
        media_type=METRICS_TYPE,
        summary="Prometheus metrics (text exposition format)",
    )
    async def metrics(self) -> Response[bytes]:
        return Response(generate_latest(REGISTRY), media_type=METRICS_TYPE)
