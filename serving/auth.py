"""API keys with scopes: 401 without a valid key, 403 without the scope. Keys are never logged."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from omnirec.settings import Settings

HEADER = "X-API-Key"


_DIGESTS: dict[int, dict[bytes, frozenset[str]]] = {}


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def scopes_for(settings: Settings, presented: str | None) -> frozenset[str] | None:
    """The scopes of a presented key, None when it is not a key.

    Keys are compared by their SHA-256 digests (a dict lookup on a digest reveals nothing useful
    about the key through timing), built once per settings object.
    """
    if not presented:
        return None
    table = _DIGESTS.get(id(settings.serving.api_keys))
    if table is None:
        table = {_digest(k): scopes for k, scopes in settings.serving.api_keys.items()}
        _DIGESTS[id(settings.serving.api_keys)] = table
    return table.get(_digest(presented))


def require(*accepted: str) -> Callable[[ASGIConnection, BaseRouteHandler], Awaitable[None]]:  # type: ignore[type-arg]
    """A guard that admits keys holding any of `accepted` scopes ('admin' admits everything).

    Async on purpose: Litestar runs a sync guard in a thread pool, which costs more than the check.
    """

    async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
        settings: Settings = connection.app.state.settings
        presented = connection.headers.get(HEADER)
        if presented is None:
            auth = connection.headers.get("Authorization", "")
            presented = auth[7:] if auth.startswith("Bearer ") else None
        scopes = scopes_for(settings, presented)
        if scopes is None:
            raise NotAuthorizedException(f"a valid API key is required in the {HEADER} header")
        if "admin" not in scopes and not scopes.intersection(accepted):
            raise PermissionDeniedException(f"this key lacks the scope: {' or '.join(accepted)}")

    return guard
