"""Validation of event, catalogue, stock and identity tables: accepted rows, rejects with
reasons."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from features import arrowkit
from features.io import read_table, write_table
from features.schema import EVENT_REQUIRED, EVENT_TYPES, ID_PATTERN_RE2, MAX_FUTURE_SECONDS
from omnirec.errors import DataError

EVENT_TYPE_SYNONYMS: dict[str, str] = {
    "pv": "view",
    "page_view": "view",
    "detail": "view",
    "cart": "add_to_cart",
    "addtocart": "add_to_cart",
    "add-to-cart": "add_to_cart",
    "fav": "favorite",
    "favourite": "favorite",
    "wishlist": "favorite",
    "buy": "purchase",
    "transaction": "purchase",
    "order": "purchase",
    "refund": "return",
    "remove": "remove_from_cart",
    "removefromcart": "remove_from_cart",
    "remove-from-cart": "remove_from_cart",
}
_CHANNEL_NAME = r"^[a-z][a-z0-9_\-]{0,31}$"


@dataclass
class ValidationReport:
    """Accepted rows in the canonical schema, rejected rows with row number and reason, counts."""

    source: str
    accepted: pa.Table
    rejects: pa.Table
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return int(self.accepted.num_rows + self.rejects.num_rows)

    def summary(self) -> str:
        """A human-readable report: totals then counts per reason."""
        lines = [
            f"{self.source}: {self.total:,} rows, {self.accepted.num_rows:,} accepted, "
            f"{self.rejects.num_rows:,} rejected"
        ]
        lines += [f"  {count:>10,}  {reason}" for reason, count in self.reasons.most_common()]
        return "\n".join(lines)

    def write_rejects(self, path: Path) -> Path | None:
        """Write the rejects (row, reason, original fields as text); None when there are none."""
        if self.rejects.num_rows == 0:
            return None
        return write_table(self.rejects, path)


class _Reasons:
    """Accumulates the first failing reason per row."""

    def __init__(self, n: int) -> None:
        self.code = np.zeros(n, dtype=np.int16)  # 0 = accepted
        self.labels: list[str] = [""]

    def add(self, bad: npt.NDArray[np.bool_], reason: str) -> None:
        if not bad.any():
            return
        self.labels.append(reason)
        fresh = bad & (self.code == 0)
        self.code[fresh] = len(self.labels) - 1

    @property
    def ok(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self.code == 0, dtype=bool)


def load_events(
    path: Path | str, max_future_seconds: float = MAX_FUTURE_SECONDS
) -> ValidationReport:
    """Read and validate an events file; raises DataError when the file is unusable as a whole."""
    return validate_events(read_table(path), str(path), max_future_seconds)


def validate_events(
    raw: pa.Table, source: str = "<events>", max_future_seconds: float = MAX_FUTURE_SECONDS
) -> ValidationReport:
    """Validate raw events against the contract; returns accepted (canonical) rows and rejects.

    Timestamps before 1970 or more than `max_future_seconds` after now are refused."""
    missing = [c for c in EVENT_REQUIRED if c not in raw.column_names]
    if missing:
        raise DataError(
            source,
            f"missing required column(s) {', '.join(missing)}; found {', '.join(raw.column_names)}",
        )
    n = raw.num_rows
    reasons = _Reasons(n)

    customer = _check_id(raw.column("customer_id"), "customer_id", reasons)
    item = _check_id(raw.column("item_id"), "item_id", reasons)

    event_type = _normalise_token(raw.column("event_type"), EVENT_TYPE_SYNONYMS)
    allowed = np.isin(np.asarray(event_type.dictionary.to_pylist(), dtype=object), EVENT_TYPES)
    et_codes = arrowkit.codes(event_type)
    reasons.add(et_codes < 0, "event_type: missing")
    reasons.add(
        ~arrowkit.per_row(allowed, et_codes) & (et_codes >= 0),
        f"event_type: not one of {', '.join(EVENT_TYPES)}",
    )

    channel = _normalise_token(raw.column("channel"), {})
    ch_ok = np.asarray(
        pc.fill_null(pc.match_substring_regex(channel.dictionary, _CHANNEL_NAME), False), dtype=bool
    )
    ch_codes = arrowkit.codes(channel)
    reasons.add(ch_codes < 0, "channel: missing")
    reasons.add(
        ~arrowkit.per_row(ch_ok, ch_codes) & (ch_codes >= 0), "channel: not a lowercase name"
    )

    timestamp = arrowkit.parse_timestamps(raw.column("timestamp"))
    stamp_null = np.asarray(timestamp.is_null().to_numpy(zero_copy_only=False))
    reasons.add(stamp_null, "timestamp: unparsable")
    micros = np.asarray(timestamp.cast(pa.int64()).fill_null(0).to_numpy(), dtype=np.int64)
    latest = int((time.time() + max_future_seconds) * 1_000_000)
    reasons.add(
        ~stamp_null & (micros > latest),
        f"timestamp: more than {max_future_seconds:,.0f} s in the future",
    )
    reasons.add(~stamp_null & (micros < 0), "timestamp: before 1970")

    quantity = _quantity(raw, reasons)
    price = _price(raw, reasons)

    store = (
        arrowkit.as_dictionary(raw.column("store_id"))
        if "store_id" in raw.column_names
        else pa.DictionaryArray.from_arrays(pa.nulls(n, pa.int32()), pa.array([], pa.string()))
    )
    store_codes = arrowkit.codes(store)
    store_valid = np.asarray(
        pc.fill_null(pc.match_substring_regex(store.dictionary, ID_PATTERN_RE2), False), dtype=bool
    )
    reasons.add(
        (store_codes >= 0) & ~arrowkit.per_row(store_valid, store_codes),
        "store_id: invalid characters or too long",
    )

    session = (
        raw.column("session_id").cast(pa.string()).combine_chunks()
        if "session_id" in raw.column_names
        else pa.nulls(n, pa.string())
    )

    canonical = pa.table(
        {
            "customer_id": customer,
            "item_id": item,
            "event_type": event_type,
            "channel": channel,
            "timestamp": timestamp,
            "quantity": quantity,
            "price": price,
            "store_id": store,
            "session_id": session,
        }
    )
    ok = reasons.ok
    accepted = canonical.filter(pa.array(ok)) if not ok.all() else canonical
    reject_rows = np.flatnonzero(~ok)
    rejects = _rejects_table(raw, reject_rows, reasons)
    counts: Counter[str] = Counter()
    if len(reject_rows):
        codes_, freq = np.unique(reasons.code[reject_rows], return_counts=True)
        counts.update({reasons.labels[c]: int(f) for c, f in zip(codes_, freq, strict=True)})
    return ValidationReport(source=source, accepted=accepted, rejects=rejects, reasons=counts)


def _check_id(column: pa.ChunkedArray, name: str, reasons: _Reasons) -> pa.DictionaryArray:
    values = arrowkit.as_dictionary(column)
    dictionary = pc.utf8_trim_whitespace(values.dictionary)
    values = pa.DictionaryArray.from_arrays(values.indices, dictionary)
    row_codes = arrowkit.codes(values)
    empty = np.asarray(pc.equal(dictionary, "").fill_null(True), dtype=bool)
    valid = np.asarray(
        pc.match_substring_regex(dictionary, ID_PATTERN_RE2).fill_null(False), dtype=bool
    )
    reasons.add((row_codes < 0) | arrowkit.per_row(empty, row_codes), f"{name}: missing")
    reasons.add(
        ~arrowkit.per_row(valid, row_codes) & (row_codes >= 0),
        f"{name}: invalid characters or longer than 128",
    )
    return values


def _normalise_token(column: pa.ChunkedArray, synonyms: dict[str, str]) -> pa.DictionaryArray:
    values = arrowkit.as_dictionary(column)
    lowered = [
        None if v is None else synonyms.get(v.strip().lower(), v.strip().lower())
        for v in values.dictionary.to_pylist()
    ]  # one entry per distinct value, not per row
    if lowered == values.dictionary.to_pylist() and len(set(lowered)) == len(lowered):
        return values  # already canonical: nothing to remap
    encoded = pc.dictionary_encode(pa.array(lowered, pa.string()))
    remap = np.asarray(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int32)
    row_codes = arrowkit.codes(values)
    mapped = np.where(row_codes >= 0, np.append(remap, -1)[row_codes], -1)
    mapped_arr = pa.array(mapped, pa.int32(), mask=mapped < 0)
    return pa.DictionaryArray.from_arrays(mapped_arr, encoded.dictionary)


def _quantity(raw: pa.Table, reasons: _Reasons) -> pa.Array:
    n = raw.num_rows
    if "quantity" not in raw.column_names:
        return pa.array(np.ones(n, dtype=np.int32))
    column = raw.column("quantity")
    if pa.types.is_integer(column.type):  # typed Parquet: no text to parse
        values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        ints = np.asarray(values.fill_null(1).to_numpy(zero_copy_only=False))
        reasons.add((ints <= 0) | (ints > 1_000_000), "quantity: must be a positive whole number")
        return pa.array(np.clip(ints, 0, 1_000_000).astype(np.int32))
    parsed, unparsable = arrowkit.parse_numbers(column)
    floats = np.asarray(parsed.fill_null(1.0).to_numpy(zero_copy_only=False), dtype=np.float64)
    reasons.add(unparsable, "quantity: not a number")
    reasons.add(
        ~unparsable & ((floats <= 0) | (floats != np.floor(floats)) | (floats > 1e6)),
        "quantity: must be a positive whole number",
    )
    return pa.array(np.where(unparsable, 1, np.clip(floats, 0, 1e6)).astype(np.int32))


def _price(raw: pa.Table, reasons: _Reasons) -> pa.Array:
    if "price" not in raw.column_names:
        return pa.nulls(raw.num_rows, pa.float64())
    values, unparsable = arrowkit.parse_numbers(raw.column("price"))
    floats = np.asarray(values.fill_null(0.0).to_numpy(zero_copy_only=False), dtype=np.float64)
    reasons.add(unparsable, "price: not a number")
    reasons.add(~unparsable & ((floats < 0) | ~np.isfinite(floats)), "price: negative or infinite")
    return values


def _rejects_table(raw: pa.Table, rows: npt.NDArray[np.int64], reasons: _Reasons) -> pa.Table:
    labels = np.asarray(reasons.labels, dtype=object)
    columns: dict[str, pa.Array] = {
        "row": pa.array(rows + 1, pa.int64()),  # 1-based data row (CSV line = row + 1)
        "reason": pa.array(labels[reasons.code[rows]].tolist() if len(rows) else [], pa.string()),
    }
    if len(rows):
        picked = raw.take(pa.array(rows))
        for name in raw.column_names:
            col = picked.column(name)
            if pa.types.is_dictionary(col.type):
                col = col.cast(col.type.value_type)
            columns[name] = col.cast(pa.string())
    else:
        for name in raw.column_names:
            columns[name] = pa.array([], pa.string())
    return pa.table(columns)
