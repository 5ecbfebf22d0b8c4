"""Importers on the real public files in ../shared/data (and small layouts for RetailRocket,
Instacart)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from features.importers import import_dataset
from features.validation import validate_events


def distinct(column: pa.ChunkedArray) -> int:
    return int(pc.count_distinct(column.cast(pa.string())).as_py())


def _validated(kind: str, path: Path):  # type: ignore[no-untyped-def]
    imported = import_dataset(kind, path)
    return imported, validate_events(imported.events, str(path))


def test_movielens(shared_data: Path) -> None:
    imported, report = _validated("movielens", shared_data / "movielens-100k")
    assert report.accepted.num_rows == 100_000 and report.rejects.num_rows == 0
    assert distinct(report.accepted["customer_id"]) == 943
    assert distinct(report.accepted["item_id"]) == 1682
    assert imported.catalogue is not None
    toy_story = imported.catalogue.filter(pc.equal(imported.catalogue["item_id"], "1")).to_pylist()[
        0
    ]
    assert toy_story["name"] == "Toy Story (1995)" and toy_story["category"] == "Animation"


def test_completejourney_store_purchases(shared_data: Path) -> None:
    _, report = _validated("completejourney", shared_data / "completejourney-sample")
    assert report.total == 75_000
    # zero-quantity lines are real rows of the sample: rejected with a reason, not dropped
    assert report.reasons == {"quantity: must be a positive whole number": report.rejects.num_rows}
    assert report.rejects.num_rows == 416
    first = report.accepted.slice(0, 1).to_pylist()[0]
    assert first["customer_id"] == "2261" and first["store_id"] == "309"
    assert first["channel"] == "store" and first["event_type"] == "purchase"
    assert first["session_id"] == "31625220889"
    assert abs(first["price"] - 3.86) < 1e-9
    assert distinct(report.accepted["store_id"]) > 250


def test_hm_store_and_online(shared_data: Path) -> None:
    _, report = _validated("hm", shared_data / "hm-fashion-head-sample")
    assert report.accepted.num_rows == 10_000
    channels = dict(
        zip(
            *[
                c.to_pylist()
                for c in pc.value_counts(report.accepted["channel"].cast("string")).flatten()
            ],
            strict=True,
        )
    )
    assert set(channels) == {"store", "web"} and sum(channels.values()) == 10_000


def test_taobao_behaviours(shared_data: Path) -> None:
    _, report = _validated("taobao", shared_data / "taobao-userbehavior-head")
    assert report.accepted.num_rows == 4_321
    kinds = set(report.accepted["event_type"].cast("string").to_pylist())
    assert kinds == {"view", "add_to_cart", "favorite", "purchase"}


def test_rees46_sessions(shared_data: Path) -> None:
    _, report = _validated("rees46", shared_data / "rees46-oct2019-head")
    counts = pc.value_counts(report.accepted["event_type"].cast("string")).to_pylist()
    assert {c["values"]: c["counts"] for c in counts} == {
        "view": 987,
        "add_to_cart": 3,
        "purchase": 10,
    }
    assert report.accepted["session_id"].null_count == 0
    assert report.accepted["timestamp"][0].as_py().isoformat() == "2019-10-01T00:00:00+00:00"


def test_retailrocket_layout(tmp_path: Path) -> None:
    (tmp_path / "events.csv").write_text(
        "timestamp,visitorid,event,itemid,transactionid\n"
        "1433221332117,257597,view,355908,\n"
        "1433224214164,992329,addtocart,248676,\n"
        "1433221999827,111016,transaction,318965,4000\n"
    )
    _, report = _validated("retailrocket", tmp_path)
    rows = report.accepted.to_pylist()
    assert [r["event_type"] for r in rows] == ["view", "add_to_cart", "purchase"]
    assert rows[0]["timestamp"].isoformat().startswith("2015-06-02T05:02:12.117")


def test_instacart_layout(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text(
        "order_id,user_id,eval_set,order_number,order_dow,order_hour_of_day,days_since_prior_order\n"
        "10,1,prior,1,2,8,\n11,1,prior,2,3,9,15.0\n20,2,prior,1,1,10,\n"
    )
    (tmp_path / "order_products__prior.csv").write_text(
        "order_id,product_id,add_to_cart_order,reordered\n10,196,1,0\n11,196,1,1\n11,14084,2,0\n20,12427,1,0\n"
    )
    _, report = _validated("instacart", tmp_path)
    rows = sorted(
        report.accepted.to_pylist(), key=lambda r: (r["customer_id"], r["timestamp"], r["item_id"])
    )
    assert [(r["customer_id"], r["item_id"]) for r in rows] == [
        ("1", "196"),
        ("1", "14084"),
        ("1", "196"),
        ("2", "12427"),
    ]
    assert (rows[1]["timestamp"] - rows[0]["timestamp"]).days == 15
