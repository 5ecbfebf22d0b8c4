"""The one way the project talks to Redis: redis-py (hiredis parses replies) for a single server,
a TLS server with an ACL user, a Redis Cluster, or the master that Redis Sentinels name.

- `RedisTarget`: where Redis is and how to reach it (REDIS_URL, OMNIREC_REDIS_CLUSTER, the CA file
  and client certificate settings); it makes the blocking and the asyncio clients.
- `AutoPipeline`: the commands of every request that reaches Redis in the same event-loop
  iteration leave in one write and come back in one read, through the client's own connections
  (a single server) or its cluster pipeline (one round trip per node, MOVED/ASK followed).
- `run_pipelined` and `bulk_set`: the blocking counterparts (batch scoring, publishing).
- `Steps`: Redis logic written once, without I/O (a generator that yields each round trip's
  commands and receives their replies); `drive` runs it on a blocking client and
  `AutoPipeline.drive` on the event loop's, so no question is written twice, once per kind of
  caller.

Every redis-py error becomes the project's own: StoreUnavailableError when Redis cannot be
reached or answers too late, FeatureStoreError otherwise, RedisConfigError when the settings are
wrong (a refused password, a certificate nobody trusts): retrying cannot fix those.

Longer than our 400 lines on purpose: the one Redis client layer (targets, errors, the blocking
helpers, the auto-pipeline and the steps' drivers) in one place, so nothing talks to Redis
another way.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import unquote, urlsplit, urlunsplit

import hiredis
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.exceptions
import redis.sentinel

from omnirec.errors import FeatureStoreError, RedisConfigError, StoreUnavailableError

Reply = Any  # bytes | int | None | list[Reply] | an exception, as redis-py returns it
Command = Sequence[bytes | str | int | float]
SyncClient = redis.Redis | redis.cluster.RedisCluster
AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster

REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, ConnectionError, OSError, TimeoutError)
BULK_CHUNK = 1_000  # key/value pairs per MSET (a single server) or per pipeline slice (a cluster)
BULK_IN_FLIGHT = 20  # MSETs sent before their replies are read
MAX_IN_FLIGHT = 4  # auto-pipelined batches awaiting replies at once; later requests queue

T = TypeVar("T")
# yields each round trip's commands, receives their replies (or the error, thrown in), returns T
Steps = Generator[list[Command], list[Reply], T]


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is: `redis://` or `rediss://` (TLS) URL with the ACL user and password in it,
    whether it names a Redis Cluster node, and the files TLS needs."""

    url: str
    cluster: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    sentinel_master: str | None = None  # the URL names Sentinels (comma-separated host:port)

    @property
    def safe_url(self) -> str:
        """The URL without its password (for messages and logs)."""
        parts = urlsplit(self.url)
        credentials, at, hosts = parts.netloc.rpartition("@")
        if not at or ":" not in credentials:
            return self.url
        user = credentials.partition(":")[0]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))

    def _options(self, timeout: float) -> dict[str, Any]:
        options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
        }
        if not self.cluster:
            options["health_check_interval"] = 0
        if self.url.startswith("rediss://"):
            options["ssl_cert_reqs"] = "required"
            if self.ca_file:
                options["ssl_ca_certs"] = self.ca_file
            if self.cert_file:
                options["ssl_certfile"] = self.cert_file
            if self.key_file:
                options["ssl_keyfile"] = self.key_file
        return options

    def _sentinels(self, timeout: float) -> tuple[list[tuple[str, int]], dict[str, Any]]:
        """The Sentinels the URL names, and the master connection's options (user, password,
        database, TLS and timeouts)."""
        parts = urlsplit(self.url)
        credentials, _, hosts = parts.netloc.rpartition("@")
        user, _, password = credentials.partition(":")
        sentinels = [
            (host.rpartition(":")[0] or host, int(host.rpartition(":")[2] or 26379))
            if ":" in host
            else (host, 26379)
            for host in hosts.split(",")
        ]
        options = self._options(timeout)
        options.pop("health_check_interval", None)
        options.update(
            username=unquote(user) or None,
            password=unquote(password) or None,
            db=int(parts.path.strip("/") or 0),
        )
        if self.url.startswith("rediss://"):
            options["ssl"] = True
        return sentinels, options

    def client(self, timeout: float = 0.5) -> SyncClient:
        """A blocking client (commands, publishing, batch scoring) with short timeouts: the
        service must fail fast, then fall back."""
        if self.sentinel_master:
            sentinels, options = self._sentinels(timeout)
            sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
                sentinels, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            master: redis.Redis = sentinel.master_for(self.sentinel_master, **options)  # type: ignore[no-untyped-call]
            return master
        if self.cluster:
            return redis.cluster.RedisCluster.from_url(self.url, **self._options(timeout))
        return redis.Redis.from_url(self.url, **self._options(timeout))

    def async_client(self, timeout: float = 0.5) -> AsyncClient:
        """An asyncio client; it connects on first use, on the event loop that uses it."""
        if self.sentinel_master:
            sentinels, options = self._sentinels(timeout)
            async_sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
                sentinels, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            async_master: redis.asyncio.Redis = async_sentinel.master_for(
                self.sentinel_master, **options
            )
            return async_master
        if self.cluster:
            return redis.asyncio.cluster.RedisCluster.from_url(self.url, **self._options(timeout))
        return redis.asyncio.Redis.from_url(self.url, **self._options(timeout))

    def verify(self, timeout: float = 5.0) -> bool:
        """PING once: True when Redis answers, False when it cannot be reached now (it may come
        later); raises RedisConfigError naming REDIS_URL when the password or the certificate is
        refused."""
        try:
            client = self.client(timeout)
            try:
                client.ping()
            finally:
                client.close()
        except Exception as exc:
            if problem := config_problem(exc):
                raise RedisConfigError(f"REDIS_URL {self.safe_url}: {problem}") from exc
            if isinstance(exc, (*REDIS_DOWN, redis.RedisError)):
                return False
            raise
        return True


def config_problem(exc: BaseException) -> str | None:
    """What is wrong with the settings when `exc` says so (a refused login or certificate)."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = " ".join(str(e) for e in chain)
    if any(
        isinstance(e, redis.exceptions.AuthenticationError | redis.exceptions.AuthorizationError)
        for e in chain
    ) or any(marker in text for marker in ("WRONGPASS", "NOAUTH", "invalid username-password")):
        return "Redis refused the user or password in the URL"
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain) or (
        "CERTIFICATE_VERIFY_FAILED" in text
    ):
        return (
            "the server's TLS certificate is not trusted (set OMNIREC_REDIS_CA_FILE to the CA "
            "that signed it)"
        )
    if any(isinstance(e, ssl.SSLError) for e in chain):
        return f"the TLS handshake failed ({chain[0]})"
    return None


@contextlib.contextmanager
def redis_errors(what: str) -> Iterator[None]:
    """redis-py's errors as the project's: StoreUnavailableError when Redis cannot be reached (or
    answered too late: a write may or may not have happened), RedisConfigError for refused
    credentials, FeatureStoreError otherwise."""
    try:
        yield
    except (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError) as exc:
        raise RedisConfigError(f"Redis refused the credentials: {exc}") from exc
    except REDIS_DOWN as exc:
        raise StoreUnavailableError(f"Redis unavailable: {type(exc).__name__}") from exc
    except redis.RedisError as exc:
        raise FeatureStoreError(f"Redis {what}: {exc}") from exc


def primaries_info(client: SyncClient, section: str) -> list[dict[str, Any]]:
    """INFO `section` of the server, or of every primary of a cluster."""
    if isinstance(client, redis.cluster.RedisCluster):
        return [client.info(section, target_nodes=node) for node in client.get_primaries()]  # type: ignore[no-untyped-call]
    return [client.info(section)]


def _checked(replies: list[Reply]) -> list[Reply]:
    for reply in replies:
        if isinstance(reply, BaseException):
            if isinstance(reply, REDIS_DOWN):
                raise StoreUnavailableError(f"Redis unavailable: {type(reply).__name__}")
            raise FeatureStoreError(f"Redis error: {reply}")
    return replies


def run_pipelined(client: SyncClient, commands: Iterable[Command]) -> list[Reply]:
    """Send commands in one pipeline (per node for a cluster) and return their replies
    (blocking)."""
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    with redis_errors("error"):
        return _checked(pipe.execute(raise_on_error=False))


def drive(client: SyncClient, steps: Steps[T]) -> T:
    """Run `steps` on a blocking client: one pipelined round trip per step; a Redis error is
    thrown into the steps (which may handle it) before it reaches the caller."""
    try:
        commands = next(steps)
        while True:
            try:
                replies = run_pipelined(client, commands)
            except FeatureStoreError as exc:
                commands = steps.throw(exc)
            else:
                commands = steps.send(replies)
    except StopIteration as done:
        return cast(T, done.value)


def bulk_set(client: SyncClient, entries: Iterable[tuple[bytes, bytes]]) -> int:
    """SET every (key, value): MSETs of BULK_CHUNK pairs, BULK_IN_FLIGHT at a time, on a single
    server; pipelined SETs grouped per node on a cluster. Returns the number written."""
    written = 0
    cluster = isinstance(client, redis.cluster.RedisCluster)
    pipe = client.pipeline(transaction=False)
    queued = 0
    chunk: list[bytes] = []

    def send() -> None:
        nonlocal queued, written, pipe
        with redis_errors("refused a bulk write"):
            _checked(pipe.execute(raise_on_error=False))
        written += queued
        queued = 0
        pipe = client.pipeline(transaction=False)

    for key, value in entries:
        if cluster:
            pipe.execute_command("SET", key, value)
            queued += 1
            if queued >= BULK_CHUNK * 5:
                send()
            continue
        chunk += (key, value)
        if len(chunk) >= 2 * BULK_CHUNK:
            pipe.execute_command("MSET", *chunk)
            queued += len(chunk) // 2
            chunk = []
            if queued >= BULK_CHUNK * BULK_IN_FLIGHT:
                send()
    if chunk:
        pipe.execute_command("MSET", *chunk)
        queued += len(chunk) // 2
    if queued:
        send()
    return written


class _Waiter:
    __slots__ = ("commands", "future")

    def __init__(self, commands: list[Command], future: asyncio.Future[list[Reply]]) -> None:
        self.commands = commands
        self.future = future


class AutoPipeline:
    """Send a request's commands and await their replies; the commands of every request queued in
    the same event-loop iteration share one round trip. Use it from one event loop.

    On a single server the batch goes out on one of the client's pooled connections (packed and
    parsed by hiredis); on a cluster through its pipeline. At most MAX_IN_FLIGHT batches
    wait for replies at once; when one fails for want of Redis, the requests queued behind it fail
    at once too (nothing waits on a Redis that just failed)."""

    def __init__(self, client: AsyncClient, timeout: float) -> None:
        self.client = client
        self.timeout = timeout
        self.cluster = isinstance(client, redis.asyncio.cluster.RedisCluster)
        self._queued: list[_Waiter] = []
        self._flush: asyncio.Handle | None = None
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.round_trips = 0

    def execute(self, commands: list[Command]) -> asyncio.Future[list[Reply]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Reply]] = loop.create_future()
        self._queued.append(_Waiter(commands, future))
        if self._flush is None and self._in_flight < MAX_IN_FLIGHT:
            self._flush = loop.call_soon(self._send)
        return future

    async def checked(self, commands: list[Command]) -> list[Reply]:
        """`execute`, raising the first error reply (as FeatureStoreError)."""
        return _checked(await self.execute(commands))

    async def drive(self, steps: Steps[T]) -> T:
        """Run `steps` on the event loop: each step's commands share a round trip with whatever
        else is queued; a Redis error is thrown into the steps before it reaches the caller."""
        try:
            commands = next(steps)
            while True:
                try:
                    replies = await self.checked(commands)
                except FeatureStoreError as exc:
                    commands = steps.throw(exc)
                else:
                    commands = steps.send(replies)
        except StopIteration as done:
            return cast(T, done.value)

    def _send(self) -> None:
        self._flush = None
        batch, self._queued = self._queued, []
        if not batch:
            return
        self._in_flight += 1
        task = asyncio.ensure_future(self._round_trip(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _round_trip(self, batch: list[_Waiter]) -> None:
        commands = [command for waiter in batch for command in waiter.commands]
        try:
            replies = await (self._cluster(commands) if self.cluster else self._single(commands))
        except Exception as exc:  # every waiter learns why; the queued ones too when Redis is down
            error = _translated(exc)
            failed = batch + (self._queued if isinstance(error, StoreUnavailableError) else [])
            if failed is not batch:
                self._queued = []
            for waiter in failed:
                if not waiter.future.done():
                    waiter.future.set_exception(error)
        else:
            at = 0
            for waiter in batch:
                n = len(waiter.commands)
                if not waiter.future.done():
                    waiter.future.set_result(replies[at : at + n])
                at += n
        finally:
            self._in_flight -= 1
            self.round_trips += 1
            if self._queued and self._flush is None:
                self._flush = asyncio.get_running_loop().call_soon(self._send)

    async def _single(self, commands: list[Command]) -> list[Reply]:
        client = cast(redis.asyncio.Redis, self.client)
        pool = client.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            async with asyncio.timeout(self.timeout):
                # packed in C by hiredis (redis-py's asyncio packer is Python: half the cost)
                payload = b"".join([hiredis.pack_command(tuple(c)) for c in commands])  # type: ignore[arg-type]  # (its stub says a 1-tuple)
                await connection.send_packed_command(payload, check_health=False)
                replies: list[Reply] = []
                for _ in commands:
                    try:
                        replies.append(await connection.read_response(timeout=math.inf))
                    except redis.ResponseError as exc:  # an error reply: the others still come
                        replies.append(exc)
        except BaseException:
            await connection.disconnect(nowait=True)
            raise
        finally:
            await pool.release(connection)
        return replies

    async def _cluster(self, commands: list[Command]) -> list[Reply]:
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        replies: list[Reply] = await pipe.execute(raise_on_error=False)
        return replies

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._queued = []


def _translated(exc: Exception) -> Exception:
    if problem := config_problem(exc):
        return RedisConfigError(problem)
    if isinstance(exc, REDIS_DOWN) or _transport_closed(exc):
        return StoreUnavailableError(f"Redis unavailable: {type(exc).__name__}")
    if isinstance(exc, redis.RedisError):
        return FeatureStoreError(f"Redis error: {exc}")
    return exc


def _transport_closed(exc: Exception) -> bool:
    """uvloop's answer to a write on a connection the server reset while redis-py was still
    setting it up (a Redis behind a proxy, or restarting): "unable to perform operation on
    <TCPTransport closed=True ...>", a RuntimeError rather than a ConnectionError."""
    return isinstance(exc, RuntimeError) and "closed=True" in str(exc)
