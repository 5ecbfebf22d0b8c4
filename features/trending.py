"""What is trending now, from the real-time events: per hour, a sorted set of items scored by
weighted events overall, per channel and per store; read back over the last hours with older hours
counting less (AWS Personalize's Trending-Now looks back 30 minutes to a day)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from features.keys import Keys
from omnirec.redis_access import Command, Reply
from omnirec.settings import DEFAULT_EVENT_WEIGHTS

HOUR = 3600
HOURS_READ = 6  # the window trending looks at
HALF_LIFE_HOURS = 2.0  # an hour-old bucket counts 0.71, a six-hour-old one 0.13
KEEP_SECONDS = 49 * HOUR
TOP_PER_BUCKET = 200


@dataclass(frozen=True)
class TrendEvent:
    """The fields of a stored event that trending needs."""

    item_id: str
    event_type: str
    channel: str
    store_id: str | None
    at: int  # epoch seconds


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
        commands: list[Command] = [
            ("ZINCRBY", key, weight, item) for (key, item), weight in totals.items()
        ]
        commands += [("EXPIRE", key, KEEP_SECONDS) for key in {key for key, _ in totals}]
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
