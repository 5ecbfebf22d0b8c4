"""Model selection's validation part: a time split that holds too few customers to decide gives
way to each customer's own last basket, and the run says so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from features.validation import validate_events
from omnirec.settings import Settings
from training.selection import MIN_VALIDATION_CUSTOMERS, Selection, select_model


def staggered_events(customers: int = 300, stagger: int = 3) -> pa.Table:
    """Customers whose timelines do not line up: customer i shops on days `stagger` x i .. + 30
    only, a basket every 3 days from a few staple items of their own, so the last week holds few
    of them (`stagger` 0: everyone shops all month)."""
    rng = np.random.default_rng(3)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    rows: dict[str, list[object]] = {
        "customer_id": [],
        "item_id": [],
        "event_type": [],
        "channel": [],
        "timestamp": [],
        "session_id": [],
    }
    for c in range(customers):
        staples = rng.choice(40, size=4, replace=False)
        for basket in range(10):
            day = stagger * c + 3 * basket
            for item in staples[rng.random(4) < 0.7]:
                rows["customer_id"].append(f"C{c:05d}")
                rows["item_id"].append(f"I{item:03d}")
                rows["event_type"].append("purchase")
                rows["channel"].append("store")
                rows["timestamp"].append(start + timedelta(days=day, hours=10))
                rows["session_id"].append(f"B{c}-{basket}")
    return validate_events(pa.table(rows)).accepted


def selected(events: pa.Table, settings: Settings, said: list[str]) -> Selection:
    """Selection on a time split of the last week, with a short budget: what these tests look
    at is the validation part, not the search."""
    return select_model(
        events,
        settings,
        protocol="time",
        test_days=7.0,
        relevant=("purchase",),
        exclude_seen=None,
        budget_seconds=4,
        say=said.append,
    )


def test_too_few_validation_customers_fall_back_to_each_ones_last_basket(
    settings: Settings,
) -> None:
    said: list[str] = []
    selection = selected(staggered_events(), settings, said)
    assert selection.validation == "each customer's last basket held out"
    assert selection.validation_customers >= MIN_VALIDATION_CUSTOMERS
    assert any("validating on each customer's last basket held out instead" in s for s in said)
    assert selection.best.score is not None and selection.best.score > 0


def test_a_time_split_that_holds_enough_is_kept(settings: Settings) -> None:
    selection = selected(staggered_events(stagger=0), settings, [])
    assert selection.validation.startswith("time split at")
    assert selection.validation_customers >= MIN_VALIDATION_CUSTOMERS


class Metrics:
    """The registry's one question the gate asks (an owned fake at the seam)."""

    def __init__(self, values: dict[tuple[int, str], float]) -> None:
        self.values = values

    def metric(self, version: int, name: str) -> float | None:
        return self.values.get((version, name))


def test_the_gate_does_not_decide_within_the_noise_of_the_tests() -> None:
    from training.gate import champion_gate

    def gate(new: float, stderr: float) -> tuple[bool, str]:
        values = {
            (1, "ndcg_at_10"): 0.200,
            (1, "ndcg_stderr_at_10"): stderr,
            (2, "ndcg_at_10"): new,
            (2, "ndcg_stderr_at_10"): stderr,
        }
        return champion_gate(Metrics(values), 2, 1, "ndcg_at_10")  # type: ignore[arg-type]

    promoted, why = gate(0.205, 0.01)  # ahead by 0.005, two standard errors: 0.028
    assert not promoted and "within the noise" in why and "omnirec promote 2" in why
    assert gate(0.260, 0.01)[0]  # ahead by 0.06: promoted
    assert not gate(0.190, 0.001)[0]  # behind: kept
