"""Shadow answers: for a sample of an experiment's requests, the shadow model's answer for the
same customer is computed after the served answer went out, off the request path, and compared
with it (overlap of the lists, Kendall's tau of the shared items' ranks) on /metrics.

Never on the request path: a request only appends to a bounded queue (full: the newest is
dropped and counted); one background task works the queue, computes each answer in a thread, and
gets at most SHADOW_SHARE of the time (after spending t it rests t x (1/share - 1)), so a slow
challenger falls behind and drops samples instead of slowing the storefront.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from serving.ask import Ask
from serving.experiments.config import Experiment
from serving.live import Live
from serving.merchandising import RuleSet
from serving.metrics import SHADOW, SHADOW_OVERLAP, SHADOW_RANK_CORRELATION
from serving.personal import Personal

log = logging.getLogger("omnirec.serving")
QUEUE = 64  # shadow requests waiting at most
SHADOW_SHARE = 0.25  # of the time the shadow worker may spend computing


@dataclass(frozen=True)
class ShadowJob:
    experiment: Experiment
    customer_id: str
    served: list[str]
    ask: Ask
    rules: RuleSet | None


def compare(served: list[str], shadow: list[str]) -> tuple[float, float | None]:
    """(share of the served items in the shadow list, Kendall's tau of the ranks of the items
    both lists hold; None with fewer than two)."""
    if not served:
        return 0.0, None
    position = {item: k for k, item in enumerate(shadow)}
    shared = [item for item in served if item in position]
    overlap = len(shared) / len(served)
    if len(shared) < 2:
        return overlap, None
    return overlap, kendall_tau([position[item] for item in shared])


def kendall_tau(ranks: list[int]) -> float:
    """Kendall's tau between the order of `ranks` and their values (distinct: no ties), for the
    at most 100 items of two answers: (concordant - discordant pairs) / pairs. What
    scipy.stats.kendalltau gives here, without importing scipy.stats (2 s of every service
    start, measured) for one small sum."""
    y = np.asarray(ranks, dtype=np.int64)
    n = len(y)
    signs = np.sign(y[None, :] - y[:, None])  # [i, j]: the order of j's rank against i's
    return float(np.triu(signs, 1).sum()) / (n * (n - 1) / 2)


class Shadow:
    """The queue of sampled requests and the task that answers them with the shadow model."""

    def __init__(self, live: Live, personal: Personal) -> None:
        self.live = live
        self.personal = personal
        self.queue: deque[ShadowJob] = deque()
        self.ready = asyncio.Event()

    @staticmethod
    def sampled(experiment: Experiment) -> bool:
        """Whether this request of `experiment` gets a shadow answer (its `shadow_sample`)."""
        return experiment.shadow is not None and random.random() < experiment.shadow_sample

    def offer(self, job: ShadowJob) -> None:
        """Queue a sampled request for its shadow answer (never blocks; dropped when full)."""
        experiment = job.experiment
        if len(self.queue) >= QUEUE:
            SHADOW.labels(experiment.name, "dropped").inc()
            return
        self.queue.append(job)
        SHADOW.labels(experiment.name, "queued").inc()
        self.ready.set()

    async def run_forever(self) -> None:
        while True:
            await self.ready.wait()
            self.ready.clear()
            while self.queue:
                job = self.queue.popleft()
                started = time.monotonic()
                try:
                    outcome = await self._answer(job)
                except Exception as exc:  # a failing challenger never fails the service
                    outcome = "failed"
                    log.warning(
                        "shadow answer failed (%s): %s", job.experiment.name, type(exc).__name__
                    )
                SHADOW.labels(job.experiment.name, outcome).inc()
                spent = time.monotonic() - started
                await asyncio.sleep(spent * (1 / SHADOW_SHARE - 1))

    async def _answer(self, job: ShadowJob) -> str:
        assert job.experiment.shadow is not None
        snap = self.live.snapshot_for(job.experiment.shadow)
        if snap is None:
            return "unloaded"
        state = (await self.live.customers(snap, [job.customer_id]))[0]
        delay = self.live.settings.serving.shadow_delay_seconds  # a slow challenger (tests)
        ask = job.ask.but(exclude_purchased=True, explain=False)

        def compute() -> list[str]:
            if delay:
                time.sleep(delay)
            answer = self.personal.answer(snap, state, ask, rules=job.rules)
            return [item.item_id for item in answer.items]

        shadow = await asyncio.to_thread(compute)
        overlap, tau = compare(job.served, shadow)
        SHADOW_OVERLAP.labels(job.experiment.name).observe(overlap)
        if tau is not None:
            SHADOW_RANK_CORRELATION.labels(job.experiment.name).observe(tau)
        return "done"
