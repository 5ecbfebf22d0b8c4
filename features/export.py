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

from features.feedback import FEEDBACK_DECODER, FeedbackEvent
from features.realtime import STREAM_DECODER, RealtimeEvents, StreamEvent
from features.schema import TIMESTAMP
from omnirec.progress import Progress
from omnirec.redis_access import SyncClient, redis_errors

GROUP = "omnirec-export"
CONSUMER = "exporter"
STORAGE_SCHEMA = pa.schema(
    [
        ("customer_id", pa.dictionary(pa.int32(), pa.string())),
        ("item_id", pa.dictionary(pa.int32(), pa.string())),
        ("event_type", pa.dictionary(pa.int32(), pa.string())),
        ("channel", pa.dictionary(pa.int32(), pa.string())),
        ("timestamp", TIMESTAMP),
        ("quantity", pa.int32()),
        ("price", pa.float64()),
        ("store_id", pa.dictionary(pa.int32(), pa.string())),
        ("session_id", pa.string()),
        ("event_id", pa.string()),
    ]
)


FEEDBACK_SCHEMA = pa.schema(
    [
        ("feedback_type", pa.dictionary(pa.int32(), pa.string())),
        ("customer_id", pa.string()),
        ("item_id", pa.dictionary(pa.int32(), pa.string())),
        ("timestamp", TIMESTAMP),
        ("channel", pa.dictionary(pa.int32(), pa.string())),
        ("recommendation_id", pa.string()),
        ("position", pa.int32()),
        ("experiment", pa.dictionary(pa.int32(), pa.string())),
        ("variant", pa.dictionary(pa.int32(), pa.string())),
        ("placement", pa.dictionary(pa.int32(), pa.string())),
        ("price", pa.float64()),
        ("quantity", pa.int32()),
        ("event_id", pa.string()),
    ]
)


@dataclass(frozen=True)
class ExportResult:
    events: int
    files: list[Path]
    feedback: int = 0  # feedback records (written under the feedback folder)


def _table(events: Sequence[StreamEvent | FeedbackEvent], schema: pa.Schema) -> pa.Table:
    columns = {name: [getattr(e, name) for e in events] for name in schema.names}
    return pa.table(
        {
            name: pa.array(values, pa.int64()).cast(TIMESTAMP)
            if name == "timestamp"
            else pa.array(values, schema.field(name).type.value_type).dictionary_encode()
            if pa.types.is_dictionary(schema.field(name).type)
            else pa.array(values, schema.field(name).type)
            for name, values in columns.items()
        }
    ).cast(schema)


def feedback_folder(events_folder: Path) -> Path:
    """Where feedback is exported: `feedback/` beside the event log's folder."""
    return events_folder.parent / "feedback"


def export_events(
    realtime: RealtimeEvents,
    folder: Path,
    *,
    batch: int = 10_000,
    after_write: Callable[[Path], None] | None = None,
) -> ExportResult:
    """Drain every event stream: events into
    `folder/date=YYYY-MM-DD/stream-<n>-<first>-<last>.parquet`, feedback into the same layout
    under `feedback_folder(folder)`."""
    total, feedback, files = 0, 0, []
    progress = Progress(None, "export", "events")
    for number, stream in enumerate(realtime.stream_keys):
        with redis_errors("refused the export"):
            events, fed, written = _drain(
                realtime.store.client, stream, number, folder, batch, after_write
            )
        total += events
        feedback += fed
        files += written
        progress.update(events + fed)
    progress.close()
    return ExportResult(total, files, feedback)


def _write(
    table: pa.Table, folder: Path, name: str, after_write: Callable[[Path], None] | None
) -> list[Path]:
    """`table` split by day into `folder/date=.../name` (each written whole, then renamed)."""
    days = np.asarray(table.column("timestamp").cast(pa.int64()).to_numpy()) // 86_400_000_000
    files = []
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
    return files


def _drain(
    client: SyncClient,
    stream: str,
    number: int,
    folder: Path,
    batch: int,
    after_write: Callable[[Path], None] | None,
) -> tuple[int, int, list[Path]]:
    try:
        client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    total, fed, files = 0, 0, []
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
        events = [STREAM_DECODER.decode(fields[b"e"]) for _, fields in entries if b"e" in fields]
        feedback = [
            FEEDBACK_DECODER.decode(fields[b"f"]) for _, fields in entries if b"f" in fields
        ]
        name = f"stream-{number}-{ids[0].replace('-', '_')}-{ids[-1].replace('-', '_')}.parquet"
        if events:
            files += _write(_table(events, STORAGE_SCHEMA), folder, name, after_write)
        if feedback:
            files += _write(
                _table(feedback, FEEDBACK_SCHEMA), feedback_folder(folder), name, after_write
            )
        client.xack(stream, GROUP, *ids)  # type: ignore[no-untyped-call]
        client.xdel(stream, *ids)
        total += len(events)
        fed += len(feedback)
    return total, fed, files
