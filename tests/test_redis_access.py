"""The one Redis access layer against a real Redis, and against servers that misbehave."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis

from omnirec.errors import FeatureStoreError, StoreUnavailableError
from omnirec.redis_access import (
    AutoPipeline,
    RedisTarget,
    _translated,
    bulk_set,
    run_pipelined,
)


@asynccontextmanager
async def fake_redis(reply: bytes | None) -> AsyncIterator[str]:
    """A TCP server that answers every command with `reply` (None: never answers, keeps the
    socket)."""
    held: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while data := await reader.read(1 << 16):
            if reply is not None:
                writer.write(reply * data.count(b"*"))

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        for writer in held:
            writer.close()
        server.close()


def test_concurrent_requests_share_round_trips(redis_server: str) -> None:
    prefix = f"ra-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_server)
    client.mset({f"{prefix}:{i}": f"value-{i}" for i in range(200)})
    client.rpush(f"{prefix}:list", b"a", b"b", b"c")
    commands = [[("GET", f"{prefix}:{i}"), ("LRANGE", f"{prefix}:list", 0, -1)] for i in range(200)]

    async def run() -> tuple[list[list[object]], int]:
        async_client = RedisTarget(redis_server).async_client(2.0)
        pipeline = AutoPipeline(async_client, timeout=2.0)
        answers = await asyncio.gather(*(pipeline.checked(c) for c in commands))
        before = pipeline.round_trips
        again = await asyncio.gather(*(pipeline.checked(c) for c in commands))
        assert again == answers
        round_trips = pipeline.round_trips - before
        await async_client.aclose()
        return answers, round_trips

    answers, round_trips = asyncio.run(run())
    assert answers == [[f"value-{i}".encode(), [b"a", b"b", b"c"]] for i in range(200)]
    assert round_trips == 1  # 200 requests from one loop iteration leave together, not one by one


def test_missing_keys_are_none_and_an_error_reply_fails_only_its_request(redis_server: str) -> None:
    key = f"ra-{uuid.uuid4().hex[:8]}"
    redis.Redis.from_url(redis_server).set(key, b"a string")

    async def run() -> None:
        async_client = RedisTarget(redis_server).async_client(2.0)
        pipeline = AutoPipeline(async_client, timeout=2.0)
        assert await pipeline.checked([("GET", "no-such-key-" + key)]) == [None]
        wrong, right = await asyncio.gather(
            pipeline.checked([("LRANGE", key, 0, -1)]),
            pipeline.checked([("GET", key)]),
            return_exceptions=True,
        )
        assert isinstance(wrong, FeatureStoreError) and "WRONGTYPE" in str(wrong)
        assert right == [b"a string"]  # same round trip, its own answer
        assert await pipeline.checked([("GET", key)]) == [b"a string"]  # still in step
        await async_client.aclose()

    asyncio.run(run())


def test_the_database_in_the_url_is_selected(redis_server: str) -> None:
    base = redis_server.rsplit("/", 1)[0] if redis_server.count("/") > 2 else redis_server
    target = RedisTarget(f"{base}/3")
    key = f"ra-{uuid.uuid4().hex[:8]}"
    redis.Redis.from_url(target.url).set(key, b"in db 3")

    async def run() -> list[object]:
        async_client = target.async_client(2.0)
        try:
            return await AutoPipeline(async_client, 2.0).checked([("GET", key)])
        finally:
            await async_client.aclose()

    assert asyncio.run(run()) == [b"in db 3"]
    assert run_pipelined(target.client(2.0), [("GET", key)]) == [b"in db 3"]


def test_a_silent_redis_times_out_fails_the_queued_requests_and_the_next_call_reconnects() -> None:
    async def run() -> None:
        async with fake_redis(None) as url:
            async_client = RedisTarget(url).async_client(0.3)
            pipeline = AutoPipeline(async_client, timeout=0.3)
            started = time.monotonic()
            first = [asyncio.ensure_future(pipeline.checked([("GET", "k")])) for _ in range(5)]
            await asyncio.sleep(0)
            later = [asyncio.ensure_future(pipeline.checked([("GET", "k")])) for _ in range(5)]
            calls = asyncio.gather(*first, *later, return_exceptions=True)
            results = await asyncio.wait_for(
                calls, 60
            )  # a guard against hanging, not a speed check
            assert all(isinstance(r, StoreUnavailableError) for r in results), results
            assert time.monotonic() - started >= 0.3  # they waited out the timeout, once
            await async_client.aclose()
        async with fake_redis(b"$2\r\nok\r\n") as url:
            async_client = RedisTarget(url).async_client(0.3)
            assert await AutoPipeline(async_client, 0.3).checked([("GET", "k")]) == [b"ok"]
            await async_client.aclose()

    asyncio.run(run())


def test_a_dropped_connection_fails_the_waiting_requests_and_redis_down_is_unavailable() -> None:
    async def run() -> None:
        async with fake_redis(None) as url:
            async_client = RedisTarget(url).async_client(5.0)
            pipeline = AutoPipeline(async_client, timeout=5.0)
            pending = asyncio.ensure_future(pipeline.checked([("GET", "k")]))
            await asyncio.sleep(0.1)
        # the server closed every connection on leaving the block
        with pytest.raises(StoreUnavailableError):
            await asyncio.wait_for(pending, 2.0)
        with pytest.raises(StoreUnavailableError):
            await pipeline.checked([("GET", "k")])  # nothing listens on that port any more
        await async_client.aclose()

    asyncio.run(run())


def test_garbage_from_the_server_is_an_error_not_a_hang() -> None:
    async def run() -> None:
        async with fake_redis(b"this is not RESP\r\n") as url:
            async_client = RedisTarget(url).async_client(2.0)
            with pytest.raises(FeatureStoreError):
                await asyncio.wait_for(AutoPipeline(async_client, 2.0).checked([("GET", "k")]), 30)
            await async_client.aclose()

    asyncio.run(run())


def test_bulk_set_writes_every_pair_and_reports_the_count(redis_server: str) -> None:
    prefix = f"ra-{uuid.uuid4().hex[:8]}"
    client = RedisTarget(redis_server).client(5.0)
    entries = ((f"{prefix}:{i}".encode(), b"v%d" % i) for i in range(45_123))
    assert bulk_set(client, entries) == 45_123
    assert client.get(f"{prefix}:45122") == b"v45122"
    assert len(list(client.scan_iter(f"{prefix}:*", 10_000))) == 45_123


def test_the_password_never_appears_in_messages() -> None:
    target = RedisTarget("rediss://app:s3cret@cache.example:6380/0")
    assert target.safe_url == "rediss://app:***@cache.example:6380/0"
    assert RedisTarget("redis://127.0.0.1:6379").safe_url == "redis://127.0.0.1:6379"


def test_a_sentinel_url_names_every_sentinel_and_the_masters_login() -> None:
    target = RedisTarget("redis://app:p%40ss@s1:26379,s2:26380,s3/2", sentinel_master="shop")
    sentinels, options = target._sentinels(0.5)
    assert sentinels == [("s1", 26379), ("s2", 26380), ("s3", 26379)]
    assert (options["username"], options["password"], options["db"]) == ("app", "p@ss", 2)
    assert target.safe_url == "redis://app:***@s1:26379,s2:26380,s3/2"


def test_a_connection_reset_while_it_is_set_up_is_redis_unavailable() -> None:
    """uvloop raises a RuntimeError, not a ConnectionError, for a write on a transport the
    server reset during redis-py's connect: it is the store being unavailable, never a 500."""
    closed = RuntimeError(
        "unable to perform operation on <TCPTransport closed=True reading=False 0x7f>; "
        "the handler is closed"
    )
    assert isinstance(_translated(closed), StoreUnavailableError)
    assert _translated(RuntimeError("something else")) is not None
    assert not isinstance(_translated(RuntimeError("something else")), StoreUnavailableError)
