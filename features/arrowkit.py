"""Small vectorised Arrow helpers shared by validation, importers and the matrix builder."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from features.event_rules import EPOCH_MILLIS_ABOVE
from features.schema import TIMESTAMP

_EPOCH = r"^\d{9,13}(\.\d+)?$"
_ISO_OFFSET = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$"
_ISO_NAIVE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$"


def as_dictionary(column: pa.ChunkedArray | pa.Array) -> pa.DictionaryArray:
    """One dictionary array (string values, int32 indices) for a plain or dictionary column."""
    if isinstance(column, pa.ChunkedArray) and column.num_chunks == 1:
        column = column.chunk(0)
    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks == 0:
            return pa.DictionaryArray.from_arrays(
                pa.array([], pa.int32()), pa.array([], pa.string())
            )
        if pa.types.is_dictionary(column.type):
            return _merge_dictionary_chunks(column.chunks)
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        if column.type.index_type == pa.int32() and column.type.value_type == pa.string():
            return column
        return pa.DictionaryArray.from_arrays(
            column.indices.cast(pa.int32()), column.dictionary.cast(pa.string())
        )
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        column = column.cast(pa.string())
    encoded = pc.dictionary_encode(column.cast(pa.string()))
    return pa.DictionaryArray.from_arrays(encoded.indices.cast(pa.int32()), encoded.dictionary)


def _merge_dictionary_chunks(chunks: list[pa.DictionaryArray]) -> pa.DictionaryArray:
    """Chunks with their own dictionaries as one: encode the distinct dictionaries once, remap
    codes.

    Record batches read from one Parquet file share that file's dictionary, so consecutive equal
    dictionaries are encoded once.
    """
    first = chunks[0].dictionary
    if all(
        c.dictionary.equals(first) for c in chunks[1:]
    ):  # the same dictionary everywhere: just indices
        indices = pa.concat_arrays([c.indices.cast(pa.int32()) for c in chunks])
        return pa.DictionaryArray.from_arrays(indices, first.cast(pa.string()))
    distinct: list[pa.Array] = []
    which: list[int] = []
    for chunk in chunks:
        if not distinct or not chunk.dictionary.equals(distinct[-1]):
            distinct.append(chunk.dictionary)
        which.append(len(distinct) - 1)
    offsets = np.cumsum([0] + [len(d) for d in distinct])
    encoded = pc.dictionary_encode(pa.concat_arrays([d.cast(pa.string()) for d in distinct]))
    global_codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int32)
    tables = [
        np.append(global_codes[offsets[k] : offsets[k + 1]], -1) for k in range(len(distinct))
    ]
    parts, has_nulls = [], False
    for chunk, k in zip(chunks, which, strict=True):
        indices = chunk.indices
        local = np.asarray(
            (indices.fill_null(-1) if indices.null_count else indices).to_numpy(
                zero_copy_only=False
            )
        )
        parts.append(tables[k][local])
        has_nulls |= indices.null_count > 0
    merged = np.concatenate(parts).astype(np.int32, copy=False)
    mask = merged < 0 if has_nulls else None
    return pa.DictionaryArray.from_arrays(
        pa.array(merged, pa.int32(), mask=mask), encoded.dictionary
    )


def compact(array: pa.DictionaryArray) -> pa.DictionaryArray:
    """The same values with unused dictionary entries dropped (order of first use kept by code)."""
    row_codes = codes(array)
    used = np.bincount(row_codes[row_codes >= 0], minlength=len(array.dictionary)) > 0
    if used.all():
        return array
    remap = np.full(len(used) + 1, -1, dtype=np.int32)
    kept = np.flatnonzero(used)
    remap[kept] = np.arange(len(kept), dtype=np.int32)
    new_codes = remap[row_codes]
    return pa.DictionaryArray.from_arrays(
        pa.array(new_codes, pa.int32(), mask=new_codes < 0), array.dictionary.take(pa.array(kept))
    )


def codes(array: pa.DictionaryArray) -> npt.NDArray[np.int32]:
    """Dictionary indices as numpy, nulls as -1."""
    indices = array.indices
    if indices.null_count == 0:
        return np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.int32)
    return np.asarray(indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int32)


def per_row(
    dictionary_flags: npt.NDArray[np.bool_], row_codes: npt.NDArray[np.int32]
) -> npt.NDArray[np.bool_]:
    """Broadcast a per-distinct-value flag to rows; rows with a null code get False."""
    padded = np.append(dictionary_flags, False)
    return padded[row_codes]  # -1 picks the appended False


def parse_numbers(column: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, npt.NDArray[np.bool_]]:
    """Text or numbers to float64; returns (values with nulls where unparsable, unparsable mask)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        values = column.cast(pa.float64())
        return values, np.zeros(len(values), dtype=bool)
    text = pc.utf8_trim_whitespace(column)
    numeric = pc.match_substring_regex(text, r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
    ok = pc.fill_null(numeric, False)
    blank = pc.fill_null(pc.equal(text, ""), True)
    safe = pc.if_else(ok, text, pa.scalar(None, pa.string()))
    values = safe.cast(pa.float64())
    bad = np.asarray(pc.and_(pc.invert(ok), pc.invert(blank)).to_numpy(zero_copy_only=False))
    return values, bad.astype(bool)


def parse_timestamps(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Any timestamp column (typed, epoch seconds/ms, ISO-8601 text) as UTC microseconds; nulls
    where unparsable."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    kind = column.type
    if pa.types.is_timestamp(kind):
        if kind.tz is None:
            return pc.assume_timezone(column.cast(pa.timestamp("us")), "UTC").cast(TIMESTAMP)
        return column.cast(TIMESTAMP)
    if pa.types.is_date(kind):
        return pc.assume_timezone(column.cast(pa.timestamp("us")), "UTC").cast(TIMESTAMP)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return _from_epoch(column.cast(pa.float64()))
    return _parse_text_timestamps(column.cast(pa.string()))


def _from_epoch(seconds_or_ms: pa.Array) -> pa.Array:
    values = np.asarray(seconds_or_ms.to_numpy(zero_copy_only=False), dtype=np.float64)
    # above EPOCH_MILLIS_ABOVE: milliseconds (features.event_rules.epoch_seconds)
    micros = np.where(np.abs(values) > EPOCH_MILLIS_ABOVE, values * 1e3, values * 1e6)
    mask = np.isnan(micros)
    return pa.array(np.where(mask, 0, micros).astype(np.int64), type=TIMESTAMP, mask=mask)


def _parse_text_timestamps(text: pa.Array) -> pa.Array:
    text = pc.utf8_trim_whitespace(pc.replace_substring_regex(text, r" ?UTC$", "Z"))
    n = len(text)
    result = pa.nulls(n, TIMESTAMP)
    converters: tuple[tuple[str, Callable[[pa.Array], pa.Array]], ...] = (
        (_EPOCH, lambda a: _from_epoch(a.cast(pa.float64()))),
        (_ISO_OFFSET, lambda a: a.cast(TIMESTAMP)),
        (
            _ISO_NAIVE,
            lambda a: pc.assume_timezone(a.cast(pa.timestamp("us")), "UTC").cast(TIMESTAMP),
        ),
    )
    for pattern, convert in converters:
        match = pc.fill_null(pc.match_substring_regex(text, pattern), False)
        if not pc.any(match).as_py():
            continue
        subset = pc.filter(text, match)
        try:
            parsed = convert(subset)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            parsed = pa.array([_parse_one(v) for v in subset.to_pylist()], type=TIMESTAMP)
        positions = np.flatnonzero(np.asarray(match.to_numpy(zero_copy_only=False)))
        result = _scatter(result, positions, parsed)
    return result


def _scatter(target: pa.Array, positions: npt.NDArray[np.int64], values: pa.Array) -> pa.Array:
    base = np.asarray(target.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)).copy()
    valid = np.asarray(target.is_valid().to_numpy(zero_copy_only=False)).copy()
    base[positions] = np.asarray(
        values.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
    )
    valid[positions] = np.asarray(values.is_valid().to_numpy(zero_copy_only=False))
    return pa.array(base, type=pa.int64(), mask=~valid).cast(TIMESTAMP)


def _parse_one(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
