"""Drain the event stream into the Parquet event log, at least once and idempotently.

A consumer group remembers what was delivered; each batch is written to a file named after its
first and last stream ids (written to a temporary name, then renamed), and only then acknowledged
and deleted from the stream. A crash before the acknowledgement re-delivers the same batch, which
rewrites the same file: no loss, no duplicate.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import redis

from features.realtime import STREAM_DECODER, RealtimeEvents, StreamEvent
from features.schema import TIMESTAMP
from omnirec.progress import Progress
from omnirec.redis_access import SyncClient, redis_errors

GROUP = "omnirec-export"
CONSUMER = "exporter"
STORAGE_SCHEMA = pa.schema([
    ("customer_id", pa.dictionary(pa.int32(), pa.string())), ("item_id", pa.dictionary(pa.int32(), pa.string())),
    ("event_type", pa.dictionary(pa.int32(), pa.string())), ("channel", pa.dictionary(pa.int32(), pa.string())),
    ("timestamp", TIMESTAMP), ("quantity", pa.int32()), ("price", pa.float64()),
    ("store_id", pa.dictionary(pa.int32(), pa.string())), ("session_id", pa.string()),
    ("event_id", pa.string()),
])  # fmt: skip


@dataclass(frozen=True)
class ExportResult:
    events: int
    files: list[Path]


def _table(events: Sequence[StreamEvent]) -> pa.Table:
    columns = {name: [getattr(e, name) for e in events] for name in STORAGE_SCHEMA.names}
    return pa.table({
        name: pa.array(values, pa.int64()).cast(TIMESTAMP) if name == "timestamp"
        else pa.array(values, STORAGE_SCHEMA.field(name).type.value_type).dictionary_encode()
        if pa.types.is_dictionary(STORAGE_SCHEMA.field(name).type)
        else pa.array(values, STORAGE_SCHEMA.field(name).type)
        for name, values in columns.items()
    }).cast(STORAGE_SCHEMA)  # fmt: skip


def export_events(realtime: RealtimeEvents, folder: Path, *, batch: int = 10_000,
                  after_write: Callable[[Path], None] | None = None) -> ExportResult:  # fmt: skip
    """Drain every event stream into
    `folder/date=YYYY-MM-DD/stream-<n>-<first>-<last>.parquet`."""
    total, files = 0, []
    progress = Progress(None, "export", "events")
    for number, stream in enumerate(realtime.stream_keys):
        with redis_errors("refused the export"):
            events, written = _drain(
                realtime.store.client, stream, number, folder, batch, after_write
            )
        total += events
        files += written
        progress.update(events)
    progress.close()
    return ExportResult(total, files)


def _drain(client: SyncClient, stream: str, number: int, folder: Path, batch: int,
           after_write: Callable[[Path], None] | None) -> tuple[int, list[Path]]:  # fmt: skip
    try:
        client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    total, files = 0, []
    start_id = "0"  # first the entries delivered before but never acknowledged (a crashed run)
    while True:
        reply: Any = client.xreadgroup(GROUP, CONSUMER, {stream: start_id}, count=batch)
        entries = reply[0][1] if reply else []
        if not entries:
            if start_id == "0":
                start_id = ">"
                continue
            break
        ids = [entry_id.decode() for entry_id, _ in entries]
        events = [STREAM_DECODER.decode(fields[b"e"]) for _, fields in entries]
        table = _table(events)
        days = np.asarray(table.column("timestamp").cast(pa.int64()).to_numpy()) // 86_400_000_000
        name = f"stream-{number}-{ids[0].replace('-', '_')}-{ids[-1].replace('-', '_')}.parquet"
        for day in np.unique(days):
            date = np.datetime64(int(day), "D").astype(str)
            part = folder / f"date={date}"
            part.mkdir(parents=True, exist_ok=True)
            target = part / name
            tmp = target.with_suffix(".tmp")
            pq.write_table(table.filter(pa.array(days == day)), tmp)
            os.replace(tmp, target)
            files.append(target)
            if after_write is not None:
                after_write(target)
        client.xack(stream, GROUP, *ids)  # type: ignore[no-untyped-call]
        client.xdel(stream, *ids)
        total += len(ids)
    return total, files
