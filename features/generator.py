"""Synthetic omnichannel retail data in the canonical schema, deterministic for a seed, at any size.

Customers have latent tastes over categories and a personal style inside each category; they browse
on the web and in the app (many views, fewer carts, fewer purchases), buy in stores (a home store,
sometimes another), re-buy staples, return some purchases, and appear under several aliases
(loyalty card in store, account or hashed e-mail on the web, device in the app). Customers are
generated in chunks, each written as one Parquet part, so memory stays flat at any size.

Longer than our 400 lines on purpose: one generator whose parts (tastes, catalogue, baskets,
channels, identities) share the latent state they are drawn from; split, each part would need
it passed around.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from features.schema import TIMESTAMP
from omnirec.errors import DataError
from omnirec.progress import Progress

CATEGORY_NAMES = (
    "dresses",
    "shirts",
    "trousers",
    "shoes",
    "outerwear",
    "knitwear",
    "accessories",
    "bags",
    "sportswear",
    "underwear",
    "kids",
    "baby",
    "home-textiles",
    "kitchen",
    "beauty",
    "fragrance",
    "coffee",
    "tea",
    "snacks",
    "wine",
    "toys",
    "books",
    "electronics",
    "garden",
)
_ADJECTIVES = (
    "classic",
    "slim",
    "organic",
    "cosy",
    "bold",
    "everyday",
    "premium",
    "light",
    "vintage",
    "smart",
)
EVENT_TYPES = ("view", "add_to_cart", "purchase", "return")
CHANNELS = ("web", "app", "store")
MICROS_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class GeneratorConfig:
    """Size and shape of a synthetic data set."""

    customers: int = 2_000
    items: int = 1_000
    days: int = 90
    seed: int = 42
    stores: int = 20
    events_per_customer: float = 40.0
    end: datetime = datetime(2026, 11, 1, tzinfo=UTC)
    chunk_customers: int = 50_000


@dataclass(frozen=True)
class GeneratedData:
    """Where the files went and how much was written."""

    folder: Path
    events: int
    customers: int
    items: int
    stores: int
    aliases: int


def _zipf_weights(
    rng: np.random.Generator, n: int, exponent: float = 1.1
) -> npt.NDArray[np.float64]:
    weights = 1.0 / np.power(np.arange(1, n + 1), exponent)
    return np.asarray(rng.permutation(weights), dtype=np.float64)


class _Catalogue:
    """Items sorted by category; inside a category, by style (position) with random popularity."""

    def __init__(self, config: GeneratorConfig, rng: np.random.Generator) -> None:
        n_cat = min(len(CATEGORY_NAMES), max(2, config.items // 20))
        share = rng.dirichlet(np.full(n_cat, 3.0))
        sizes = np.maximum(1, np.floor(share * config.items)).astype(np.int64)
        sizes[np.argmax(sizes)] += config.items - sizes.sum()
        self.n_categories = n_cat
        self.sizes = sizes
        self.starts = np.r_[0, np.cumsum(sizes)[:-1]]
        self.category_of = np.repeat(np.arange(n_cat), sizes)
        popularity = np.concatenate([_zipf_weights(rng, int(s)) for s in sizes])
        self.popularity = popularity
        cumulative = np.zeros(config.items)
        for c in range(n_cat):
            lo, hi = self.starts[c], self.starts[c] + sizes[c]
            segment = np.cumsum(popularity[lo:hi])
            cumulative[lo:hi] = c + segment / segment[-1]
        self.cumulative = cumulative
        base_price = np.exp(rng.normal(3.0, 0.8, n_cat))
        self.price = np.round(
            base_price[self.category_of] * np.exp(rng.normal(0, 0.35, config.items)), 2
        )
        self.ids = np.array([f"I{i:06d}" for i in range(config.items)], dtype=object)

    def table(self, rng: np.random.Generator) -> pa.Table:
        adjectives = np.array(_ADJECTIVES, dtype=object)[
            rng.integers(0, len(_ADJECTIVES), len(self.ids))
        ]
        categories = np.array(CATEGORY_NAMES, dtype=object)[self.category_of]
        names = [
            f"{a.capitalize()} {c} {i[1:]}"
            for a, c, i in zip(adjectives, categories, self.ids, strict=True)
        ]
        return pa.table(
            {
                "item_id": pa.array(self.ids, pa.string()),
                "name": pa.array(names, pa.string()),
                "category": pa.array(categories, pa.string()),
                "price": pa.array(self.price, pa.float64()),
                "active": pa.array(rng.random(len(self.ids)) > 0.02),
            }
        )

    def pick(
        self,
        rng: np.random.Generator,
        category: npt.NDArray[np.int64],
        style: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.int64]:
        """One item per row: near the customer's style (65 %) or by popularity (35 %)."""
        size = self.sizes[category]
        position = np.clip(style + rng.normal(0, 0.06, len(category)), 0, 0.999999)
        by_style = self.starts[category] + (position * size).astype(np.int64)
        by_popularity = np.searchsorted(self.cumulative, category + rng.random(len(category)))
        by_popularity = np.clip(
            by_popularity, self.starts[category], self.starts[category] + size - 1
        )
        return np.where(rng.random(len(category)) < 0.65, by_style, by_popularity)


def _pick_rows(
    rng: np.random.Generator, cumulative: npt.NDArray[np.float64], rows: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Sample a column per row from each row's cumulative distribution (vectorised)."""
    u = rng.random(len(rows))[:, None]
    picked = np.minimum((cumulative[rows] < u).sum(axis=1), cumulative.shape[1] - 1)
    return np.asarray(picked, dtype=np.int64)


def _online_and_locations(
    config: GeneratorConfig, catalogue: _Catalogue, store_ids: npt.NDArray[np.object_], folder: Path
) -> None:
    """The online warehouse's stock (`online`, 90 % of the items) appended to the stock table, and
    each store's location (a region the size of a county). Its own random stream: the events of a
    seed stay the same as before stores had locations."""
    rng = np.random.default_rng([config.seed, 1])
    stock = pq.read_table(folder / "stock.parquet")
    online = np.flatnonzero(rng.random(config.items) < 0.9)
    pq.write_table(
        pa.concat_tables(
            [
                stock,
                pa.table(
                    {
                        "store_id": pa.array(["online"] * len(online), pa.string()),
                        "item_id": pa.array(catalogue.ids[online], pa.string()),
                        "quantity": pa.array(rng.poisson(40, len(online)).astype(np.int32) + 1),
                    }
                ),
            ]
        ),
        folder / "stock.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "store_id": pa.array(store_ids, pa.string()),
                "name": pa.array(
                    [
                        f"{TOWNS[k % len(TOWNS)]} {k // len(TOWNS) + 1}"
                        for k in range(len(store_ids))
                    ],
                    pa.string(),
                ),
                "latitude": pa.array(51.3 + rng.random(len(store_ids)) * 0.5),
                "longitude": pa.array(-0.5 + rng.random(len(store_ids)) * 0.8),
            }
        ),
        folder / "stores.parquet",
    )


TOWNS = ("Riverside", "Hillcrest", "Old Town", "Harbour", "Northgate", "Parkside", "Eastfield")
BRANDS = ("Acme", "Northwind", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Soylent")


def _merchandising_columns(config: GeneratorConfig, catalogue: _Catalogue) -> dict[str, pa.Array]:
    """What merchandisers steer by: `brand`, `margin` (0-0.6) and `added_at` (the date the item
    was listed; about one item in ten in the last 30 days). Drawn from their own random stream,
    so the events stay what they were for a seed."""
    rng = np.random.default_rng([config.seed, 2])
    n = len(catalogue.ids)
    end = np.datetime64(config.end.replace(tzinfo=None), "s")
    age_days = np.where(rng.random(n) < 0.1, rng.integers(0, 30, n), rng.integers(30, 3 * 365, n))
    return {
        "brand": pa.array(
            np.array(BRANDS, dtype=object)[rng.integers(0, len(BRANDS), n)], pa.string()
        ),
        "margin": pa.array(np.round(rng.uniform(0.0, 0.6, n), 3), pa.float64()),
        "added_at": pa.array(end - age_days.astype("timedelta64[D]"), pa.timestamp("s", tz="UTC")),
    }


def generate(config: GeneratorConfig, folder: Path) -> GeneratedData:
    """Write catalogue, stock, identity map and events (Parquet parts) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    events_dir = folder / "events"
    events_dir.mkdir(exist_ok=True)
    for old in events_dir.glob("part-*.parquet"):
        old.unlink()
    rng = np.random.default_rng([config.seed, 0])
    catalogue = _Catalogue(config, rng)
    (folder / "generator.json").write_text(
        json.dumps({**asdict(config), "end": config.end.isoformat()})
    )
    table = catalogue.table(rng)
    for name, column in _merchandising_columns(config, catalogue).items():
        table = table.append_column(name, column)
    pq.write_table(table, folder / "catalogue.parquet")
    store_ids = np.array([f"S{s:03d}" for s in range(config.stores)], dtype=object)
    store_weight = rng.dirichlet(np.full(config.stores, 2.0))
    in_stock = rng.random((config.stores, config.items)) < 0.75
    stores, items = np.nonzero(in_stock)
    pq.write_table(
        pa.table(
            {
                "store_id": pa.array(store_ids[stores], pa.string()),
                "item_id": pa.array(catalogue.ids[items], pa.string()),
                "quantity": pa.array(rng.poisson(6, len(items)).astype(np.int32) + 1),
            }
        ),
        folder / "stock.parquet",
    )
    _online_and_locations(config, catalogue, store_ids, folder)

    total_events = 0
    identity_parts: list[pa.Table] = []
    progress = Progress(config.customers, "generate", "customers")
    for chunk, first in enumerate(range(0, config.customers, config.chunk_customers)):
        count = min(config.chunk_customers, config.customers - first)
        events, identity = _customer_chunk(
            config, catalogue, store_ids, store_weight, chunk, first, count
        )
        pq.write_table(events, events_dir / f"part-{chunk:05d}.parquet", compression="zstd")
        identity_parts.append(identity)
        total_events += events.num_rows
        progress.update(count)
    progress.close()
    identity_table = pa.concat_tables(identity_parts)
    pq.write_table(identity_table, folder / "identity.parquet")
    return GeneratedData(
        folder, total_events, config.customers, config.items, config.stores, identity_table.num_rows
    )


def _tastes(rng: np.random.Generator, n_categories: int, count: int) -> npt.NDArray[np.float64]:
    """Each customer's latent share of interest per category: the first draw of a chunk."""
    return np.asarray(rng.dirichlet(np.full(n_categories, 0.3), count), dtype=np.float64)


@dataclass(frozen=True)
class LatentTastes:
    """What the generator drew and the data only shows through behaviour: each customer's share
    of interest per category (customers x categories), and each item's category."""

    customer_ids: list[str]
    taste: npt.NDArray[np.float64]
    item_ids: list[str]
    item_category: npt.NDArray[np.int64]
    prices: npt.NDArray[np.float64]


def latent_tastes(config: GeneratorConfig) -> LatentTastes:
    """The latent tastes of the data `generate(config, ...)` writes (drawn again, the same)."""
    catalogue = _Catalogue(config, np.random.default_rng([config.seed, 0]))
    parts = []
    for chunk, first in enumerate(range(0, config.customers, config.chunk_customers)):
        count = min(config.chunk_customers, config.customers - first)
        parts.append(
            _tastes(np.random.default_rng([config.seed, 1, chunk]), catalogue.n_categories, count)
        )
    ids = [f"C{i:08d}" for i in range(config.customers)]
    return LatentTastes(
        ids,
        np.concatenate(parts),
        [str(i) for i in catalogue.ids.tolist()],
        catalogue.category_of.astype(np.int64),
        catalogue.price.astype(np.float64),
    )


def read_config(folder: Path) -> GeneratorConfig:
    """The configuration a synthetic data folder was generated with (its generator.json)."""
    path = folder / "generator.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(str(path), f"not a synthetic data folder of this version ({exc})") from exc
    return GeneratorConfig(**{**raw, "end": datetime.fromisoformat(raw["end"])})


def _customer_chunk(
    config: GeneratorConfig,
    catalogue: _Catalogue,
    store_ids: npt.NDArray[np.object_],
    store_weight: npt.NDArray[np.float64],
    chunk: int,
    first: int,
    count: int,
) -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng([config.seed, 1, chunk])
    n_cat = catalogue.n_categories
    taste = np.cumsum(_tastes(rng, n_cat, count), axis=1)
    style = rng.random(count)
    app_share = rng.beta(2, 2, count)
    store_share = rng.beta(1.2, 2.5, count)
    home_store = rng.choice(len(store_ids), size=count, p=store_weight)
    span = config.days * MICROS_PER_DAY
    end = int(config.end.timestamp() * 1_000_000)
    start = end - span
    first_seen = start + (rng.random(count) ** 1.5 * span * 0.9).astype(np.int64)
    activity = rng.lognormal(0, 0.7, count)
    activity *= config.events_per_customer / activity.mean() if count > 1 else 1.0

    # Online browsing intents: a view, sometimes a cart, sometimes a purchase.
    intents = rng.poisson(activity * (1 - 0.5 * store_share) / 1.3)
    who = np.repeat(np.arange(count), intents)
    category = _pick_rows(rng, taste, who)
    item = catalogue.pick(rng, category, style[who])
    when = first_seen[who] + (rng.random(len(who)) * (end - first_seen[who])).astype(np.int64)
    channel = np.where(rng.random(len(who)) < app_share[who], 1, 0)
    session = (first + who).astype(np.int64) * 10_000 + rng.integers(0, 40, len(who))
    cart = rng.random(len(who)) < 0.18
    bought = cart & (rng.random(len(who)) < 0.55)

    # Store purchases: home store mostly; some re-buys of staples.
    visits = rng.poisson(activity * store_share * 0.45)
    s_who = np.repeat(np.arange(count), visits)
    s_category = _pick_rows(rng, taste, s_who)
    s_item = catalogue.pick(rng, s_category, style[s_who])
    staples = catalogue.pick(rng, _pick_rows(rng, taste, np.arange(count)), style)
    s_item = np.where(rng.random(len(s_who)) < 0.2, staples[s_who], s_item)
    s_when = first_seen[s_who] + (rng.random(len(s_who)) * (end - first_seen[s_who])).astype(
        np.int64
    )
    s_store = np.where(
        rng.random(len(s_who)) < 0.8,
        home_store[s_who],
        rng.choice(len(store_ids), size=len(s_who), p=store_weight),
    )

    minute = 60_000_000
    parts = [
        # customer, item, type, channel, time, quantity, store(-1 none), session(-1 none)
        (who, item, 0, channel, when, 1, -1, session),
        (
            who[cart],
            item[cart],
            1,
            channel[cart],
            when[cart] + rng.integers(1, 10, cart.sum()) * minute,
            1,
            -1,
            session[cart],
        ),
        (
            who[bought],
            item[bought],
            2,
            channel[bought],
            when[bought] + rng.integers(10, 60, bought.sum()) * minute,
            1 + rng.binomial(2, 0.1, bought.sum()),
            -1,
            session[bought],
        ),
        (s_who, s_item, 2, 2, s_when, 1 + rng.binomial(3, 0.15, len(s_who)), s_store, -1),
    ]
    purchases_who = np.r_[who[bought], s_who]
    purchases_item = np.r_[item[bought], s_item]
    purchases_when = np.r_[when[bought], s_when]
    returned = rng.random(len(purchases_who)) < 0.07
    r_when = purchases_when[returned] + rng.integers(2, 20, returned.sum()) * MICROS_PER_DAY
    r_ok = r_when < end
    r_store_channel = rng.random(returned.sum()) < 0.6
    parts.append(
        (
            purchases_who[returned][r_ok],
            purchases_item[returned][r_ok],
            3,
            np.where(r_store_channel, 2, 0)[r_ok],
            r_when[r_ok],
            1,
            np.where(r_store_channel, home_store[purchases_who[returned]], -1)[r_ok],
            -1,
        )
    )

    def column(index: int, dtype: type) -> npt.NDArray[np.int64]:
        return np.concatenate(
            [np.broadcast_to(np.asarray(p[index], dtype=dtype), len(p[0])) for p in parts]
        )

    c_who = column(0, np.int64)
    c_item = column(1, np.int64)
    c_type = column(2, np.int8)
    c_channel = column(3, np.int8)
    c_time = column(4, np.int64)
    c_qty = column(5, np.int32)
    c_store = column(6, np.int64)
    c_session = column(7, np.int64)
    order = np.lexsort((c_time, c_who))

    # Aliases: the store sees the loyalty card, the app a device, the web the account or hashed
    # e-mail.
    customer_ids = np.array([f"C{first + i:08d}" for i in range(count)], dtype=object)
    has_card = rng.random(count) < 0.8
    uses_email = rng.random(count) < 0.4
    cards = np.array([f"L{(first + i) * 7919 % 10**10:010d}" for i in range(count)], dtype=object)
    devices = np.array([f"D{first + i:08d}x{chunk}" for i in range(count)], dtype=object)
    emails = np.array(
        [
            hashlib.sha256(f"customer{first + i}@example.com".encode()).hexdigest()
            for i in range(count)
        ],
        dtype=object,
    )
    phones = np.array(
        [f"+4477{(first + i) * 104729 % 10**8:08d}" for i in range(count)], dtype=object
    )
    # dictionary: [customer ids | cards | devices | emails]
    alias_for_channel = np.stack(
        [
            np.where(uses_email, np.arange(count) + 3 * count, np.arange(count)),  # web
            np.arange(count) + 2 * count,  # app
            np.where(has_card, np.arange(count) + count, np.arange(count)),  # store
        ]
    )
    who_sorted, ch_sorted = c_who[order], c_channel[order]
    customer_code = alias_for_channel[ch_sorted, who_sorted].astype(np.int32)
    dictionary = np.concatenate([customer_ids, cards, devices, emails])
    store_sorted = c_store[order]
    session_sorted = c_session[order]
    price = catalogue.price[c_item[order]] * np.where(rng.random(len(order)) < 0.15, 0.8, 1.0)
    events = pa.table(
        {
            "customer_id": pa.DictionaryArray.from_arrays(
                pa.array(customer_code), pa.array(dictionary, pa.string())
            ),
            "item_id": pa.DictionaryArray.from_arrays(
                pa.array(c_item[order].astype(np.int32)), pa.array(catalogue.ids, pa.string())
            ),
            "event_type": pa.DictionaryArray.from_arrays(
                pa.array(c_type[order].astype(np.int32)), pa.array(EVENT_TYPES)
            ),
            "channel": pa.DictionaryArray.from_arrays(
                pa.array(ch_sorted.astype(np.int32)), pa.array(CHANNELS)
            ),
            "timestamp": pa.array(c_time[order], pa.int64()).cast(TIMESTAMP),
            "quantity": pa.array(c_qty[order]),
            "price": pa.array(np.round(price, 2)),
            "store_id": pa.DictionaryArray.from_arrays(
                pa.array(store_sorted.astype(np.int32), mask=store_sorted < 0),
                pa.array(store_ids, pa.string()),
            ),
            "session_id": pa.array(session_sorted, pa.int64(), mask=session_sorted < 0).cast(
                pa.string()
            ),
        }
    )
    identity = pa.table(
        {
            "alias_type": pa.array(
                ["loyalty_card"] * int(has_card.sum())
                + ["device"] * count
                + ["email_sha256"] * count
                + ["phone"] * count,
                pa.string(),
            ),
            "alias_id": pa.array(
                np.concatenate([cards[has_card], devices, emails, phones]), pa.string()
            ),
            "customer_id": pa.array(
                np.concatenate([customer_ids[has_card], customer_ids, customer_ids, customer_ids]),
                pa.string(),
            ),
        }
    )
    return events, identity
