"""A customer's rights over their data: everything held about them (export) and forgetting them
(erasure). The erasure is done in Redis before the answer (aliases, activity, features, click
markers, stream entries, the append-only file rewritten) and logged as salted hashes; the data
files and MLflow follow from the log with `omnirec forget --pending` (docs/operations.md)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import numpy as np
from litestar import Controller, delete, get
from litestar.di import Provide

from features.encoding import CUSTOMER_DECODER
from features.erasure import forget_in_redis, person_ids
from features.erasure_log import ErasureLog
from features.store import RedisFeatureStore
from omnirec.errors import StoreUnavailableError
from omnirec.redis_access import redis_errors
from serving.auth import needs
from serving.engine import Engine
from serving.routes.common import PathId, get_engine, request_id


class ErasureOut(msgspec.Struct):
    """What was erased at once, and what follows."""

    erased: bool
    ids: int  # the customer's ids, aliases included
    redis_entries: int
    append_only_file_rewritten: bool
    pending: str


class PrivacyController(Controller):
    path = "/v1/customers"
    tags = ["privacy"]
    dependencies = {"engine": Provide(get_engine, sync_to_thread=False)}
    opt = needs("privacy")

    @delete(
        "/{customer_id:str}",
        operation_id="forgetCustomer",
        summary="Forget a customer and every alias of theirs (right to erasure)",
        status_code=200,
    )
    async def forget(self, engine: Engine, customer_id: PathId) -> ErasureOut:
        """Idempotent: forgetting again finds nothing. 503 when Redis cannot be reached (nothing
        is half-erased silently: retry)."""
        store = _store(engine)

        def run() -> ErasureOut:
            with redis_errors("refused the erasure"):
                done = forget_in_redis(ErasureLog(engine.settings.data_dir), store, customer_id)
            return ErasureOut(
                True,
                done.ids,
                done.entries,
                done.aof_rewritten,
                "the event log, data files and MLflow snapshots and models follow from the "
                "erasure log: `omnirec forget --pending`",
            )

        return await asyncio.to_thread(run)

    @get(
        "/{customer_id:str}/export",
        operation_id="exportCustomer",
        summary="Everything held about a customer (right of access)",
    )
    async def export(self, engine: Engine, customer_id: PathId) -> dict[str, Any]:
        store = _store(engine)
        snap = engine.live.snapshot

        def held() -> dict[str, Any]:
            with redis_errors("refused the export"):
                ids = sorted(person_ids(store, [], customer_id))
                owner = store.client.get(store.keys.alias(customer_id))
                customer = owner.decode() if isinstance(owner, bytes) and owner else customer_id
                raw = (
                    store.client.get(store.keys.snapshot(snap.snapshot_id, "c", customer))
                    if snap is not None
                    else None
                )
                clicks = [
                    (k.decode() if isinstance(k, bytes) else str(k)).rsplit(":", 1)[-1]
                    for i in ids
                    for k in store.client.scan_iter(match=store.keys.clicked(i, "*"), count=10_000)
                ]
            purchases: list[dict[str, Any]] = []
            if isinstance(raw, bytes) and snap is not None:
                features = CUSTOMER_DECODER.decode(raw)
                items = np.frombuffer(features.purchased_items, np.int32).tolist()
                at = np.frombuffer(features.purchased_at, np.int64).tolist()
                purchases = [
                    {"item_id": snap.id_list[c], "last_bought_at": t}
                    for c, t in zip(items, at, strict=True)
                ]
            return {"customer_id": customer, "ids": ids, "purchases": purchases, "clicked": clicks}

        found = await asyncio.to_thread(held)
        profile = await engine.lookup.profile(found["customer_id"], request_id(), None)
        return {**found, "profile": msgspec.to_builtins(profile)}


def _store(engine: Engine) -> RedisFeatureStore:
    store = engine.live.store
    if store is None:
        raise StoreUnavailableError("no feature store: nothing to erase or export from")
    return store
