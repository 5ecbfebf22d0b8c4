"""The live stock after Redis lost it (restarted empty, flushed): stock is state, not a cache of
the data, so each worker keeps the levels it last saw and one of them writes them back.

Every reload interval the runtime asks: the served snapshot follows live stock, yet Redis holds
none? Then readiness says so at once, and the worker that takes the lock seeds Redis from its
own last levels (`LiveStock.seed`, as the first publish seeds it from the stock file). The other
workers, and replicas, see the change log start again and read every level back."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa

from serving.catalogue import LoadedSnapshot
from serving.live import Live
from serving.metrics import STOCK_RESTORES

log = logging.getLogger("omnirec.serving")
LOCK_SECONDS = 60


def last_levels(snap: LoadedSnapshot) -> pa.Table:
    """The levels a worker last saw: (store_id, item_id, quantity) for every item listed at a
    store."""
    stores, items, levels = [], [], []
    for store, array in snap.levels.items():
        listed = np.flatnonzero(array >= 0)
        stores.append(np.full(len(listed), store, dtype=object))
        items.append(snap.item_ids[listed].astype(object))
        levels.append(array[listed].astype(np.int64))
    if not stores:
        return pa.table({"store_id": [], "item_id": [], "quantity": []})
    return pa.table(
        {
            "store_id": pa.array(np.concatenate(stores), pa.string()),
            "item_id": pa.array(np.concatenate(items), pa.string()),
            "quantity": pa.array(np.concatenate(levels), pa.int64()),
        }
    )


class StockKeeper:
    """Whether Redis holds the live stock the served snapshot follows; writes it back if not."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.state = "none"  # ok | missing | none (no live stock to keep)

    def check(self) -> None:
        """Blocking (the runtime's refresh thread): restore the levels when Redis lost them."""
        live = self.live
        store, snap = live.store, live.snapshot
        if store is None or snap is None or not snap.levels:
            self.state = "none"
            return
        if not live.live_stock.empty(store.client):
            self.state = "ok"
            return
        if self.state != "missing":
            log.warning("the live stock is not in Redis: restoring it from the last levels seen")
        self.state = "missing"
        lock = store.keys.restoring("stock")
        if not store.client.set(lock, b"1", nx=True, ex=LOCK_SECONDS):
            return  # another worker restores it; the next check sees it back
        try:
            rows = live.live_stock.seed(store.client, last_levels(snap))
        finally:
            store.client.delete(lock)
        STOCK_RESTORES.inc()
        log.warning("restored the live stock: %d levels", rows)
        self.state = "ok"
