"""What is trending now, from the real-time events: per hour, a sorted set of items scored by
weighted events overall, per channel and per store; read back over the last hours with older hours
counting less (AWS Personalize's Trending-Now looks back 30 minutes to a day).

An item trends only when enough different customers made it so: beside each hour's scores, a
sorted set of (item, customer) pairs (all scored 0, so ZLEXCOUNT counts one item's customers in
O(log n)); one visitor viewing an item five times is one customer. Counted per hour and summed
over the hours read (a customer in two hours counts twice)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from features.keys import Keys
from omnirec.redis_access import Command, Reply, Steps
from omnirec.settings import DEFAULT_EVENT_WEIGHTS

HOUR = 3600
HOURS_READ = 6  # the window trending looks at
HALF_LIFE_HOURS = 2.0  # an hour-old bucket counts 0.71, a six-hour-old one 0.13
KEEP_SECONDS = 49 * HOUR
TOP_PER_BUCKET = 200
PEOPLE_KEEP_SECONDS = (HOURS_READ + 1) * HOUR  # the pairs are only read over the window
CANDIDATES = 100  # the best-scored items of a scope whose customers are counted
MIN_CUSTOMERS = 3  # default: customers an item needs in the window to trend


@dataclass(frozen=True)
class TrendEvent:
    """The fields of a stored event that trending needs."""

    item_id: str
    event_type: str
    channel: str
    store_id: str | None
    at: int  # epoch seconds
    customer_id: str | None = None


class Trending:
    """Hourly counts per scope: everywhere, per channel, per store (`Keys.trend`)."""

    def __init__(self, prefix: str, weights: dict[str, float] | None = None) -> None:
        self.prefix = prefix
        self.keys = Keys(prefix)
        self.weights = dict(DEFAULT_EVENT_WEIGHTS if weights is None else weights)

    def key(self, hour: int, scope: str) -> str:
        return self.keys.trend(hour, scope)

    def writes(self, events: Iterable[TrendEvent], now: float) -> list[Command]:
        """ZINCRBYs (summed per bucket and item) and an EXPIRE per bucket touched."""
        totals: dict[tuple[str, str], float] = {}
        pairs: dict[str, set[bytes]] = {}
        oldest = now - KEEP_SECONDS
        for e in events:
            weight = self.weights.get(e.event_type, 0.0)
            if weight <= 0 or e.at < oldest:
                continue
            hour = e.at // HOUR
            scopes = ["all", f"channel:{e.channel}"]
            if e.store_id:
                scopes.append(f"store:{e.store_id}")
            for scope in scopes:
                bucket = (self.key(hour, scope), e.item_id)
                totals[bucket] = totals.get(bucket, 0.0) + weight
                if e.customer_id:
                    pair = _pair(e.item_id, e.customer_id)
                    pairs.setdefault(self.keys.trend_people(hour, scope), set()).add(pair)
        commands: list[Command] = [
            ("ZINCRBY", key, weight, item) for (key, item), weight in totals.items()
        ]
        commands += [("EXPIRE", key, KEEP_SECONDS) for key in {key for key, _ in totals}]
        for key, members in pairs.items():
            commands.append(("ZADD", key, *(x for m in members for x in (0, m))))
            commands.append(("EXPIRE", key, PEOPLE_KEEP_SECONDS))
        return commands

    def reads(self, scope: str, now: float) -> list[Command]:
        """The top items of each of the last HOURS_READ hourly buckets of `scope`."""
        hour = int(now) // HOUR
        return [
            ("ZREVRANGE", self.key(hour - k, scope), 0, TOP_PER_BUCKET - 1, "WITHSCORES")
            for k in range(HOURS_READ)
        ]

    @staticmethod
    def merge(replies: list[Reply]) -> list[tuple[str, float]]:
        """Items and their decayed scores over the buckets read (newest first), best first."""
        scores: dict[str, float] = {}
        for age, reply in enumerate(replies):
            if not isinstance(reply, list):
                continue
            decay = 0.5 ** (age / HALF_LIFE_HOURS)
            # RESP3 answers [[member, score], ...]; RESP2 a flat [member, score, ...]
            pairs = (
                reply
                if reply and isinstance(reply[0], list)
                else [reply[k : k + 2] for k in range(0, len(reply) - 1, 2)]
            )
            for raw, score in pairs:  # type: ignore[misc]
                item = raw.decode() if isinstance(raw, bytes) else str(raw)
                scores[item] = scores.get(item, 0.0) + decay * float(score)
        return sorted(scores.items(), key=lambda kv: -kv[1])

    def people_reads(self, scope: str, items: list[str], now: float) -> list[Command]:
        """For each item, its customers in each of the last HOURS_READ hours of `scope`."""
        hour = int(now) // HOUR
        return [
            (
                "ZLEXCOUNT",
                self.keys.trend_people(hour - k, scope),
                b"[" + _pair(item, ""),
                b"(" + item.encode() + b"\x01",
            )
            for item in items
            for k in range(HOURS_READ)
        ]

    def read(
        self, scopes: list[str], now: float, min_customers: int = MIN_CUSTOMERS
    ) -> Steps[dict[str, list[tuple[str, float]]]]:
        """Each scope's trending items (decayed scores, best first) that at least
        `min_customers` customers made so: two round trips (the scores, then the customers of
        each scope's CANDIDATES best)."""
        replies = yield [c for scope in scopes for c in self.reads(scope, now)]
        merged = {
            scope: self.merge(replies[k * HOURS_READ : (k + 1) * HOURS_READ])[:CANDIDATES]
            for k, scope in enumerate(scopes)
        }
        if min_customers <= 1:
            return merged
        asks = [(scope, [item for item, _ in merged[scope]]) for scope in scopes]
        counts = yield [c for scope, items in asks for c in self.people_reads(scope, items, now)]
        out: dict[str, list[tuple[str, float]]] = {}
        at = 0
        for scope, items in asks:
            n = len(items) * HOURS_READ
            people = [int(c) if isinstance(c, int) else 0 for c in counts[at : at + n]]
            at += n
            out[scope] = [
                pair
                for k, pair in enumerate(merged[scope])
                if sum(people[k * HOURS_READ : (k + 1) * HOURS_READ]) >= min_customers
            ]
        return out


def _pair(item: str, customer: str) -> bytes:
    """A sorted-set member: the item, a NUL, the customer (all of one item sort together)."""
    return item.encode() + b"\x00" + customer.encode()
