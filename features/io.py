"""Reading and writing tables as CSV or Parquet (a file or a folder of Parquet parts)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from omnirec.errors import DataError

# Low-cardinality or repeated id columns stay dictionary-encoded when read from Parquet: the
# validation and the matrix builder then work on each distinct value once.
DICTIONARY_COLUMNS = ("customer_id", "item_id", "event_type", "channel", "store_id")


def file_format(path: Path) -> str:
    """'parquet' or 'csv' for a path (a folder counts as a Parquet dataset)."""
    if path.is_dir() or path.suffix in {".parquet", ".pq"}:
        return "parquet"
    if path.suffix in {".csv", ".tsv", ".txt", ".data"}:
        return "csv"
    raise DataError(str(path), "unknown file type (expected .csv, .parquet or a folder of parquet)")


def read_table(path: Path | str, *, delimiter: str = ",") -> pa.Table:
    """Read a CSV (every column as text, so bad values become row rejects) or Parquet table."""
    path = Path(path)
    if not path.exists():
        raise DataError(str(path), "file does not exist")
    try:
        if file_format(path) == "parquet":
            return _read_parquet(path)
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=16 << 20),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(
                column_types=_all_text(path, delimiter), strings_can_be_null=True
            ),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(str(path), f"cannot be read: {exc}") from exc


def _read_parquet(path: Path) -> pa.Table:
    if path.is_dir():
        parts = sorted(path.rglob("*.parquet"))
        if not parts:
            raise DataError(str(path), "folder holds no .parquet files")
        names = set(pq.read_schema(parts[0]).names)
    else:
        names = set(pq.read_schema(path).names)
    wanted = [c for c in DICTIONARY_COLUMNS if c in names]
    if path.is_dir():
        import pyarrow.dataset as pads  # here: it imports pandas (0.9 s of a service's start)

        dataset = pads.dataset(
            path, format=pads.ParquetFileFormat(read_options={"dictionary_columns": wanted})
        )
        return dataset.to_table()
    return pq.read_table(path, read_dictionary=wanted)


def _all_text(path: Path, delimiter: str) -> dict[str, pa.DataType]:
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        header = handle.readline().rstrip("\r\n")
    return {name.strip('"'): pa.string() for name in header.split(delimiter)}


def write_table(table: pa.Table, path: Path | str) -> Path:
    """Write a table as Parquet or CSV by the path's suffix; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if file_format(path) == "parquet":
        pq.write_table(table, path, compression="zstd")
    else:
        pacsv.write_csv(_decoded(table), path)
    return path


def _decoded(table: pa.Table) -> pa.Table:
    """Dictionary columns as plain values (CSV cannot hold dictionaries)."""
    columns = [
        col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col
        for col in table.columns
    ]
    return pa.table(columns, names=table.column_names)
