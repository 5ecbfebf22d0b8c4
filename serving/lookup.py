"""The tablet's questions about a person: who an alias typed at the till belongs to, and their
profile (identities, activity on every channel, the open cart, favourite categories)."""

from __future__ import annotations

import re

from features.schema import ID_PATTERN
from omnirec.errors import InvalidRequestError
from serving.live import Live
from serving.profile import alias_key, build_profile, decode_aliases
from serving.reads import CustomerState
from serving.schemas import Profile

_ID = re.compile(ID_PATTERN)


class Lookup:
    """Profile and lookup; both need Redis (a profile has no degraded form)."""

    def __init__(self, live: Live) -> None:
        self.live = live

    async def resolve_alias(self, alias_type: str, value: str) -> str:
        """Customer id for an alias typed at the tablet (e-mails are matched by their SHA-256);
        the alias itself when nobody has it."""
        key = alias_key(alias_type, value)
        if not _ID.match(key):  # nobody can have it; never echoed back as a customer id
            raise InvalidRequestError("value", "not an id a customer can have")
        return await self.live.alias_owner(key) or key

    async def profile(self, customer: str, request_id: str, store_id: str | None = None) -> Profile:
        """Identities, activity on every channel and favourite categories (raises
        StoreUnavailableError when Redis cannot answer)."""
        live = self.live
        snap = live.snapshot
        live.guard()
        state = (
            (await live.customers(snap, [customer], follow_stock=True))[0]
            if snap
            else CustomerState(customer, None, [])
        )
        aliases = decode_aliases(await live.aliases_of(state.customer_id))
        return build_profile(snap, state, aliases, request_id, store_id)
