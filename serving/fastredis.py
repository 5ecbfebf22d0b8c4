"""The read path's Redis clients: commands packed by hand, replies parsed by hiredis.

redis-py's pipeline costs about 150 microseconds of Python per request; these cost a fraction of
that. `PipelinedReader` is the blocking one (the `omnirec batch` command, thread-pool work);
`AsyncPipelinedReader` serves the event loop: the commands of every request that reaches its
Redis call in the same loop iteration leave in one write and come back in one read
(auto-pipelining), and no request waits on the socket while others could be parsed.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import NamedTuple, cast

import hiredis

from features.massinsert import connection_target, open_socket, resp_command
from omnirec.errors import FeatureStoreError, StoreUnavailableError

Reply = bytes | int | None | list["Reply"]
Command = tuple[bytes, ...]


class Packed(NamedTuple):
    """Commands already in the Redis protocol, and how many replies they produce."""

    payload: bytes
    expected: int  # replies


def pack(commands: list[Command]) -> Packed:
    return Packed(b"".join(resp_command(*c) for c in commands), len(commands))


# The two commands of every recommendation request, packed with one format each (resp_command's
# general loop costs three times as much).
def packed_get(key: bytes) -> bytes:
    return b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key)


def packed_recent(key: bytes) -> bytes:
    """LRANGE key 0 49: the newest 50 real-time events."""
    return b"*4\r\n$6\r\nLRANGE\r\n$%d\r\n%s\r\n$1\r\n0\r\n$2\r\n49\r\n" % (len(key), key)


def _checked(replies: list[Reply]) -> list[Reply]:
    for reply in replies:
        if isinstance(reply, hiredis.ReplyError):
            raise FeatureStoreError(f"Redis error: {reply}")
    return replies


class PipelinedReader:
    """Send a batch of commands, get their replies, in one blocking round trip."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._sock: socket.socket | None = None

    def execute(self, commands: list[Command]) -> list[Reply]:
        return self.execute_packed(pack(commands))

    def execute_packed(self, packed: Packed) -> list[Reply]:
        payload, expected = packed
        try:
            if self._sock is None:
                self._sock = open_socket(self.url, self.timeout)
            sock = self._sock
            sock.sendall(payload)
            reader = hiredis.Reader()
            replies: list[Reply] = []
            while len(replies) < expected:
                data = sock.recv(1 << 16)
                if not data:
                    raise ConnectionError("Redis closed the connection")
                reader.feed(data)
                while (reply := reader.gets()) is not False:
                    replies.append(reply)
        except (OSError, ConnectionError, StoreUnavailableError) as exc:
            self.close()
            raise StoreUnavailableError(f"Redis unavailable: {type(exc).__name__}") from exc
        return _checked(replies)

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None


class _Waiter:
    __slots__ = ("count", "future", "queued_at", "replies")

    def __init__(self, count: int, future: asyncio.Future[list[Reply]], queued_at: float) -> None:
        self.count = count
        self.future = future
        self.queued_at = queued_at
        self.replies: list[Reply] = []


class _ReplyProtocol(asyncio.Protocol):
    """One connection: queued payloads leave together at the end of the loop iteration; replies
    are handed out in order. A reply late by more than `timeout` drops the connection and fails
    every waiter with StoreUnavailableError (the next call reconnects)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.outgoing: list[bytes] = []
        self.waiting: deque[_Waiter] = deque()
        self.flush_handle: asyncio.Handle | None = None
        self.watchdog: asyncio.TimerHandle | None = None
        self.writes = 0

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def submit(self, payload: bytes, count: int) -> asyncio.Future[list[Reply]]:
        future: asyncio.Future[list[Reply]] = self.loop.create_future()
        self.outgoing.append(payload)
        self.waiting.append(_Waiter(count, future, self.loop.time()))
        if self.flush_handle is None:
            self.flush_handle = self.loop.call_soon(self._flush)
        if self.watchdog is None:
            self.watchdog = self.loop.call_later(self.timeout, self._check_late)
        return future

    def _flush(self) -> None:
        self.flush_handle = None
        if self.outgoing and self.transport is not None:
            data = b"".join(self.outgoing)
            self.outgoing.clear()
            self.transport.write(data)
            self.writes += 1

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                head = self.waiting[0]
                head.replies.append(reply)
                if len(head.replies) == head.count:
                    self.waiting.popleft()
                    if not head.future.done():
                        head.future.set_result(head.replies)
        except (hiredis.ProtocolError, IndexError) as exc:  # garbage, or a reply nobody asked for
            self.fail(f"Redis protocol error: {type(exc).__name__}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail("Redis closed the connection")

    def _check_late(self) -> None:
        self.watchdog = None
        if not self.waiting:
            return
        late_by = self.loop.time() - self.waiting[0].queued_at - self.timeout
        if late_by >= 0:
            self.fail(f"no reply from Redis within {self.timeout:g}s")
        else:
            self.watchdog = self.loop.call_later(-late_by, self._check_late)

    def fail(self, reason: str) -> None:
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.abort()
        for handle in (self.flush_handle, self.watchdog):
            if handle is not None:
                handle.cancel()
        self.flush_handle = self.watchdog = None
        self.outgoing.clear()
        waiting, self.waiting = self.waiting, deque()
        for waiter in waiting:
            if not waiter.future.done():
                waiter.future.set_exception(StoreUnavailableError(reason))


class AsyncPipelinedReader:
    """Send a batch of commands and await their replies; concurrent batches share round trips.

    Use it from one event loop (one per worker process)."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._protocol: _ReplyProtocol | None = None
        self._opening: asyncio.Future[_ReplyProtocol] | None = None

    async def execute(self, commands: list[Command]) -> list[Reply]:
        return await self.execute_packed(pack(commands))

    async def execute_packed(self, packed: Packed) -> list[Reply]:
        protocol = self._protocol
        if protocol is None or not protocol.open:
            protocol = await self._connect()
        return _checked(await protocol.submit(*packed))

    async def _connect(self) -> _ReplyProtocol:
        """One connection attempt, shared by every request that arrives while it is under way
        (they all resume in the same loop iteration, so their commands still leave together)."""
        if self._opening is None:
            opening = self._opening = asyncio.ensure_future(self._open())
            opening.add_done_callback(self._opened)
        return await asyncio.shield(self._opening)

    def _opened(self, opening: asyncio.Future[_ReplyProtocol]) -> None:
        self._opening = None
        if not opening.cancelled():
            opening.exception()  # retrieved here, raised in every waiter

    async def _open(self) -> _ReplyProtocol:
        loop = asyncio.get_running_loop()
        host, port, setup = connection_target(self.url)
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _ReplyProtocol(loop, self.timeout), host, port),
                self.timeout,
            )
        except (OSError, TimeoutError) as exc:
            raise StoreUnavailableError(f"cannot reach Redis: {type(exc).__name__}") from exc
        if setup:
            replies = await protocol.submit(b"".join(setup), len(setup))
            if any(reply != b"OK" for reply in replies):
                protocol.fail("setup refused")
                raise FeatureStoreError(f"Redis refused AUTH/SELECT: {replies!r:.200}")
        self._protocol = protocol
        return protocol

    @property
    def writes(self) -> int:
        """Writes on the current connection (each carries every batch queued before it)."""
        return self._protocol.writes if self._protocol is not None else 0

    def close(self) -> None:
        if self._protocol is not None:
            self._protocol.fail("closed")
            self._protocol = None
