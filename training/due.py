"""Who is due to buy what again (the replenishment e-mail): from a model that learned each
customer's own rhythm (the repeat models), every (customer, item) the customer bought at least
three times whose next purchase falls in a window: from half an interval overdue (not rebought
yet) to `within_days` ahead. The same rhythm the show-again policy and the reasons read."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from models.base import Recommender
from omnirec.errors import ModelError

DAY = 86_400.0


def due_to_buy_again(
    model: Recommender, now: float, within_days: float, catalogue: pa.Table | None = None
) -> pa.Table:
    """customer_id, item_id, (name, category from `catalogue`), times_bought, every_days,
    last_bought_at, due_at: one row per due (customer, item), soonest first."""
    own = getattr(model, "own_window", None)
    if not isinstance(own, sp.csr_matrix) or model.last_bought is None:
        raise ModelError(
            f"a {model.kind} model learns no customer rhythm: the due list needs a repeat model "
            "(repeat or repeat_ranked)"
        )
    rhythm = sp.csr_matrix(own, dtype=np.float64)
    rhythm.eliminate_zeros()
    last = sp.csr_matrix(model.last_bought.multiply(rhythm > 0), dtype=np.float64)
    last.sort_indices()
    rhythm = sp.csr_matrix(rhythm.multiply(last > 0), dtype=np.float64)
    rhythm.sort_indices()
    rows = np.repeat(np.arange(last.shape[0]), np.diff(last.indptr))
    cols = last.indices.astype(np.int64)
    every = rhythm.data / model.due_share
    at = last.data
    due = at + every * DAY
    keep = (due >= now - 0.5 * every * DAY) & (due <= now + within_days * DAY)
    rows, cols, every, at, due = rows[keep], cols[keep], every[keep], at[keep], due[keep]
    order = np.lexsort((cols, rows, due))
    rows, cols, every, at, due = rows[order], cols[order], every[order], at[order], due[order]
    times = (
        np.asarray(model.times_bought[rows, cols]).ravel()
        if model.times_bought is not None and len(rows)
        else np.zeros(len(rows))
    )
    columns: dict[str, pa.Array] = {
        "customer_id": pa.array(model.customer_ids[rows].tolist(), pa.string()),
        "item_id": pa.array(model.item_ids[cols].tolist(), pa.string()),
        "times_bought": pa.array(times.astype(np.int32)),
        "every_days": pa.array(np.round(every, 1)),
        "last_bought_at": pa.array((at * 1e6).astype(np.int64)).cast(pa.timestamp("us", "UTC")),
        "due_at": pa.array((due * 1e6).astype(np.int64)).cast(pa.timestamp("us", "UTC")),
    }
    if catalogue is not None:
        table = catalogue.to_pydict()
        at_row = {str(i): k for k, i in enumerate(table["item_id"])}
        for name in ("name", "category"):
            if name in table:
                values = table[name]
                columns[name] = pa.array(
                    [
                        None if at_row.get(i) is None else values[at_row[i]]
                        for i in columns["item_id"].to_pylist()
                    ],
                    pa.string(),
                )
    return pa.table(columns)
