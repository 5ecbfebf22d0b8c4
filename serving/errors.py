"""The one place where exceptions become HTTP answers (with the field at fault when known), and
where they are logged: 4xx at INFO without a traceback, 5xx at ERROR with one; a log line names
the route template (`/v1/customers/{customer_id}/profile`), never the path or query, so that no
customer id or e-mail reaches the log."""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException
from litestar.exceptions.responses import create_exception_response

from omnirec.errors import (
    EventBacklogFullError,
    InvalidRequestError,
    NotFoundError,
    OmnirecError,
    StoreUnavailableError,
)
from serving.schemas import ErrorBody

BACKLOG_RETRY_SECONDS = 30  # a full event backlog: the next export is the caller's wait

log = logging.getLogger("omnirec.serving")
AnyRequest = Request[Any, Any, Any]


def _body(status: int, detail: str, field: str | None = None) -> Response[ErrorBody]:
    return Response(ErrorBody(status, detail, field), status_code=status, media_type=MediaType.JSON)


def _route(request: AnyRequest) -> str:
    return f"{request.scope.get('method', '?')} {request.scope.get('path_template') or 'unmatched'}"


def domain_error(request: AnyRequest, exc: OmnirecError) -> Response[ErrorBody]:
    if isinstance(exc, InvalidRequestError):
        log.info("400 %s: %s", _route(request), exc.field)
        return _body(400, exc.message, exc.field)
    if isinstance(exc, NotFoundError):
        log.info("404 %s", _route(request))
        return _body(404, str(exc))
    if isinstance(exc, EventBacklogFullError):
        log.warning("503 %s: the event backlog is full", _route(request))
        response = _body(
            503,
            f"{exc.waiting:,} events wait for export, as many as may: nothing was stored; retry "
            "after the next export (`omnirec export-events`)",
        )
        response.headers["Retry-After"] = str(BACKLOG_RETRY_SECONDS)
        return response
    if isinstance(exc, StoreUnavailableError):
        log.warning("503 %s: the feature store is unavailable", _route(request))
        # a write that timed out may still have happened: say so, and how to retry safely
        return _body(
            503,
            "the feature store is unavailable; the request may not have been stored: "
            "retry it (events with an event_id are stored once)",
        )
    log.error("500 %s: %s", _route(request), type(exc).__name__, exc_info=exc)
    return _body(500, "internal error")


CLIENT_GONE = "client disconnected prematurely"  # Litestar's words for a body never finished


def http_error(request: AnyRequest, exc: HTTPException) -> Response[Any]:
    """Litestar's own answers (validation 400s, 401, 403, 404, 405, 413), logged without values.
    A request whose body never came in full (its client went away, or the read deadline closed
    it) is what it is, a 408, logged once at INFO: not a server error with a traceback."""
    if exc.detail == CLIENT_GONE:
        log.info("408 %s: the request's body never came in full", _route(request))
        return _body(408, "the request's body never came in full")
    if exc.status_code >= 500:
        log.error("%d %s: %s", exc.status_code, _route(request), type(exc).__name__, exc_info=exc)
    else:
        log.info("%d %s: %s", exc.status_code, _route(request), type(exc).__name__)
    return create_exception_response(request, exc)


def unexpected_error(request: AnyRequest, exc: Exception) -> Response[ErrorBody]:
    if isinstance(exc, RecursionError):  # JSON nested deeper than the decoder goes
        log.info("400 %s: body nested too deeply", _route(request))
        return _body(400, "the request body is nested too deeply", "body")
    log.error("500 %s: %s", _route(request), type(exc).__name__, exc_info=exc)
    return _body(500, "internal error")


EXCEPTION_HANDLERS = {
    OmnirecError: domain_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
