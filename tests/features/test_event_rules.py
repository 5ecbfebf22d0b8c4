"""One table of event rules, every door: the same bad rows get the same verdict and message from
the Arrow validator of files, the service's check of a posted event and of a feedback record
(and from Spark SQL: `tests/training/test_spark_engine.py` feeds it this corpus too)."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest

from features.event_rules import EVENT_RULES, FEEDBACK_RULES
from features.feedback import FeedbackEvent, check_feedback
from features.realtime import Rejected, StreamEvent, check_event
from features.schema import EVENT_TYPES
from features.validation import validate_events

NOW = time.time()
FUTURE = 86_400.0
VALID = {
    "customer_id": "C1",
    "item_id": "I1",
    "event_type": "view",
    "channel": "web",
    "timestamp": "2026-11-01T10:00:00Z",
    "quantity": 2,
    "price": 3.5,
    "store_id": "S1",
    "session_id": "s-1",
    "event_id": "e-1",
}
ID_BAD = "invalid characters or longer than 128"
SHARED_WITH_FEEDBACK = {"customer_id", "item_id", "timestamp", "quantity", "price", "event_id"}

# (what is wrong, the fields changed, the expected verdict: "field: message" or None)
CORPUS: list[tuple[str, dict[str, object], str | None]] = [
    ("nothing", {}, None),
    ("no customer", {"customer_id": None}, "customer_id: missing"),
    ("a blank customer", {"customer_id": "   "}, "customer_id: missing"),
    ("markup as a customer", {"customer_id": "<b>"}, f"customer_id: {ID_BAD}"),
    ("a customer id too long", {"customer_id": "c" * 129}, f"customer_id: {ID_BAD}"),
    ("an item id with a space", {"item_id": "a b"}, f"item_id: {ID_BAD}"),
    ("no event type", {"event_type": None}, "event_type: missing"),
    (
        "an unknown event type",
        {"event_type": "teleport"},
        f"event_type: not one of {', '.join(EVENT_TYPES)}",
    ),
    ("an event type's synonym", {"event_type": "PV"}, None),
    ("no channel", {"channel": None}, "channel: missing"),
    ("a channel with a space", {"channel": "Web Shop"}, "channel: not a lowercase name"),
    ("a channel in capitals", {"channel": "WEB"}, None),
    ("an unreadable time", {"timestamp": "yesterday"}, "timestamp: unparsable"),
    (
        "a time in 2100",
        {"timestamp": "2100-01-01T00:00:00Z"},
        "timestamp: more than 86,400 s in the future",
    ),
    ("a time before 1970", {"timestamp": "1960-01-01T00:00:00Z"}, "timestamp: before 1970"),
    ("epoch milliseconds", {"timestamp": 1_785_000_000_000}, None),
    ("no units", {"quantity": 0}, "quantity: must be a positive whole number"),
    ("half a unit", {"quantity": 2.5}, "quantity: must be a positive whole number"),
    ("too many units", {"quantity": 2_000_000}, "quantity: must be a positive whole number"),
    ("units in words", {"quantity": "two"}, "quantity: not a number"),
    ("a negative price", {"price": -1}, "price: negative or infinite"),
    ("a price in words", {"price": "cheap"}, "price: not a number"),
    ("a price of 1e308", {"price": 1e308}, "price: more than 1,000,000,000"),
    ("a store id with a space", {"store_id": "S 1"}, f"store_id: {ID_BAD}"),
    ("a long session", {"session_id": "s" * 129}, "session_id: longer than 128"),
    ("an event id with a space", {"event_id": "e 1"}, f"event_id: {ID_BAD}"),
    (
        "two faults: the first rule names it",
        {"customer_id": "<b>", "event_type": "teleport"},
        f"customer_id: {ID_BAD}",
    ),
]
ROWS = [{**VALID, **changes} for _, changes, _ in CORPUS]
EXPECTED = [verdict for _, _, verdict in CORPUS]


def as_file(rows: list[dict[str, object]]) -> pa.Table:
    """The rows as a CSV file holds them: every value text, absent values empty."""
    return pa.table(
        {
            name: pa.array([None if r[name] is None else str(r[name]) for r in rows], pa.string())
            for name in VALID
        }
    )


def file_verdicts(rows: list[dict[str, object]]) -> list[str | None]:
    report = validate_events(as_file(rows), "corpus", FUTURE)
    found: list[str | None] = [None] * len(rows)
    for row, reason in zip(
        report.rejects.column("row").to_pylist(),
        report.rejects.column("reason").to_pylist(),
        strict=True,
    ):
        found[row - 1] = reason
    return found


def verdict(checked: StreamEvent | FeedbackEvent | Rejected) -> str | None:
    return f"{checked.field}: {checked.message}" if isinstance(checked, Rejected) else None


def test_the_file_door_gives_each_row_its_verdict() -> None:
    assert file_verdicts(ROWS) == EXPECTED


def test_a_posted_event_gets_the_same_verdict_and_message() -> None:
    posted = [verdict(check_event(row, k, FUTURE, NOW)) for k, row in enumerate(ROWS)]
    assert posted == EXPECTED
    assert posted == file_verdicts(ROWS)


@pytest.mark.parametrize(
    ("what", "changes", "expected"),
    [case for case in CORPUS if set(case[1]) <= SHARED_WITH_FEEDBACK],
    ids=[case[0] for case in CORPUS if set(case[1]) <= SHARED_WITH_FEEDBACK],
)
def test_a_feedback_record_gets_the_same_verdict_on_the_fields_it_shares(
    what: str, changes: dict[str, object], expected: str | None
) -> None:
    record = {
        "type": "click",
        **{k: v for k, v in {**VALID, **changes}.items() if k != "event_type"},
    }
    assert verdict(check_feedback(record, 0, NOW, FUTURE)) == expected


def test_the_tables_share_their_rules_for_the_fields_they_share() -> None:
    events = {(r.field, r.check, r.message) for r in EVENT_RULES}
    for rule in FEEDBACK_RULES:
        if rule.field in SHARED_WITH_FEEDBACK:
            assert (rule.field, rule.check, rule.message) in events


def test_a_posted_number_must_be_a_json_number() -> None:
    """Where JSON carries types, a number sent as text is refused (a file's text is parsed)."""
    posted = check_event({**VALID, "quantity": "3"}, 0, FUTURE, NOW)
    assert verdict(posted) == "quantity: not a number"
    assert file_verdicts([{**VALID, "quantity": "3"}]) == [None]


def test_an_accepted_event_is_canonical() -> None:
    event = check_event({**VALID, "event_type": " PV ", "channel": "WEB"}, 0, FUTURE, NOW)
    assert isinstance(event, StreamEvent)
    assert (event.event_type, event.channel, event.quantity, event.price) == ("view", "web", 2, 3.5)
    assert event.timestamp == 1_793_527_200_000_000
