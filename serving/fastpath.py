"""Fast paths: a route may answer its well-formed requests as plain ASGI.

Litestar still routes the request, the auth and metrics middlewares still run, and the typed
handler still documents the route in the OpenAPI schema and validates. A fast path skips only
Litestar's per-request parameter parsing, dependency injection and response building, which
cost more than the recommendation itself. It declines (returns False) anything it does not fully
understand (a malformed or repeated parameter, an unknown channel, ...), and the typed handler
then answers, with Litestar's validation and its 400s. So a fast path can only ever be stricter
than its handler, never looser; the tests check that both give the same answers.

A handler opts in with `opt={FAST_PATH: function}`; `OMNIREC_FAST_PATHS=0` turns them all off.
A fast path of a POST route gets the request body, read here (up to the app's body limit); when
it declines, the handler reads the same body again.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_plus

from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)

from features.schema import ID_PATTERN
from serving.metrics import FAST_PATHS

FAST_PATH = "fast_path"
FastPath = Callable[[Scope, bytes, Send], Awaitable[bool]]
_ID = re.compile(ID_PATTERN)
_TRUE = {"true": True, "1": True, "false": False, "0": False}


def fast_path_middleware(app: ASGIApp, enabled: bool = True, max_body: int = 1 << 20) -> ASGIApp:
    """Innermost middleware: hands the request to the handler's fast path, if it has one."""
    if not enabled:
        return app

    counters: dict[tuple[int, bool], Any] = {}  # labelled children, looked up once each

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        handler = scope.get("route_handler")
        fast: FastPath | None = handler.opt.get(FAST_PATH) if handler is not None else None
        method = scope.get("method")
        if fast is None or method not in {"GET", "POST"}:
            await app(scope, receive, send)
            return
        body = b""
        if method == "POST":
            messages, complete = await _read_body(receive, max_body)
            receive = _replay(messages, receive)
            if not complete:  # too large, or the client went away: the handler answers
                await app(scope, receive, send)
                return
            body = b"".join(m.get("body", b"") for m in messages)
        served = await fast(scope, body, send)
        key = (id(handler), served)
        counter = counters.get(key)
        if counter is None:
            outcome = "served" if served else "declined"
            counter = counters[key] = FAST_PATHS.labels(handler.handler_name, outcome)
        counter.inc()
        if not served:
            await app(scope, receive, send)

    return middleware


async def _read_body(receive: Receive, limit: int) -> tuple[list[Any], bool]:
    """The request's body messages, and whether they hold the whole body within `limit` bytes."""
    messages: list[Any] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, False
        size += len(message.get("body", b""))
        if size > limit:
            return messages, False
        if not message.get("more_body", False):
            return messages, True


def _replay(messages: list[Any], receive: Receive) -> Receive:
    """A receive that gives `messages` again, then what the client sends next."""
    pending = list(messages)

    async def replayed() -> Any:
        return pending.pop(0) if pending else await receive()

    return replayed


def query_params(raw: bytes) -> dict[str, str] | None:
    """The query string as a dict; None (decline) when it is not plain ASCII, a name repeats or
    an escape does not decode as UTF-8."""
    out: dict[str, str] = {}
    if not raw:
        return out
    try:
        text = raw.decode("ascii")
        for part in text.split("&"):
            if not part:
                continue
            name, _, value = part.partition("=")
            if "%" in part or "+" in part:
                name = unquote_plus(name, errors="strict")
                value = unquote_plus(value, errors="strict")
            if name in out:
                return None
            out[name] = value
    except UnicodeError:
        return None
    return out


def id_value(value: str | None) -> str | None:
    """An id as the typed routes accept it (letters, digits, `_.:@+-`, at most 128), else None."""
    return value if value is not None and _ID.match(value) else None


def int_value(value: str, low: int, high: int) -> int | None:
    if not value.isascii() or not value.isdigit():
        return None
    number = int(value)
    return number if low <= number <= high else None


def bool_value(value: str) -> bool | None:
    return _TRUE.get(value)


async def send_json(send: Send, body: bytes, status: int = 200) -> None:
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
    }
    message: HTTPResponseBodyEvent = {
        "type": "http.response.body",
        "body": body,
        "more_body": False,
    }
    await send(start)
    await send(message)
