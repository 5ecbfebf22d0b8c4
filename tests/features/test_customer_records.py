"""The compiled block encoder writes exactly what msgspec writes for each customer's record."""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pytest
import scipy.sparse as sp

from features.customer_records import CustomerColumns, EventColumns, encode_block
from features.encoding import CUSTOMER_DECODER, ENCODER, CustomerFeatures

RECENT = 20
# header sizes: fixstr < 32 <= str8 < 256 <= str16; bin8 < 256 <= bin16 < 65536 <= bin32
IDS = ["C1", "", "x" * 31, "y" * 32, "z" * 255, "w" * 256, "é-ünï-🛒", "C" + "9" * 70000]
# every msgpack integer form, both signs
STAMPS = [
    0,
    1,
    127,
    128,
    255,
    256,
    65535,
    65536,
    2**32 - 1,
    2**32,
    2**40,
    -1,
    -32,
    -33,
    -128,
    -129,
    -32768,
    -32769,
    -(2**31),
    -(2**31) - 1,
    1_790_000_000,
]
NAMES = ["dairy", "", "é" * 20, "n" * 40, "bakery"] + [f"cat{i}" for i in range(15)]


def _reference(
    ids: list[str],
    rows: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.float32] | None,
    cands: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float32],
    history: sp.csr_matrix,
    bought: sp.csr_matrix,
    favourite: npt.NDArray[np.int64],
    ev: EventColumns,
    start: int,
    stop: int,
) -> list[bytes]:
    """Each record built field by field in plain Python and encoded by msgspec."""
    records = []
    for i, c in enumerate(range(start, stop)):
        row = int(rows[i])
        lo, hi = int(ev.indptr[c]), int(ev.indptr[c + 1])
        r = max(lo, hi - RECENT)
        keep = cands[i] >= 0
        h = slice(history.indptr[row], history.indptr[row + 1]) if row >= 0 else slice(0, 0)
        b = slice(bought.indptr[c], bought.indptr[c + 1])
        features = CustomerFeatures(
            customer_id=ids[c],
            vector=b"" if vectors is None or row < 0 else vectors[i].tobytes(),
            candidates=cands[i][keep].astype(np.int32).tobytes(),
            candidate_scores=scores[i][keep].astype(np.float32).tobytes(),
            history_items=history.indices[h].astype(np.int32).tobytes(),
            history_weights=history.data[h].astype(np.float32).tobytes(),
            purchased_items=bought.indices[b].astype(np.int32).tobytes(),
            purchased_at=bought.data[b].astype(np.int64).tobytes(),
            categories=[NAMES[k] for k in favourite[i] if k >= 0],
            first_seen=int(ev.at[lo]) if hi > lo else 0,
            last_seen=int(ev.at[hi - 1]) if hi > lo else 0,
            recent_items=ev.items[r:hi].astype(np.int32).tobytes(),
            recent_types=ev.types[r:hi].astype(np.uint8).tobytes(),
            recent_channels=ev.channels[r:hi].astype(np.uint8).tobytes(),
            recent_at=ev.at[r:hi].astype(np.int64).tobytes(),
            recent_stores=ev.stores[r:hi].astype(np.int16).tobytes(),
        )
        records.append(ENCODER.encode(features))
    return records


@pytest.mark.parametrize("with_vectors", [True, False])
@pytest.mark.parametrize("n_favourite", [3, 0, 17])
def test_each_record_is_byte_for_byte_what_msgspec_writes(
    with_vectors: bool, n_favourite: int
) -> None:
    rng = np.random.default_rng(n_favourite + 7 * with_vectors)
    n_customers, n_rows, n_items, k = 60, 40, 30_000, 50
    ids = [IDS[i % len(IDS)] for i in range(n_customers)]
    # history rows of 0 to 20,000 items (bin8, bin16 and bin32 headers)
    sizes = rng.choice([0, 1, 63, 64, 70, 16_384, 20_000], n_rows)
    history = sp.csr_matrix(
        (
            rng.random(sizes.sum(), dtype=np.float32),
            np.concatenate([rng.choice(n_items, s, replace=False) for s in sizes]),
            np.concatenate([[0], np.cumsum(sizes)]),
        ),
        shape=(n_rows, n_items),
    )
    bought_sizes = rng.choice([0, 1, 5, 40], n_customers)
    bought = sp.csr_matrix(
        (
            rng.integers(1_700_000_000, 1_800_000_000, bought_sizes.sum()).astype(np.float64),
            rng.integers(0, n_items, bought_sizes.sum()),
            np.concatenate([[0], np.cumsum(bought_sizes)]),
        ),
        shape=(n_customers, n_items),
    )
    counts = rng.choice([0, 1, 5, 20, 21, 300], n_customers)
    n_events = counts.sum()
    at = rng.choice(STAMPS, n_events).astype(np.int64)
    ev = EventColumns(
        indptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        items=rng.integers(0, n_items, n_events).astype(np.int32),
        types=rng.integers(0, 6, n_events),
        channels=rng.integers(0, 3, n_events).astype(np.uint8),
        at=at,
        stores=rng.integers(-1, 400, n_events).astype(np.int16),
    )
    columns = CustomerColumns.of(
        ids,
        history.indptr,
        history.indices,
        history.data,
        bought.indptr,
        bought.indices,
        bought.data,
        NAMES,
    )
    for start, stop in [(0, 25), (25, 60), (59, 60)]:
        m = stop - start
        rows = rng.integers(-1, n_rows, m)
        vectors = rng.standard_normal((m, 64), dtype=np.float32) if with_vectors else None
        cands = rng.integers(0, n_items, (m, k))
        for i in range(m):  # padding last, sometimes all of it
            cands[i, rng.integers(0, k + 1) :] = -1
        scores = rng.standard_normal((m, k), dtype=np.float32)
        favourite = rng.integers(-1, len(NAMES), (m, n_favourite))
        buffer, offsets = encode_block(
            columns, ev, start, stop, rows, vectors, cands, scores, favourite, RECENT
        )
        expected = _reference(
            ids, rows, vectors, cands, scores, history, bought, favourite, ev, start, stop
        )
        assert len(offsets) == m + 1 and offsets[-1] == len(buffer)
        got = [buffer[lo:hi] for lo, hi in itertools.pairwise(offsets)]
        assert got == expected
        assert [CUSTOMER_DECODER.decode(g).customer_id for g in got] == ids[start:stop]


def test_read_only_inputs_are_taken() -> None:
    """Arrays that are zero-copy views of Arrow or of bytes (read-only) encode like their copies."""
    frozen = lambda values: np.frombuffer(values.tobytes(), values.dtype).reshape(values.shape)  # noqa: E731
    indptr = np.array([0, 2, 5], np.int64)
    ev = EventColumns(
        frozen(indptr),
        frozen(np.array([3, 4, 5, 6, 7], np.int32)),
        frozen(np.array([0, 3, 3, 0, 2], np.uint8)),
        frozen(np.zeros(5, np.uint8)),
        frozen(np.arange(5, dtype=np.int64) + 1_790_000_000),
        frozen(np.full(5, -1, np.int16)),
    )
    empty = np.zeros(0, np.int64)
    columns = CustomerColumns.of(
        ["A", "B"],
        frozen(np.array([0, 0])),
        empty,
        np.zeros(0, np.float32),
        frozen(np.zeros(3, np.int64)),
        empty,
        empty,
        ["x"],
    )
    writable = EventColumns(
        *(np.array(a) for a in (ev.indptr, ev.items, ev.types, ev.channels, ev.at, ev.stores))
    )
    args = (
        np.array([-1, -1]),
        None,
        frozen(np.array([[1, -1], [2, 3]])),
        frozen(np.array([[0.5, 0.0], [0.2, 0.1]], np.float32)),
        frozen(np.array([[0], [-1]])),
        RECENT,
    )
    assert not ev.at.flags.writeable
    assert encode_block(columns, ev, 0, 2, *args) == encode_block(columns, writable, 0, 2, *args)
