"""A data folder's side tables: every timestamp column is read at any precision."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.dataset import load_side_tables

# 2026-11-02T10:30:00.250Z in each unit a catalogue export may use
STAMP_SECONDS = 1_793_615_400.25


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("tz", [None, "UTC"])
def test_a_catalogue_date_reads_at_any_precision(tmp_path: Path, unit: str, tz: str | None) -> None:
    scale = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[unit]
    raw = int(STAMP_SECONDS * scale) if unit != "s" else int(STAMP_SECONDS)
    catalogue = pa.table(
        {
            "item_id": ["I1", "I2"],
            "name": ["a", "b"],
            "category": ["x", "y"],
            "price": [1.0, 2.0],
            "added_at": pa.array([raw, None], pa.timestamp(unit, tz=tz)),
        }
    )
    pq.write_table(catalogue, tmp_path / "catalogue.parquet")
    read = load_side_tables(tmp_path).catalogue
    assert read is not None
    expected = int(STAMP_SECONDS) if unit == "s" else STAMP_SECONDS
    assert read.column("added_at").to_pylist() == [pytest.approx(expected), None]
