"""The training pipeline against a real MLflow store: register, gate, promote, roll back, pyfunc
load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main
from features.generator import GeneratorConfig, generate
from models.registry import ModelRegistry
from omnirec.settings import Settings
from tests.waiting import PATIENCE
from training.pipeline import TrainConfig, train


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synthetic")
    generate(GeneratorConfig(customers=800, items=300, days=60, seed=5), folder)
    return folder


def test_train_gate_promote_rollback_and_pyfunc(
    synthetic_data: Path, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = train(TrainConfig(data=synthetic_data, model="als", params={"factors": 16}), settings)
    assert first.version == 1 and first.promoted
    assert first.metrics["all"]["ndcg"] > first.baseline["all"]["ndcg"]
    assert {"channel=web", "channel=app", "channel=store", "returning"} <= set(first.metrics)

    worse = train(TrainConfig(data=synthetic_data, model="popularity"), settings)
    assert worse.version == 2 and not worse.promoted
    assert "does not beat" in worse.gate

    registry = ModelRegistry(settings.mlflow)
    assert registry.champion() == 1
    run = registry.client.get_run(first.run_id)
    for param in ("seed", "data_fingerprint", "code_version", "model.factors", "cutoff"):
        assert param in run.data.params
    assert (
        run.data.params["data_fingerprint"]
        == registry.client.get_run(worse.run_id).data.params["data_fingerprint"]
    )
    artifacts = {a.path for a in registry.client.list_artifacts(first.run_id, "report")}
    assert {"report/report.html", "report/ndcg_by_slice.png", "report/report.json"} <= artifacts

    env = {
        "OMNIREC_DATA_DIR": str(settings.data_dir),
        "MLFLOW_TRACKING_URI": settings.mlflow.tracking_uri,
        "REDIS_URL": settings.redis.url or "",
        "OMNIREC_REDIS_PREFIX": settings.redis.prefix,
    }
    os.environ.update(env)
    try:
        assert main(["promote", "2"]) == 0
        assert registry.champion() == 2
        assert main(["rollback"]) == 0
        assert registry.champion() == 1
        assert main(["models"]) == 0
    finally:
        for key in env:
            os.environ.pop(key, None)
    listing = capsys.readouterr().out
    assert "champion -> v2" in listing and "rolled back to v1" in listing

    # a data scientist's clean Python: only MLflow's URI, no omnirec on the path
    script = (
        "import json, mlflow.pyfunc\n"
        "m = mlflow.pyfunc.load_model('models:/omnirec@champion')\n"
        "out = m.predict(['C00000001', 'C00000002', 'nobody'], params={'n': 5})\n"
        "print(json.dumps(out.to_dict(orient='records')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        env={
            "PATH": os.environ.get("PATH", ""),
            "MLFLOW_TRACKING_URI": settings.mlflow.tracking_uri,
            "HOME": str(tmp_path),
        },
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(rows) == 15
    assert {r["customer_id"] for r in rows} == {"C00000001", "C00000002", "nobody"}
    expected, _ = first.model.recommend(["C00000001"], n=5)
    assert [r["item_id"] for r in rows if r["customer_id"] == "C00000001"] == expected[0]


def test_tune_searches_on_validation_then_trains_the_best(
    synthetic_data: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {
        "OMNIREC_DATA_DIR": str(settings.data_dir),
        "MLFLOW_TRACKING_URI": settings.mlflow.tracking_uri,
    }
    os.environ.update(env)
    try:
        assert (
            main(
                [
                    "tune",
                    "--data",
                    str(synthetic_data),
                    "--model",
                    "itemknn",
                    "--trials",
                    "3",
                    "--no-publish",
                ]
            )
            == 0
        )
    finally:
        for key in env:
            os.environ.pop(key, None)
    out = capsys.readouterr().out
    assert "best of 3 trials" in out and "registered version 1" in out
    registry = ModelRegistry(settings.mlflow)
    runs = registry.client.search_runs(
        [registry.client.get_experiment_by_name("omnirec").experiment_id]
    )
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(trials) == 3 and all("validation_ndcg_at_10" in r.data.metrics for r in trials)


def test_default_model_is_chosen_on_validation_and_the_comparison_is_logged(
    synthetic_data: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    result = train(
        TrainConfig(
            data=synthetic_data, model="auto", exclude_seen=None, register=False, budget_seconds=120
        ),
        settings,
    )
    selection = result.selection
    assert selection is not None
    scored = [t for t in selection.trials if t.score is not None]
    assert len(scored) >= 4 and selection.best.score == max(t.score or 0 for t in scored)
    # the budget left went to searching the best family until it stopped finding better
    tuned = [t for t in selection.trials if t.note == "tuned within the budget"]
    assert len(tuned) >= 8 and {t.kind for t in tuned} <= {t.kind for t in scored}
    assert result.model.kind == selection.best.kind
    assert result.model.params.items() >= selection.best.params.items()
    assert "popularity" in result.baselines
    out = capsys.readouterr().out
    assert "budget 120 s" in out.splitlines()[0] or "budget 120 s" in out
    assert "test part: time split at" in out
    runs = ModelRegistry(settings.mlflow).client
    logged = {a.path for a in runs.list_artifacts(result.run_id, "selection")}
    assert logged == {"selection/comparison.md", "selection/selection.json"}
    chosen = json.loads(
        Path(runs.download_artifacts(result.run_id, "selection/selection.json")).read_text()
    )
    assert chosen["chosen"]["kind"] == selection.best.kind
    assert runs.get_run(result.run_id).data.params["selected_by"] == "validation"


def test_a_starved_split_says_so_and_does_not_move_the_champion(
    synthetic_data: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    first = train(TrainConfig(data=synthetic_data, model="itemknn"), settings)
    assert first.promoted
    starved = train(
        TrainConfig(data=synthetic_data, model="popularity", test_days=0.02, min_test_customers=50),
        settings,
    )
    assert not starved.promoted and "the gate does not decide on so few" in starved.gate
    assert "test part:" in capsys.readouterr().out


def test_catalogue_items_without_events_are_trained_and_placed(
    synthetic_data: Path, settings: Settings, tmp_path: Path
) -> None:
    """Items the catalogue lists but nobody bought yet are model columns, placed by their
    metadata: scored for the customers whose taste fits, similar to their own kind."""
    import shutil

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "data"
    shutil.copytree(synthetic_data, folder)
    catalogue = pq.read_table(folder / "catalogue.parquet")
    first = catalogue.slice(0, 1).to_pylist()[0]
    new = [{**first, "item_id": f"NEW{k}", "name": f"{first['name']} new {k}"} for k in range(3)]
    pq.write_table(
        pa.concat_tables([catalogue, pa.Table.from_pylist(new, catalogue.schema)]),
        folder / "catalogue.parquet",
    )
    result = train(
        TrainConfig(data=folder, model="als", params={"factors": 16}, register=False), settings
    )
    model = result.model
    cols = model.columns_of(["NEW0", "NEW1", "NEW2"])
    assert (cols >= 0).all() and model.cold is not None
    assert (np.diff(model.cold.indptr)[cols] > 0).all()  # each placed among known items
    rows = np.arange(min(200, len(model.customer_ids)))
    scores = model.scores(rows, model.history_rows(rows))
    assert (scores[:, cols] > 0).any()
    similar, _ = model.similar_items(cols[:1], n=5)
    kinds = {
        str(c)
        for c in catalogue.filter(
            pa.compute.is_in(catalogue["item_id"], pa.array(model.item_ids[similar[0]].tolist()))
        )["category"].to_pylist()
    }
    assert kinds == {str(first["category"])}  # its similar items are its own kind
