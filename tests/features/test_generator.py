"""The synthetic generator: deterministic, omnichannel, stitched by aliases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.dataset import load_dataset
from features.generator import GeneratorConfig, generate
from features.io import read_table


def counts(column: pa.ChunkedArray) -> dict[str, int]:
    result = pc.value_counts(column.cast(pa.string())).to_pylist()
    return {r["values"]: r["counts"] for r in result}


def test_same_seed_same_data_other_seed_other_data(tmp_path: Path) -> None:
    config = GeneratorConfig(customers=300, items=200, days=30, seed=7, chunk_customers=120)
    generate(config, tmp_path / "a")
    generate(config, tmp_path / "b")
    generate(
        GeneratorConfig(customers=300, items=200, days=30, seed=8, chunk_customers=120),
        tmp_path / "c",
    )
    for name in ("events", "catalogue.parquet", "stock.parquet", "identity.parquet"):
        assert read_table(tmp_path / "a" / name).equals(read_table(tmp_path / "b" / name)), name
    assert not read_table(tmp_path / "a" / "events").equals(read_table(tmp_path / "c" / "events"))


def test_channels_behave_differently(tmp_path: Path) -> None:
    generate(GeneratorConfig(customers=1_000, items=300, days=60, seed=1), tmp_path)
    dataset = load_dataset(tmp_path)
    assert dataset.report.rejects.num_rows == 0
    events = dataset.events
    by_type = counts(events["event_type"])
    assert (
        by_type["view"] > by_type["add_to_cart"] > 0 and by_type["purchase"] > by_type["return"] > 0
    )
    online = events.filter(pc.is_in(events["channel"].cast(pa.string()), pa.array(["web", "app"])))
    store = events.filter(pc.equal(events["channel"].cast(pa.string()), "store"))
    assert counts(online["event_type"]).get("view", 0) > counts(online["event_type"])["purchase"]
    assert set(counts(store["event_type"])) <= {"purchase", "return"}
    assert store["store_id"].null_count == 0
    # aliases are stitched: every event belongs to a canonical customer id
    assert all(c.startswith("C") for c in counts(events["customer_id"]))
    assert len(counts(events["customer_id"])) > 900
    # customers re-buy: some (customer, item) pairs are purchased more than once
    purchases = events.filter(pc.equal(events["event_type"].cast(pa.string()), "purchase"))
    pairs = pc.binary_join_element_wise(
        purchases["customer_id"].cast(pa.string()), purchases["item_id"].cast(pa.string()), "|"
    )
    assert pc.count_distinct(pairs).as_py() < purchases.num_rows


def test_catalogue_stock_identity(tmp_path: Path) -> None:
    generate(GeneratorConfig(customers=200, items=150, stores=5, seed=3), tmp_path)
    dataset = load_dataset(tmp_path)
    assert dataset.catalogue is not None and dataset.catalogue.num_rows == 150
    assert dataset.stock is not None and set(counts(dataset.stock["store_id"])) == {
        *(f"S00{i}" for i in range(5)),
        "online",
    }
    assert dataset.stores is not None and dataset.stores["store_id"].to_pylist() == [
        f"S00{i}" for i in range(5)
    ]
    prices = np.asarray(dataset.catalogue["price"])
    assert (prices > 0).all()
    kinds = counts(dataset.identities.table["alias_type"])
    assert kinds["device"] == 200 and kinds["phone"] == 200 and 100 < kinds["loyalty_card"] < 200
