"""Compact binary encodings of the serving features (msgpack arrays with raw numeric buffers)."""

from __future__ import annotations

import msgspec
import numpy as np
import numpy.typing as npt

EVENT_CODES = {
    "view": 0,
    "favorite": 1,
    "add_to_cart": 2,
    "purchase": 3,
    "return": 4,
    "remove_from_cart": 5,
}
EVENT_NAMES = {v: k for k, v in EVENT_CODES.items()}


class Activity(msgspec.Struct, array_like=True, frozen=True):
    """One event as the tablet shows it."""

    item_id: str
    event_type: str
    channel: str
    timestamp: int  # epoch seconds
    store_id: str = ""
    quantity: int = 1


class CustomerFeatures(msgspec.Struct, array_like=True):
    """Everything the service needs about one customer in one snapshot."""

    customer_id: str
    vector: bytes = b""  # float32 factors (factor models)
    candidates: bytes = b""  # int32 item columns, best first
    candidate_scores: bytes = b""  # float32
    history_items: bytes = (
        b""  # int32 columns of the interaction row (fold-in / item-based scoring)
    )
    history_weights: bytes = b""  # float32
    purchased_items: bytes = b""  # int32 columns bought (net of returns)
    purchased_at: bytes = b""  # int64 epoch seconds of the last purchase of each
    categories: list[str] = []
    first_seen: int = 0
    last_seen: int = 0
    # the last events before the snapshot, newest last, as parallel packed arrays
    recent_items: bytes = b""  # int32 item columns
    recent_types: bytes = b""  # uint8 EVENT_CODES
    recent_channels: bytes = b""  # uint8 index into Catalogue.channels
    recent_at: bytes = b""  # int64 epoch seconds
    recent_stores: bytes = b""  # int16 index into Catalogue.stores, -1 none

    def array(self, field: str, dtype: type) -> npt.NDArray[np.generic]:
        """A numeric field as a numpy array (zero-copy view)."""
        return np.frombuffer(getattr(self, field), dtype=dtype)


class ItemList(msgspec.Struct, array_like=True):
    """A ranked list of item columns with scores (popularity, bought-together)."""

    items: bytes = b""  # int32
    scores: bytes = b""  # float32

    def arrays(self) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
        return np.frombuffer(self.items, np.int32), np.frombuffer(self.scores, np.float32)

    @classmethod
    def of(cls, items: npt.NDArray[np.integer], scores: npt.NDArray[np.floating]) -> ItemList:
        return cls(np.asarray(items, np.int32).tobytes(), np.asarray(scores, np.float32).tobytes())


class Catalogue(msgspec.Struct, array_like=True):
    """Item columns of a snapshot: ids and what the tablet shows."""

    item_ids: list[str]
    names: list[str]
    categories: list[str]
    prices: list[float]
    active: list[bool]
    channels: list[str] = []
    stores: list[str] = []  # stores seen in events (popular-at-store lists)
    stock_stores: list[str] = []  # stores with a stock bitmap
    store_locations: list[tuple[str, float, float]] = []  # (store, latitude, longitude)
    store_names: dict[str, str] = {}  # store id -> its name, when the stores file has one
    # the catalogue's other columns (brand, margin, added_at in epoch seconds, ...) for the
    # merchandising rules: text columns and numeric ones, in item order
    texts: dict[str, list[str]] = {}
    numbers: dict[str, list[float]] = {}


class SnapshotMeta(msgspec.Struct, frozen=True):
    """What a snapshot was built from."""

    snapshot_id: str
    model_version: int
    model_kind: str
    created_at: int
    customers: int
    items: int
    data_end: int  # epoch seconds of the newest event in the snapshot


ENCODER = msgspec.msgpack.Encoder()
CUSTOMER_DECODER = msgspec.msgpack.Decoder(CustomerFeatures)
ITEMLIST_DECODER = msgspec.msgpack.Decoder(ItemList)
CATALOGUE_DECODER = msgspec.msgpack.Decoder(Catalogue)
ACTIVITY_DECODER = msgspec.msgpack.Decoder(Activity)
META_DECODER = msgspec.json.Decoder(SnapshotMeta)
