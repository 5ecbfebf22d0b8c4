"""A parameter given twice (`limit=2&limit=7`) is a 400 naming it, on every route: the typed
handlers would otherwise take one of the values silently, and the fast paths decline such
requests."""

from __future__ import annotations

from urllib.parse import unquote_plus

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from serving.schemas import ErrorBody

_ENCODER = msgspec.json.Encoder()


def repeated_parameter(raw: bytes) -> str | None:
    """The first query parameter name that occurs twice, or None."""
    if b"&" not in raw:
        return None
    seen: set[str] = set()
    for part in raw.split(b"&"):
        if not part:
            continue
        name = unquote_plus(part.split(b"=", 1)[0].decode("latin-1"))
        if name in seen:
            return name
        seen.add(name)
    return None


def query_guard_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        name = repeated_parameter(scope.get("query_string", b""))
        if name is not None and scope["type"] == ScopeType.HTTP:
            detail = f"the parameter {name!r} is given more than once"
            body = _ENCODER.encode(ErrorBody(400, detail, name))
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ]
            await send({"type": "http.response.start", "status": 400, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        await app(scope, receive, send)

    return middleware
