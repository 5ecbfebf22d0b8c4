"""What an event (and a feedback record) must be, written once: a table of rules that every door
reads. The doors: the Arrow validator of event files (`features.validation`), Spark SQL
(`features.spark_events`), the service's check of each posted event (`features.realtime`) and of
each feedback record (`features.feedback`).

Each rule names its field, what it checks and the message a refused row gets; a row is refused
for the first rule it fails, in the table's order, with the reason "field: message". A door
evaluates each kind of check with its own engine (Arrow compute, Spark columns, plain Python),
and `tests/features/test_event_rules.py` feeds the same bad rows to every door and asserts the
same verdict and message.

Input types differ by door, not the rules: a file's column is text (CSV) or typed (Parquet), so a
number may come as text there; a posted event is JSON, where a number must be a JSON number.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import cast

from features.schema import END_OF_TEXT, EVENT_TYPES, ID_PATTERN

CHANNEL_PATTERN = r"^[a-z][a-z0-9_\-]{0,31}\Z"  # a channel: a lowercase name
NAME_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,23}\Z"  # a placement's name
FEEDBACK_TYPES: tuple[str, ...] = ("impression", "click", "add_to_cart", "purchase")
MAX_QUANTITY = 1_000_000
MAX_TEXT = 128
MAX_PRICE = 1_000_000_000.0  # a price above this is a typo or an attack (revenue stays finite)
EPOCH_MILLIS_ABOVE = 1e11  # an epoch number above this is milliseconds (1e11 s is year 5138)

EVENT_TYPE_SYNONYMS: dict[str, str] = {
    "pv": "view",
    "page_view": "view",
    "detail": "view",
    "cart": "add_to_cart",
    "addtocart": "add_to_cart",
    "add-to-cart": "add_to_cart",
    "fav": "favorite",
    "favourite": "favorite",
    "wishlist": "favorite",
    "buy": "purchase",
    "transaction": "purchase",
    "order": "purchase",
    "refund": "return",
    "remove": "remove_from_cart",
    "removefromcart": "remove_from_cart",
    "remove-from-cart": "remove_from_cart",
}


class Check(Enum):
    """What a rule checks of its field's value (text trimmed; tokens also lowercased)."""

    REQUIRED = "required"  # present and not empty
    PATTERN = "pattern"  # when present: matches `pattern`
    ONE_OF = "one_of"  # when present: one of `values` (after the synonyms)
    TIME = "time"  # when present: a timestamp (ISO 8601, or epoch seconds or milliseconds)
    NOT_FUTURE = "not_future"  # at most the allowed seconds after now
    AFTER_1970 = "after_1970"
    NUMBER = "number"  # when present: a number (a JSON number; in a file, text that parses)
    WHOLE = "whole"  # a whole number from `low` to `high` (absent: the field's default)
    NON_NEGATIVE = "non_negative"  # at least 0 and finite
    AT_MOST = "at_most"  # at most `high` (every number stays finite when it is summed)
    MAX_LENGTH = "max_length"  # at most `high` characters


@dataclass(frozen=True)
class Rule:
    field: str
    check: Check
    message: str  # may name {max_future_seconds}
    pattern: str = ""  # Python's re, anchored with ^ and \Z
    values: tuple[str, ...] = ()
    low: float = 0
    high: float = 0

    def reason(self, max_future_seconds: float) -> str:
        """The message with the allowed future filled in (as the refused row gets it)."""
        return self.message.format(max_future_seconds=max_future_seconds)

    def full_reason(self, max_future_seconds: float) -> str:
        """ "field: message", as a rejects file and a validation summary name it."""
        return f"{self.field}: {self.reason(max_future_seconds)}"

    @property
    def _body(self) -> str:
        """`pattern` without its end-of-text anchor (`\\Z`, or `(?!\\n)$`)."""
        return self.pattern.removesuffix(r"\Z").removesuffix(END_OF_TEXT)

    @property
    def pattern_re2(self) -> str:
        """`pattern` for RE2 (pyarrow): its `$` is the end of the text."""
        return self._body + "$"

    @property
    def pattern_java(self) -> str:
        """`pattern` for Java's regex (Spark): `\\z` is the end of the text."""
        return self._body + r"\z"

    @property
    def compiled(self) -> re.Pattern[str]:
        return _compiled(self.pattern)


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


ID_MESSAGE = "invalid characters or longer than 128"
FUTURE_MESSAGE = "more than {max_future_seconds:,.0f} s in the future"


def _id(field: str, required: bool) -> tuple[Rule, ...]:
    pattern = Rule(field, Check.PATTERN, ID_MESSAGE, pattern=ID_PATTERN)
    return (Rule(field, Check.REQUIRED, "missing"), pattern) if required else (pattern,)


TIMESTAMP_RULES = (
    Rule("timestamp", Check.TIME, "unparsable"),
    Rule("timestamp", Check.NOT_FUTURE, FUTURE_MESSAGE),
    Rule("timestamp", Check.AFTER_1970, "before 1970"),
)
QUANTITY_RULES = (
    Rule("quantity", Check.NUMBER, "not a number"),
    Rule(
        "quantity",
        Check.WHOLE,
        "must be a positive whole number",
        low=1,
        high=MAX_QUANTITY,
    ),
)
PRICE_RULES = (
    Rule("price", Check.NUMBER, "not a number"),
    Rule("price", Check.NON_NEGATIVE, "negative or infinite"),
    Rule("price", Check.AT_MOST, "more than 1,000,000,000", high=MAX_PRICE),
)

EVENT_RULES: tuple[Rule, ...] = (
    *_id("customer_id", required=True),
    *_id("item_id", required=True),
    Rule("event_type", Check.REQUIRED, "missing"),
    Rule("event_type", Check.ONE_OF, f"not one of {', '.join(EVENT_TYPES)}", values=EVENT_TYPES),
    Rule("channel", Check.REQUIRED, "missing"),
    Rule("channel", Check.PATTERN, "not a lowercase name", pattern=CHANNEL_PATTERN),
    *TIMESTAMP_RULES,
    *QUANTITY_RULES,
    *PRICE_RULES,
    *_id("store_id", required=False),
    Rule("session_id", Check.MAX_LENGTH, "longer than 128", high=MAX_TEXT),
    *_id("event_id", required=False),
)

FEEDBACK_RULES: tuple[Rule, ...] = (
    Rule("type", Check.REQUIRED, "missing"),
    Rule("type", Check.ONE_OF, f"not one of {', '.join(FEEDBACK_TYPES)}", values=FEEDBACK_TYPES),
    *_id("customer_id", required=True),
    *_id("item_id", required=True),
    Rule("recommendation_id", Check.MAX_LENGTH, "longer than 128", high=MAX_TEXT),
    Rule("position", Check.NUMBER, "not a number"),
    Rule("position", Check.WHOLE, "must be a whole number from 1 to 1000", low=1, high=1000),
    Rule("channel", Check.PATTERN, "not a lowercase name", pattern=CHANNEL_PATTERN),
    Rule("placement", Check.PATTERN, "not a placement name", pattern=NAME_PATTERN),
    *TIMESTAMP_RULES,
    *PRICE_RULES,
    *QUANTITY_RULES,
    *_id("event_id", required=False),
)

TOKENS = frozenset({"event_type", "channel", "type"})  # lowercased before they are checked
DEFAULTS: dict[str, object] = {"quantity": 1}  # what an absent field counts as


def token(value: str | None, field: str) -> str | None:
    """A token field's value as the rules see it: lowercased; an event type's synonym mapped."""
    if value is None:
        return None
    lowered = value.lower()
    return EVENT_TYPE_SYNONYMS.get(lowered, lowered) if field == "event_type" else lowered


def epoch_seconds(number: float) -> float:
    """An epoch number as seconds: above EPOCH_MILLIS_ABOVE it is milliseconds."""
    return number / 1000 if abs(number) > EPOCH_MILLIS_ABOVE else number


def event_time(stamp: object, now: float) -> float:
    """Epoch seconds of a timestamp as callers send it: None (now), an epoch number (seconds or
    milliseconds), or ISO 8601 (UTC when it has no offset); ValueError when it cannot be read."""
    if stamp is None:
        return now
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        return datetime.fromtimestamp(epoch_seconds(float(stamp)), UTC).timestamp()
    text = str(stamp).strip()
    when = datetime.fromisoformat(text.replace("Z", "+00:00").removesuffix(" UTC"))
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def text_field(raw: dict[str, object], name: str) -> str | None:
    """A field as text, stripped; None when absent or empty."""
    value = raw.get(name)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


@dataclass(frozen=True)
class Refusal:
    """Why one record was refused: the first rule it fails."""

    field: str
    message: str


def check_record(
    raw: dict[str, object],
    rules: tuple[Rule, ...],
    now: float,
    max_future_seconds: float,
) -> tuple[dict[str, object], Refusal | None]:
    """One posted record (JSON) against `rules`, in order: (its values as the rules read them,
    the first refusal or None). Values: text trimmed, tokens lowercased, the timestamp in epoch
    seconds (now when absent), numbers as sent, absent fields at their defaults."""
    values: dict[str, object] = {}
    at: float | None = None
    for rule in rules:
        name = rule.field
        if name not in values:
            values[name] = _value(raw, name)
        value = values[name]
        check = rule.check
        wrong = False
        if check is Check.REQUIRED:
            wrong = value is None
        elif value is None:
            wrong = False
        elif check is Check.PATTERN:
            wrong = not rule.compiled.match(str(value))
        elif check is Check.ONE_OF:
            wrong = value not in rule.values
        elif check is Check.TIME:
            try:
                at = event_time(raw.get(name), now)
            except (ValueError, OverflowError, OSError):
                wrong = True
        elif check is Check.NOT_FUTURE:
            wrong = at is not None and at > now + max_future_seconds
        elif check is Check.AFTER_1970:
            wrong = at is not None and at < 0
        elif check is Check.NUMBER:
            wrong = not _is_number(value)
        elif check is Check.WHOLE:
            wrong = not (_is_whole(value) and rule.low <= float(value) <= rule.high)  # type: ignore[arg-type]
        elif check is Check.NON_NEGATIVE:
            number = float(value)  # type: ignore[arg-type]
            wrong = not (number >= 0 and number != float("inf"))
        elif check is Check.AT_MOST:
            wrong = float(value) > rule.high  # type: ignore[arg-type]
        elif check is Check.MAX_LENGTH:
            wrong = len(str(value)) > rule.high
        if wrong:
            return values, Refusal(name, rule.reason(max_future_seconds))
        if check is Check.TIME:
            values[name] = now if at is None else at
    return values, None


def _value(raw: dict[str, object], name: str) -> object:
    value = raw.get(name)
    if value is None:
        return DEFAULTS.get(name)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return DEFAULTS.get(name)
        return token(text, name) if name in TOKENS else text
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_whole(value: object) -> bool:
    if not _is_number(value):
        return False
    number = float(cast(float, value))
    return math.isfinite(number) and number.is_integer()
