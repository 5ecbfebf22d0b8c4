"""API keys with scopes: 401 without a valid key, 403 without the scope. Keys are never logged.

A route declares the scopes it admits in its `opt` (`opt=needs("recommend", "tablet")`, on a
controller or a handler); `auth_middleware` checks the presented key before the handler runs.
It is a middleware rather than a Litestar guard because Litestar copies the route handler for
every guard call, which cost more than the whole check on the recommendation route.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.types import ASGIApp, Receive, Scope, Send

from omnirec.settings import Settings

HEADER = "X-API-Key"
SCOPES_OPT = "scopes"
SCOPES_STATE = "omnirec_scopes"  # the presented key's scopes, in the request's state
TENANT_STATE = "omnirec_tenant"  # its tenant (serving.tenants)
WIDER_THAN_PUBLIC = frozenset({"admin", "events"})
_HEADER_RAW = HEADER.lower().encode()


def needs(*accepted: str) -> dict[str, object]:
    """The `opt` of a route that admits keys holding any of `accepted` ('admin' admits all)."""
    return {SCOPES_OPT: frozenset(accepted)}


class KeyTable:
    """Scopes and tenant by SHA-256 digest of the key: a dict lookup on a digest tells a timing
    attack nothing useful about the key, and the keys themselves are not kept."""

    def __init__(self, settings: Settings) -> None:
        tenants = settings.serving.key_tenants
        self._holders = {
            _digest(k): (s, tenants.get(k)) for k, s in settings.serving.api_keys.items()
        }

    def holder(self, presented: str | bytes | None) -> tuple[frozenset[str], str | None] | None:
        """The scopes and tenant (None without tenants) of a presented key, None when it is not
        a key: one digest per request."""
        if not presented:
            return None
        raw = presented.encode() if isinstance(presented, str) else presented
        return self._holders.get(hashlib.sha256(raw).digest())


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """X-API-Key, else an `Authorization: Bearer` token, from raw ASGI headers."""
    bearer = None
    for name, value in headers:
        if name == _HEADER_RAW:
            return value
        if name == b"authorization" and value.startswith(b"Bearer "):
            bearer = value[7:]
    return bearer


def check(
    keys: KeyTable, headers: Iterable[tuple[bytes, bytes]], accepted: frozenset[str]
) -> tuple[frozenset[str], str | None]:
    """The presented key's scopes and tenant, when it admits the route; else 401 or 403."""
    holder = keys.holder(presented_key(headers))
    if holder is None:
        raise NotAuthorizedException(f"a valid API key is required in the {HEADER} header")
    scopes = holder[0]
    if "admin" not in scopes and not scopes & accepted:
        raise PermissionDeniedException(
            f"this key lacks the scope: {' or '.join(sorted(accepted))}"
        )
    return holder


def only_public(scope: Scope) -> bool:
    """Whether the request's key holds the `public` scope and nothing that admits more (the
    widget's key, which every visitor of the page can read)."""
    held = scope.get("state", {}).get(SCOPES_STATE)
    return held is not None and "public" in held and not held & WIDER_THAN_PUBLIC


def auth_middleware(app: ASGIApp, settings: Settings) -> ASGIApp:
    """Runs after routing (Litestar wraps each route in the app's middleware), so the handler's
    declared scopes are known; routes that declare none are public (health, docs, the page)."""
    keys = KeyTable(settings)

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        handler = scope.get("route_handler")
        accepted = handler.opt.get(SCOPES_OPT) if handler is not None else None
        if accepted:
            state = scope.setdefault("state", {})
            state[SCOPES_STATE], state[TENANT_STATE] = check(keys, scope["headers"], accepted)
        await app(scope, receive, send)

    return middleware
