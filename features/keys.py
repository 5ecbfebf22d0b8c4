"""Every Redis key of a deployment, from its prefix (OMNIREC_REDIS_PREFIX): the one place a key's
format is written. Whoever reads or writes a key (the feature store, real-time events, feedback,
stock, trending, the service) asks a `Keys` for it.

On a Redis Cluster, keys a script or a transaction touches together share a hash tag (the part
in braces): the snapshot registry `{prefix}`, the live stock `{prefix:stock}`, and each event
stream with its event-id markers `{prefix:events:N}`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """The key formats of one deployment."""

    prefix: str

    # ---------------------------------------------------------------- feature snapshots
    def snapshot(self, snapshot: str, kind: str, ident: str = "") -> str:
        """A snapshot's entry: `kind` is `c` (a customer), `together`, `meta`, ..."""
        base = f"{self.prefix}:s:{snapshot}:{kind}"
        return f"{base}:{ident}" if ident else base

    def snapshot_pattern(self, snapshot: str) -> str:
        """Every entry of a snapshot (SCAN MATCH)."""
        return f"{self.prefix}:s:{snapshot}:*"

    @property
    def active(self) -> str:
        """The live snapshot's name."""
        return f"{{{self.prefix}}}:active"

    @property
    def retired(self) -> str:
        """Snapshots switched away from, by the time they were (cleaned up after a grace)."""
        return f"{{{self.prefix}}}:retired"

    @property
    def snapshots(self) -> str:
        """Every published snapshot's metadata."""
        return f"{{{self.prefix}}}:snapshots"

    def restoring(self, snapshot: str) -> str:
        """The lock one worker holds while it restores a lost snapshot."""
        return f"{self.prefix}:restoring:{snapshot}"

    # ---------------------------------------------------------------- identities
    def alias(self, alias: str) -> str:
        """alias (`card:...`, `device:...`, a customer id) -> the customer it belongs to."""
        return f"{self.prefix}:id:{alias}"

    def aliases(self, customer: str) -> str:
        """customer -> their aliases (encoded list)."""
        return f"{self.prefix}:aliases:{customer}"

    # ---------------------------------------------------------------- real-time events
    def stream(self, number: int) -> str:
        """One of the event streams (events are spread over them by customer)."""
        return f"{{{self.prefix}:events:{number}}}"

    def event_id(self, number: int, event_id: str) -> str:
        """Marks a client's event id as stored in stream `number` (retries store it once)."""
        return f"{self.stream(number)}:id:{event_id}"

    def recent(self, customer: str) -> str:
        """A customer's recent real-time activity (newest first)."""
        return f"{self.prefix}:rt:{customer}"

    def trend(self, hour: int, scope: str) -> str:
        """An hour's trending counts in a scope (`all`, `channel:web`, `store:S001`)."""
        return f"{self.prefix}:trend:{hour}:{scope}"

    def trend_people(self, hour: int, scope: str) -> str:
        """An hour's (item, customer) pairs in a scope: how many customers made an item trend."""
        return f"{self.prefix}:trendpeople:{hour}:{scope}"

    def trend_people_pattern(self) -> str:
        """A SCAN pattern matching every hour's and scope's (item, customer) pairs."""
        return f"{self.prefix}:trendpeople:*"

    # ---------------------------------------------------------------- feedback
    def clicked(self, customer: str, item: str) -> str:
        """The recommendation id a customer last clicked an item from (attribution window)."""
        return f"{self.prefix}:clicked:{customer}:{item}"

    def attributed(self, customer: str, item: str, recommendation: str) -> str:
        """Set once a purchase was attributed to a recommendation (counted once)."""
        return f"{self.prefix}:attributed:{customer}:{item}:{recommendation}"

    # ---------------------------------------------------------------- live stock
    @property
    def stock_tag(self) -> str:
        return f"{{{self.prefix}:stock}}"

    @property
    def stock_quantities(self) -> str:
        """The prefix of each store's hash of item -> quantity (the store id follows)."""
        return f"{self.stock_tag}:q:"

    @property
    def stock_version(self) -> str:
        return f"{self.stock_tag}:version"

    @property
    def stock_changes(self) -> str:
        return f"{self.stock_tag}:changes"

    @property
    def stock_stores(self) -> str:
        return f"{self.stock_tag}:stores"
