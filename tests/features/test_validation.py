"""Validation: clear file-level errors, row rejects with reasons, nothing dropped silently."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from features.validation import load_events
from omnirec.errors import DataError

GOOD = "c1,i1,view,web,2026-10-01T10:00:00Z,1,9.99,,s1"
CSV_HEADER = "customer_id,item_id,event_type,channel,timestamp,quantity,price,store_id,session_id"


def write_csv(tmp_path: Path, *rows: str, header: str = CSV_HEADER) -> Path:
    path = tmp_path / "events.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_bad_rows_are_rejected_with_row_number_and_reason(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        GOOD,
        ",i1,view,web,2026-10-01T10:00:00Z,1,,,",  # row 2: missing customer
        "c2,i1,teleport,web,2026-10-01T10:00:00Z,1,,,",  # row 3: unknown event type
        "c2,i1,view,web,yesterday,1,,,",  # row 4: unparsable time
        "c2,i1,purchase,store,2026-10-01 10:00:00,-2,5,st1,",  # row 5: negative quantity
        "c2,i1,purchase,web,2026-10-01,1,abc,,",  # row 6: price not a number
        "c2,i<script>,view,web,2026-10-01,1,,,",  # row 7: id with markup
        "c3,i2,cart,app,1759312800,,,,",  # row 8: fine (synonym, epoch seconds)
        "C4,I3,Purchase,Store,2026-10-01T12:00:00+02:00,2,3.5,st9,",  # row 9: fine
    )
    report = load_events(path)
    assert report.total == 9
    assert report.accepted.num_rows == 3
    rejects = {row["row"]: row["reason"] for row in report.rejects.to_pylist()}
    assert rejects == {
        2: "customer_id: missing",
        3: "event_type: not one of view, favorite, add_to_cart, remove_from_cart, purchase, return",
        4: "timestamp: unparsable",
        5: "quantity: must be a positive whole number",
        6: "price: not a number",
        7: "item_id: invalid characters or longer than 128",
    }
    accepted = report.accepted.to_pylist()
    assert [r["event_type"] for r in accepted] == ["view", "add_to_cart", "purchase"]
    assert accepted[2]["channel"] == "store"
    assert accepted[2]["timestamp"].isoformat() == "2026-10-01T10:00:00+00:00"
    assert accepted[1]["timestamp"].isoformat() == "2025-10-01T10:00:00+00:00"
    assert accepted[1]["quantity"] == 1  # default


def test_rejects_file_keeps_original_fields(tmp_path: Path) -> None:
    report = load_events(write_csv(tmp_path, GOOD, "c2,i1,view,web,not-a-time,1,,,"))
    written = report.write_rejects(tmp_path / "rejects.csv")
    assert written is not None
    table = pacsv.read_csv(written)
    assert table.column_names[:2] == ["row", "reason"]
    assert table.to_pylist()[0]["timestamp"] == "not-a-time"
    assert report.reasons == {"timestamp: unparsable": 1}
    assert "1 rejected" in report.summary()


def test_missing_column_names_the_file(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "c1,i1,web", header="customer_id,item_id,channel")
    with pytest.raises(DataError) as info:
        load_events(path)
    assert str(path) in str(info.value)
    assert "event_type" in str(info.value) and "timestamp" in str(info.value)


def test_unknown_suffix_and_missing_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_events(tmp_path / "nope.csv")
    odd = tmp_path / "events.xlsx"
    odd.write_text("x")
    with pytest.raises(DataError, match="unknown file type"):
        load_events(odd)


def test_parquet_with_typed_columns(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "customer_id": ["a", "b"],
            "item_id": ["x", "y"],
            "event_type": ["view", "return"],
            "channel": ["app", "store"],
            "timestamp": pa.array(
                [1_700_000_000_000_000, 1_700_000_100_000_000], pa.timestamp("us")
            ),
            "quantity": pa.array([1, 0], pa.int64()),
            "store_id": [None, "s1"],
        }
    )
    pq.write_table(table, tmp_path / "e.parquet")
    report = load_events(tmp_path / "e.parquet")
    assert report.accepted.num_rows == 1
    assert report.rejects.to_pylist()[0]["reason"] == "quantity: must be a positive whole number"


def test_timestamps_far_in_the_future_or_before_1970_are_rejected() -> None:
    import time

    import pyarrow as pa

    from features.validation import validate_events

    now = time.time()
    raw = pa.table(
        {
            "customer_id": ["c1", "c2", "c3", "c4"],
            "item_id": ["i1"] * 4,
            "event_type": ["view"] * 4,
            "channel": ["web"] * 4,
            "timestamp": [
                "2100-01-01T00:00:00Z",
                "1960-01-01T00:00:00Z",
                str(int(now)),
                str(int(now + 7200)),
            ],
        }
    )
    report = validate_events(raw, "events.csv", max_future_seconds=3600)
    assert report.accepted.num_rows == 1
    assert report.reasons == {
        "timestamp: more than 3,600 s in the future": 2,
        "timestamp: before 1970": 1,
    }
    assert report.rejects.column("row").to_pylist() == [1, 2, 4]
