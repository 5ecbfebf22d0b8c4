"""Reading customers from Redis: the commands of one lookup (alias, features, real-time activity),
their replies decoded into a CustomerState, and the breaker that stops calling a Redis that just
failed."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from features.encoding import (
    ACTIVITY_DECODER,
    CUSTOMER_DECODER,
    EVENT_NAMES,
    Activity,
    CustomerFeatures,
)
from features.keys import Keys
from omnirec.redis_access import Command, Reply
from serving.catalogue import LoadedSnapshot

RECENT_READ = 50  # real-time events read per customer (the newest)


@dataclass
class CustomerState:
    """What Redis knows about one customer right now."""

    customer_id: str
    features: CustomerFeatures | None
    recent: list[Activity]  # real-time, newest first


class CustomerReads:
    """The Redis commands that read customers (alias, features, real-time activity) and their
    replies read back: one round trip, a second only for aliases."""

    def __init__(self, keys: Keys, snapshot: str, ids: list[str]) -> None:
        self.keys = keys
        self.snapshot = snapshot
        self.ids = ids
        self.states: list[CustomerState] = []
        self.aliased: list[tuple[int, str]] = []

    def _customer(self, ident: str) -> list[Command]:
        return [
            ("GET", self.keys.snapshot(self.snapshot, "c", ident)),
            ("LRANGE", self.keys.recent(ident), 0, RECENT_READ - 1),
        ]

    def first(self) -> list[Command]:
        commands: list[Command] = []
        for ident in self.ids:
            commands.append(("GET", self.keys.alias(ident)))
            commands += self._customer(ident)
        return commands

    def take(self, replies: list[Reply]) -> list[Command] | None:
        """Read the first replies; returns the commands for the ids that turned out to be
        aliases."""
        for i, ident in enumerate(self.ids):
            alias_target, raw, recent = replies[3 * i : 3 * i + 3]
            if isinstance(alias_target, bytes) and alias_target.decode() != ident:
                self.aliased.append((i, alias_target.decode()))
            self.states.append(_state(ident, raw, recent))
        if not self.aliased:
            return None
        return [command for _, customer in self.aliased for command in self._customer(customer)]

    def take_aliased(self, replies: list[Reply]) -> None:
        for k, (i, customer) in enumerate(self.aliased):
            self.states[i] = _state(customer, replies[2 * k], replies[2 * k + 1])


class RedisBreaker:
    """Stops calling Redis for a moment after it failed, so a dead Redis costs no time per
    request."""

    def __init__(self, cooldown: float = 1.0) -> None:
        self.cooldown = cooldown
        self.down_until = 0.0

    @property
    def open(self) -> bool:
        return time.monotonic() < self.down_until

    def trip(self) -> None:
        self.down_until = time.monotonic() + self.cooldown


def _state(customer: str, raw: object, recent: object) -> CustomerState:
    features = CUSTOMER_DECODER.decode(raw) if isinstance(raw, bytes) else None
    activity = (
        [ACTIVITY_DECODER.decode(v) for v in recent if isinstance(v, bytes)]
        if isinstance(recent, list)
        else []
    )
    return CustomerState(customer, features, activity)


def all_activity(
    snap: LoadedSnapshot | None, features: CustomerFeatures | None, recent: list[Activity]
) -> list[Activity]:
    """Real-time events (newest first) followed by the snapshot's recent events (newest first),
    each once: an event exported and learned since (in the snapshot) that is still in the
    real-time list is not listed twice."""
    past: list[Activity] = []
    if snap is not None and features is not None and features.recent_items:
        items = np.frombuffer(features.recent_items, np.int32)
        types = np.frombuffer(features.recent_types, np.uint8)
        channels = np.frombuffer(features.recent_channels, np.uint8)
        at = np.frombuffer(features.recent_at, np.int64)
        stores = np.frombuffer(features.recent_stores, np.int16)
        for i in range(len(items) - 1, -1, -1):
            if items[i] < 0:
                continue
            past.append(
                Activity(
                    str(snap.item_ids[items[i]]),
                    EVENT_NAMES.get(int(types[i]), "view"),
                    snap.channels[channels[i]] if channels[i] < len(snap.channels) else "unknown",
                    int(at[i]),
                    snap.stores[stores[i]] if 0 <= stores[i] < len(snap.stores) else "",
                )
            )
    known = {(a.item_id, a.event_type, int(a.timestamp)) for a in past}
    out = [a for a in recent if (a.item_id, a.event_type, int(a.timestamp)) not in known]
    out += past
    return out
