"""The experiment report on simulated experiments whose true lift is known (clicks drawn from the
synthetic customers' latent tastes), and attribution on hand-made clicks and purchases."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.click_simulation import simulate_experiment
from features.generator import GeneratorConfig, generate, latent_tastes, read_config
from training.experiment_report import attribute, experiment_report

CONFIG = GeneratorConfig(customers=8000, items=400, seed=5)


def _simulated(tailoring: float, seed: int) -> tuple[float, pa.Table]:
    sim = simulate_experiment(
        latent_tastes(CONFIG), experiment="sim", tailoring=tailoring, seed=seed
    )
    return sim.true_lift, sim.feedback


@pytest.mark.parametrize("seed", [3, 4])
def test_the_report_recovers_a_known_lift_within_its_interval(seed: int) -> None:
    true_lift, feedback = _simulated(0.15, seed)
    assert 0.08 < true_lift < 0.4  # the simulation's effect: a real, moderate lift
    report = experiment_report("sim", feedback, None, window_hours=24, control="control")
    treated = next(v for v in report.variants if v.variant == "tailored")
    assert treated.ctr_vs_control is not None
    lift = treated.ctr_vs_control.lift
    assert lift.low < true_lift < lift.high, (true_lift, lift)
    assert treated.ctr_vs_control.p_value < 0.01
    assert treated.conversions > 0 and treated.revenue > 0


def test_an_aa_experiment_finds_no_lift() -> None:
    true_lift, feedback = _simulated(0.0, 5)
    assert abs(true_lift) < 0.02
    report = experiment_report("sim", feedback, None, window_hours=24, control="control")
    treated = next(v for v in report.variants if v.variant == "tailored")
    assert treated.ctr_vs_control is not None
    assert treated.ctr_vs_control.lift.low < 0 < treated.ctr_vs_control.lift.high
    assert treated.ctr_vs_control.p_value > 0.05
    assert "tailored" in report.table() and "control" in report.table()


def _at(hour: float) -> int:
    return int((datetime(2026, 11, 1, tzinfo=UTC).timestamp() + hour * 3600) * 1_000_000)


def test_a_purchase_is_attributed_to_the_latest_click_before_it_within_the_window() -> None:
    stamp = pa.timestamp("us", tz="UTC")
    clicks = pa.table(
        {
            "customer_id": ["a", "a", "a", "b"],
            "item_id": ["x", "x", "y", "x"],
            "timestamp": pa.array([_at(0), _at(5), _at(0), _at(0)], pa.int64()).cast(stamp),
        }
    )
    purchases = pa.table(
        {
            # a/x 1 h after the second click; a/x before any click; a/y 30 h after (window 24 h);
            # b/y never clicked; b/x 23 h after
            "customer_id": ["a", "a", "a", "b", "b"],
            "item_id": ["x", "x", "y", "y", "x"],
            "timestamp": pa.array([_at(6), _at(-1), _at(30), _at(1), _at(23)], pa.int64()).cast(
                stamp
            ),
            "revenue": [10.0, 20.0, 30.0, 40.0, 50.0],
        }
    )
    rows, revenue = attribute(clicks, purchases, 24 * 3600)
    assert rows.tolist() == [1, -1, -1, -1, 3]
    assert np.asarray(revenue).tolist() == [10.0, 20.0, 30.0, 40.0, 50.0]


def test_the_latent_tastes_are_the_ones_the_data_was_generated_from(tmp_path: Path) -> None:
    # the generator's customers buy most in the categories their latent tastes favour
    config = GeneratorConfig(customers=300, items=120, seed=9)
    generate(config, tmp_path)
    assert read_config(tmp_path) == config
    tastes = latent_tastes(config)
    events = pq.read_table(tmp_path / "events").to_pydict()
    column = {item: k for k, item in enumerate(tastes.item_ids)}
    favourite_share = []
    for customer in range(0, 300, 10):
        bought = [
            tastes.item_category[column[i]]
            for c, i in zip(events["customer_id"], events["item_id"], strict=True)
            if c == tastes.customer_ids[customer]
        ]
        favourite = np.argsort(-tastes.taste[customer])[:2]
        favourite_share.append(np.isin(bought, favourite).mean() if bought else 1.0)
    assert (
        np.mean(favourite_share) > 0.6
    )  # vs 2 / n_categories (~0.2) for a customer without tastes
