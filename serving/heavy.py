"""Heavy requests off the event loop: the batch route and bulk event posts are computed in a child
process of each service worker, so their CPU never holds the loop that answers the storefront.

The child loads the same champion (it follows the `champion` alias as the worker does, checking it
before a request when the reload interval has passed), reads and writes Redis with the blocking
client, and hands back the encoded answer. It starts with the first heavy request; until it is
ready, and whenever it is gone (killed, out of memory), the worker computes the request itself, in
turns that yield to the loop (`Batches.answer`, `RealtimeEvents.ingest_async`).

Threads were measured first and were worse (the GIL hands the loop's thread over late under a busy
CPU); a process has its own interpreter, and runs at a lower OS priority (nice 10) so the
scheduler gives the worker the CPU first. The price is a second copy of the model in memory.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
from dataclasses import dataclass

import msgspec

from features.realtime import IngestResult
from features.store import RedisFeatureStore
from omnirec.children import die_with_parent
from omnirec.redis_access import RedisTarget
from omnirec.settings import Settings
from serving.ask import Ask
from serving.engine import Engine
from serving.runtime import ModelRuntime, tune_process
from serving.schemas import BatchResponse, EventsIn

log = logging.getLogger(__name__)
ENCODER = msgspec.json.Encoder()
CHILD_NICE = 10  # the child yields the CPU to its worker (whose loop answers the storefront)


@dataclass(frozen=True)
class BatchAnswer:
    body: bytes  # a BatchResponse as JSON
    degraded: int  # answers marked degraded


@dataclass(frozen=True)
class BulkRefused:
    """The body is not a valid EventsIn: the typed handler answers it (with Litestar's 400)."""

    reason: str


class HeavyWork:
    """The child process of one service worker (one at a time: a second heavy request queues)."""

    RETRY_SECONDS = 5.0  # a child that failed to start, or had no model, is asked again after this

    def __init__(self, settings: Settings, target: RedisTarget) -> None:
        self.settings = settings
        self.target = target
        self._pool: ProcessPoolExecutor | None = None
        self._probe: Future[bool] | None = None
        self._probed_at = 0.0

    def available(self) -> bool:
        """Whether the child is up with a model; starts it (or asks it again) when it is not."""
        probe = self._probe
        if probe is not None and probe.done() and probe.exception() is None and probe.result():
            return True
        if probe is None or (
            probe.done() and time.monotonic() - self._probed_at > self.RETRY_SECONDS
        ):
            self._ask()
        return False

    def _ask(self) -> None:
        """Ask the child whether it has a model, starting it when there is none (or it broke)."""
        self._probed_at = time.monotonic()
        for _ in range(2):
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_child,
                    initargs=(os.getpid(), self.settings, self.target),
                )
            try:
                self._probe = self._pool.submit(_has_model)
                self._probe.add_done_callback(_log_probe)
                return
            except BrokenExecutor:
                self.close()

    async def _call(self, fn: Callable[..., object], *args: object) -> object | None:
        """Run `fn(*args)` in the child; None when it is not ready or went away meanwhile."""
        if not self.available() or self._pool is None:
            return None
        try:
            return await asyncio.wrap_future(self._pool.submit(fn, *args))
        except BrokenExecutor:
            log.warning(
                "the heavy-request process is gone: computing in the worker until it is back"
            )
            self.close()
            return None

    async def batch(
        self,
        customers: list[str],
        limit: int,
        channel: str | None,
        store_id: str | None,
        request_id: str,
        placement: str | None = None,
    ) -> BatchAnswer | None:
        answer = await self._call(
            _batch, customers, limit, channel, store_id, request_id, placement
        )
        return answer if isinstance(answer, BatchAnswer) else None

    async def ingest(self, body: bytes) -> IngestResult | BulkRefused | None:
        """Decode, validate and store a bulk post; raises StoreUnavailableError like ingestion."""
        result = await self._call(_ingest, body)
        return result if isinstance(result, IngestResult | BulkRefused) else None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._probe = None


def _log_probe(probe: Future[bool]) -> None:
    if probe.cancelled():
        return
    if error := probe.exception():
        log.warning("the heavy-request process did not start: %s", error)
    elif not probe.result():
        log.info("the heavy-request process has no model yet")


# ---------------------------------------------------------------------- in the child process
class _Child:
    engine: Engine
    runtime: ModelRuntime
    next_check = 0.0


def _start_child(parent: int, settings: Settings, target: RedisTarget) -> None:
    die_with_parent(parent)  # a worker killed by SIGKILL (out of memory, say) takes it along
    os.nice(CHILD_NICE)
    tune_process()
    store = RedisFeatureStore(target, settings.redis.prefix, settings.redis.socket_timeout_seconds)
    _Child.engine = Engine(settings, store)
    _Child.runtime = ModelRuntime(settings, _Child.engine, keep_stock=False)
    _follow_champion()


def _follow_champion() -> Engine:
    if time.monotonic() >= _Child.next_check:
        _Child.next_check = (
            time.monotonic() + _Child.engine.settings.serving.reload_interval_seconds
        )
        _Child.runtime.try_refresh()
    return _Child.engine


def _has_model() -> bool:
    return _follow_champion().live.snapshot is not None


def _batch(
    customers: list[str],
    limit: int,
    channel: str | None,
    store_id: str | None,
    request_id: str,
    placement: str | None,
) -> BatchAnswer:
    engine = _follow_champion()
    ask = Ask(
        limit=limit,
        channel=channel,
        store_id=store_id,
        placement=placement,
        request_id=request_id,
    )
    answers = engine.batches.answer_blocking(customers, ask)
    version = engine.live.snapshot.version if engine.live.snapshot else None
    body = ENCODER.encode(BatchResponse(answers, version, request_id))
    return BatchAnswer(body, sum(a.degraded for a in answers))


def _ingest(body: bytes) -> IngestResult | BulkRefused:
    engine = _follow_champion()
    try:
        sent = msgspec.json.decode(body)
        # the shape the route documents, checked as loosely as Litestar does (its 400s)
        msgspec.convert(sent, EventsIn, strict=False)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        return BulkRefused(str(exc)[:200])
    if engine.live.realtime is None:
        return BulkRefused("no feature store")
    # the values as sent: their types are for the event rules to judge, event by event
    return engine.live.realtime.ingest(sent["events"])
