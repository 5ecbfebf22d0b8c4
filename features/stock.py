"""Live stock in Redis: the quantity of each item at each store (the online warehouse is a store
like any other, `online`), changed at once by the stock feed, with a change log that the
service's workers follow so that the next request sees a change.

Keys share the hash tag `{prefix:stock}` (one slot on a cluster: the update script touches them
all): `:q:<store>` hashes item id -> quantity, `:stores` the set of stores, `:version` a counter
moved by every update, `:changes` a stream with one entry per update (its version, and the stores,
items and quantities they now have, in msgpack). A worker reads the entries after the last one it
applied with each request (one XRANGE in the same round trip as the customer); a gap in the
versions (it fell behind the trimmed log) makes it read everything again."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from features.keys import Keys
from omnirec.redis_access import Command, Reply, redis_errors

CHANGES_KEPT = 20_000  # update batches kept in the change log; a worker further behind reloads
READ_CHUNK = 2_000  # change-log entries read per round trip

# KEYS: version, changes, stores. ARGV: quantity-hash prefix, change-log length, then
# (store, item, 'q' | 'd', value) per update: 'q' sets the level, 'd' moves it (never below 0).
_APPLY = """
local prefix = ARGV[1]
local stores, items, levels, seen = {}, {}, {}, {}
local n = 0
for i = 3, #ARGV, 4 do
  local key = prefix .. ARGV[i]
  local level
  if ARGV[i + 2] == 'q' then
    level = tonumber(ARGV[i + 3])
    redis.call('HSET', key, ARGV[i + 1], level)
  else
    level = redis.call('HINCRBY', key, ARGV[i + 1], ARGV[i + 3])
    if level < 0 then
      level = 0
      redis.call('HSET', key, ARGV[i + 1], 0)
    end
  end
  n = n + 1
  stores[n] = ARGV[i]
  items[n] = ARGV[i + 1]
  levels[n] = level
  if not seen[ARGV[i]] then
    seen[ARGV[i]] = true
    redis.call('SADD', KEYS[3], ARGV[i])
  end
end
local version = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'v', version,
           'd', cmsgpack.pack({stores, items, levels}))
return version
"""
_CHANGE = msgspec.msgpack.Decoder(tuple[list[str], list[str], list[int]])


@dataclass(frozen=True)
class StockUpdate:
    """One checked row of the feed: set `store_id`'s level of `item_id` (`delta` False) or move
    it by `value` (`delta` True)."""

    store_id: str
    item_id: str
    value: int
    delta: bool = False


@dataclass(frozen=True)
class StockChanges:
    """Levels that changed, in order (a later entry for the same store and item wins)."""

    stores: list[str]
    items: list[str]
    levels: list[int]
    last_id: str  # change-log position read up to
    version: int  # the version of the last entry read
    gap: bool  # entries between the known version and these were trimmed away: reload


class LiveStock:
    """The Redis side: apply updates (one script call), read everything, read the change log."""

    def __init__(self, prefix: str) -> None:
        keys = Keys(prefix)
        self.quantity_prefix = keys.stock_quantities
        self.version_key = keys.stock_version
        self.changes_key = keys.stock_changes
        self.stores_key = keys.stock_stores
        self.script_sha: str | None = None

    # ---------------------------------------------------------------- writing
    def apply_commands(self, updates: Sequence[StockUpdate]) -> Command:
        """The EVAL that applies `updates` and returns the new version."""
        args: list[str | int] = []
        for u in updates:
            args += [u.store_id, u.item_id, "d" if u.delta else "q", u.value]
        keys = (self.version_key, self.changes_key, self.stores_key)
        return ("EVAL", _APPLY, len(keys), *keys, self.quantity_prefix, CHANGES_KEPT, *args)

    def apply(self, client: object, updates: Sequence[StockUpdate]) -> int:
        """Apply with a blocking redis-py client; returns the new version."""
        if not updates:
            return self.version(client)
        with redis_errors("stock update"):
            return int(client.execute_command(*self.apply_commands(updates)))  # type: ignore[attr-defined]

    def seed(self, client: object, stock: pa.Table, chunk: int = 10_000) -> int:
        """Write a stock table (store_id, item_id, quantity) as absolute levels; returns rows."""
        stores = stock.column("store_id").to_pylist()
        items = stock.column("item_id").to_pylist()
        levels = stock.column("quantity").to_pylist()
        updates = [
            StockUpdate(str(s), str(i), max(0, int(q or 0)))
            for s, i, q in zip(stores, items, levels, strict=True)
        ]
        for start in range(0, len(updates), chunk):
            self.apply(client, updates[start : start + chunk])
        return len(updates)

    def empty(self, client: object) -> bool:
        with redis_errors("stock read"):
            return int(client.scard(self.stores_key)) == 0  # type: ignore[attr-defined]

    # ---------------------------------------------------------------- reading
    def version(self, client: object) -> int:
        with redis_errors("stock read"):
            raw = client.get(self.version_key)  # type: ignore[attr-defined]
        return int(raw) if raw else 0

    def read_all(
        self, client: object, item_index: dict[str, int], n_items: int
    ) -> tuple[dict[str, npt.NDArray[np.int32]], int, str]:
        """Every store's levels over the item columns of `item_index` (items it does not know are
        left out), with the version and change-log position they were read at."""
        with redis_errors("stock read"):
            # no MULTI (a cluster pipeline may not run one): an update landing between these
            # reads shows as a version gap at the next follow, which reads everything again
            pipe = client.pipeline(transaction=False)  # type: ignore[attr-defined]
            pipe.get(self.version_key)
            pipe.xrevrange(self.changes_key, count=1)
            pipe.smembers(self.stores_key)
            version, last, stores = pipe.execute()
            names = sorted(s.decode() if isinstance(s, bytes) else str(s) for s in stores)
            pipe = client.pipeline(transaction=False)  # type: ignore[attr-defined]
            for store in names:
                pipe.hgetall(self.quantity_prefix + store)
            hashes = pipe.execute()
        levels: dict[str, npt.NDArray[np.int32]] = {}
        for store, mapping in zip(names, hashes, strict=True):
            array = np.full(n_items, -1, np.int32)  # -1: the store does not list the item
            for item, level in mapping.items():
                col = item_index.get(item.decode() if isinstance(item, bytes) else str(item))
                if col is not None:
                    array[col] = int(level)
            levels[store] = array
        last_id = _entry_id(last[0][0]) if last else "0-0"
        return levels, int(version) if version else 0, last_id

    def changes_command(self, after: str) -> Command:
        return ("XRANGE", self.changes_key, f"({after}", "+", "COUNT", READ_CHUNK)

    @staticmethod
    def decode_changes(reply: Reply, after: str, version: int) -> StockChanges:
        """The entries of an XRANGE reply after `after` (at `version`), flattened."""
        stores: list[str] = []
        items: list[str] = []
        levels: list[int] = []
        last, gap, current = after, False, version
        for entry in reply if isinstance(reply, list) else []:
            last = _entry_id(entry[0])
            raw = entry[
                1
            ]  # a flat [field, value, ...] from the auto-pipeline, a dict from redis-py
            fields = raw if isinstance(raw, dict) else dict(zip(raw[::2], raw[1::2], strict=True))
            entry_version = int(fields[b"v"])
            gap = gap or entry_version != current + 1
            current = entry_version
            s, i, q = _CHANGE.decode(fields[b"d"])
            stores += s
            items += i
            levels += q
        return StockChanges(stores, items, levels, last, current, gap)


def _entry_id(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
