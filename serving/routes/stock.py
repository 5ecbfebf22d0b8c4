"""The stock feed: levels per store and item, applied at once (the next request sees them)."""

from __future__ import annotations

import re

from litestar import Controller, post
from litestar.di import Provide

from features.schema import ID_PATTERN
from features.stock import StockUpdate
from omnirec.errors import StoreUnavailableError
from serving.ask import ONLINE
from serving.auth import needs
from serving.catalogue import LoadedSnapshot
from serving.engine import Engine
from serving.metrics import STOCK
from serving.routes.common import get_engine, request_id
from serving.schemas import EventError, StockApplied, StockIn, StockUpdateIn

APPLY_CHUNK = 1_000  # rows per script call: Redis serves other clients between two of them
MAX_LEVEL = 1_000_000_000
_ID = re.compile(ID_PATTERN)


def check_rows(
    rows: list[StockUpdateIn], snap: LoadedSnapshot | None = None
) -> tuple[list[StockUpdate], list[EventError]]:
    """The rows that can be applied, and an error naming the field for each other one. With the
    served snapshot, a row must name one of its stores (or `online`) and one of its items: the
    stock feed changes levels, it never adds a store or an item (they come with the data)."""
    good: list[StockUpdate] = []
    errors: list[EventError] = []
    match = _ID.match
    stores = None if snap is None else {*snap.stores, ONLINE}
    items = None if snap is None else snap.item_index
    for index, row in enumerate(rows):
        if match(row.store_id) is None:
            errors.append(EventError(index, "store_id", "invalid characters or longer than 128"))
        elif match(row.item_id) is None:
            errors.append(EventError(index, "item_id", "invalid characters or longer than 128"))
        elif stores is not None and row.store_id not in stores:
            errors.append(EventError(index, "store_id", "not a store of the served data"))
        elif items is not None and row.item_id not in items:
            errors.append(EventError(index, "item_id", "not an item of the served catalogue"))
        elif (row.quantity is None) == (row.delta is None):
            errors.append(
                EventError(
                    index, "quantity", "give quantity (the level) or delta (a change), not both"
                )
            )
        elif row.quantity is not None and not 0 <= row.quantity <= MAX_LEVEL:
            errors.append(EventError(index, "quantity", f"must be between 0 and {MAX_LEVEL:,}"))
        elif row.delta is not None and not -MAX_LEVEL <= row.delta <= MAX_LEVEL:
            errors.append(
                EventError(index, "delta", f"must be between -{MAX_LEVEL:,} and {MAX_LEVEL:,}")
            )
        elif row.quantity is not None:
            good.append(StockUpdate(row.store_id, row.item_id, row.quantity))
        else:
            good.append(StockUpdate(row.store_id, row.item_id, row.delta or 0, delta=True))
    return good, errors


class StockController(Controller):
    path = "/v1/stock"
    tags = ["stock"]
    dependencies = {"engine": Provide(get_engine, sync_to_thread=False)}
    opt = needs("stock")

    @post(
        "/",
        operation_id="updateStock",
        status_code=200,
        summary="Set (quantity) or move (delta) stock levels per store and item, up to 50,000 rows",
    )
    async def update(self, engine: Engine, data: StockIn) -> StockApplied:
        """Applied in Redis before the answer; a level of 0 takes the item out of that store's
        suggestions, and an item at 0 everywhere it is listed is suggested nowhere. The online
        warehouse is the store `online`."""
        updates, errors = check_rows(list(data.updates), engine.live.snapshot)
        version = 0
        if updates:
            if engine.live.store is None or engine.live.breaker.open:
                STOCK.labels("unavailable").inc(len(data.updates))
                raise StoreUnavailableError("Redis is unavailable")
            commands = [
                engine.live.live_stock.apply_commands(updates[start : start + APPLY_CHUNK])
                for start in range(0, len(updates), APPLY_CHUNK)
            ]
            try:
                replies = await engine.live.pipeline.checked(commands)
            except StoreUnavailableError:
                engine.live.breaker.trip()
                STOCK.labels("unavailable").inc(len(data.updates))
                raise
            version = int(replies[-1])  # type: ignore[arg-type]
        STOCK.labels("applied").inc(len(updates))
        STOCK.labels("rejected").inc(len(errors))
        return StockApplied(len(updates), len(errors), errors, version, request_id())
