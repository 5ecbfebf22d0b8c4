"""Hyper-parameter search on a validation split carved from the training part (never the test)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mlflow
import optuna

from omnirec.errors import ModelError
from training.evaluation import ALL, EvaluationSet, evaluate

SEARCH_SPACES: dict[str, Callable[[optuna.Trial], dict[str, Any]]] = {
    "als": lambda t: {
        "factors": t.suggest_categorical("factors", [16, 32, 64, 128]),
        "regularization": t.suggest_float("regularization", 1e-3, 10.0, log=True),
        "alpha": t.suggest_float("alpha", 0.5, 50.0, log=True),
        "iterations": t.suggest_int("iterations", 5, 30),
    },
    "bpr": lambda t: {
        "factors": t.suggest_categorical("factors", [16, 32, 64, 128]),
        "learning_rate": t.suggest_float("learning_rate", 0.005, 0.1, log=True),
        "regularization": t.suggest_float("regularization", 1e-4, 0.1, log=True),
        "iterations": t.suggest_int("iterations", 100, 600),
    },
    "itemknn": lambda t: {
        "neighbours": t.suggest_int("neighbours", 10, 400, log=True),
        "weighting": t.suggest_categorical("weighting", ["bm25", "cosine"]),
        "k1": t.suggest_float("k1", 0.2, 3.0),
        "b": t.suggest_float("b", 0.1, 1.0),
    },
    "ease": lambda t: {"l2": t.suggest_float("l2", 10.0, 5000.0, log=True)},
    "popularity": lambda t: {},
    "buy_again": lambda t: {},
    "repeat": lambda t: {
        "half_life_days": t.suggest_float("half_life_days", 14.0, 365.0, log=True),
        "neighbours": t.suggest_int("neighbours", 10, 500, log=True),
        "own_weight": t.suggest_float("own_weight", 0.5, 1.0),
        "shrinkage": t.suggest_float("shrinkage", 1.0, 50.0, log=True),
    },
    "repeat_ranked": lambda t: {
        "half_life_days": t.suggest_float("half_life_days", 14.0, 365.0, log=True),
        "levels": t.suggest_int("levels", 2, 8),
        "candidates": t.suggest_int("candidates", 20, 150, log=True),
    },
}


@dataclass(frozen=True)
class TuneResult:
    """The best parameters found and the validation score they reached."""

    params: dict[str, Any]
    score: float
    trials: int


def validation_score(
    kind: str, params: dict[str, Any], evaluation: EvaluationSet, k: int, seed: int
) -> float:
    """nDCG@k on the validation truth of a model fitted on the evaluation set's training part."""
    from training.fitting import fit_model

    model = fit_model(
        kind,
        params,
        evaluation.train,
        seed,
        serving_index=False,
        exclude_bought=evaluation.exclude_seen,
    )
    return evaluate(model, evaluation, model, k)[ALL]["ndcg"]


def tune(
    kind: str,
    evaluation: EvaluationSet,
    *,
    trials: int = 20,
    k: int = 10,
    seed: int = 42,
    log_to_mlflow: bool = False,
) -> TuneResult:
    """TPE search (seeded) over SEARCH_SPACES[kind]; each trial is a nested MLflow run when
    asked."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SEARCH_SPACES[kind]

    def objective(trial: optuna.Trial) -> float:
        params = space(trial)
        try:
            score = validation_score(kind, params, evaluation, k, seed)
        except (
            ModelError
        ) as exc:  # e.g. BPR diverging at a high learning rate: a bad trial, not a failed search
            trial.set_user_attr("error", str(exc))
            score = 0.0
        if log_to_mlflow:
            with mlflow.start_run(nested=True, run_name=f"{kind}-trial-{trial.number}"):
                mlflow.log_params(params)
                mlflow.log_metric(f"validation_ndcg_at_{k}", score)
        return score

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials if kind not in {"popularity", "buy_again"} else 1)
    return TuneResult(
        params=dict(study.best_params), score=float(study.best_value), trials=len(study.trials)
    )
