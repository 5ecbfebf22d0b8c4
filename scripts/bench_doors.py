"""The show-again policy measured on a real grocer (`./dev bench repurchase`, `./dev bench doors`;
Complete Journey from ../shared/data unless `--data` names another importable folder).

- `repurchase`: each household's last basket held out; the share of items bought again by days
  since the last purchase over the item's cycle, and for the policy's due / not-due / never.
- `doors`: `omnirec train` with all defaults on everything but each household's last basket, then
  the registered MLflow model asked with only `n=10` (as a data scientist would), against
  buy-again asked the same way: recall@10 on the held-out baskets."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from features.importers import import_completejourney
from features.validation import validate_events
from training.repurchase_timing import timing_table
from training.splits import last_basket_split

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "completejourney-full"


def _events(folder: Path | None) -> pa.Table:
    source = folder or SHARED
    if not source.exists():
        raise SystemExit(f"no data at {source}: pass --data with a Complete Journey folder")
    started = time.perf_counter()
    events = validate_events(import_completejourney(source).events, str(source)).accepted
    print(
        f"{source.name}: {events.num_rows:,} purchase lines ({time.perf_counter() - started:.1f} s)"
    )
    return events


def bench_repurchase(folder: Path | None = None) -> None:
    events = _events(folder)
    started = time.perf_counter()
    table = timing_table(events)
    print(table.markdown())
    print(f"({time.perf_counter() - started:.1f} s)")


def _recall(answer: dict[str, list[str]], truth: dict[str, set[str]], k: int = 10) -> float:
    values = [
        len(set(answer.get(c, [])[:k]) & items) / min(k, len(items)) for c, items in truth.items()
    ]
    return float(np.mean(values)) if values else 0.0


def bench_doors(folder: Path | None = None) -> None:
    import mlflow.pyfunc

    from features.interactions import build_interactions
    from models.popularity import BuyAgainRecommender
    from omnirec.settings import Settings
    from training.fitting import fit_model
    from training.pipeline import TrainConfig, train

    events = _events(folder)
    split = last_basket_split(events)
    truth: dict[str, set[str]] = {}
    for c, i in zip(
        split.test["customer_id"].cast(pa.string()).to_pylist(),
        split.test["item_id"].cast(pa.string()).to_pylist(),
        strict=True,
    ):
        truth.setdefault(c, set()).add(i)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        pq.write_table(split.train, data / "events.parquet")
        settings = Settings.from_env(
            {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db", "OMNIREC_DATA_DIR": f"{tmp}/var"}
        )
        started = time.perf_counter()
        result = train(TrainConfig(data=data, model="auto", protocol="next-basket"), settings)
        print(
            f"omnirec train (auto, next-basket): chose {result.model.kind}, show again "
            f"{result.model.show_again.mode} ({time.perf_counter() - started:.0f} s)"
        )
        mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
        model = mlflow.pyfunc.load_model(f"models:/{settings.mlflow.model_name}/{result.version}")
        customers = sorted(truth)
        out = model.predict(customers, params={"n": 10})
        answer: dict[str, list[str]] = {}
        for c, i in zip(out["customer_id"], out["item_id"], strict=True):
            answer.setdefault(c, []).append(i)
        buy_again = fit_model(
            "buy_again", {}, build_interactions(split.train), 42, exclude_bought=False
        )
        assert isinstance(buy_again, BuyAgainRecommender)
        baseline, _ = buy_again.recommend(customers, n=10)
        print(f"| door | recall@10 on {len(customers):,} held-out baskets |\n|---|---|")
        print(f"| MLflow pyfunc, params n=10 only | {_recall(answer, truth):.4f} |")
        print(f"| buy-again | {_recall(dict(zip(customers, baseline, strict=True)), truth):.4f} |")


__all__ = ["bench_doors", "bench_repurchase"]
