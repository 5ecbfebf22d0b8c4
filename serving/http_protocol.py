"""uvicorn's httptools protocol with a deadline for reading each request.

uvicorn closes idle keep-alive connections (`timeout_keep_alive`) but waits forever for a request
that is sent slowly or never finished: 5,000 half-sent requests were held open for as long as their
clients liked, and ~20,000 used up the file descriptors. Here a connection that does not deliver a
whole request (headers and body) within `OMNIREC_REQUEST_READ_SECONDS` (10) of its first byte,
or of opening, is closed. uvicorn takes the protocol class as its documented `http` setting.

A request only notes when it began; one sweep per worker, every quarter of the deadline (at most
a second), closes the connections past it. A timer armed and cancelled per request cost 4-7 % of
the liveness route's throughput (`./dev bench all`).
"""

from __future__ import annotations

import asyncio
import resource
import weakref
from functools import cache

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from omnirec.settings import Settings


@cache
def request_read_seconds() -> float:
    """The deadline, read once per worker process (uvicorn's workers build their own protocols)."""
    return Settings.from_env().serving.request_read_seconds


class _Sweeper:
    """The open connections of one event loop, and the repeating check that closes the late."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.connections: weakref.WeakSet[DeadlineHttpToolsProtocol] = weakref.WeakSet()
        self.deadline = request_read_seconds()
        self.every = min(1.0, self.deadline / 4)
        self.scheduled = False

    def watch(self, connection: DeadlineHttpToolsProtocol) -> None:
        self.connections.add(connection)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_later(self.every, self.sweep)

    def sweep(self) -> None:
        late = self.loop.time() - self.deadline
        for connection in list(self.connections):
            began = connection.began
            if began is not None and began <= late:
                connection.too_slow()
        self.scheduled = bool(self.connections)
        if self.scheduled:
            self.loop.call_later(self.every, self.sweep)


_SWEEPERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Sweeper] = (
    weakref.WeakKeyDictionary()
)


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    """Closes a connection whose request is not fully read in time after it began."""

    began: float | None = None  # loop time the request being read began (or the connection)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.began = self.loop.time()
        sweeper = _SWEEPERS.get(self.loop)
        if sweeper is None:
            sweeper = _SWEEPERS[self.loop] = _Sweeper(self.loop)
        sweeper.watch(self)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.began is None:
            self.began = self.loop.time()

    def on_message_complete(self) -> None:
        self.began = None
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.began = None
        sweeper = _SWEEPERS.get(self.loop)
        if sweeper is not None:
            sweeper.connections.discard(self)
        super().connection_lost(exc)

    def too_slow(self) -> None:
        self.began = None
        if not self.transport.is_closing():
            self.transport.close()


def raise_open_file_limit() -> int:
    """Lift this process's open-file limit to the hard limit (each connection is a descriptor);
    returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft
