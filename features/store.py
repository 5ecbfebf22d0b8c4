"""The Redis feature store: namespaced keys, snapshots switched atomically, pipelined reads/writes.

Keys on a Redis Cluster: the three keys that name snapshots (`{prefix}:active`, `:retired`,
`:snapshots`) share the hash tag `{prefix}` (one slot: the switch script touches two of them);
feature keys carry no tag, so a snapshot spreads over every master.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
import redis.cluster

from features.encoding import ENCODER, META_DECODER, SnapshotMeta
from features.keys import Keys
from features.snapshot_file import MemoryRecorder, SnapshotRecorder
from omnirec.errors import FeatureStoreError
from omnirec.redis_access import RedisTarget, bulk_set, redis_errors

# Atomic switch: the active pointer moves and the old snapshot is marked retired in one step.
_ACTIVATE = """
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if old and old ~= ARGV[1] then redis.call('ZADD', KEYS[2], ARGV[2], old) end
return old
"""


class RedisFeatureStore:
    """Feature snapshots in Redis (their keys: `features.keys`)."""

    def __init__(
        self, target: RedisTarget | str, prefix: str = "omnirec", timeout: float = 0.5
    ) -> None:
        self.target = RedisTarget(target) if isinstance(target, str) else target
        self.prefix = prefix
        self.keys = Keys(prefix)
        self.client = self.target.client(timeout)
        self._activate = self.client.register_script(_ACTIVATE)
        # publishing attaches one: every write is then also recorded into the snapshot file
        self.recorder: SnapshotRecorder | MemoryRecorder | None = None

    def _recorded(self, entries: Iterable[tuple[bytes, bytes]]) -> Iterable[tuple[bytes, bytes]]:
        return entries if self.recorder is None else self.recorder.tee(entries)

    # ----------------------------------------------------------- keys
    def key(self, snapshot: str, kind: str, ident: str = "") -> str:
        return self.keys.snapshot(snapshot, kind, ident)

    @property
    def active_key(self) -> str:
        return self.keys.active

    @property
    def retired_key(self) -> str:
        return self.keys.retired

    @property
    def meta_key(self) -> str:
        return self.keys.snapshots

    @property
    def cluster(self) -> bool:
        return isinstance(self.client, redis.cluster.RedisCluster)

    # ----------------------------------------------------------- reads
    def _call(self, fn: Any, *args: Any) -> Any:
        with redis_errors("error"):
            return fn(*args)

    def active_snapshot(self) -> str | None:
        value = self._call(self.client.get, self.active_key)
        return None if value is None else value.decode()

    def read_many(self, snapshot: str, kind: str, ids: Sequence[str]) -> list[bytes | None]:
        """Values for ids in one MGET (one per slot on a cluster); a missing id reads as None."""
        if not ids:
            return []
        keys = [self.key(snapshot, kind, i) for i in ids]
        if self.cluster:
            return list(self._call(self.client.mget_nonatomic, keys))  # type: ignore[union-attr]
        return list(self._call(self.client.mget, keys))

    def read_one(self, snapshot: str, kind: str, ident: str = "") -> bytes | None:
        value = self._call(self.client.get, self.key(snapshot, kind, ident))
        return None if value is None else bytes(value)

    # ----------------------------------------------------------- writes
    def write_batch(self, snapshot: str, kind: str, entries: Iterable[tuple[str, bytes]]) -> int:
        """Bulk SET (pipelined MSETs, per node on a cluster); returns count written."""
        encoded = ((self.key(snapshot, kind, ident).encode(), value) for ident, value in entries)
        return bulk_set(self.client, self._recorded(encoded))

    def write_one(self, snapshot: str, kind: str, ident: str, value: bytes) -> None:
        key = self.key(snapshot, kind, ident)
        self._call(self.client.set, key, value)
        if self.recorder is not None:
            self.recorder.record(key.encode(), value)

    def write_identities(self, identities: pa.Table) -> int:
        """Alias -> customer keys and each customer's alias list (global, not per snapshot:
        aliases do not change with a model); `identities` has alias_type, alias_id, customer_id.
        Returns the count of keys written."""
        if identities.num_rows == 0:
            return 0
        aliases = identities.column("alias_id").to_pylist()
        customers = identities.column("customer_id").to_pylist()
        types = identities.column("alias_type").to_pylist()
        by_customer: dict[str, list[list[str]]] = {}
        for kind, alias, customer in zip(types, aliases, customers, strict=True):
            by_customer.setdefault(customer, []).append([kind, alias])
        written = bulk_set(
            self.client,
            self._recorded(
                (self.keys.alias(a).encode(), c.encode())
                for a, c in zip(aliases, customers, strict=True)
            ),
        )
        written += bulk_set(
            self.client,
            self._recorded(
                (self.keys.aliases(c).encode(), ENCODER.encode(v)) for c, v in by_customer.items()
            ),
        )
        return written

    # ----------------------------------------------------------- snapshots
    def register_snapshot(self, meta: SnapshotMeta) -> None:
        import msgspec

        self._call(self.client.hset, self.meta_key, meta.snapshot_id, msgspec.json.encode(meta))

    def snapshot_meta(self, snapshot: str) -> SnapshotMeta | None:
        raw = self._call(self.client.hget, self.meta_key, snapshot)
        return None if raw is None else META_DECODER.decode(raw)

    def snapshots(self) -> list[tuple[SnapshotMeta, str]]:
        """Every known snapshot with its state: 'active', 'retired' or 'ready'."""
        raw = self._call(self.client.hgetall, self.meta_key)
        active = self.active_snapshot()
        retired = {m.decode() for m in self._call(self.client.zrange, self.retired_key, 0, -1)}
        out = []
        for value in raw.values():
            meta = META_DECODER.decode(value)
            state = (
                "active"
                if meta.snapshot_id == active
                else "retired"
                if meta.snapshot_id in retired
                else "ready"
            )
            out.append((meta, state))
        return sorted(out, key=lambda pair: pair[0].created_at)

    def activate(self, snapshot: str) -> str | None:
        """Make `snapshot` live in one atomic step; returns the previous snapshot id."""
        if self.snapshot_meta(snapshot) is None:
            raise FeatureStoreError(f"snapshot {snapshot} was never published (or was cleaned up)")
        old = self._call(
            self._activate, [self.active_key, self.retired_key], [snapshot, int(time.time())]
        )
        return None if old is None else old.decode()

    def cleanup(self, grace_seconds: int, now: float | None = None) -> list[str]:
        """Delete snapshots retired more than `grace_seconds` ago; returns their ids."""
        limit = (now or time.time()) - grace_seconds
        expired = [
            m.decode() for m in self._call(self.client.zrangebyscore, self.retired_key, 0, limit)
        ]
        for snapshot in expired:
            self.delete_snapshot(snapshot)
        return expired

    def delete_snapshot(self, snapshot: str) -> int:
        """UNLINK every key of a snapshot (SCAN in batches); returns how many."""
        if snapshot == self.active_snapshot():
            raise FeatureStoreError(f"snapshot {snapshot} is active; activate another first")
        deleted = 0
        batch: list[bytes] = []
        for key in self._call(self.client.scan_iter, self.keys.snapshot_pattern(snapshot), 5000):
            batch.append(key)
            if len(batch) >= 5000:
                deleted += int(self._call(self.client.unlink, *batch))
                batch = []
        if batch:
            deleted += int(self._call(self.client.unlink, *batch))
        self._call(self.client.zrem, self.retired_key, snapshot)
        self._call(self.client.hdel, self.meta_key, snapshot)
        return deleted

    def close(self) -> None:
        self.client.close()
