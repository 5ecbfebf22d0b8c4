"""A block of customers' `CustomerFeatures` records encoded in one compiled pass (numba, the GIL
released): byte for byte what `ENCODER.encode(CustomerFeatures(...))` writes (msgpack: the struct
as an array of its 16 fields, each number in its smallest form, each string and byte field with
the smallest header), read back by the same msgspec decoder.

Why not msgspec per customer: publishing spends its time after the selection on the one thread
that builds each customer's record (a struct of 16 fields and as many byte slices, ~12-15 us a
customer, the garbage collector's passes over the lists and structs included) while the threads
that score wait for it; here ~1.5 us a customer for a block of 4,096 (the compiled pass ~0.7), in
the thread that scores, and the thread that writes to Redis only slices the block's buffer. The
hand-written part is the msgpack headers; `tests/features/test_customer_records.py` checks every
header size and every field against msgspec's own encoding, byte for byte.

Compiled when this module is imported (fixed types) and cached on disk; with nowhere to write, in
memory. Imported only where publishing needs it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from omnirec.compiled import jit

FIELDS = 16  # CustomerFeatures' fields, in order: the record is a msgpack array of them
_BYTES = "uint8[::1]"
SIGNATURE = (
    f"Tuple(({_BYTES}, int64[::1]))({_BYTES}, int64[::1], int64[::1], uint8[:, ::1], "
    f"uint8[:, ::1], uint8[:, ::1], int64[::1], int64[::1], {_BYTES}, {_BYTES}, int64[::1], "
    f"{_BYTES}, {_BYTES}, int64[:, ::1], {_BYTES}, int64[::1], int64[::1], {_BYTES}, {_BYTES}, "
    f"{_BYTES}, {_BYTES}, {_BYTES}, int64[::1], int64)"
)


@jit()
def _int_size(x: int) -> int:
    if x >= 0:
        return 1 if x < 128 else 2 if x < 256 else 3 if x < 65536 else 5 if x < 2**32 else 9
    return 1 if x >= -32 else 2 if x >= -128 else 3 if x >= -32768 else 5 if x >= -(2**31) else 9


@jit()
def _bin_size(n: int) -> int:
    return n + (2 if n < 256 else 3 if n < 65536 else 5)


@jit()
def _str_size(n: int) -> int:
    return n + (1 if n < 32 else 2 if n < 256 else 3 if n < 65536 else 5)


@jit()
def _array_header_size(n: int) -> int:
    return 1 if n < 16 else 3 if n < 65536 else 5


@jit()
def _put_be(out: npt.NDArray[np.uint8], pos: int, value: int, width: int) -> int:
    for i in range(width):
        out[pos + i] = (value >> (8 * (width - 1 - i))) & 0xFF
    return pos + width


@jit()
def _put_int(out: npt.NDArray[np.uint8], pos: int, x: int) -> int:
    if x >= 0:
        if x < 128:
            out[pos] = x
            return pos + 1
        if x < 256:
            out[pos] = 0xCC
            return _put_be(out, pos + 1, x, 1)
        if x < 65536:
            out[pos] = 0xCD
            return _put_be(out, pos + 1, x, 2)
        if x < 2**32:
            out[pos] = 0xCE
            return _put_be(out, pos + 1, x, 4)
        out[pos] = 0xCF
        return _put_be(out, pos + 1, x, 8)
    if x >= -32:
        out[pos] = x & 0xFF
        return pos + 1
    if x >= -128:
        out[pos] = 0xD0
        return _put_be(out, pos + 1, x, 1)
    if x >= -32768:
        out[pos] = 0xD1
        return _put_be(out, pos + 1, x, 2)
    if x >= -(2**31):
        out[pos] = 0xD2
        return _put_be(out, pos + 1, x, 4)
    out[pos] = 0xD3
    return _put_be(out, pos + 1, x, 8)


@jit()
def _put_bytes(
    out: npt.NDArray[np.uint8], pos: int, src: npt.NDArray[np.uint8], lo: int, hi: int, text: bool
) -> int:
    """A str (text) or bin field holding src[lo:hi]."""
    n = hi - lo
    if text and n < 32:
        out[pos] = 0xA0 | n
        pos += 1
    elif n < 256:
        out[pos] = 0xD9 if text else 0xC4
        pos = _put_be(out, pos + 1, n, 1)
    elif n < 65536:
        out[pos] = 0xDA if text else 0xC5
        pos = _put_be(out, pos + 1, n, 2)
    else:
        out[pos] = 0xDB if text else 0xC6
        pos = _put_be(out, pos + 1, n, 4)
    # a plain loop over unsigned indices (no wraparound check: LLVM vectorises it): 3x a loop over
    # signed ones, 5x a slice assignment
    for j in range(n):
        out[np.uint64(pos + j)] = src[np.uint64(lo + j)]
    return pos + n


def _encode_block(
    ids: npt.NDArray[np.uint8],
    id_offsets: npt.NDArray[np.int64],
    rows: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.uint8],
    candidates: npt.NDArray[np.uint8],
    scores: npt.NDArray[np.uint8],
    valid: npt.NDArray[np.int64],
    hist_ptr: npt.NDArray[np.int64],
    hist_items: npt.NDArray[np.uint8],
    hist_weights: npt.NDArray[np.uint8],
    bought_ptr: npt.NDArray[np.int64],
    bought_items: npt.NDArray[np.uint8],
    bought_at: npt.NDArray[np.uint8],
    favourite: npt.NDArray[np.int64],
    names: npt.NDArray[np.uint8],
    name_offsets: npt.NDArray[np.int64],
    event_ptr: npt.NDArray[np.int64],
    items: npt.NDArray[np.uint8],
    types: npt.NDArray[np.uint8],
    channels: npt.NDArray[np.uint8],
    at: npt.NDArray[np.uint8],
    stores: npt.NDArray[np.uint8],
    at_values: npt.NDArray[np.int64],
    recent: int,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """(buffer, offsets): customer i's record is buffer[offsets[i]:offsets[i + 1]]. See
    `encode_block` for what each argument holds."""
    m = rows.shape[0]
    width = vectors.shape[1]
    offsets = np.zeros(m + 1, np.int64)
    for i in range(m):  # each record's size first: the buffer is allocated once
        row = rows[i]
        lo, hi = event_ptr[i], event_ptr[i + 1]
        r = max(lo, hi - recent)
        n_hist = hist_ptr[row + 1] - hist_ptr[row] if row >= 0 else 0
        n_bought = bought_ptr[i + 1] - bought_ptr[i]
        n_cats = 0
        size = 3 + _str_size(id_offsets[i + 1] - id_offsets[i])
        size += _bin_size(width if row >= 0 else 0)
        size += 2 * _bin_size(4 * valid[i]) + 2 * _bin_size(4 * n_hist)
        size += _bin_size(4 * n_bought) + _bin_size(8 * n_bought)
        for j in range(favourite.shape[1]):
            code = favourite[i, j]
            if code >= 0:
                n_cats += 1
                size += _str_size(name_offsets[code + 1] - name_offsets[code])
        size += _array_header_size(n_cats)
        size += _int_size(at_values[lo] if hi > lo else 0)
        size += _int_size(at_values[hi - 1] if hi > lo else 0)
        n = hi - r
        size += _bin_size(4 * n) + 2 * _bin_size(n) + _bin_size(8 * n) + _bin_size(2 * n)
        offsets[i + 1] = offsets[i] + size
    out = np.empty(offsets[m], np.uint8)
    for i in range(m):
        pos = offsets[i]
        out[pos] = 0xDC  # array16 of the fields
        pos = _put_be(out, pos + 1, FIELDS, 2)
        pos = _put_bytes(out, pos, ids, id_offsets[i], id_offsets[i + 1], True)
        row = rows[i]
        pos = _put_bytes(out, pos, vectors[i], 0, width if row >= 0 else 0, False)
        pos = _put_bytes(out, pos, candidates[i], 0, 4 * valid[i], False)
        pos = _put_bytes(out, pos, scores[i], 0, 4 * valid[i], False)
        h_lo, h_hi = (hist_ptr[row], hist_ptr[row + 1]) if row >= 0 else (0, 0)
        pos = _put_bytes(out, pos, hist_items, 4 * h_lo, 4 * h_hi, False)
        pos = _put_bytes(out, pos, hist_weights, 4 * h_lo, 4 * h_hi, False)
        b_lo, b_hi = bought_ptr[i], bought_ptr[i + 1]
        pos = _put_bytes(out, pos, bought_items, 4 * b_lo, 4 * b_hi, False)
        pos = _put_bytes(out, pos, bought_at, 8 * b_lo, 8 * b_hi, False)
        n_cats = 0
        for j in range(favourite.shape[1]):
            n_cats += favourite[i, j] >= 0
        if n_cats < 16:
            out[pos] = 0x90 | n_cats
            pos += 1
        else:
            out[pos] = 0xDC
            pos = _put_be(out, pos + 1, n_cats, 2)
        for j in range(favourite.shape[1]):
            code = favourite[i, j]
            if code >= 0:
                pos = _put_bytes(out, pos, names, name_offsets[code], name_offsets[code + 1], True)
        lo, hi = event_ptr[i], event_ptr[i + 1]
        pos = _put_int(out, pos, at_values[lo] if hi > lo else 0)
        pos = _put_int(out, pos, at_values[hi - 1] if hi > lo else 0)
        r = max(lo, hi - recent)
        pos = _put_bytes(out, pos, items, 4 * r, 4 * hi, False)
        pos = _put_bytes(out, pos, types, r, hi, False)
        pos = _put_bytes(out, pos, channels, r, hi, False)
        pos = _put_bytes(out, pos, at, 8 * r, 8 * hi, False)
        pos = _put_bytes(out, pos, stores, 2 * r, 2 * hi, False)
    return out, offsets


_compiled: Callable[..., tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]] = jit(SIGNATURE)(
    _encode_block
)


def _owned(values: npt.ArrayLike, dtype: type) -> npt.NDArray[Any]:
    """The values as a contiguous, writable array of `dtype` (the same array where it is one):
    the compiled pass has no version for read-only arrays (a zero-copy view of Arrow data)."""
    return np.require(values, dtype, ["C", "W"])


def _raw(values: npt.NDArray[np.generic], dtype: type) -> npt.NDArray[np.uint8]:
    """The values as `dtype`, their bytes as a flat uint8 array (a view where no copy is needed)."""
    return _owned(values, dtype).reshape(-1).view(np.uint8)


def utf8_table(
    texts: Sequence[str] | npt.NDArray[np.str_],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """(utf-8 bytes of every text one after another, offsets: text i is [offsets[i],
    offsets[i+1]))."""
    column = pa.array(texts, type=pa.large_string())
    _, offsets, data = column.buffers()
    bytes_ = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    return bytes_, np.frombuffer(offsets, np.int64)[: len(column) + 1]


@dataclass(frozen=True)
class CustomerColumns:
    """What every customer's record is made of, for the whole publish (arrays indexed by the
    customer's position, by the model's row for the history), as typed arrays."""

    ids: npt.NDArray[np.uint8]  # utf-8 of every customer id (utf8_table)
    id_offsets: npt.NDArray[np.int64]
    hist_ptr: npt.NDArray[np.int64]  # the model's interaction rows (csr), by model row
    hist_items: npt.NDArray[np.uint8]  # int32 columns' bytes
    hist_weights: npt.NDArray[np.uint8]  # float32
    bought_ptr: npt.NDArray[np.int64]  # what each customer bought (csr), by customer
    bought_items: npt.NDArray[np.uint8]  # int32
    bought_at: npt.NDArray[np.uint8]  # int64 epoch seconds
    names: npt.NDArray[np.uint8]  # utf-8 of every category name (utf8_table)
    name_offsets: npt.NDArray[np.int64]

    @classmethod
    def of(
        cls,
        customer_ids: Sequence[str] | npt.NDArray[np.str_],
        history_indptr: npt.NDArray[np.integer],
        history_items: npt.NDArray[np.integer],
        history_weights: npt.NDArray[np.floating],
        bought_indptr: npt.NDArray[np.integer],
        bought_items: npt.NDArray[np.integer],
        bought_at: npt.NDArray[np.integer],
        category_names: Sequence[str],
    ) -> CustomerColumns:
        ids, id_offsets = utf8_table(customer_ids)
        names, name_offsets = utf8_table(list(category_names))
        return cls(
            ids,
            id_offsets,
            _owned(history_indptr, np.int64),
            _raw(history_items, np.int32),
            _raw(history_weights, np.float32),
            _owned(bought_indptr, np.int64),
            _raw(bought_items, np.int32),
            _raw(bought_at, np.int64),
            names,
            name_offsets,
        )


@dataclass(frozen=True)
class EventColumns:
    """Every customer's events, newest last, in customer order (`indptr` delimits each's)."""

    indptr: npt.NDArray[np.int64]
    items: npt.NDArray[np.integer]  # item columns
    types: npt.NDArray[np.integer]  # EVENT_CODES
    channels: npt.NDArray[np.integer]
    at: npt.NDArray[np.integer]  # epoch seconds
    stores: npt.NDArray[np.integer]  # -1 none


def encode_block(
    columns: CustomerColumns,
    events: EventColumns,
    start: int,
    stop: int,
    rows: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.float32] | None,
    candidates: npt.NDArray[np.integer],
    scores: npt.NDArray[np.floating],
    favourite: npt.NDArray[np.int64],
    recent: int,
) -> tuple[bytes, list[int]]:
    """The records of customers start..stop, one after another, and where each starts (and the
    last ends): customer start + i's record is buffer[offsets[i]:offsets[i + 1]].

    rows: each customer's model row (-1 unknown: no vector, no history); vectors: those rows'
    factors (or None); candidates / scores: (stop - start, k) best first, -1 padding last;
    favourite: (stop - start, t) category codes, -1 for none; recent: events kept per customer."""
    m = stop - start
    first_event, last_event = int(events.indptr[start]), int(events.indptr[stop])
    window = slice(first_event, last_event)
    at = _owned(events.at[window], np.int64)
    vector_bytes = (
        np.zeros((m, 0), np.uint8)
        if vectors is None
        else _owned(vectors, np.float32).view(np.uint8).reshape(m, -1)
    )
    buffer, offsets = _compiled(
        columns.ids[columns.id_offsets[start] : columns.id_offsets[stop]],
        columns.id_offsets[start : stop + 1] - columns.id_offsets[start],
        _owned(rows, np.int64),
        vector_bytes,
        _owned(candidates, np.int32).view(np.uint8),
        _owned(scores, np.float32).view(np.uint8),
        (np.asarray(candidates) >= 0).sum(axis=1).astype(np.int64),
        columns.hist_ptr,
        columns.hist_items,
        columns.hist_weights,
        columns.bought_ptr[start : stop + 1],
        columns.bought_items,
        columns.bought_at,
        _owned(favourite, np.int64),
        columns.names,
        columns.name_offsets,
        events.indptr[start : stop + 1] - first_event,
        _raw(events.items[window], np.int32),
        _raw(events.types[window], np.uint8),
        _raw(events.channels[window], np.uint8),
        at.view(np.uint8),
        _raw(events.stores[window], np.int16),
        at,
        recent,
    )
    return buffer.tobytes(), offsets.tolist()
