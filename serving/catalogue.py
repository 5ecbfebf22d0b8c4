"""The item side of one (model version, feature snapshot) pair, held in memory by each worker."""

from __future__ import annotations

import functools
import itertools
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from features.encoding import CATALOGUE_DECODER, ITEMLIST_DECODER, Catalogue, SnapshotMeta
from features.stock import LiveStock
from features.store import RedisFeatureStore
from models.base import Recommender
from omnirec.errors import FeatureStoreError
from serving.ask import ONLINE

if TYPE_CHECKING:
    from serving.arrange import Arrangement

EARTH_KM = 6371.0


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (latitude, longitude) points."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_KM * math.asin(math.sqrt(h))


@dataclass
class DerivedArrays:
    """Arrays derived from one loaded snapshot on first use and kept beside it (each map bounded):
    everything here can be computed again from the snapshot, and `stock_changed` drops what
    depends on the live stock."""

    # (store, category, (rule set, hour) or None) -> the items allowed there (`allowed`)
    allowed: dict[tuple[str | None, str | None, tuple[str, int] | None], npt.NDArray[np.bool_]] = (
        field(default_factory=dict)
    )
    # merchandising rules (serving.merchandising): filters and boost factors per (rule set,
    # hour); (rule set, answer length, hour) -> boosts and diversity cap as the compiled pass
    # takes them
    rule_masks: dict[tuple[str, int], npt.NDArray[np.bool_]] = field(default_factory=dict)
    rule_boosts: dict[tuple[str, int], npt.NDArray[np.float32]] = field(default_factory=dict)
    rule_arrangements: dict[tuple[str, int, int], Arrangement] = field(default_factory=dict)
    text_codes: dict[str, npt.NDArray[np.int32]] = field(default_factory=dict)
    # store -> km to each stocked store (`distances_from`)
    distances: dict[str | None, npt.NDArray[np.float64]] = field(default_factory=dict)

    def stock_changed(self) -> None:
        self.allowed = {}
        self.distances = {}


def _web_addresses(column: npt.NDArray[np.object_] | None) -> list[str | None]:
    """A catalogue column of web addresses as a list: http(s) ones kept, anything else (empty,
    NaN, `javascript:`) None."""
    if column is None:
        return []
    return [
        v if isinstance(v, str) and v.startswith(("https://", "http://")) else None
        for v in column.tolist()
    ]


@dataclass
class LoadedSnapshot:
    """Model + catalogue + popular lists of one snapshot, fixed once built; two parts change
    while it is served: the live stock it follows (`set_levels`, `apply_levels`) and the arrays
    derived from it on first use (`derived`)."""

    version: int
    meta: SnapshotMeta
    model: Recommender
    item_ids: npt.NDArray[np.str_]
    names: list[str]
    categories: npt.NDArray[np.object_]
    category_codes: npt.NDArray[np.int32]
    category_names: list[str]
    prices: npt.NDArray[np.float64]
    active: npt.NDArray[np.bool_]
    channels: list[str]
    stores: list[str]
    popular: dict[str, tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]]
    stock: dict[str, npt.NDArray[np.bool_]]
    item_index: dict[str, int]
    loaded_at: float = field(default_factory=time.time)
    # the catalogue's own columns, over the item columns (merchandising rules read them)
    texts: dict[str, npt.NDArray[np.object_]] = field(default_factory=dict)
    numbers: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    # plain Python lists for building answers without numpy scalar conversions
    id_list: list[str] = field(default_factory=list)
    category_list: list[str] = field(default_factory=list)
    price_list: list[float] = field(default_factory=list)
    image_list: list[str | None] = field(default_factory=list)  # empty: no such column
    url_list: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.id_list = [str(i) for i in self.item_ids.tolist()]
        self.category_list = [str(c) for c in self.categories.tolist()]
        self.price_list = [float(p) for p in self.prices.tolist()]
        self.image_list = _web_addresses(self.texts.get("image_url"))
        self.url_list = _web_addresses(self.texts.get("url"))

    derived: DerivedArrays = field(default_factory=DerivedArrays)

    @functools.cached_property
    def known_stores(self) -> frozenset[str]:
        """Every store the snapshot's data names: in events, in stock, with a location, and the
        online warehouse."""
        return frozenset([*self.stores, *self.stock, *self.locations, ONLINE])

    def text_column(self, name: str) -> npt.NDArray[np.object_] | None:
        """A text column over the item columns (`category` or one of the catalogue's own)."""
        return self.categories if name == "category" else self.texts.get(name)

    def text_codes(self, name: str) -> npt.NDArray[np.int32] | None:
        """A text column as integer codes (one per distinct value), computed once."""
        codes = self.derived.text_codes.get(name)
        if codes is None:
            column = self.text_column(name)
            if column is None:
                return None
            values = np.unique(column.astype(str), return_inverse=True)[1]
            codes = self.derived.text_codes[name] = values.astype(
                np.int32
            )  # compact: read per answer
        return codes

    def number_column(self, name: str) -> npt.NDArray[np.float64] | None:
        """A numeric column over the item columns (`price` or one of the catalogue's own)."""
        return self.prices if name == "price" else self.numbers.get(name)

    @property
    def snapshot_id(self) -> str:
        return self.meta.snapshot_id

    # live stock: level per store over the item columns (-1: not listed there), following Redis
    levels: dict[str, npt.NDArray[np.int32]] = field(default_factory=dict)
    stock_version: int = 0
    stock_last_id: str = "0-0"
    sold_out: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, bool))
    locations: dict[str, tuple[float, float]] = field(default_factory=dict)
    store_names: dict[str, str] = field(default_factory=dict)  # store id -> name (stores file)

    def set_levels(
        self, levels: dict[str, npt.NDArray[np.int32]], version: int, last_id: str
    ) -> None:
        """Take every store's levels (a full read of the live stock)."""
        self.levels = levels
        self.stock_version, self.stock_last_id = version, last_id
        self._stock_changed()

    def apply_levels(
        self, stores: list[str], items: list[str], levels: list[int], version: int, last_id: str
    ) -> int:
        """Apply changed levels (later entries win); returns how many touched known items."""
        touched = 0
        n = len(self.item_ids)
        for store, item, level in zip(stores, items, levels, strict=True):
            col = self.item_index.get(item)
            if col is None:
                continue
            array = self.levels.get(store)
            if array is None:
                array = self.levels[store] = np.full(n, -1, np.int32)
            array[col] = level
            touched += 1
        self.stock_version, self.stock_last_id = version, last_id
        if touched:
            self._stock_changed()
        return touched

    # the same levels as one (stores x items) matrix, for availability answers
    level_stores: list[str] = field(default_factory=list)
    level_matrix: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros((0, 0), np.int32))

    def _stock_changed(self) -> None:
        self.stock = {store: array > 0 for store, array in self.levels.items()}
        self.level_stores = sorted(self.levels)
        self.level_matrix = (
            np.stack([self.levels[s] for s in self.level_stores])
            if self.levels
            else np.zeros((0, len(self.item_ids)), np.int32)
        )
        listed = np.zeros(len(self.item_ids), bool)
        somewhere = np.zeros(len(self.item_ids), bool)
        for array in self.levels.values():
            listed |= array >= 0
            somewhere |= array > 0
        self.sold_out = listed & ~somewhere  # listed somewhere, in stock nowhere
        self.derived.stock_changed()

    def distances_from(self, store_id: str | None) -> npt.NDArray[np.float64]:
        """km from `store_id` to each of `level_stores` (inf where a location is unknown)."""
        cached = self.derived.distances.get(store_id)
        if cached is None:
            origin = self.locations.get(store_id) if store_id else None
            cached = np.array(
                [
                    distance_km(origin, where)
                    if origin is not None and (where := self.locations.get(s))
                    else np.inf
                    for s in self.level_stores
                ]
            )
            self.derived.distances[store_id] = cached
        return cached

    def level(self, store_id: str, col: int) -> int:
        """The stock level of column `col` at `store_id` (-1: not listed there)."""
        array = self.levels.get(store_id)
        return int(array[col]) if array is not None else -1

    def allowed(
        self,
        store_id: str | None,
        category: str | None,
        filters: tuple[tuple[str, int], Callable[[], npt.NDArray[np.bool_]]] | None = None,
    ) -> npt.NDArray[np.bool_]:
        """Items that may be shown: active, not sold out everywhere, in stock at `store_id` (when
        the store has stock data), in `category`; with `filters` ((rule set, hour), its mask),
        also allowed by that rule set. Cached until the stock changes (one array per request,
        read-only: a request's own filters are not cached, their masks are computed each time)."""
        key = (store_id, category, None if filters is None else filters[0])
        cached = self.derived.allowed.get(key)
        if cached is not None:
            return cached
        if filters is not None:
            mask = np.asarray(np.logical_and(self.allowed(store_id, category), filters[1]()))
        else:
            mask = self.active.copy()
            if len(self.sold_out) == len(mask):
                mask &= ~self.sold_out
            if store_id is not None and store_id in self.stock:
                mask &= self.stock[store_id]
            if category is not None:
                mask &= self.categories == category
        mask.flags.writeable = False  # shared by every request until the stock changes
        if len(self.derived.allowed) < 4096:
            self.derived.allowed[key] = mask
        return mask


def loaded_bytes(snap: LoadedSnapshot) -> int:
    """Memory a loaded version holds, roughly: numpy and scipy buffers of the model and the
    catalogue, plus the containers beside them (lists, id dictionaries) at CPython's sizes."""
    seen: set[int] = set()

    def size(value: object, depth: int = 0) -> int:
        if id(value) in seen or depth > 5:
            return 0
        seen.add(id(value))
        if isinstance(value, np.ndarray):
            return int(value.nbytes)
        if sp.issparse(value):
            return sum(size(getattr(value, a), depth + 1) for a in ("data", "indices", "indptr"))
        if isinstance(value, dict):
            keys = (
                sum(sys.getsizeof(k) for k in itertools.islice(value, 100))
                * len(value)
                // max(1, min(100, len(value)))
            )
            return sys.getsizeof(value) + keys + sum(size(v, depth + 1) for v in value.values())
        if isinstance(value, list | tuple):
            return sys.getsizeof(value) + sum(size(v, depth + 1) for v in value[:3]) * len(
                value
            ) // max(1, min(3, len(value)))
        if isinstance(value, str | bytes):
            return sys.getsizeof(value)
        if hasattr(value, "__dict__") and not isinstance(value, type):
            return sum(size(v, depth + 1) for v in vars(value).values())
        return 0

    return size(snap)


def load_snapshot(
    store: RedisFeatureStore, snapshot_id: str, model: Recommender, version: int
) -> LoadedSnapshot:
    """Read a snapshot's item side from Redis (a few round trips, once per snapshot)."""
    meta = store.snapshot_meta(snapshot_id)
    raw = store.read_one(snapshot_id, "catalogue")
    if meta is None or raw is None:
        raise FeatureStoreError(f"snapshot {snapshot_id} is not in the feature store")
    catalogue: Catalogue = CATALOGUE_DECODER.decode(raw)
    if catalogue.item_ids != [str(i) for i in model.item_ids.tolist()]:
        raise FeatureStoreError(
            f"snapshot {snapshot_id} was published for other items than model v{version}"
        )
    categories = np.asarray(catalogue.categories, dtype=object)
    names, codes = np.unique(categories.astype(str), return_inverse=True)
    list_keys = [
        "all",
        *(f"channel:{c}" for c in catalogue.channels),
        *(f"store:{s}" for s in catalogue.stores),
        *(f"category:{c}" for c in names.tolist()),
    ]
    lists = store.read_many(snapshot_id, "popular", list_keys)
    popular = {
        k: ITEMLIST_DECODER.decode(v).arrays()
        for k, v in zip(list_keys, lists, strict=True)
        if v is not None
    }
    n = len(catalogue.item_ids)
    stock: dict[str, npt.NDArray[np.bool_]] = {}
    if catalogue.stock_stores:
        bitmaps = store.read_many(snapshot_id, "stock", catalogue.stock_stores)
        for store_id, bitmap in zip(catalogue.stock_stores, bitmaps, strict=True):
            if bitmap is not None:
                stock[store_id] = np.unpackbits(np.frombuffer(bitmap, np.uint8))[:n].astype(bool)
    item_index = {str(i): k for k, i in enumerate(model.item_ids.tolist())}
    live = LiveStock(store.prefix)
    levels, stock_version, last_id = live.read_all(store.client, item_index, n)
    if not levels:  # no stock feed yet: the snapshot's stock (in stock or not listed)
        levels = {s: np.where(mask, 1, -1).astype(np.int32) for s, mask in stock.items()}
    loaded = LoadedSnapshot(
        version=version,
        meta=meta,
        model=model,
        item_ids=model.item_ids,
        names=catalogue.names,
        categories=categories,
        category_codes=codes.astype(np.int32),
        category_names=names.tolist(),
        prices=np.asarray(catalogue.prices, dtype=np.float64),
        active=np.asarray(catalogue.active, dtype=bool),
        channels=catalogue.channels,
        stores=catalogue.stores,
        popular=popular,
        stock=stock,
        item_index=item_index,
        locations={s: (lat, lon) for s, lat, lon in catalogue.store_locations},
        store_names=dict(catalogue.store_names),
        texts={k: np.asarray(v, dtype=object) for k, v in catalogue.texts.items()},
        numbers={k: np.asarray(v, dtype=np.float64) for k, v in catalogue.numbers.items()},
    )
    loaded.set_levels(levels, stock_version, last_id)
    return loaded
