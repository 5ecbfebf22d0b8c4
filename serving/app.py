"""The Litestar application factory: `create_app(settings=None) -> Litestar`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from litestar import Litestar, MediaType, get
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.logging.config import LoggingConfig
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.response import Response

from features.store import RedisFeatureStore
from omnirec import __version__
from omnirec.logs import formatter_config
from omnirec.redis_runtime import redis_target
from omnirec.settings import Settings
from serving.auth import auth_middleware
from serving.engine import Engine
from serving.errors import EXCEPTION_HANDLERS
from serving.fastpath import fast_path_middleware
from serving.heavy import HeavyWork
from serving.metrics import metrics_middleware
from serving.openapi import tighten
from serving.query_guard import query_guard_middleware
from serving.routes.customers import CategoryController, CustomerController, StoreController
from serving.routes.events import EventController
from serving.routes.feedback import FeedbackController
from serving.routes.health import AdminController, HealthController, MetricsController
from serving.routes.privacy import PrivacyController
from serving.routes.recommendations import RecommendationController
from serving.routes.stock import StockController
from serving.routes.storefront import tracking_link, widget_script
from serving.runtime import ModelRuntime, tune_process
from serving.tenants import Tenant, Tenants

STATIC = Path(__file__).parent / "static"

log = logging.getLogger("omnirec.serving")


@get("/tablet", media_type=MediaType.HTML, include_in_schema=False, sync_to_thread=False)
def tablet_page() -> Response[bytes]:
    """The in-store tablet page (plain HTML + JS; all data comes from the API with the tablet's
    key)."""
    return Response(
        (STATIC / "tablet.html").read_bytes(),
        media_type=MediaType.HTML,
        headers={
            "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
            "script-src 'self' 'unsafe-inline'; img-src 'self' data:",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the app; nothing connects until the lifespan starts."""
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        tune_process()
        with redis_target(settings) as target:
            served = [settings.for_tenant(n) for n in settings.serving.tenants] or [settings]
            tenants, stores = [], []
            for own in served:
                store = RedisFeatureStore(
                    target, own.redis.prefix, timeout=own.redis.socket_timeout_seconds
                )
                engine = Engine(own, store)
                runtime = ModelRuntime(own, engine)
                stores.append(store)
                tenants.append(Tenant(own.tenant, engine, runtime))
            await asyncio.gather(*(asyncio.to_thread(t.runtime.try_refresh) for t in tenants))
            # a runtime that started from the snapshot Redis names asks MLflow now, off the loop
            confirm = [t.runtime for t in tenants if not t.runtime.asked_mlflow]
            # the batch route and bulk events: computed in a child process (a second copy of the
            # model), started on first use; with several tenants they are computed in the worker
            # (its fair share of the event loop), not in one child per tenant
            if settings.serving.heavy_process and len(tenants) == 1:
                tenants[0].heavy = HeavyWork(settings, target)
            app.state.tenants = Tenants(tenants)
            tasks: list[asyncio.Task[object]] = [
                asyncio.create_task(asyncio.to_thread(r.try_refresh)) for r in confirm
            ]
            tasks += [
                asyncio.create_task(job)
                for t in tenants
                for job in (
                    t.runtime.poll_forever(),
                    t.runtime.watch_features(),
                    t.engine.lab.shadow.run_forever(),
                )
            ]
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                for t in tenants:
                    if t.heavy is not None:
                        t.heavy.close()
                    await t.engine.aclose()
                for store in stores:
                    store.close()

    app = Litestar(
        route_handlers=[
            RecommendationController,
            EventController,
            FeedbackController,
            CustomerController,
            PrivacyController,
            StoreController,
            StockController,
            CategoryController,
            HealthController,
            AdminController,
            MetricsController,
            tablet_page,
            widget_script,
            tracking_link,
        ],
        lifespan=[lifespan],
        state=State({"settings": settings}),
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        middleware=[
            metrics_middleware,
            DefineMiddleware(auth_middleware, settings=settings),
            query_guard_middleware,
            DefineMiddleware(
                fast_path_middleware,
                enabled=settings.serving.fast_paths,
                max_body=settings.serving.max_body_bytes,
            ),
        ],
        request_max_body_size=settings.serving.max_body_bytes,
        # the storefront widget calls the API from the shops' own pages: their origins only
        cors_config=CORSConfig(
            allow_origins=list(settings.serving.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Content-Type"],
            max_age=3600,
        )
        if settings.serving.cors_origins
        else None,
        openapi_config=OpenAPIConfig(
            title="omnirec",
            version=__version__,
            description="Cross-channel product recommendations. Send the API key in X-API-Key.",
        ),
        debug=False,
        # serving.errors logs every exception (4xx at INFO, no values); Litestar logs none itself
        logging_config=LoggingConfig(
            log_exceptions="never", formatters=formatter_config(settings.serving.log_format)
        ),
    )
    tighten(app.openapi_schema)  # what the structs enforce, in the document too
    return app
