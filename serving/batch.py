"""Answers for many customers at once: the nightly e-mail batch (`omnirec batch`, the
heavy-request process) and the batch route. Reading the customers is written once (as Redis
steps) and driven on a blocking client or on the event loop."""

from __future__ import annotations

import asyncio
import time

import msgspec

from omnirec.errors import StoreUnavailableError
from omnirec.redis_access import Steps
from serving.answers import empty, popular
from serving.ask import Ask
from serving.catalogue import LoadedSnapshot
from serving.experiments.config import Experiment, Variant
from serving.experiments.lab import Lab
from serving.links import Links
from serving.live import Live
from serving.merchandising import combined
from serving.personal import Chooser, Personal
from serving.placements import Placements
from serving.reads import CustomerState
from serving.schemas import Recommendations

FETCH_CHUNK = 200  # customers read from Redis per round trip
BATCH_TURN_SECONDS = 0.002  # the batch route answers customers this long, then yields to the loop
HEAVY_AT_ONCE = 1  # batch-route calls computing at once per worker; the rest wait their turn
HEAVY_SHARE = 0.5  # at most this share of a worker's time goes to batch-route calls

Assigned = list[tuple[Variant | None, LoadedSnapshot | None]]


class Batches:
    """Many customers' answers, each in its experiment's variant, under the placement's rules."""

    def __init__(
        self,
        live: Live,
        personal: Personal,
        lab: Lab,
        placements: Placements,
        links: Links | None = None,
    ) -> None:
        self.live = live
        self.personal = personal
        self.lab = lab
        self.placements = placements
        self.links = links  # each item gets a tracking link (e-mails)
        self._heavy = asyncio.Semaphore(HEAVY_AT_ONCE)
        self._heavy_rest_until = 0.0

    def answer_blocking(
        self, customers: list[str], ask: Ask, first_index: int = 0
    ) -> list[Recommendations]:
        """Answers for many customers (blocking); answer k's recommendation id ends in
        `-<first_index + k>`."""
        live = self.live
        live.follow_stock_blocking()
        snap = live.snapshot
        experiment = self.lab.find(ask.placement, ask.channel)
        choose = self.lab.chooser(experiment)
        try:
            states, assigned = live.run_blocking(self._read(snap, customers, choose))
        except StoreUnavailableError:
            states, assigned = None, [choose(c) for c in customers]
        return [
            self._one(
                snap,
                customer,
                states[k] if states is not None else None,
                assigned[k],
                ask,
                experiment,
                first_index + k,
            )
            for k, customer in enumerate(customers)
        ]

    async def answer(self, customers: list[str], ask: Ask) -> list[Recommendations]:
        """`answer_blocking` for the batch route, sharing the event loop fairly with light
        requests: the customers are read FETCH_CHUNK at a time and answered for
        BATCH_TURN_SECONDS at a time with a yield to the loop in between; one batch at a time per
        worker; and batches get at most HEAVY_SHARE of the worker's time (the next one waits out
        the rest). Threads were tried: under a busy CPU the GIL hand-off made storefront p99
        three times worse."""
        live = self.live
        async with self._heavy:
            await asyncio.sleep(self._heavy_rest_until - time.monotonic())
            await live.follow_stock()
            started = time.monotonic()
            snap = live.snapshot
            experiment = self.lab.find(ask.placement, ask.channel)
            choose = self.lab.chooser(experiment)
            try:
                states, assigned = await live.run(self._read(snap, customers, choose))
            except StoreUnavailableError:
                states, assigned = None, [choose(c) for c in customers]
            answers: list[Recommendations] = []
            turn_ends = time.monotonic() + BATCH_TURN_SECONDS
            for k, customer in enumerate(customers):
                state = states[k] if states is not None else None
                answers.append(self._one(snap, customer, state, assigned[k], ask, experiment, k))
                if time.monotonic() > turn_ends:  # a customer rescored takes ~1 ms
                    await asyncio.sleep(0)
                    turn_ends = time.monotonic() + BATCH_TURN_SECONDS
            spent = time.monotonic() - started
            self._heavy_rest_until = time.monotonic() + spent * (1 / HEAVY_SHARE - 1)
            return answers

    def _read(
        self, snap: LoadedSnapshot | None, customers: list[str], choose: Chooser
    ) -> Steps[tuple[list[CustomerState] | None, Assigned]]:
        """Every customer's state (FETCH_CHUNK a round trip), their variants, and the states of
        those another model version answers for read again from its snapshot (no states
        without a snapshot)."""
        live = self.live
        if snap is None:
            return None, [choose(c) for c in customers]
        states: list[CustomerState] = []
        for start in range(0, len(customers), FETCH_CHUNK):
            chunk = customers[start : start + FETCH_CHUNK]
            states += yield from live.customer_steps(snap, chunk)
        assigned = [choose(s.customer_id) for s in states]
        for served, ks in _other_versions(snap, assigned):
            again = yield from live.customer_steps(served, [states[k].customer_id for k in ks])
            for k, one in zip(ks, again, strict=True):
                states[k] = one
        return states, assigned

    def _one(
        self,
        snap: LoadedSnapshot | None,
        customer: str,
        state: CustomerState | None,
        assigned: tuple[Variant | None, LoadedSnapshot | None],
        ask: Ask,
        experiment: Experiment | None,
        index: int,
    ) -> Recommendations:
        variant, served = assigned
        rules = combined(
            self.placements.rules_for(ask.placement),
            variant.rules if variant is not None else None,
        )
        if snap is None:
            answer = empty(ask.request_id, customer)
        elif state is None:
            answer = popular(snap, ask.but(category=None), customer, degraded=True, rules=rules)
        else:
            plain = ask.but(category=None, exclude_purchased=True, explain=False)
            answer = self.personal.answer(served or snap, state, plain, rules=rules)
        answer = self.lab.labelled(
            answer, ask.request_id, experiment, variant, ask.placement, index, ask.channel
        )
        return with_links(self.links, answer, customer)


def with_links(links: Links | None, answer: Recommendations, customer: str) -> Recommendations:
    """`answer` with a tracking link on each item (none without `links`)."""
    if links is None or not answer.items:
        return answer
    urls = links.urls(
        answer.recommendation_id,
        answer.customer_id or customer,
        [item.item_id for item in answer.items],
    )
    return msgspec.structs.replace(
        answer,
        items=[
            msgspec.structs.replace(item, link=url)
            for item, url in zip(answer.items, urls, strict=True)
        ],
    )


def _other_versions(
    snap: LoadedSnapshot | None, assigned: Assigned
) -> list[tuple[LoadedSnapshot, list[int]]]:
    """(snapshot, positions of its customers) for the customers answered by another model
    version than the champion's."""
    groups: dict[int, tuple[LoadedSnapshot, list[int]]] = {}
    for k, (_, served) in enumerate(assigned):
        if served is not None and served is not snap:
            groups.setdefault(served.version, (served, []))[1].append(k)
    return list(groups.values())
