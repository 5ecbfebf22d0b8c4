"""Simulated customers who are shown recommendations on one channel and buy on another, with a
known truth: each item an answer shows is bought on each channel with a fixed probability (an
e-mail's suggestion bought at the till with the loyalty card, without a click; a web widget's
item clicked and bought on the web), and customers also buy items nobody showed them.

The records come out as the service exports them: feedback (impressions and clicks quoting their
recommendation id, which names the channel shown on; web purchases also posted as feedback), the
event log (till purchases under the loyalty card, web purchases again), and the identity map that
joins the card to the customer. `training.attribution_report` must recover the shares within its
intervals, and the exact number of purchases each channel caused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from features.identity import IdentityMap
from features.schema import TIMESTAMP

HOUR_US = 3_600_000_000
# (shown on, bought on) -> share of the items shown there that are bought there, and whether the
# purchase follows a click (click-through) or not (view-through: seen, then bought elsewhere)
DEFAULT_SHARES: dict[tuple[str, str], tuple[float, bool]] = {
    ("email", "store"): (0.03, False),
    ("email", "web"): (0.01, True),
    ("web", "web"): (0.02, True),
    ("web", "store"): (0.008, False),
}


@dataclass(frozen=True)
class SimulatedChannels:
    feedback: pa.Table  # features.export.FEEDBACK_SCHEMA's columns
    events: pa.Table  # purchases, in the event log's columns
    identities: IdentityMap
    shares: dict[tuple[str, str], float]  # the true share of items shown bought on each channel
    caused: dict[tuple[str, str], int]  # purchases each (shown on, bought on) pair caused here


def simulate_channels(
    *,
    customers: int = 3_000,
    items: int = 600,
    list_length: int = 8,
    shares: dict[tuple[str, str], tuple[float, bool]] | None = None,
    organic_per_customer: int = 2,
    seed: int = 11,
    start: datetime = datetime(2026, 11, 1, tzinfo=UTC),
) -> SimulatedChannels:
    """Each customer gets one answer per channel that shows something (e-mail, web), of distinct
    items, at random times over two weeks; each shown item is bought on each channel with its
    share, within two days (view-through) or twelve hours of a click (click-through)."""
    shares = DEFAULT_SHARES if shares is None else shares
    rng = np.random.default_rng(seed)
    shown_on = sorted({s for s, _ in shares})
    customer_ids = np.array([f"C{k:06d}" for k in range(customers)], dtype=object)
    cards = np.array([f"CARD{k:08d}" for k in range(customers)], dtype=object)
    item_ids = np.array([f"I{k:05d}" for k in range(items)], dtype=object)
    prices = np.round(rng.uniform(2, 60, items), 2)
    t0 = np.datetime64(start.replace(tzinfo=None), "us").astype(np.int64)

    # distinct items per customer across channels (an item shown twice would be one purchase)
    picks = np.argsort(rng.random((customers, items)), axis=1)[:, : list_length * len(shown_on)]
    rows: dict[str, list[npt.NDArray[np.generic]]] = {
        k: [] for k in ("type", "customer", "item", "at", "channel", "rid", "variant", "position")
    }
    purchases: dict[str, list[npt.NDArray[np.generic]]] = {
        k: [] for k in ("customer", "item", "at", "channel")
    }
    caused: dict[tuple[str, str], int] = {}

    def add(table: dict[str, list[npt.NDArray[np.generic]]], **columns: object) -> None:
        for name, values in columns.items():
            table[name].append(np.asarray(values))

    for c, channel in enumerate(shown_on):
        who = np.arange(customers)
        listed = picks[:, c * list_length : (c + 1) * list_length]
        shown_at = t0 + rng.integers(0, 14 * 24 * HOUR_US, customers)
        variant = np.where(rng.random(customers) < 0.5, "control", "tailored").astype(object)
        rid = np.array(
            [
                f"{k:08x}{c:02x}.launch.{v}.home.{channel}"
                for k, v in zip(range(customers), variant.tolist(), strict=True)
            ],
            dtype=object,
        )
        row = np.repeat(who, list_length)
        n = len(row)
        add(
            rows,
            type=np.full(n, "impression", object),
            customer=customer_ids[row],
            item=item_ids[listed.ravel()],
            at=shown_at[row] + rng.integers(0, 60_000_000, n),
            channel=np.full(n, channel, object),
            rid=rid[row],
            variant=variant[row],
            position=np.tile(np.arange(1, list_length + 1), customers),
        )
        draw = rng.random(n)  # one draw per shown item: bought on at most one channel
        floor = 0.0
        for (src, bought_on), (share, via_click) in shares.items():
            if src != channel:
                continue
            hit = np.flatnonzero((draw >= floor) & (draw < floor + share))
            floor += share
            caused[(src, bought_on)] = len(hit)
            seen = shown_at[row[hit]] + 60_000_000
            if via_click:
                click_at = seen + rng.integers(1_000_000, HOUR_US, len(hit))
                add(
                    rows,
                    type=np.full(len(hit), "click", object),
                    customer=customer_ids[row[hit]],
                    item=item_ids[listed.ravel()[hit]],
                    at=click_at,
                    channel=np.full(len(hit), channel, object),
                    rid=rid[row[hit]],
                    variant=variant[row[hit]],
                    position=(hit % list_length) + 1,
                )
                bought_at = click_at + rng.integers(HOUR_US // 6, 12 * HOUR_US, len(hit))
            else:
                bought_at = seen + rng.integers(HOUR_US, 48 * HOUR_US, len(hit))
            add(
                purchases,
                customer=row[hit],
                item=listed.ravel()[hit],
                at=bought_at,
                channel=np.full(len(hit), bought_on, object),
            )
    # purchases nobody suggested: items outside the customer's answers, any time, any channel
    who = np.repeat(np.arange(customers), organic_per_customer)
    free = np.argsort(picks_mask(picks, items), axis=1, kind="stable")  # unshown items first
    unshown = rng.integers(0, items - picks.shape[1], len(who))
    add(
        purchases,
        customer=who,
        item=free[who, unshown],
        at=t0 + rng.integers(0, 16 * 24 * HOUR_US, len(who)),
        channel=rng.choice(np.array(["store", "web"], dtype=object), len(who)),
    )
    return _tables(rows, purchases, customer_ids, cards, item_ids, prices, shares, caused)


def picks_mask(picks: npt.NDArray[np.int64], items: int) -> npt.NDArray[np.int8]:
    """1 where a customer was shown the item, else 0."""
    mask = np.zeros((picks.shape[0], items), dtype=np.int8)
    np.put_along_axis(mask, picks, 1, axis=1)
    return mask


def _tables(
    rows: dict[str, list[npt.NDArray[np.generic]]],
    purchases: dict[str, list[npt.NDArray[np.generic]]],
    customer_ids: npt.NDArray[np.object_],
    cards: npt.NDArray[np.object_],
    item_ids: npt.NDArray[np.object_],
    prices: npt.NDArray[np.float64],
    shares: dict[tuple[str, str], tuple[float, bool]],
    caused: dict[tuple[str, str], int],
) -> SimulatedChannels:
    shown = {k: np.concatenate(v) for k, v in rows.items()}
    bought = {k: np.concatenate(v) for k, v in purchases.items()}
    item_code = {str(i): k for k, i in enumerate(item_ids.tolist())}
    shown_price = prices[np.array([item_code[str(i)] for i in shown["item"].tolist()], dtype=int)]
    web = bought["channel"] == "web"
    n_shown, n_web = len(shown["type"]), int(web.sum())
    # web purchases are posted as feedback (no id: the click before them names the answer) and
    # land in the event log too; till purchases only in the event log, under the loyalty card
    feedback = pa.table(
        {
            "feedback_type": pa.array(
                np.concatenate([shown["type"], np.full(n_web, "purchase", object)]), pa.string()
            ),
            "customer_id": pa.array(
                np.concatenate([shown["customer"], customer_ids[bought["customer"][web]]]),
                pa.string(),
            ),
            "item_id": pa.array(
                np.concatenate([shown["item"], item_ids[bought["item"][web]]]), pa.string()
            ),
            "timestamp": pa.array(
                np.concatenate([shown["at"], bought["at"][web]]).astype(np.int64), pa.int64()
            ).cast(TIMESTAMP),
            "channel": pa.array(
                np.concatenate([shown["channel"], np.full(n_web, "web", object)]), pa.string()
            ),
            "recommendation_id": pa.array(
                np.concatenate([shown["rid"], np.full(n_web, None, object)]), pa.string()
            ),
            "position": pa.array(
                np.concatenate([shown["position"], np.zeros(n_web, int)]).astype(np.int32),
                pa.int32(),
            ),
            "experiment": pa.array(["launch"] * (n_shown + n_web), pa.string()),
            "variant": pa.array(
                np.concatenate([shown["variant"], np.full(n_web, None, object)]), pa.string()
            ),
            "placement": pa.array(["home"] * n_shown + [None] * n_web, pa.string()),
            "price": pa.array(np.concatenate([shown_price, prices[bought["item"][web]]])),
            "quantity": pa.array(np.ones(n_shown + n_web, np.int32), pa.int32()),
            "event_id": pa.nulls(n_shown + n_web, pa.string()),
        }
    )
    till = bought["channel"] == "store"
    who = np.where(till, cards[bought["customer"]], customer_ids[bought["customer"]])
    events = pa.table(
        {
            "customer_id": pa.array(who, pa.string()),
            "item_id": pa.array(item_ids[bought["item"]], pa.string()),
            "event_type": pa.array(["purchase"] * len(who), pa.string()),
            "channel": pa.array(bought["channel"], pa.string()),
            "timestamp": pa.array(bought["at"].astype(np.int64), pa.int64()).cast(TIMESTAMP),
            "quantity": pa.array(np.ones(len(who), np.int32), pa.int32()),
            "price": pa.array(prices[bought["item"]]),
            "store_id": pa.array(["S001" if t else None for t in till.tolist()], pa.string()),
        }
    )
    identities = IdentityMap.from_table(
        pa.table(
            {
                "alias_type": pa.array(["loyalty_card"] * len(cards), pa.string()),
                "alias_id": pa.array(cards, pa.string()),
                "customer_id": pa.array(customer_ids, pa.string()),
            }
        )
    )
    return SimulatedChannels(
        feedback, events, identities, {k: s for k, (s, _) in shares.items()}, caused
    )
