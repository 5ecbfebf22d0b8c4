"""The tablet's customer lookups: identity resolution and the cross-channel profile."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Controller, get
from litestar.di import Provide
from litestar.params import Parameter

from serving.auth import needs
from serving.engine import Engine
from serving.routes.common import PathId, StoreId, check_store, get_engine, request_id
from serving.schemas import Profile, StoresOut

AliasType = Literal["customer", "loyalty_card", "email", "phone", "device", "account"]


class CustomerController(Controller):
    path = "/v1/customers"
    tags = ["customers"]
    dependencies = {"engine": Provide(get_engine, sync_to_thread=False)}
    opt = needs("tablet")

    @get(
        "/lookup",
        operation_id="lookupCustomer",
        summary="Find a customer by loyalty card, e-mail, phone, ...",
    )
    async def lookup(
        self,
        engine: Engine,
        alias_type: AliasType,
        value: Annotated[
            str, Parameter(min_length=1, max_length=254, description="the alias as typed")
        ],
        store_id: StoreId = None,
    ) -> Profile:
        """E-mails are matched through their SHA-256 (the identity map never holds plain
        addresses)."""
        customer = await engine.lookup.resolve_alias(alias_type, value)
        return await engine.lookup.profile(customer, request_id(), check_store(engine, store_id))

    @get(
        "/{customer_id:str}/profile",
        operation_id="customerProfile",
        summary="Identities and recent activity on every channel",
    )
    async def profile(
        self, engine: Engine, customer_id: PathId, store_id: StoreId = None
    ) -> Profile:
        """The open cart first (with where each item is available from `store_id`), then
        activity."""
        return await engine.lookup.profile(customer_id, request_id(), check_store(engine, store_id))


class StoreController(Controller):
    path = "/v1/stores"
    tags = ["stores"]
    dependencies = {"engine": Provide(get_engine, sync_to_thread=False)}
    opt = needs("tablet", "recommend")

    @get(
        "/",
        operation_id="listStores",
        summary="Stores with stock information in the served snapshot",
    )
    async def stores(self, engine: Engine) -> StoresOut:
        """Store ids, and the name of each that the stores file names (`names`)."""
        snap = engine.live.snapshot
        stores = sorted(snap.stock) if snap else []
        named = snap.store_names if snap else {}
        return StoresOut(stores, {s: named[s] for s in stores if s in named})


class CategoryController(Controller):
    path = "/v1/categories"
    tags = ["stores"]
    dependencies = {"engine": Provide(get_engine, sync_to_thread=False)}
    opt = needs("tablet", "recommend")

    @get("/", operation_id="listCategories", summary="The catalogue's categories (filters)")
    async def categories(self, engine: Engine) -> dict[str, list[str]]:
        snap = engine.live.snapshot
        return {"categories": list(snap.category_names) if snap else []}
