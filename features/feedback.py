"""Feedback on recommendations (impressions, clicks, add-to-cart, purchases), stored like events:
validated one by one, aliases resolved, written to the same event streams (entry field `f`), and
exported beside the event log (`features.export`).

A recommendation id names the experiment, variant, placement and channel that produced the
answer (`<request>[-<k>].<experiment>.<variant>.<placement>[.<channel>]`, `_` for none; without
a channel named, four parts), so feedback quoting it is counted for that variant,
and a purchase on any channel for the channel it was shown on, without a lookup. A click is
remembered for the attribution window (`<prefix>:clicked:<customer>:<item>` -> its id), so a
purchase of the clicked item within the window counts for the click's variant even when it does
not quote an id. A purchase counts once per recommendation and item in the window
(`<prefix>:attributed:...`): the same purchase posted as feedback and as an event counts once.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

import msgspec

from features.event_rules import CHANNEL_PATTERN, FEEDBACK_RULES, check_record
from features.realtime import RealtimeEvents, Rejected, StreamEvent
from features.schema import MAX_FUTURE_SECONDS
from omnirec.redis_access import Command, Reply

NONE_MARK = "_"  # in a recommendation id: no experiment, no placement
CHECK_CHUNK = 500
_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,23}\Z")
_CHANNEL = re.compile(CHANNEL_PATTERN)


@dataclass(frozen=True)
class RecommendationRef:
    """What a recommendation id says: which experiment, variant and placement answered, and on
    which channel the answer was shown."""

    experiment: str | None
    variant: str
    placement: str | None
    channel: str | None = None


def recommendation_id(
    request_id: str,
    experiment: str | None,
    variant: str,
    placement: str | None,
    index: int | None = None,
    channel: str | None = None,
) -> str:
    """`<request id>[-<index>].<experiment>.<variant>.<placement>[.<channel>]` (`_` for no
    experiment or placement; no fifth part when the caller named no channel)."""
    base = request_id if index is None else f"{request_id}-{index}"
    rid = f"{base}.{experiment or NONE_MARK}.{variant}.{placement or NONE_MARK}"
    return rid if channel is None else f"{rid}.{channel}"


def parse_recommendation_id(value: str) -> RecommendationRef | None:
    """The parts of a recommendation id this service gave, or None."""
    parts = value.split(".")
    if len(parts) not in (4, 5) or not re.fullmatch(r"[0-9a-z]+(-[0-9]+)?", parts[0]):
        return None
    _, experiment, variant, placement, *shown = parts
    channel = shown[0] if shown else NONE_MARK
    if not all(p == NONE_MARK or _NAME.match(p) for p in (experiment, placement)):
        return None
    if not _NAME.match(variant) or not (channel == NONE_MARK or _CHANNEL.match(channel)):
        return None

    def named(part: str) -> str | None:
        return None if part == NONE_MARK else part

    return RecommendationRef(named(experiment), variant, named(placement), named(channel))


class FeedbackEvent(msgspec.Struct, array_like=True, frozen=True):
    """One feedback record as stored in the stream (customer resolved, id parsed)."""

    feedback_type: str
    customer_id: str
    item_id: str
    timestamp: int  # epoch microseconds
    channel: str | None = None
    recommendation_id: str | None = None
    position: int | None = None  # 1 = first
    experiment: str | None = None
    variant: str | None = None
    placement: str | None = None
    price: float | None = None
    quantity: int = 1
    event_id: str | None = None
    alias_id: str | None = None


FEEDBACK_DECODER = msgspec.msgpack.Decoder(FeedbackEvent)


def check_feedback(
    raw: dict[str, object],
    index: int,
    now: float,
    max_future_seconds: float = MAX_FUTURE_SECONDS,
    placements: Collection[str] | None = None,
    types: Collection[str] | None = None,
) -> FeedbackEvent | Rejected:
    """One feedback record against the feedback rules (`features.event_rules`); returns it or
    why it is refused (the field at fault). With `placements` (the service's), a placement must
    be one of them; with `types`, so must its type (a public key's impressions and clicks)."""
    values, refusal = check_record(raw, FEEDBACK_RULES, now, max_future_seconds)
    if refusal is not None:
        return Rejected(index, refusal.field, refusal.message)
    if types is not None and values["type"] not in types:
        return Rejected(index, "type", f"this key may post {' and '.join(sorted(types))} only")
    named = values.get("placement")
    if placements is not None and named is not None and named not in placements:
        return Rejected(index, "placement", "not a placement of this service")
    rid = values.get("recommendation_id")
    ref = None
    if rid is not None:
        ref = parse_recommendation_id(str(rid))
        if ref is None:
            return Rejected(index, "recommendation_id", "not a recommendation id this service gave")

    def text(name: str) -> str | None:
        value = values.get(name)
        return None if value is None else str(value)

    price, position = values.get("price"), values.get("position")
    placement = text("placement")
    return FeedbackEvent(
        feedback_type=str(values["type"]),
        customer_id=str(values["customer_id"]),
        item_id=str(values["item_id"]),
        timestamp=int(float(values["timestamp"]) * 1_000_000),  # type: ignore[arg-type]
        channel=text("channel"),
        recommendation_id=text("recommendation_id"),
        position=None if position is None else int(position),  # type: ignore[call-overload]
        experiment=ref.experiment if ref else None,
        variant=ref.variant if ref else None,
        placement=placement or (ref.placement if ref else None),
        price=None if price is None else float(price),  # type: ignore[arg-type]
        quantity=int(values["quantity"]),  # type: ignore[call-overload]
        event_id=text("event_id"),
    )


@dataclass(frozen=True)
class FeedbackResult:
    accepted: int
    rejected: list[Rejected]
    duplicates: int
    stored: list[
        FeedbackEvent
    ]  # stored now (not duplicates), with the click they are attributed to
    attributed: list[FeedbackEvent]  # purchases whose click (or own id) names a recommendation


class FeedbackLog:
    """Stores feedback in the event streams, through `send` (the service's auto-pipeline)."""

    def __init__(
        self,
        realtime: RealtimeEvents,
        attribution_seconds: float,
        max_future_seconds: float = MAX_FUTURE_SECONDS,
    ) -> None:
        self.realtime = realtime
        self.window = max(1, int(attribution_seconds))
        self.max_future_seconds = max_future_seconds

    def click_key(self, customer_id: str, item_id: str) -> str:
        return self.realtime.store.keys.clicked(customer_id, item_id)

    async def first_attributions(
        self,
        send: Callable[[list[Command]], Awaitable[list[Reply]]],
        purchases: list[tuple[str, str, str]],
    ) -> list[bool]:
        """For each (customer, item, recommendation id) purchase: whether it is the first one
        attributed to that recommendation in the window (one marker each, SET NX): the same
        purchase posted as feedback and as an event, or retried, counts once."""
        if not purchases:
            return []
        keys = self.realtime.store.keys
        replies = await send(
            [
                (
                    "SET",
                    keys.attributed(customer, item, rid),
                    "1",
                    "NX",
                    "EX",
                    self.window,
                )
                for customer, item, rid in purchases
            ]
        )
        return [reply is not None and reply is not False for reply in replies]

    async def clicked(
        self, send: Callable[[list[Command]], Awaitable[list[Reply]]], purchases: list[StreamEvent]
    ) -> list[tuple[StreamEvent, RecommendationRef]]:
        """The purchases (posted as events) that follow a remembered click on the same item by
        the same customer and were not attributed to that click's recommendation before, each with
        the recommendation (one round trip, a second when a click is found)."""
        if not purchases:
            return []
        found = await send([("GET", self.click_key(p.customer_id, p.item_id)) for p in purchases])
        clicked: list[tuple[StreamEvent, str, RecommendationRef]] = []
        for purchase, rid in zip(purchases, found, strict=True):
            ref = parse_recommendation_id(rid.decode()) if isinstance(rid, bytes) else None
            if ref is not None and isinstance(rid, bytes):
                clicked.append((purchase, rid.decode(), ref))
        first = await self.first_attributions(
            send, [(p.customer_id, p.item_id, rid) for p, rid, _ in clicked]
        )
        return [(p, ref) for (p, _, ref), new in zip(clicked, first, strict=True) if new]

    async def store(
        self,
        send: Callable[[list[Command]], Awaitable[list[Reply]]],
        raw: list[dict[str, object]],
        placements: Collection[str] | None = None,
        types: Collection[str] | None = None,
    ) -> FeedbackResult:
        """Validate, resolve aliases, store; returns once Redis confirmed the streams' writes.
        With `placements`, a record naming another placement is refused; with `types`, a record
        of another type."""
        now = time.time()
        checked: list[FeedbackEvent | Rejected] = []
        for start in range(0, len(raw), CHECK_CHUNK):
            checked += [
                check_feedback(r, start + k, now, self.max_future_seconds, placements, types)
                for k, r in enumerate(raw[start : start + CHECK_CHUNK])
            ]
            await asyncio.sleep(0)
        events = [c for c in checked if isinstance(c, FeedbackEvent)]
        rejected = [c for c in checked if isinstance(c, Rejected)]
        if not events:
            return FeedbackResult(0, rejected, 0, [], [])
        rt = self.realtime
        events = rt.admitted(events, await send(rt.alias_reads(events)))
        # a purchase that does not quote a recommendation: the click it follows, if any
        unquoted = [
            k
            for k, e in enumerate(events)
            if e.feedback_type == "purchase" and e.recommendation_id is None
        ]
        if unquoted:
            found = await send(
                [
                    ("GET", self.click_key(events[k].customer_id, events[k].item_id))
                    for k in unquoted
                ]
            )
            for k, rid in zip(unquoted, found, strict=True):
                ref = parse_recommendation_id(rid.decode()) if isinstance(rid, bytes) else None
                if ref is not None and isinstance(rid, bytes):
                    events[k] = msgspec.structs.replace(
                        events[k],
                        recommendation_id=rid.decode(),
                        experiment=ref.experiment,
                        variant=ref.variant,
                        placement=events[k].placement or ref.placement,
                    )
        _, fresh = rt.stored(events, await send(rt.stream_writes(events, "f")))
        clicks: list[Command] = [
            (
                "SET",
                self.click_key(e.customer_id, e.item_id),
                e.recommendation_id,
                "EX",
                self.window,
            )
            for e in fresh
            if e.feedback_type == "click" and e.recommendation_id
        ]
        if clicks:
            await send(clicks)
        quoting = [e for e in fresh if e.feedback_type == "purchase" and e.recommendation_id]
        first = await self.first_attributions(
            send, [(e.customer_id, e.item_id, e.recommendation_id or "") for e in quoting]
        )
        attributed = [e for e, new in zip(quoting, first, strict=True) if new]
        return FeedbackResult(len(events), rejected, len(events) - len(fresh), fresh, attributed)
