"""The framework's ceiling: a bare Litestar app with one liveness route, served by uvicorn as
`omnirec serve` serves the service (httptools, no access log), for `./dev bench all` to measure
the service's own routes against.

    uvicorn scripts.bare_litestar:app --port N --http httptools --no-access-log
"""

from litestar import Litestar, get


@get("/health/live")
async def live() -> dict[str, str]:  # as the service's own liveness handler
    return {"status": "ok"}


@get("/health/ready")
async def ready() -> dict[str, str]:  # what the benchmarks wait on before they measure
    return {"status": "ok"}


app = Litestar(route_handlers=[live, ready], debug=False)
