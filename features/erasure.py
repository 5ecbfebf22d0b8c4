"""Forgetting a customer (the right to erasure) in what the data layer holds: Redis (aliases, the
recent-activity list, every snapshot's features, click and attribution markers, not yet exported
stream entries) and the files of a data folder (the Parquet event and feedback log, the identity
map, event files). The MLflow side (snapshot files and saved models) is `training.forget`.

What was erased is in the erasure log (`features.erasure_log`: salted hashes and times); the
files are rewritten from it. Everything here is idempotent: forgetting twice finds nothing the
second time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import redis

from features.dataset import load_identities
from features.erasure_log import ID_COLUMNS, Erased, ErasureLog, without_erased
from features.feedback import FEEDBACK_DECODER
from features.keys import Keys
from features.realtime import STREAM_DECODER
from features.store import RedisFeatureStore
from omnirec.redis_access import SyncClient

SCAN_COUNT = 10_000
AOF_WAIT_SECONDS = 120.0  # for a rewrite already running to finish
STREAM_CHUNK = 10_000


# ------------------------------------------------------------------------------------- Redis
@dataclass(frozen=True)
class RedisErasure:
    """What forgetting one customer removed from Redis (counts only)."""

    ids: int  # the customer's ids, aliases included
    entries: int  # keys and stream entries deleted
    aof_rewritten: bool


def person_ids(store: RedisFeatureStore | None, folders: Sequence[Path], ident: str) -> set[str]:
    """The customer an id names (itself, or the owner of the alias) and all their ids: from
    Redis's alias keys and lists and from the folders' identity maps."""
    customer = ident
    if store is not None:
        owner = store.client.get(store.keys.alias(ident))
        if isinstance(owner, bytes) and owner:
            customer = owner.decode()
    maps = [load_identities(folder).table.to_pydict() for folder in folders]
    for table in maps:
        owners = dict(zip(table["alias_id"], table["customer_id"], strict=True))
        customer = str(owners.get(customer, customer))
    ids = {customer}
    for table in maps:
        pairs = zip(table["alias_id"], table["customer_id"], strict=True)
        ids |= {str(a) for a, c in pairs if c == customer}
    if store is not None:
        stored = store.client.get(store.keys.aliases(customer))
        if isinstance(stored, bytes) and stored:
            ids |= {str(a) for _, a in msgspec.msgpack.decode(stored)}
    return ids


def forget_in_redis(log: ErasureLog, store: RedisFeatureStore, ident: str) -> RedisErasure:
    """Log the customer `ident` names (with their aliases) as erased, then delete everything Redis
    holds about them and have Redis rewrite its append-only file: what the service needs done at
    once. The files and MLflow follow from the log (`training.forget.apply_erasures`)."""
    ids = person_ids(store, [], ident)
    customer = owner_of(store, ident)
    log.record(sorted(ids))  # first: no later step can miss them
    entries = erase_from_redis(store.client, store.keys, customer, sorted(ids))
    return RedisErasure(len(ids), entries, rewrite_append_only_file(store))


def rewrite_append_only_file(store: RedisFeatureStore) -> bool:
    """Ask Redis to rewrite its append-only file (its history then no longer holds the erased
    keys' old values); False when Redis keeps none."""
    raw = store.client.config_get("appendonly")
    config = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in raw.items()}
    value = config.get("appendonly", "no")
    if (value.decode() if isinstance(value, bytes) else str(value)) != "yes":
        return False
    deadline = time.monotonic() + AOF_WAIT_SECONDS
    while True:  # a rewrite already running forked before the erasure: the next one counts
        try:
            store.client.bgrewriteaof()
            return True
        except redis.ResponseError as exc:
            if "in progress" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def owner_of(store: RedisFeatureStore, ident: str) -> str:
    """The customer an alias belongs to (Redis's alias key), or the id itself."""
    owner = store.client.get(store.keys.alias(ident))
    return owner.decode() if isinstance(owner, bytes) and owner else ident


def erase_from_redis(client: SyncClient, keys: Keys, customer: str, ids: Sequence[str]) -> int:
    """Delete everything Redis holds about `customer` (whose ids, aliases included, are `ids`):
    alias keys and list, recent activity, each registered snapshot's features, click and
    attribution markers, and their entries in the event streams not yet exported. Returns how
    many keys and stream entries went."""
    every = sorted({customer, *ids})
    doomed = [keys.alias(i) for i in every] + [keys.aliases(i) for i in every]
    doomed += [keys.recent(i) for i in every]
    snapshots = [
        s.decode() if isinstance(s, bytes) else str(s) for s in client.hkeys(keys.snapshots)
    ]
    doomed += [keys.snapshot(s, "c", i) for s in snapshots for i in every]
    for ident in every:
        for pattern in (keys.clicked(ident, "*"), keys.attributed(ident, "*", "*")):
            doomed += [
                k.decode() if isinstance(k, bytes) else str(k)
                for k in client.scan_iter(match=pattern, count=SCAN_COUNT)
            ]
    removed = sum(int(client.delete(k)) for k in doomed)
    removed += _erase_trend_pairs(client, keys, every)
    return removed + _erase_stream_entries(client, keys, set(every))


def _erase_trend_pairs(client: SyncClient, keys: Keys, ids: Sequence[str]) -> int:
    """The (item, customer) pairs trending counts customers with (`features.trending`)."""
    removed = 0
    for key in client.scan_iter(match=keys.trend_people_pattern(), count=SCAN_COUNT):
        for ident in ids:
            pattern = b"*\x00" + _glob_literal(ident).encode()
            members = [m for m, _ in client.zscan_iter(key, match=pattern, count=SCAN_COUNT)]
            if members:
                removed += int(client.zrem(key, *members))
    return removed


def _glob_literal(text: str) -> str:
    """`text` as a Redis glob that matches only itself."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def stream_keys(client: SyncClient, keys: Keys) -> list[str]:
    """The deployment's event streams that exist."""
    found, number = [], 0
    while client.exists(keys.stream(number)):
        found.append(keys.stream(number))
        number += 1
    return found


def _erase_stream_entries(client: SyncClient, keys: Keys, ids: set[str]) -> int:
    removed = 0
    for stream in stream_keys(client, keys):
        start = "-"
        while True:
            entries = client.xrange(stream, min=start, max="+", count=STREAM_CHUNK)
            if not entries:
                break
            doomed: list[bytes | str] = [
                eid for eid, fields in entries if eid is not None and _names(fields or {}) & ids
            ]
            if doomed:
                removed += int(client.xdel(stream, *doomed))
            last = entries[-1][0]
            last = last.decode() if isinstance(last, bytes) else str(last)
            start = "(" + last
            if len(entries) < STREAM_CHUNK:
                break
    return removed


def _names(fields: dict[bytes | str, bytes | str]) -> set[str]:
    """The customer and alias an event or feedback stream entry names."""
    for name, value in fields.items():
        raw = value.encode() if isinstance(value, str) else value
        if name in {b"e", "e"}:
            event = STREAM_DECODER.decode(raw)
            return {event.customer_id, event.alias_id or ""}
        if name in {b"f", "f"}:
            return {FEEDBACK_DECODER.decode(raw).customer_id}
    return set()


# ------------------------------------------------------------------------------------- files
def erase_from_files(folder: Path, erased: Erased) -> list[Path]:
    """Rewrite every Parquet or CSV file under `folder` that holds rows of erased ids (`without_
    erased`: events up to the erasure, identity rows always) without them, each written whole
    beside it, then renamed over it; returns the files rewritten. Runs from the erasure log
    alone (`erased`: read once), so it can follow an erasure the service made (`omnirec forget
    --pending`)."""
    if not erased:
        return []
    rewritten = []
    for path in sorted([*folder.rglob("*.parquet"), *folder.rglob("*.csv")]):
        names = (
            pq.read_schema(path).names
            if path.suffix == ".parquet"
            else pacsv.open_csv(path).schema.names
        )
        if not set(ID_COLUMNS) & set(names):
            continue
        table = pq.read_table(path) if path.suffix == ".parquet" else pacsv.read_csv(path)
        kept = without_erased(table, erased)
        if kept.num_rows == table.num_rows:
            continue
        tmp = path.with_name(path.name + ".erasing")
        if path.suffix == ".parquet":
            pq.write_table(kept, tmp)
        else:
            pacsv.write_csv(kept, tmp)
        os.replace(tmp, path)
        rewritten.append(path)
    return rewritten
