"""One recommendation question's parameters: what the routes read from a request (the typed
handler and the fast path alike) and what the engine's rooms take."""

from __future__ import annotations

import msgspec

ONLINE = "online"  # the online warehouse's store id
ONLINE_CHANNELS = frozenset({"web", "app"})


class Ask(msgspec.Struct, frozen=True, kw_only=True):
    """How many items, for which channel, store and category, and how to answer."""

    limit: int = 10
    channel: str | None = None
    store_id: str | None = None
    category: str | None = None
    exclude_purchased: bool = True
    explain: bool = False
    availability: bool = False  # where each item can be had (per store, online)
    placement: str | None = None
    request_id: str = ""

    def but(self, **changes: object) -> Ask:
        """This question with some parameters changed."""
        return msgspec.structs.replace(self, **changes)

    def stocked(self, online_stock: bool) -> Ask:
        """The question as the stock filter reads it: a web or app request without a store is
        asked for the online warehouse's stock (when the data has one), so nothing sold out
        online is suggested there; a store given (click and collect) wins."""
        if self.store_id is None and self.channel in ONLINE_CHANNELS and online_stock:
            return self.but(store_id=ONLINE)
        return self
