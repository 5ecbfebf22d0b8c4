"""The one place where domain exceptions become HTTP answers (with the field at fault when known)."""

from __future__ import annotations

from litestar import MediaType, Request, Response

from omnirec.errors import InvalidRequestError, NotFoundError, OmnirecError, StoreUnavailableError
from serving.schemas import ErrorBody


def _body(status: int, detail: str, field: str | None = None) -> Response[ErrorBody]:
    return Response(ErrorBody(status, detail, field), status_code=status, media_type=MediaType.JSON)


def domain_error(request: Request, exc: OmnirecError) -> Response[ErrorBody]:  # type: ignore[type-arg]
    if isinstance(exc, InvalidRequestError):
        return _body(400, exc.message, exc.field)
    if isinstance(exc, NotFoundError):
        return _body(404, str(exc))
    if isinstance(exc, StoreUnavailableError):
        return _body(503, "the feature store is unavailable; nothing was stored")
    return _body(500, "internal error")


EXCEPTION_HANDLERS = {OmnirecError: domain_error}
