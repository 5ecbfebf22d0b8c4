"""Benchmark only: the engine's Redis calls through other maintained clients, to measure them on
the recommendation route beside the chosen one (redis-py + hiredis, auto-pipelined).

    python -m scripts.redis_clients {coredis|glide} PORT   # `omnirec serve` with that client

Each adapter offers what the engine asks of its pipeline (`checked(commands)`, `aclose()`) for the
commands the read path sends (GET, LRANGE, HEXISTS, PING), one client call per command, the
requests of a loop iteration running concurrently (both clients multiplex one connection)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any
from urllib.parse import urlsplit

from omnirec.redis_access import Command, Reply


class CoredisCommands:
    def __init__(self, url: str) -> None:
        import coredis

        parts = urlsplit(url)
        self.client = coredis.Redis(parts.hostname, parts.port or 6379)
        self.entered = False

    async def checked(self, commands: list[Command]) -> list[Reply]:
        if not self.entered:
            await self.client.__aenter__()
            self.entered = True
        calls: list[Any] = []
        for name, *args in commands:
            if name == "GET":
                calls.append(self.client.get(str(args[0])))
            elif name == "LRANGE":
                calls.append(self.client.lrange(str(args[0]), int(args[1]), int(args[2])))
            elif name == "HEXISTS":
                calls.append(self.client.hexists(str(args[0]), str(args[1])))
            else:
                calls.append(self.client.ping())
        replies = list(await asyncio.gather(*calls))
        return [int(r) if isinstance(r, bool) else r for r in replies]

    async def aclose(self) -> None:
        if self.entered:
            await self.client.__aexit__(None, None, None)


class GlideCommands:
    def __init__(self, url: str) -> None:
        self.url = url
        self.client: Any = None

    async def checked(self, commands: list[Command]) -> list[Reply]:
        if self.client is None:
            from glide import GlideClient, GlideClientConfiguration, NodeAddress

            parts = urlsplit(self.url)
            config = GlideClientConfiguration(
                [NodeAddress(parts.hostname or "127.0.0.1", parts.port or 6379)]
            )
            self.client = await GlideClient.create(config)
        return list(
            await asyncio.gather(
                *(self.client.custom_command([str(a) for a in c]) for c in commands)
            )
        )

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.close()


ADAPTERS = {"coredis": CoredisCommands, "glide": GlideCommands}


def serve(client: str, port: int) -> None:
    """`omnirec serve` (one worker) whose engine reads Redis through `client`."""
    import uvicorn

    from omnirec.settings import Settings
    from serving.app import create_app
    from serving.http_protocol import DeadlineHttpToolsProtocol

    settings = Settings.from_env()
    app = create_app(settings)
    swapped = False

    async def with_client(scope: Any, receive: Any, send: Any) -> None:
        nonlocal swapped
        if scope["type"] == "http" and not swapped:  # after the lifespan built the engine
            engine = app.state.engine
            engine.live.pipeline = ADAPTERS[client](engine.live.store.target.url)
            swapped = True
        await app(scope, receive, send)

    uvicorn.run(
        with_client,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        http=DeadlineHttpToolsProtocol,
    )


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
