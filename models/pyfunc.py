"""The MLflow pyfunc flavour:
`mlflow.pyfunc.load_model("models:/omnirec@champion").predict([...])`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc.model import PythonModel

from models import load_model
from models.aliases import load_aliases, resolve
from models.base import Recommender

ARTIFACT_KEY = "omnirec_model"


class OmnirecPyfunc(PythonModel):  # type: ignore[misc]
    """Recommendations for a list of customer ids; loaded from arrays + JSON, never pickled."""

    model: Recommender
    aliases: dict[str, str]

    def load_context(self, context: Any) -> None:
        folder = Path(context.artifacts[ARTIFACT_KEY])
        self.model = load_model(folder)
        self.aliases = load_aliases(folder)

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        # no annotations: MLflow reads them as an input schema and warns
        """Input: customer ids or any of their aliases (list, Series or a DataFrame with
        `customer_id`); params: n, exclude_purchased (True: hide what the version's show-again
        policy hides, as the route does; False: hide nothing), now (epoch seconds the policy is
        applied at; 0: the current time).

        Returns a DataFrame with customer_id (as asked), rank (1-based), item_id and score.
        """
        if isinstance(model_input, pd.DataFrame):
            column = (
                "customer_id" if "customer_id" in model_input.columns else model_input.columns[0]
            )
            customers = [str(c) for c in model_input[column].tolist()]
        else:
            customers = [str(c) for c in list(model_input)]
        params = params or {}
        n = int(params.get("n", 10))
        exclude = bool(params.get("exclude_purchased", params.get("exclude_seen", True)))
        now = float(params.get("now") or 0.0) or time.time()
        items, scores = self.model.recommend(
            resolve(customers, self.aliases), n=n, now=now, apply_policy=exclude
        )
        rows = [
            {"customer_id": c, "rank": r + 1, "item_id": i, "score": s}
            for c, its, scs in zip(customers, items, scores, strict=True)
            for r, (i, s) in enumerate(zip(its, scs, strict=True))
        ]
        return pd.DataFrame(rows, columns=["customer_id", "rank", "item_id", "score"])
