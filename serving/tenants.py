"""The tenants one service process serves: each retailer or brand with its own settings (data
folder, Redis prefix, MLflow model, rules, experiments, stock: `Settings.for_tenant`), engine and
model runtime, on the deployment's Redis server.

A request's tenant is its API key's (`serving.auth` puts it in the request's state); a key of one
tenant can name nothing of another, since every id it sends is looked up under its own tenant's
prefix and model. Without OMNIREC_TENANTS there is one tenant, the deployment itself (`None`).
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar.types import Scope

from serving.auth import TENANT_STATE
from serving.engine import Engine
from serving.heavy import HeavyWork
from serving.runtime import ModelRuntime


@dataclass
class Tenant:
    name: str | None
    engine: Engine
    runtime: ModelRuntime
    heavy: HeavyWork | None = None  # the heavy-request child (one tenant only: see app)


class Tenants:
    """The served tenants by name (the first is the one of requests that name none)."""

    def __init__(self, tenants: list[Tenant]) -> None:
        self.all = tenants
        self._by_name = {t.name: t for t in tenants}
        self.first = tenants[0]

    def get(self, name: str | None) -> Tenant:
        found = self._by_name.get(name)
        return self.first if found is None else found


def tenant_of(scope: Scope) -> Tenant:
    """The tenant a request's key belongs to (the first, for public routes)."""
    tenants: Tenants = scope["app"].state.tenants
    state = scope.get("state")
    return tenants.get(state.get(TENANT_STATE) if state else None)
