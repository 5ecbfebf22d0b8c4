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
from features.event_rules import DEFAULTS, EVENT_RULES, Check, Rule, token
from features.io import read_table, write_table
from features.schema import EVENT_REQUIRED, MAX_FUTURE_SECONDS
from omnirec.errors import DataError


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
    columns = _Columns(raw, time.time(), max_future_seconds)
    for rule in EVENT_RULES:
        if rule.field in columns.present:
            reasons.add(columns.fails(rule), rule.full_reason(max_future_seconds))
    customer, item = columns.text["customer_id"], columns.text["item_id"]
    event_type, channel = columns.text["event_type"], columns.text["channel"]
    timestamp = columns.timestamp
    quantity = pa.array(
        np.where(
            columns.unparsable["quantity"], 1, np.clip(columns.numbers["quantity"], 0, 1e6)
        ).astype(np.int32)
    )
    price = (
        pa.array(columns.numbers["price"], pa.float64(), mask=~columns.present["price"])
        if "price" in raw.column_names
        else pa.nulls(n, pa.float64())
    )
    store = columns.text["store_id"]
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


class _Columns:
    """The event table's fields as the rules read them (`features.event_rules`): ids trimmed,
    tokens lowercased (event types through their synonyms), timestamps and numbers parsed;
    `fails(rule)` is the rows that fail a rule."""

    def __init__(self, raw: pa.Table, now: float, max_future_seconds: float) -> None:
        n = raw.num_rows
        self.n = n
        self.latest = int((now + max_future_seconds) * 1_000_000)
        self.present: dict[str, npt.NDArray[np.bool_]] = {}
        self.text: dict[str, pa.DictionaryArray] = {}
        self.numbers: dict[str, npt.NDArray[np.float64]] = {}
        self.unparsable: dict[str, npt.NDArray[np.bool_]] = {}
        for name in ("customer_id", "item_id", "store_id", "event_id", "session_id"):
            values = (
                _trimmed(raw.column(name))
                if name in raw.column_names
                else pa.DictionaryArray.from_arrays(
                    pa.nulls(n, pa.int32()), pa.array([], pa.string())
                )
            )
            self._text(name, values)
        for name in ("event_type", "channel"):
            self._text(name, _normalise_token(raw.column(name), name))
        for name in ("quantity", "price"):
            if name in raw.column_names:
                parsed, bad = arrowkit.parse_numbers(raw.column(name))
                self.present[name] = (
                    np.asarray(parsed.is_valid().to_numpy(zero_copy_only=False)) | bad
                )
                default = float(DEFAULTS.get(name, 0.0))  # type: ignore[arg-type]
                self.numbers[name] = np.asarray(
                    parsed.fill_null(default).to_numpy(zero_copy_only=False), dtype=np.float64
                )
                self.unparsable[name] = bad
            else:
                self.present[name] = np.zeros(n, bool)
                self.numbers[name] = np.full(n, float(DEFAULTS.get(name, 0.0)))  # type: ignore[arg-type]
                self.unparsable[name] = np.zeros(n, bool)
        self.timestamp = arrowkit.parse_timestamps(raw.column("timestamp"))
        self.stamp_null = np.asarray(self.timestamp.is_null().to_numpy(zero_copy_only=False))
        self.micros = np.asarray(
            self.timestamp.cast(pa.int64()).fill_null(0).to_numpy(), dtype=np.int64
        )
        self.present["timestamp"] = np.ones(n, bool)

    def _text(self, name: str, values: pa.DictionaryArray) -> None:
        self.text[name] = values
        empty = np.asarray(pc.equal(values.dictionary, "").fill_null(True), dtype=bool)
        row_codes = arrowkit.codes(values)
        self.present[name] = (row_codes >= 0) & ~arrowkit.per_row(empty, row_codes)

    def fails(self, rule: Rule) -> npt.NDArray[np.bool_]:
        name, check = rule.field, rule.check
        present = self.present[name]
        if check is Check.REQUIRED:
            return ~present
        if check in (Check.PATTERN, Check.ONE_OF, Check.MAX_LENGTH):
            values = self.text[name]
            dictionary = values.dictionary
            if check is Check.PATTERN:
                ok = pc.match_substring_regex(dictionary, rule.pattern_re2).fill_null(False)
            elif check is Check.ONE_OF:
                ok = pc.is_in(dictionary, pa.array(rule.values, pa.string())).fill_null(False)
            else:
                ok = pc.less_equal(pc.utf8_length(dictionary), int(rule.high)).fill_null(True)
            flags = np.asarray(ok.to_numpy(zero_copy_only=False), dtype=bool)
            return present & ~arrowkit.per_row(flags, arrowkit.codes(values))
        if check is Check.TIME:
            return self.stamp_null
        if check is Check.NOT_FUTURE:
            return ~self.stamp_null & (self.micros > self.latest)
        if check is Check.AFTER_1970:
            return ~self.stamp_null & (self.micros < 0)
        numbers, bad = self.numbers[name], self.unparsable[name]
        if check is Check.NUMBER:
            return bad
        if check is Check.WHOLE:
            with np.errstate(invalid="ignore"):
                whole = (numbers == np.floor(numbers)) & (numbers >= rule.low)
            return np.asarray(~bad & ~(whole & (numbers <= rule.high)), dtype=bool)
        if check is Check.NON_NEGATIVE:
            return present & ~bad & ~((numbers >= 0) & np.isfinite(numbers))
        if check is Check.AT_MOST:
            return present & ~bad & (numbers > rule.high)
        raise AssertionError(f"no Arrow check for {check}")


def _trimmed(column: pa.ChunkedArray) -> pa.DictionaryArray:
    values = arrowkit.as_dictionary(column)
    return pa.DictionaryArray.from_arrays(
        values.indices, pc.utf8_trim_whitespace(values.dictionary)
    )


def _normalise_token(column: pa.ChunkedArray, name: str) -> pa.DictionaryArray:
    values = arrowkit.as_dictionary(column)
    lowered = [
        None if v is None or not v.strip() else token(v.strip(), name)
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
