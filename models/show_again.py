"""What a customer may be shown again: the one policy every door applies.

A run chooses the policy and stores it with the model version (`model.json` and `arrays.npz`);
the evaluation, the MLflow pyfunc, the batch export, the HTTP routes and the Spark publisher all
ask `ShowAgain.hides` about the same (item, last purchase time, now) and so hide the same items.

- `never`: a bought item is not suggested again (fashion, electronics: customers rarely rebuy);
- `when_due`: a bought item is hidden until its window after the last purchase has passed (a
  share of the item's learned repurchase cycle, or of the customer's own rhythm where the model
  knows it; `inf`: never again);
- `always`: bought items stay recommendable (the model itself ranks repeats).

Only purchases (net of returns) count: a viewed item may be suggested again at every door.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from omnirec.errors import ModelFormatError

SECONDS_PER_DAY = 86_400.0
Mode = Literal["never", "when_due", "always"]
MODES: tuple[Mode, ...] = ("never", "when_due", "always")


@dataclass(frozen=True)
class ShowAgain:
    """The policy: `mode`, and for `when_due` the window in days per item column (inf: never)."""

    mode: Mode = "never"
    window_days: npt.NDArray[np.float32] | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ModelFormatError(f"show-again mode {self.mode!r}; known: {', '.join(MODES)}")
        if self.mode == "when_due" and self.window_days is None:
            raise ModelFormatError("show-again mode 'when_due' needs a window per item")

    def hides(
        self,
        cols: npt.NDArray[np.integer[Any]],
        bought_at: npt.NDArray[np.floating[Any]] | npt.NDArray[np.integer[Any]],
        now: float | npt.NDArray[np.float64],
        own_window_days: npt.NDArray[np.floating[Any]] | None = None,
    ) -> npt.NDArray[np.bool_]:
        """Per purchase (item column, epoch seconds of the last purchase): whether the item is
        hidden at `now` (seconds; one value or one per purchase). `own_window_days`: the
        customer's own window per purchase (NaN: not known, the item's)."""
        cols = np.asarray(cols, dtype=np.int64)
        if self.mode == "always" or len(cols) == 0:
            return np.zeros(len(cols), bool)
        if self.mode == "never":
            return np.ones(len(cols), bool)
        assert self.window_days is not None  # checked in __post_init__
        window = self.window_days[cols].astype(np.float64)
        if own_window_days is not None:
            own = np.asarray(own_window_days, dtype=np.float64)
            window = np.where(np.isnan(own) | np.isinf(window), window, own)
        age = np.asarray(now, dtype=np.float64) - np.asarray(bought_at, dtype=np.float64)
        return np.asarray(age < window * SECONDS_PER_DAY)

    def hidden(
        self,
        last_bought: sp.csr_matrix,
        now: npt.NDArray[np.float64],
        own_window_days: sp.csr_matrix | None = None,
    ) -> sp.csr_matrix:
        """(rows, items) 0/1 matrix of the hidden items of each row of `last_bought` (epoch
        seconds of each item's last purchase, net of returns) at `now` (seconds, per row);
        `own_window_days` has the same sparsity (NaN: not known)."""
        rows = np.repeat(np.arange(last_bought.shape[0]), np.diff(last_bought.indptr))
        own = None if own_window_days is None else np.asarray(own_window_days.data)
        keep = self.hides(last_bought.indices, last_bought.data, now[rows], own)
        return sp.csr_matrix(
            (np.ones(int(keep.sum()), np.float32), (rows[keep], last_bought.indices[keep])),
            shape=last_bought.shape,
        )

    def describe(self) -> str:
        """A line for the run's output and `omnirec models`."""
        if self.mode == "never":
            return "bought items are not suggested again"
        if self.mode == "always":
            return "bought items stay recommendable"
        assert self.window_days is not None
        finite = self.window_days[np.isfinite(self.window_days)]
        never = int(np.isinf(self.window_days).sum())
        spread = (
            f"{np.percentile(finite, 10):.1f}-{np.percentile(finite, 90):.1f} days (10th-90th "
            "percentile)"
            if finite.size
            else "no finite window"
        )
        return f"bought items come back when due: windows of {spread}; {never} items never again"

    def meta(self) -> dict[str, Any]:
        """What model.json keeps (the window goes to arrays.npz)."""
        return {"mode": self.mode}

    @classmethod
    def restore(cls, meta: Any, window: npt.NDArray[Any] | None, n_items: int) -> ShowAgain:
        """The policy from model.json's `show_again` and the stored window (old models without
        one: bought items are never suggested again)."""
        if meta is None:
            return cls()
        if not isinstance(meta, dict):
            raise ModelFormatError(f"show_again is {type(meta).__name__}, expected an object")
        mode = meta.get("mode")
        if window is not None and (window.shape != (n_items,) or np.isnan(window).any()):
            raise ModelFormatError(f"show-again window has shape {window.shape} or NaN")
        return cls(mode, None if window is None else window.astype(np.float32))  # type: ignore[arg-type]


def choose_policy(
    n_items: int,
    window_days: npt.NDArray[np.float32] | None,
    *,
    exclude_bought: bool,
    due: bool = True,
    configured_days: npt.NDArray[np.float64] | None = None,
) -> ShowAgain:
    """The policy a run stores: `never` where bought items are excluded, `when_due` where they
    stay and the model learned windows (`due`; else `always`); `configured_days` (per item, NaN:
    none; OMNIREC_REPURCHASE_DAYS by category) sets the window of those items in any case."""
    configured = configured_days is not None and not np.isnan(configured_days).all()
    if exclude_bought:
        if not configured:
            return ShowAgain("never")
        base = np.full(n_items, np.inf)
    elif window_days is None or not due:
        if not configured:
            return ShowAgain("always")
        base = np.zeros(n_items)
    else:
        base = window_days.astype(np.float64)
    if configured:
        assert configured_days is not None
        base = np.where(np.isnan(configured_days), base, configured_days)
    return ShowAgain("when_due", base.astype(np.float32))
