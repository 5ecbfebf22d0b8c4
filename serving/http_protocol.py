"""uvicorn's httptools protocol with a deadline for reading each request.

uvicorn closes idle keep-alive connections (`timeout_keep_alive`) but waits forever for a request
that is sent slowly or never finished: 5,000 half-sent requests were held open for as long as their
clients liked, and ~20,000 used up the file descriptors. Here a connection that does not deliver a
whole request (headers and body) within `OMNIREC_REQUEST_READ_SECONDS` (10) of its first byte,
or of opening, is closed. uvicorn takes the protocol class as its documented `http` setting.
"""

from __future__ import annotations

import asyncio
import resource
from functools import cache

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from omnirec.settings import Settings


@cache
def request_read_seconds() -> float:
    """The deadline, read once per worker process (uvicorn's workers build their own protocols)."""
    return Settings.from_env().serving.request_read_seconds


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    """Closes a connection whose request is not fully read in time after it began."""

    _read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._read_deadline is None:
            self._read_deadline = self.loop.call_later(request_read_seconds(), self._too_slow)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _too_slow(self) -> None:
        self._read_deadline = None
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
