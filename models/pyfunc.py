"""The MLflow pyfunc flavour:
`mlflow.pyfunc.load_model("models:/omnirec@champion").predict([...])`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc.model import PythonModel

from models import load_model
from models.base import Recommender

ARTIFACT_KEY = "omnirec_model"


class OmnirecPyfunc(PythonModel):  # type: ignore[misc]
    """Recommendations for a list of customer ids; loaded from arrays + JSON, never pickled."""

    model: Recommender

    def load_context(self, context: Any) -> None:
        self.model = load_model(Path(context.artifacts[ARTIFACT_KEY]))

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        # no annotations: MLflow reads them as an input schema and warns
        """Input: customer ids (list, Series or a DataFrame with `customer_id`); params: n,
        exclude_seen.

        Returns a DataFrame with customer_id, rank (1-based), item_id and score.
        """
        if isinstance(model_input, pd.DataFrame):
            column = (
                "customer_id" if "customer_id" in model_input.columns else model_input.columns[0]
            )
            customers = [str(c) for c in model_input[column].tolist()]
        else:
            customers = [str(c) for c in list(model_input)]
        n = int((params or {}).get("n", 10))
        exclude_seen = bool((params or {}).get("exclude_seen", True))
        items, scores = self.model.recommend(customers, n=n, exclude_seen=exclude_seen)
        rows = [
            {"customer_id": c, "rank": r + 1, "item_id": i, "score": s}
            for c, its, scs in zip(customers, items, scores, strict=True)
            for r, (i, s) in enumerate(zip(its, scs, strict=True))
        ]
        return pd.DataFrame(rows, columns=["customer_id", "rank", "item_id", "score"])
