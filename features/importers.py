"""Importers from public retail data layouts into the canonical event schema (plus catalogues)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from features.io import read_table
from omnirec.errors import DataError


@dataclass(frozen=True)
class Imported:
    """Raw canonical-column events (still to be validated) and, where the source has one, a
    catalogue."""

    events: pa.Table
    catalogue: pa.Table | None = None


def _text(table: pa.Table, name: str) -> pa.ChunkedArray:
    return table.column(name).cast(pa.string())


def _const(value: str, n: int) -> pa.Array:
    return pa.array(np.full(n, value, dtype=object), pa.string())


def _require(path: Path) -> Path:
    if not path.exists():
        raise DataError(str(path), "file does not exist")
    return path


def _no_header(path: Path, names: list[str], delimiter: str, encoding: str = "utf8") -> pa.Table:
    try:
        return pacsv.read_csv(
            _require(path),
            read_options=pacsv.ReadOptions(column_names=names, encoding=encoding),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
        )
    except pa.ArrowInvalid as exc:
        raise DataError(str(path), f"cannot be read: {exc}") from exc


def _events(**columns: pa.Array | pa.ChunkedArray) -> pa.Table:
    return pa.table(columns)


def import_movielens(folder: Path) -> Imported:
    """MovieLens 100K: every rating becomes a web 'purchase' (the benchmark counts every rating)."""
    ratings = _no_header(folder / "u.data", ["user", "item", "rating", "ts"], "\t")
    n = ratings.num_rows
    events = _events(
        customer_id=_text(ratings, "user"),
        item_id=_text(ratings, "item"),
        event_type=_const("purchase", n),
        channel=_const("web", n),
        timestamp=ratings["ts"],
    )
    catalogue = None
    item_file = folder / "u.item"
    if item_file.exists():
        genres = [f"g{i}" for i in range(19)]
        raw = _no_header(
            item_file, ["item_id", "name", "date", "video", "url", *genres], "|", "latin1"
        )
        flags = np.column_stack([np.asarray(raw[g].to_numpy()) == "1" for g in genres])
        names = np.array(_MOVIELENS_GENRES, dtype=object)
        first = np.where(flags.any(axis=1), names[flags.argmax(axis=1)], "unknown")
        catalogue = pa.table(
            {
                "item_id": raw["item_id"],
                "name": raw["name"],
                "category": pa.array(first, pa.string()),
                "price": pa.nulls(raw.num_rows, pa.float64()),
                "active": pa.array(np.ones(raw.num_rows, bool)),
            }
        )
    return Imported(events, catalogue)


_MOVIELENS_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]


def import_completejourney(folder: Path) -> Imported:
    """84.51 Complete Journey: in-store grocery purchases with store, basket, quantity and price."""
    candidates = ("transactions_sample.csv", "transactions.parquet", "transactions.csv")
    found = [folder / name for name in candidates if (folder / name).exists()]
    raw = read_table(found[0] if found else _require(folder / "transactions.csv"))
    quantity = pc.cast(raw["quantity"], pa.float64(), safe=False)
    value = pc.cast(raw["sales_value"], pa.float64(), safe=False)
    price = pc.if_else(pc.greater(quantity, 0), pc.divide(value, quantity), value)
    n = raw.num_rows
    events = _events(
        customer_id=raw["household_id"],
        item_id=raw["product_id"],
        event_type=_const("purchase", n),
        channel=_const("store", n),
        timestamp=raw["transaction_timestamp"],
        quantity=raw["quantity"],
        price=price,
        store_id=raw["store_id"],
        session_id=raw["basket_id"],
    )
    catalogue = None
    product_files = [
        folder / n for n in ("products.parquet", "products.csv") if (folder / n).exists()
    ]
    if product_files:
        products = read_table(product_files[0])
        name = pc.binary_join_element_wise(
            pc.fill_null(products["brand"], ""), pc.fill_null(products["product_type"], ""), " "
        )
        catalogue = pa.table(
            {
                "item_id": products["product_id"],
                "name": pc.utf8_trim_whitespace(name),
                "category": products["department"],
                "price": pa.nulls(products.num_rows, pa.float64()),
                "active": pa.array(np.ones(products.num_rows, bool)),
            }
        )
    return Imported(events, catalogue)


def import_hm(folder: Path) -> Imported:
    """H&M: purchases, sales_channel_id 1 = store, 2 = online (web); day-level timestamps."""
    raw = read_table(_require(folder / "transactions_train.csv"))
    channel = pc.if_else(
        pc.equal(raw["sales_channel_id"], "1"),
        "store",
        pc.if_else(pc.equal(raw["sales_channel_id"], "2"), "web", raw["sales_channel_id"]),
    )
    n = raw.num_rows
    events = _events(
        customer_id=raw["customer_id"],
        item_id=raw["article_id"],
        event_type=_const("purchase", n),
        channel=channel,
        timestamp=raw["t_dat"],
        price=raw["price"],
    )
    catalogue = None
    if (folder / "articles.csv").exists():
        art = read_table(folder / "articles.csv")
        catalogue = pa.table(
            {
                "item_id": art["article_id"],
                "name": art["prod_name"],
                "category": art["product_group_name"],
                "price": pa.nulls(art.num_rows, pa.float64()),
                "active": pa.array(np.ones(art.num_rows, bool)),
            }
        )
    return Imported(events, catalogue)


def import_taobao(path: Path) -> Imported:
    """Taobao UserBehavior: pv/cart/fav/buy in the app (header optional)."""
    file = path / "UserBehavior_head.csv" if path.is_dir() else path
    names = ["user_id", "item_id", "category_id", "behavior_type", "timestamp"]
    with _require(file).open() as handle:
        has_header = handle.readline().startswith("user_id")
    raw = read_table(file) if has_header else _no_header(file, names, ",")
    n = raw.num_rows
    events = _events(
        customer_id=raw["user_id"],
        item_id=raw["item_id"],
        event_type=raw["behavior_type"],
        channel=_const("app", n),
        timestamp=raw["timestamp"],
    )
    catalogue = (
        pa.table(
            {
                "item_id": raw["item_id"],
                "name": raw["item_id"],
                "category": raw["category_id"],
                "price": pa.nulls(n, pa.float64()),
                "active": pa.array(np.ones(n, bool)),
            }
        )
        .group_by("item_id", use_threads=False)
        .aggregate(
            [("name", "first"), ("category", "first"), ("price", "first"), ("active", "first")]
        )
    )
    return Imported(
        events, catalogue.rename_columns(["item_id", "name", "category", "price", "active"])
    )


def import_rees46(path: Path) -> Imported:
    """REES46 multi-category store: view/cart/purchase on the web, with sessions, brand and
    price."""
    file = (
        path
        if path.is_file()
        else next(iter(sorted(_require(path).glob("*.csv"))), path / "missing.csv")
    )
    raw = read_table(_require(file))
    n = raw.num_rows
    events = _events(
        customer_id=raw["user_id"],
        item_id=raw["product_id"],
        event_type=raw["event_type"],
        channel=_const("web", n),
        timestamp=raw["event_time"],
        price=raw["price"],
        session_id=raw["user_session"],
    )
    category = pc.coalesce(raw["category_code"], raw["category_id"])
    name = pc.binary_join_element_wise(
        pc.fill_null(raw["brand"], ""), pc.fill_null(category, ""), " "
    )
    catalogue = pa.table(
        {
            "item_id": raw["product_id"],
            "name": pc.utf8_trim_whitespace(name),
            "category": category,
            "price": pc.cast(raw["price"], pa.float64(), safe=False),
            "active": pa.array(np.ones(n, bool)),
        }
    )
    catalogue = (
        catalogue.group_by("item_id", use_threads=False)
        .aggregate(
            [("name", "first"), ("category", "first"), ("price", "last"), ("active", "first")]
        )
        .rename_columns(["item_id", "name", "category", "price", "active"])
    )
    return Imported(events, catalogue)


def import_retailrocket(path: Path) -> Imported:
    """RetailRocket events.csv: timestamp (ms), visitorid, event (view/addtocart/transaction),
    itemid."""
    file = path / "events.csv" if path.is_dir() else path
    raw = read_table(_require(file))
    n = raw.num_rows
    events = _events(
        customer_id=raw["visitorid"],
        item_id=raw["itemid"],
        event_type=raw["event"],
        channel=_const("web", n),
        timestamp=raw["timestamp"],
        session_id=raw["transactionid"],
    )
    return Imported(events)


def import_instacart(folder: Path) -> Imported:
    """Instacart: orders.csv + order_products__*.csv; times rebuilt from days_since_prior_order."""
    orders = read_table(_require(folder / "orders.csv"))
    parts = sorted(folder.glob("order_products__*.csv"))
    if not parts:
        raise DataError(str(folder), "no order_products__*.csv file")
    lines = pa.concat_tables([read_table(p).select(["order_id", "product_id"]) for p in parts])
    user = np.asarray(orders["user_id"].cast(pa.int64()).to_numpy())
    number = np.asarray(orders["order_number"].cast(pa.int64()).to_numpy())
    gap = np.nan_to_num(
        np.asarray(
            pc.cast(orders["days_since_prior_order"], pa.float64()).to_numpy(zero_copy_only=False)
        )
    )
    hour = np.asarray(pc.cast(orders["order_hour_of_day"], pa.int64()).to_numpy())
    order = np.lexsort((number, user))
    days = np.zeros(len(user))
    sorted_gap = gap[order]
    sorted_user = user[order]
    cumulative = np.cumsum(sorted_gap)
    starts = np.r_[True, sorted_user[1:] != sorted_user[:-1]]
    first_cum = np.maximum.accumulate(np.where(starts, cumulative, 0))
    days[order] = cumulative - first_cum
    base = np.datetime64("2017-01-01T00:00:00", "us")
    stamps = (
        base
        + (days * 86400e6).astype("timedelta64[us]")
        + (hour * 3600e6).astype("timedelta64[us]")
    )
    order_times = pa.table(
        {
            "order_id": orders["order_id"],
            "user_id": orders["user_id"],
            "timestamp": pa.array(stamps, pa.timestamp("us")),
        }
    )
    joined = lines.join(order_times, "order_id", join_type="inner")
    n = joined.num_rows
    events = _events(
        customer_id=joined["user_id"],
        item_id=joined["product_id"],
        event_type=_const("purchase", n),
        channel=_const("app", n),
        timestamp=joined["timestamp"],
        session_id=joined["order_id"],
    )
    catalogue = None
    if (folder / "products.csv").exists():
        prods = read_table(folder / "products.csv")
        catalogue = pa.table(
            {
                "item_id": prods["product_id"],
                "name": prods["product_name"],
                "category": prods["department_id"],
                "price": pa.nulls(prods.num_rows, pa.float64()),
                "active": pa.array(np.ones(prods.num_rows, bool)),
            }
        )
    return Imported(events, catalogue)


IMPORTERS: dict[str, Callable[[Path], Imported]] = {
    "movielens": import_movielens,
    "completejourney": import_completejourney,
    "hm": import_hm,
    "taobao": import_taobao,
    "rees46": import_rees46,
    "retailrocket": import_retailrocket,
    "instacart": import_instacart,
}


def import_dataset(kind: str, path: Path) -> Imported:
    """Run the importer named `kind` on `path`."""
    try:
        importer = IMPORTERS[kind]
    except KeyError as exc:
        raise DataError(
            str(path), f"unknown format {kind!r}; known: {', '.join(IMPORTERS)}"
        ) from exc
    return importer(Path(path))
