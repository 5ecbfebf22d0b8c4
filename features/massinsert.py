"""Redis mass insertion: stream raw RESP commands over one socket (what `redis-cli --pipe` does)."""

from __future__ import annotations

import socket
from collections.abc import Iterable

import redis

from omnirec.errors import FeatureStoreError, StoreUnavailableError

CHUNK_COMMANDS = 20_000


def resp_command(*parts: bytes) -> bytes:
    """One command in the Redis protocol."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def connection_target(url: str) -> tuple[str, int, list[bytes]]:
    """Host, port and the AUTH / SELECT commands a raw connection to `url` sends first."""
    kwargs = redis.Redis.from_url(url).connection_pool.connection_kwargs
    if "SSL" in str(kwargs.get("connection_class", "")):
        raise FeatureStoreError(
            "raw-protocol connections over TLS are not supported; use redis:// on a private network"
        )
    setup = []
    if kwargs.get("password"):
        user = kwargs.get("username")
        setup.append(
            resp_command(
                b"AUTH", *([user.encode()] if user else []), str(kwargs["password"]).encode()
            )
        )
    if int(kwargs.get("db", 0) or 0):
        setup.append(resp_command(b"SELECT", str(kwargs["db"]).encode()))
    return str(kwargs.get("host", "127.0.0.1")), int(kwargs.get("port", 6379)), setup


def open_socket(url: str, timeout: float) -> socket.socket:
    """A plain TCP connection to the Redis of `url`, authenticated and on the right database."""
    host, port, setup = connection_target(url)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise StoreUnavailableError(f"cannot reach Redis: {exc}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if setup:
        sock.sendall(b"".join(setup))
        reply = sock.recv(1 << 16)
        if reply.count(b"+OK") < len(setup):
            sock.close()
            raise FeatureStoreError(f"Redis refused AUTH/SELECT: {reply[:200]!r}")
    return sock


class _RawConnection:
    """A raw connection that streams commands and counts simple replies."""

    def __init__(self, url: str, timeout: float) -> None:
        self.sock = open_socket(url, timeout)
        self.buffer = b""

    def read_replies(self, count: int) -> None:
        """Consume `count` simple replies (+OK / :n), raising on the first error reply."""
        seen = 0
        while seen < count:
            while self.buffer.count(b"\r\n") < count - seen:
                data = self.sock.recv(1 << 20)
                if not data:
                    raise StoreUnavailableError("Redis closed the connection during bulk load")
                self.buffer += data
            lines = self.buffer.split(b"\r\n")
            take = count - seen
            replies, rest = lines[:take], lines[take:]
            errors = [r for r in replies if r.startswith(b"-")]
            if errors:
                raise FeatureStoreError(
                    f"Redis refused a bulk write: {errors[0][:200].decode(errors='replace')}"
                )
            seen += take
            self.buffer = b"\r\n".join(rest)

    def close(self) -> None:
        self.sock.close()


def mass_set(
    url: str,
    entries: Iterable[tuple[bytes, bytes]],
    *,
    timeout: float = 60.0,
    ttl_seconds: int | None = None,
) -> int:
    """SET every (key, value) through one pipelined socket; returns the number written."""
    conn = _RawConnection(url, timeout)
    written = 0
    try:
        chunk: list[bytes] = []
        ttl = str(ttl_seconds).encode() if ttl_seconds else None
        for key, value in entries:
            chunk.append(
                resp_command(b"SET", key, value, b"EX", ttl)
                if ttl
                else resp_command(b"SET", key, value)
            )
            if len(chunk) >= CHUNK_COMMANDS:
                conn.sock.sendall(b"".join(chunk))
                conn.read_replies(len(chunk))
                written += len(chunk)
                chunk = []
        if chunk:
            conn.sock.sendall(b"".join(chunk))
            conn.read_replies(len(chunk))
            written += len(chunk)
    except OSError as exc:
        raise StoreUnavailableError(f"bulk load to Redis failed: {exc}") from exc
    finally:
        conn.close()
    return written
