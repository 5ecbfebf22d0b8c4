"""A simulated A/B experiment whose true effect is known, on the synthetic customers' latent tastes
(features.generator.latent_tastes): customers see ten-item lists from a control (popular items,
blind to taste) and a treatment (popular items drawn leaning, by `tailoring`, towards the
customer's tastes); each shown item is clicked with a probability that grows with the customer's
latent interest in its category and falls with its position; a click turns into a purchase with a
fixed probability within hours.

The expected click-through rate of every list is computed from those probabilities, so the true
lift of the treatment over the control is known exactly (for the lists shown), and a report
(training.experiment_report) can be checked against it. Records come out in the schema of the
exported feedback (features.export.FEEDBACK_SCHEMA).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from features.generator import LatentTastes

TIMESTAMP = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class SimulatedExperiment:
    feedback: pa.Table
    expected_ctr: dict[str, float]  # mean click probability of the lists each variant showed
    true_lift: float  # treatment / control - 1 of those expected rates
    impressions: dict[str, int]


def simulate_experiment(
    tastes: LatentTastes,
    *,
    experiment: str = "simulated",
    variants: tuple[str, str] = ("control", "tailored"),
    customers: int | None = None,
    lists_per_customer: int = 3,
    list_length: int = 10,
    tailoring: float = 0.15,
    base_click: float = 0.012,
    purchase_share: float = 0.3,
    seed: int = 7,
    start: datetime = datetime(2026, 11, 1, tzinfo=UTC),
) -> SimulatedExperiment:
    """Simulate the experiment on the first `customers` customers (all by default), half of
    them (at random) in each variant. `tailoring` (0-1): how far the treatment's draw leans on
    the customer's tastes (0: the control's)."""
    rng = np.random.default_rng(seed)
    taste = tastes.taste[:customers]
    category_of = tastes.item_category
    n_customers, n_cat = taste.shape
    n_items = len(tastes.item_ids)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity = popularity[rng.permutation(n_items)]
    treated: npt.NDArray[np.bool_] = np.asarray(rng.random(n_customers) < 0.5)
    who = np.repeat(np.arange(n_customers), lists_per_customer)
    lists = np.empty((len(who), list_length), dtype=np.int64)
    for k, customer in enumerate(who.tolist()):  # one small draw per list (tens of thousands)
        lean = taste[customer][category_of] * n_cat if treated[customer] else 1.0
        weights = popularity * (1.0 - tailoring + tailoring * lean)
        lists[k] = rng.choice(n_items, list_length, replace=False, p=weights / weights.sum())
    affinity = taste[who[:, None], category_of[lists]] * n_cat  # 1 = an average interest
    position = 1.0 / (1.0 + 0.15 * np.arange(list_length))
    p_click = np.minimum(0.9, base_click * (0.25 + affinity) * position)
    p_list = 1.0 - np.prod(1.0 - p_click, axis=1)
    list_treated = treated[who]
    expected = {
        variants[0]: float(p_list[~list_treated].mean()),
        variants[1]: float(p_list[list_treated].mean()),
    }
    clicked = rng.random(p_click.shape) < p_click
    shown_at = np.datetime64(start.replace(tzinfo=None), "us").astype(np.int64) + rng.integers(
        0, 14 * 86_400_000_000, len(who)
    )
    table = _records(
        tastes,
        experiment,
        variants,
        who,
        lists,
        list_treated,
        clicked,
        shown_at,
        purchase_share,
        rng,
    )
    counts = {variants[0]: int((~list_treated).sum()), variants[1]: int(list_treated.sum())}
    return SimulatedExperiment(
        table, expected, expected[variants[1]] / expected[variants[0]] - 1, counts
    )


def _records(
    tastes: LatentTastes,
    experiment: str,
    variants: tuple[str, str],
    who: npt.NDArray[np.int64],
    lists: npt.NDArray[np.int64],
    treated: npt.NDArray[np.bool_],
    clicked: npt.NDArray[np.bool_],
    shown_at: npt.NDArray[np.int64],
    purchase_share: float,
    rng: np.random.Generator,
) -> pa.Table:
    n_lists, length = lists.shape
    rid = np.array(
        [f"{k:032x}.{experiment}.{variants[int(t)]}.home" for k, t in enumerate(treated.tolist())],
        dtype=object,
    )
    variant = np.where(treated, variants[1], variants[0]).astype(object)
    customer = np.asarray(tastes.customer_ids, dtype=object)[who]
    ids = np.asarray(tastes.item_ids, dtype=object)
    row = np.repeat(np.arange(n_lists), length)
    items = lists.ravel()
    positions = np.tile(np.arange(1, length + 1), n_lists)
    at = shown_at[row]
    click_rows = np.flatnonzero(clicked.ravel())
    click_at = at[click_rows] + rng.integers(1_000_000, 120_000_000, len(click_rows))
    bought = click_rows[rng.random(len(click_rows)) < purchase_share]
    bought_at = at[bought] + rng.integers(600_000_000, 12 * 3_600_000_000, len(bought))
    kinds = ["impression"] * len(row) + ["click"] * len(click_rows) + ["purchase"] * len(bought)
    take = np.concatenate([np.arange(len(row)), click_rows, bought])
    quoted = np.concatenate(
        [rid[row], rid[row[click_rows]], np.full(len(bought), None, dtype=object)]
    )
    return pa.table(
        {
            "feedback_type": pa.array(kinds, pa.string()),
            "customer_id": pa.array(customer[row[take]], pa.string()),
            "item_id": pa.array(ids[items[take]], pa.string()),
            "timestamp": pa.array(np.concatenate([at, click_at, bought_at]), pa.int64()).cast(
                TIMESTAMP
            ),
            "channel": pa.array(["web"] * len(take), pa.string()),
            "recommendation_id": pa.array(quoted, pa.string()),
            "position": pa.array(
                np.concatenate([positions, positions[click_rows], np.zeros(len(bought), int)]),
                pa.int32(),
            ),
            "experiment": pa.array([experiment] * len(take), pa.string()),
            "variant": pa.array(
                np.concatenate(
                    [
                        variant[row],
                        variant[row[click_rows]],
                        np.full(len(bought), None, dtype=object),
                    ]
                ),
                pa.string(),
            ),
            "placement": pa.array(["home"] * len(take), pa.string()),
            "price": pa.array(tastes.prices[items[take]], pa.float64()),
            "quantity": pa.array(np.ones(len(take), np.int32), pa.int32()),
            "event_id": pa.nulls(len(take), pa.string()),
        }
    )
