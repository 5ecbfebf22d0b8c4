"""The event loop's Redis client against a real Redis, and against servers that misbehave."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis

from features.massinsert import resp_command
from omnirec.errors import FeatureStoreError, StoreUnavailableError
from serving.fastredis import (
    AsyncPipelinedReader,
    PipelinedReader,
    pack,
    packed_get,
    packed_recent,
)


@asynccontextmanager
async def fake_redis(reply: bytes | None) -> AsyncIterator[str]:
    """A TCP server that answers every read with `reply` (None: never answers, keeps the socket)."""
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
    prefix = f"fr-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_server)
    client.mset({f"{prefix}:{i}": f"value-{i}" for i in range(200)})
    client.rpush(f"{prefix}:list", b"a", b"b", b"c")

    async def run() -> tuple[list[list[object]], int]:
        reader = AsyncPipelinedReader(redis_server, timeout=2.0)
        commands = [
            [
                (b"GET", f"{prefix}:{i}".encode()),
                (b"LRANGE", f"{prefix}:list".encode(), b"0", b"-1"),
            ]
            for i in range(200)
        ]
        answers = await asyncio.gather(*(reader.execute(c) for c in commands))
        connecting_writes = reader.writes  # requests that arrived while connecting still share
        again = await asyncio.gather(*(reader.execute(c) for c in commands))
        assert again == answers
        writes = reader.writes - connecting_writes
        reader.close()
        assert connecting_writes <= 3
        return answers, writes

    answers, writes = asyncio.run(run())
    assert answers == [[f"value-{i}".encode(), [b"a", b"b", b"c"]] for i in range(200)]
    assert writes == 1  # 200 requests from one loop iteration leave together, not one by one


def test_missing_keys_are_none_and_error_replies_raise(redis_server: str) -> None:
    key = f"fr-{uuid.uuid4().hex[:8]}"
    redis.Redis.from_url(redis_server).set(key, b"a string")

    async def run() -> None:
        reader = AsyncPipelinedReader(redis_server, timeout=2.0)
        assert await reader.execute([(b"GET", b"no-such-key-" + key.encode())]) == [None]
        with pytest.raises(FeatureStoreError, match="WRONGTYPE"):
            await reader.execute([(b"LRANGE", key.encode(), b"0", b"-1")])
        # the connection is still in step after an error reply
        assert await reader.execute([(b"GET", key.encode())]) == [b"a string"]
        reader.close()

    asyncio.run(run())


def test_the_database_in_the_url_is_selected(redis_server: str) -> None:
    base = redis_server.rsplit("/", 1)[0] if redis_server.count("/") > 2 else redis_server
    url = f"{base}/3"
    key = f"fr-{uuid.uuid4().hex[:8]}"
    redis.Redis.from_url(url).set(key, b"in db 3")

    async def run() -> list[object]:
        reader = AsyncPipelinedReader(url, timeout=2.0)
        try:
            return await reader.execute([(b"GET", key.encode())])
        finally:
            reader.close()

    assert asyncio.run(run()) == [b"in db 3"]
    assert PipelinedReader(url, 2.0).execute_packed(pack([(b"GET", key.encode())])) == [b"in db 3"]


def test_a_silent_redis_times_out_and_the_next_call_reconnects() -> None:
    async def run() -> None:
        async with fake_redis(None) as url:
            reader = AsyncPipelinedReader(url, timeout=0.3)
            started = time.monotonic()
            calls = asyncio.gather(
                *(reader.execute([(b"GET", b"k")]) for _ in range(5)), return_exceptions=True
            )
            results = await asyncio.wait_for(
                calls, 60
            )  # a guard against hanging, not a speed check
            assert all(isinstance(r, StoreUnavailableError) for r in results), results
            assert "within 0.3s" in str(results[0])
            assert time.monotonic() - started >= 0.3  # they waited out the timeout
        async with fake_redis(b"$2\r\nok\r\n") as url:
            reader.url = url  # the same client, now pointed at a Redis that answers
            assert await reader.execute([(b"GET", b"k")]) == [b"ok"]
            reader.close()

    asyncio.run(run())


def test_a_dropped_connection_fails_the_waiting_requests_and_redis_down_is_unavailable() -> None:
    async def run() -> None:
        async with fake_redis(None) as url:
            reader = AsyncPipelinedReader(url, timeout=5.0)
            pending = asyncio.ensure_future(reader.execute([(b"GET", b"k")]))
            await asyncio.sleep(0.1)
        # the server closed every connection on leaving the block
        with pytest.raises(StoreUnavailableError):
            await asyncio.wait_for(pending, 2.0)
        with pytest.raises(StoreUnavailableError, match="cannot reach Redis"):
            await reader.execute([(b"GET", b"k")])  # nothing listens on that port any more

    asyncio.run(run())


def test_garbage_from_the_server_is_a_protocol_error_not_a_hang() -> None:
    async def run() -> None:
        async with fake_redis(b"this is not RESP\r\n") as url:
            reader = AsyncPipelinedReader(url, timeout=2.0)
            with pytest.raises(StoreUnavailableError, match="protocol error"):
                await reader.execute([(b"GET", b"k")])
            reader.close()

    asyncio.run(run())


def test_hand_packed_commands_are_the_protocol_the_general_packer_writes() -> None:
    assert packed_get(b"omnirec:id:C1") == resp_command(b"GET", b"omnirec:id:C1")
    assert packed_recent(b"omnirec:rt:C1") == resp_command(b"LRANGE", b"omnirec:rt:C1", b"0", b"49")
