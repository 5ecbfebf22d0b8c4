"""Weighted interaction matrices checked against hand-computed values; identity stitching."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from features.identity import IdentityMap, stitch
from features.interactions import build_interactions
from features.validation import validate_events
from omnirec.errors import DataError
from omnirec.settings import InteractionSettings


def events(*rows: tuple[str, str, str, str, str, int]) -> pa.Table:
    columns = list(zip(*rows, strict=True))
    raw = pa.table(
        {
            "customer_id": list(columns[0]),
            "item_id": list(columns[1]),
            "event_type": list(columns[2]),
            "channel": list(columns[3]),
            "timestamp": list(columns[4]),
            "quantity": list(columns[5]),
            "store_id": ["st1" if ch == "store" else None for ch in columns[3]],
        }
    )
    report = validate_events(raw)
    assert report.rejects.num_rows == 0, report.rejects.to_pylist()
    return report.accepted


T = "2026-10-01T10:00:00Z"


def test_weights_by_event_and_channel_and_returns_cancel_purchases() -> None:
    table = events(
        ("c1", "i1", "view", "web", T, 1),  # 1
        ("c1", "i1", "add_to_cart", "app", T, 1),  # + 3
        ("c1", "i2", "purchase", "store", T, 2),  # 6 x 1.25 x 2 = 15
        ("c1", "i2", "return", "web", T, 1),  # kept 1 of 2 units: 7.5
        ("c2", "i1", "purchase", "web", T, 1),  # 6 ...
        ("c2", "i1", "return", "store", T, 1),  # ... returned in store: gone
        ("c2", "i3", "view", "app", T, 1),  # 1
    )
    result = build_interactions(table, InteractionSettings(quantity_scaling="linear"))
    assert result.customer_ids.tolist() == ["c1", "c2"]
    assert result.item_ids.tolist() == ["i1", "i2", "i3"]
    np.testing.assert_allclose(result.matrix.toarray(), [[4.0, 7.5, 0.0], [0.0, 0.0, 1.0]])
    assert result.matrix.nnz == 3  # the cancelled purchase leaves no explicit zero


def test_store_purchase_at_least_as_strong_as_online() -> None:
    table = events(("a", "x", "purchase", "store", T, 1), ("b", "x", "purchase", "web", T, 1))
    m = build_interactions(table).matrix.toarray()
    assert m[0, 0] >= m[1, 0] > 0


def test_configurable_weights_and_quantity_cap() -> None:
    table = events(("a", "x", "view", "web", T, 1), ("a", "y", "purchase", "app", T, 50))
    custom = InteractionSettings(
        event_weights={"view": 2.0, "purchase": 1.0},
        channel_weights={"app": 3.0},
        max_quantity=4,
        quantity_scaling="linear",
    )
    np.testing.assert_allclose(build_interactions(table, custom).matrix.toarray(), [[2.0, 12.0]])


def test_quantities_count_logarithmically_by_default() -> None:
    """Hu, Koren and Volinsky's log confidence: 1 unit = 1, 50 units = 1 + ln 50, not 50 (or 10)."""
    table = events(("a", "x", "purchase", "web", T, 1), ("a", "y", "purchase", "web", T, 50))
    settings = InteractionSettings(event_weights={"purchase": 1.0})
    np.testing.assert_allclose(
        build_interactions(table, settings).matrix.toarray(), [[1.0, 1.0 + np.log(50)]], rtol=1e-6
    )


def test_decay_counts_from_each_customers_own_last_event() -> None:
    """A customer whose last visit was months ago keeps full weight on what they did then."""
    table = events(
        ("a", "x", "view", "web", "2026-10-03T00:00:00Z", 1),
        ("a", "y", "view", "web", "2026-10-02T00:00:00Z", 1),
        ("b", "x", "view", "web", "2026-07-01T00:00:00Z", 1),
    )
    own = build_interactions(table, InteractionSettings(decay_half_life_days=1.0))
    np.testing.assert_allclose(own.matrix.toarray(), [[1.0, 0.5], [1.0, 0.0]], rtol=1e-6)
    whole = InteractionSettings(decay_half_life_days=1.0, decay_reference="global")
    assert build_interactions(table, whole).matrix.toarray()[1, 0] < 1e-20


def test_purchase_occasions_one_per_basket() -> None:
    """Two units of one item in one basket are one occasion; without a session id, a day is one."""
    raw = pa.table(
        {
            "customer_id": ["a", "a", "a", "a", "b"],
            "item_id": ["x", "x", "x", "y", "x"],
            "event_type": ["purchase"] * 4 + ["view"],
            "channel": ["store"] * 5,
            "timestamp": [
                "2026-10-01T10:00:00Z",
                "2026-10-01T10:00:05Z",
                "2026-10-08T10:00:00Z",
                "2026-10-08T11:00:00Z",
                "2026-10-09T10:00:00Z",
            ],
            "session_id": ["b1", "b1", "b2", None, None],
        }
    )
    occasions = build_interactions(validate_events(raw).accepted).occasions
    assert occasions is not None
    got = sorted(
        zip(occasions.rows.tolist(), occasions.cols.tolist(), occasions.days.tolist(), strict=True)
    )
    assert [(r, c) for r, c, _ in got] == [(0, 0), (0, 0), (0, 1)]  # b's view is no purchase
    assert got[1][2] - got[0][2] == pytest.approx(7.0)


def test_exponential_time_decay() -> None:
    table = events(
        ("a", "x", "view", "web", "2026-10-03T00:00:00Z", 1),
        ("a", "y", "view", "web", "2026-10-02T00:00:00Z", 1),
        ("a", "z", "view", "web", "2026-09-30T00:00:00Z", 1),
    )
    decayed = build_interactions(
        table, InteractionSettings(decay_half_life_days=1.0), now=datetime(2026, 10, 3, tzinfo=UTC)
    )
    np.testing.assert_allclose(decayed.matrix.toarray(), [[1.0, 0.5, 0.125]], rtol=1e-6)


def test_fixed_vocabulary_leaves_unknown_ids_out() -> None:
    table = events(
        ("a", "x", "view", "web", T, 1),
        ("new", "x", "view", "web", T, 1),
        ("a", "unseen", "view", "web", T, 1),
    )
    result = build_interactions(table, customer_ids=np.array(["a", "b"]), item_ids=np.array(["x"]))
    np.testing.assert_allclose(result.matrix.toarray(), [[1.0], [0.0]])


def test_identity_stitching_merges_aliases() -> None:
    table = events(
        ("L123", "x", "purchase", "store", T, 1),  # loyalty card in store
        ("dev-9", "y", "view", "app", T, 1),  # device in the app
        ("cust-1", "z", "view", "web", T, 1),  # account on the web
        ("other", "z", "view", "web", T, 1),
    )
    identities = IdentityMap.from_table(
        pa.table(
            {
                "alias_type": ["loyalty_card", "device", "email_sha256"],
                "alias_id": ["L123", "dev-9", "ab12"],
                "customer_id": ["cust-1", "cust-1", "cust-1"],
            }
        )
    )
    result = build_interactions(stitch(table, identities))
    assert result.customer_ids.tolist() == ["cust-1", "other"]
    assert result.matrix[0].nnz == 3
    assert identities.resolve_one("dev-9") == "cust-1"
    assert sorted(identities.aliases_of("cust-1")) == [
        ("device", "dev-9"),
        ("email_sha256", "ab12"),
        ("loyalty_card", "L123"),
    ]


def test_alias_mapped_to_two_customers_is_an_error() -> None:
    with pytest.raises(DataError, match="more than one customer"):
        IdentityMap.from_table(
            pa.table(
                {
                    "alias_type": ["phone", "phone"],
                    "alias_id": ["+1", "+1"],
                    "customer_id": ["a", "b"],
                }
            ),
            "identity.csv",
        )


@pytest.mark.parametrize("reference", ["customer", "global"])
def test_a_row_mask_builds_what_the_filtered_table_builds(reference: str) -> None:
    table = events(
        ("c1", "i1", "purchase", "web", "2026-10-01T10:00:00Z", 2),
        ("c1", "i2", "view", "app", "2026-10-03T10:00:00Z", 1),
        ("c2", "i1", "purchase", "store", "2026-10-02T10:00:00Z", 1),
        ("c2", "i3", "return", "store", "2026-10-04T10:00:00Z", 1),
        ("c3", "i4", "purchase", "web", "2026-10-09T10:00:00Z", 1),  # only in the masked-out part
        ("c1", "i1", "purchase", "web", "2026-10-09T11:00:00Z", 1),
    )
    keep = np.array([True, True, True, True, False, False])
    settings = InteractionSettings(decay_half_life_days=3.0, decay_reference=reference)
    copied = build_interactions(table.filter(pa.array(keep)), settings)
    masked = build_interactions(table, settings, event_rows=keep)
    assert masked.customer_ids.tolist() == copied.customer_ids.tolist() == ["c1", "c2"]
    assert masked.item_ids.tolist() == copied.item_ids.tolist() == ["i1", "i2", "i3"]
    assert (masked.matrix != copied.matrix).nnz == 0
    assert masked.occasions is not None and copied.occasions is not None
    assert np.array_equal(masked.occasions.days, copied.occasions.days)
