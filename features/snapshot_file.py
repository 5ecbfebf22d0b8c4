"""A feature snapshot as a file: every key a publish wrote and its value, in Parquet.

Publishing records what it writes (`SnapshotRecorder`) and the file is stored with the model
version in MLflow; `restore_snapshot` streams it back into an empty or flushed Redis, so Redis is a
cache that can be rebuilt from MLflow at any time. Keys are stored without the deployment's prefix.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType

import msgspec
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from features.encoding import META_DECODER, SnapshotMeta
from features.erasure_log import Erased, ErasureLog
from omnirec.errors import FeatureStoreError
from omnirec.redis_access import SyncClient, bulk_set

SCHEMA = pa.schema([("key", pa.binary()), ("value", pa.binary())])
META_KEY = b"omnirec.snapshot_meta"
ROWS_PER_GROUP = 20_000


class SnapshotRecorder:
    """Appends (key without prefix, value) rows to a Parquet file as they stream to Redis."""

    def __init__(self, path: Path, prefix: str) -> None:
        self.path = path
        self.strip = len(prefix) + 1  # "{prefix}:"
        self._writer = pq.ParquetWriter(path, SCHEMA, compression="zstd")
        self._keys: list[bytes] = []
        self._values: list[bytes] = []
        self.rows = 0

    def record(self, key: bytes, value: bytes) -> None:
        """Record one written (full key, value)."""
        self._keys.append(key[self.strip :])
        self._values.append(value)
        if len(self._keys) >= ROWS_PER_GROUP:
            self._flush()

    def tee(self, entries: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
        """`entries` (full keys) unchanged, each also recorded."""
        for key, value in entries:
            self.record(key, value)
            yield key, value

    def _flush(self) -> None:
        if self._keys:
            self._writer.write_table(pa.table([self._keys, self._values], schema=SCHEMA))
            self.rows += len(self._keys)
            self._keys, self._values = [], []

    def append(self, batch: pa.RecordBatch) -> None:
        """Add rows recorded elsewhere (keys already without the prefix), e.g. by Spark's
        executors."""
        self._flush()
        self._writer.write_batch(batch.cast(SCHEMA))
        self.rows += batch.num_rows

    def close(self, meta: SnapshotMeta | None) -> Path:
        """Finish the file; `meta` (the snapshot's registration) goes into its metadata."""
        self._flush()
        if meta is not None:
            self._writer.add_key_value_metadata({META_KEY: msgspec.json.encode(meta)})
        self._writer.close()
        return self.path

    def __enter__(self) -> SnapshotRecorder:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is not None:
            self._writer.close()


class MemoryRecorder:
    """Records (key without prefix, value) rows in memory, handed over as Arrow batches: what a
    Spark partition wrote, for the driver's snapshot file."""

    def __init__(self, prefix: str) -> None:
        self.strip = len(prefix) + 1
        self._keys: list[bytes] = []
        self._values: list[bytes] = []

    def record(self, key: bytes, value: bytes) -> None:
        self._keys.append(key[self.strip :])
        self._values.append(value)

    def tee(self, entries: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
        for key, value in entries:
            self.record(key, value)
            yield key, value

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The recorded rows, ROWS_PER_GROUP at a time."""
        for start in range(0, len(self._keys), ROWS_PER_GROUP):
            stop = start + ROWS_PER_GROUP
            yield pa.record_batch([self._keys[start:stop], self._values[start:stop]], schema=SCHEMA)


def snapshot_meta_of(path: Path) -> SnapshotMeta:
    """The registration of the snapshot recorded in `path`."""
    metadata = pq.read_metadata(path).metadata or {}  # the file's key-value metadata
    if META_KEY not in metadata:
        raise FeatureStoreError(f"{path}: not a recorded feature snapshot (no snapshot metadata)")
    return META_DECODER.decode(metadata[META_KEY])


def restore_entries(
    path: Path, prefix: str, erased: Erased | None = None
) -> Iterator[tuple[bytes, bytes]]:
    """Every recorded (full key, value), row group by row group; with `erased` (the erasure log
    read), none of a customer erased since the snapshot was published (an erasure the file was
    not yet rewritten for)."""
    head = prefix.encode() + b":"
    parquet = pq.ParquetFile(path)
    published = float(snapshot_meta_of(path).created_at)
    for group in range(parquet.num_row_groups):
        table = parquet.read_row_group(group)
        keys, values = table.column("key").to_pylist(), table.column("value").to_pylist()
        gone = erased_keys(keys, erased, published) if erased else np.zeros(len(keys), bool)
        yield from (
            (head + k, v) for k, v, g in zip(keys, values, gone.tolist(), strict=True) if not g
        )


def restore_snapshot(
    client: SyncClient, prefix: str, path: Path, log: ErasureLog | None = None
) -> tuple[SnapshotMeta, int]:
    """Write every recorded key of `path` back into Redis (none of an erased customer, with
    `log`); returns (its meta, keys written). The caller registers and activates the snapshot
    once this returned."""
    meta = snapshot_meta_of(path)
    erased = log.read() if log is not None else None
    return meta, bulk_set(client, restore_entries(path, prefix, erased))


def without_erased_keys(path: Path, erased: Erased) -> int:
    """Rewrite the recorded snapshot at `path` without the keys of customers erased since it was
    published (their features, alias keys and alias lists), its metadata kept (written beside it,
    then renamed over it); returns how many rows went."""
    if not erased:
        return 0
    parquet = pq.ParquetFile(path)
    metadata = parquet.metadata.metadata or {}  # the file's key-value metadata
    published = float(snapshot_meta_of(path).created_at)
    dropped = 0
    tmp = path.with_name(path.name + ".erasing")
    writer = pq.ParquetWriter(tmp, SCHEMA, compression="zstd")
    try:
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group).cast(SCHEMA)
            gone = erased_keys(table.column("key").to_pylist(), erased, published)
            dropped += int(gone.sum())
            writer.write_table(table.filter(pa.array(~gone)))
        if META_KEY in metadata:
            writer.add_key_value_metadata({META_KEY: metadata[META_KEY]})
    finally:
        writer.close()
    if dropped:
        os.replace(tmp, path)
    else:
        tmp.unlink()
    return dropped


def erased_keys(keys: list[bytes], erased: Erased, published: float) -> npt.NDArray[np.bool_]:
    """Per recorded key (without prefix): whether it holds a customer erased at or after
    `published` (their features `s:<snapshot>:c:<id>`, `id:<alias>`, `aliases:<id>`)."""
    ids = [_person_of(k) for k in keys]
    named = [k for k, i in enumerate(ids) if i is not None]
    out = np.zeros(len(keys), bool)
    if named:
        until = erased.until([str(ids[k]) for k in named])
        out[np.array(named)] = until >= published
    return out


def _person_of(key: bytes) -> str | None:
    """The customer or alias id a recorded key is about, or None for keys about no one."""
    if key.startswith(b"s:"):
        parts = key.split(b":", 3)
        return parts[3].decode() if len(parts) == 4 and parts[2] == b"c" else None
    for head in (b"id:", b"aliases:"):
        if key.startswith(head):
            return key[len(head) :].decode()
    return None
