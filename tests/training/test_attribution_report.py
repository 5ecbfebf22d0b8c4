"""Cross-channel attribution on simulated customers whose truth is known: e-mail suggestions
bought at the till under the loyalty card, web suggestions clicked and bought online, and
purchases nobody suggested."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import mlflow
import pyarrow.parquet as pq
import pytest

from cli.main import main
from features.channel_simulation import simulate_channels
from training.attribution_report import Windows, attribution_report


@pytest.fixture(scope="module")
def sim():  # type: ignore[no-untyped-def]
    return simulate_channels(customers=3_000, seed=11)


def test_the_report_recovers_each_channel_pairs_share_and_count(sim) -> None:  # type: ignore[no-untyped-def]
    report = attribution_report(sim.feedback, sim.events, sim.identities, Windows(24, 72))
    cells = {(c.shown_on, c.bought_on): c for c in report.matrix}
    assert set(sim.shares) <= set(cells)
    for pair, share in sim.shares.items():
        cell = cells[pair]
        # every purchase a channel caused is found, through the card at the till, and only those
        assert cell.purchases == sim.caused[pair], (pair, cell.purchases, sim.caused[pair])
        assert cell.purchase_rate.low < share < cell.purchase_rate.high, (pair, cell.purchase_rate)
        assert cell.conversion.low <= cell.conversion.value <= cell.conversion.high
    # how: the e-mail's till purchases are view-through, the clicked ones click-through
    assert cells[("email", "store")].view_through == sim.caused[("email", "store")]
    assert cells[("web", "web")].click_through == sim.caused[("web", "web")]
    # web purchases are posted as feedback and land in the event log: each counted once
    assert report.attributed == sum(sim.caused.values())
    assert report.purchases == sim.events.num_rows
    by_variant = [c for c in report.breakdown if c.shown_on == "email" and c.bought_on == "store"]
    assert {c.variant for c in by_variant} == {"control", "tailored"}
    assert sum(c.purchases for c in by_variant) == sim.caused[("email", "store")]


def test_without_the_identity_map_till_purchases_are_not_joined(sim) -> None:  # type: ignore[no-untyped-def]
    report = attribution_report(sim.feedback, sim.events, None, Windows(24, 72))
    cells = {(c.shown_on, c.bought_on): c for c in report.matrix}
    assert "store" not in {c.bought_on for c in report.matrix if c.purchases}
    assert cells[("web", "web")].purchases == sim.caused[("web", "web")]


def test_windows_and_period_bound_what_counts(sim) -> None:  # type: ignore[no-untyped-def]
    short = attribution_report(sim.feedback, sim.events, sim.identities, Windows(24, 1))
    cells = {(c.shown_on, c.bought_on): c for c in short.matrix}
    # till purchases come 1-48 h after the e-mail: a one-hour view window keeps almost none
    assert cells[("email", "store")].purchases < sim.caused[("email", "store")] * 0.1
    late = attribution_report(
        sim.feedback,
        sim.events,
        sim.identities,
        Windows(24, 72),
        since=datetime(2026, 11, 8, tzinfo=UTC),
    )
    assert 0 < late.attributed < sum(sim.caused.values())


def test_the_command_writes_markdown_json_a_plot_and_an_mlflow_run(
    sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    (data / "events" / "date=2026-11-01").mkdir(parents=True)
    (data / "feedback" / "date=2026-11-01").mkdir(parents=True)
    pq.write_table(sim.events, data / "events" / "date=2026-11-01" / "part-0.parquet")
    pq.write_table(sim.feedback, data / "feedback" / "date=2026-11-01" / "part-0.parquet")
    pq.write_table(sim.identities.table, data / "identity.parquet")
    monkeypatch.setenv("OMNIREC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    out = tmp_path / "report"
    assert main(["report", "attribution", "--data", str(data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| email | store |" in printed and "MLflow run" in printed
    for name in ("attribution.md", "attribution.json", "attribution.png"):
        assert (out / name).stat().st_size > 0
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["omnirec-reports"])
    assert len(runs) == 1
    assert runs["metrics.purchases_email_to_store"][0] == sim.caused[("email", "store")]
