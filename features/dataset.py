"""A data folder as one object: validated, identity-stitched events plus catalogue, stock,
identities."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from features.erasure_log import ErasureLog, without_erased
from features.identity import IdentityMap, stitch
from features.io import read_table
from features.schema import MAX_FUTURE_SECONDS
from features.validation import ValidationReport, load_events
from omnirec.errors import DataError

EVENTS_NAMES = ("events", "events.parquet", "events.csv")


@dataclass(frozen=True)
class Dataset:
    """Everything training and publishing read from a data folder."""

    folder: Path
    report: ValidationReport  # accepted events are identity-stitched
    catalogue: pa.Table | None
    stock: pa.Table | None
    identities: IdentityMap
    stores: pa.Table | None = None  # store_id, latitude, longitude (for "nearest stores")

    @property
    def events(self) -> pa.Table:
        return self.report.accepted


def _first(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / n for n in names if (folder / n).exists()), None)


@dataclass(frozen=True)
class SideTables:
    """A data folder's tables besides its events: catalogue, stock, identity map, store sites."""

    catalogue: pa.Table | None
    stock: pa.Table | None
    identities: IdentityMap
    stores: pa.Table | None


def load_identities(base: Path) -> IdentityMap:
    """The identity map found in `base` (validated), or an empty one."""
    identity_path = _first(base, ("identity.parquet", "identity.csv"))
    if identity_path is None:
        return IdentityMap.empty()
    return IdentityMap.from_table(read_table(identity_path), str(identity_path))


def load_side_tables(base: Path) -> SideTables:
    """The catalogue, stock, identity map and store locations found in `base` (each optional)."""
    identities = load_identities(base)
    catalogue_path = _first(base, ("catalogue.parquet", "catalogue.csv"))
    stock_path = _first(base, ("stock.parquet", "stock.csv"))
    catalogue = _catalogue(read_table(catalogue_path)) if catalogue_path else None
    stock = _stock(read_table(stock_path)) if stock_path else None
    stores_path = _first(base, ("stores.parquet", "stores.csv"))
    stores = _stores(read_table(stores_path), str(stores_path)) if stores_path else None
    return SideTables(catalogue, stock, identities, stores)


def events_path(folder: Path) -> Path:
    """The events of a data folder (a file or a folder of Parquet parts), or the file given."""
    found = folder if folder.is_file() else _first(folder, EVENTS_NAMES)
    if found is None:
        raise DataError(str(folder), f"no events found (looked for {', '.join(EVENTS_NAMES)})")
    return found


def load_dataset(
    folder: Path | str,
    max_future_seconds: float = MAX_FUTURE_SECONDS,
    erased: ErasureLog | None = None,
) -> Dataset:
    """Load a folder holding events (file or Parquet parts) and optional catalogue/stock/identity;
    events more than `max_future_seconds` ahead of now are rejected. With `erased` (the
    deployment's erasure log), what erased customers did up to their erasure is left out, under
    any of their ids, and their aliases with it."""
    folder = Path(folder)
    path = events_path(folder)
    base = folder if folder.is_dir() else folder.parent
    side = load_side_tables(base)
    identities = side.identities
    report = load_events(path, max_future_seconds)
    gone = erased.read() if erased is not None else None
    if gone:
        identities = IdentityMap(without_erased(identities.table, gone, timed=False))
        report.accepted = without_erased(report.accepted, gone)  # as sent: aliases too
    report.accepted = stitch(report.accepted, identities)
    if gone:
        report.accepted = without_erased(report.accepted, gone)
    return Dataset(base, report, side.catalogue, side.stock, identities, side.stores)


def _stores(raw: pa.Table, path: str) -> pa.Table:
    missing = [c for c in ("store_id", "latitude", "longitude") if c not in raw.column_names]
    if missing:
        raise DataError(path, f"missing columns: {', '.join(missing)}")
    try:
        lat = pc.cast(raw["latitude"], pa.float64())
        lon = pc.cast(raw["longitude"], pa.float64())
    except pa.ArrowInvalid as exc:
        raise DataError(path, f"latitude/longitude are not numbers: {exc}") from exc
    columns = {"store_id": raw["store_id"].cast(pa.string()), "latitude": lat, "longitude": lon}
    if "name" in raw.column_names:  # optional: what people call the store
        columns["name"] = raw["name"].cast(pa.string())
    return pa.table(columns)


def _catalogue(raw: pa.Table) -> pa.Table:
    n = raw.num_rows

    def text(name: str) -> pa.Array:
        return raw[name].cast(pa.string()) if name in raw.column_names else pa.nulls(n, pa.string())

    price = (
        pc.cast(raw["price"], pa.float64(), safe=False)
        if "price" in raw.column_names
        else pa.nulls(n, pa.float64())
    )
    active = (
        pc.cast(raw["active"], pa.bool_()) if "active" in raw.column_names else pa.array([True] * n)
    )
    columns = {
        "item_id": text("item_id"),
        "name": text("name"),
        "category": text("category"),
        "price": price,
        "active": active,
    }
    for name in raw.column_names:  # the retailer's own columns (brand, margin, added_at, ...)
        if name not in columns and (kept := _attribute(raw[name])) is not None:
            columns[name] = kept
    return pa.table(columns)


def _attribute(column: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """A catalogue column beyond the contract's, as merchandising rules read it: text as text,
    numbers as float64, dates and timestamps as epoch seconds (float64); None for other types."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column.cast(pa.string())
    if pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return pc.cast(column, pa.float64())
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        # any precision (s, ms, us, ns: most exports carry ms) to microseconds, then seconds
        micros = pc.cast(pc.cast(column, pa.timestamp("us"), safe=False), pa.int64())
        return pc.divide(pc.cast(micros, pa.float64()), 1_000_000.0)
    return None


def _stock(raw: pa.Table) -> pa.Table:
    return pa.table(
        {
            "store_id": raw["store_id"].cast(pa.string()),
            "item_id": raw["item_id"].cast(pa.string()),
            "quantity": pc.cast(raw["quantity"], pa.int32(), safe=False),
        }
    )
