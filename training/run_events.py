"""The events a training run learns from, read by either engine: this process (a validated
`Dataset`) or Spark (which leaves the events on its executors and hands back aggregates)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from features.dataset import Dataset
from features.interactions import build_interactions
from omnirec.errors import ConfigError, DataError
from omnirec.interaction_data import Interactions
from omnirec.settings import Settings
from training.content_features import listed_items
from training.splits import EventSplit, split_events, time_cut

if TYPE_CHECKING:
    from features.spark_events import SparkTimeSplit


@dataclass(frozen=True)
class PreparedEvents:
    """The events a run learns from, read by either engine: the split, the interactions of its
    train part and of all events (built when asked), and how many rows were accepted/rejected."""

    split: EventSplit
    train_interactions: Callable[[], Interactions]
    all_interactions: Callable[[], Interactions]
    accepted: int
    rejected: int
    dataset: Dataset | None = None
    # model selection's validation part of the train part, cut and aggregated by the engine
    # (Spark); None: selection splits `split.train` itself
    validation: Callable[[], tuple[EventSplit, Interactions]] | None = None

    @classmethod
    def local(
        cls, dataset: Dataset, model: str, protocol: str, test_days: float, settings: Settings
    ) -> PreparedEvents:
        """This process reads them (`dataset`) and splits them by `protocol`."""
        events = dataset.events
        listed = listed_items(dataset.catalogue)  # items without events are columns too
        if protocol == "time" and model != "auto":
            # the train part as a mask, not a copy: at 100M events a copy costs ~5 GB
            before, cut, last = time_cut(events, test_days)
            train_rows = np.asarray(before.to_numpy(zero_copy_only=False), dtype=bool)
            test = EventSplit(events.slice(0, 0), events.filter(pa.array(~train_rows)), cut, last)
            return cls(
                test,
                lambda: build_interactions(
                    events, settings.interactions, event_rows=train_rows, extra_items=listed
                ),
                lambda: build_interactions(events, settings.interactions, extra_items=listed),
                events.num_rows,
                dataset.report.rejects.num_rows,
                dataset,
            )
        split = split_events(dataset.events, protocol, test_days)
        return cls(
            split,
            lambda: build_interactions(split.train, settings.interactions, extra_items=listed),
            lambda: build_interactions(dataset.events, settings.interactions, extra_items=listed),
            dataset.report.accepted.num_rows,
            dataset.report.rejects.num_rows,
            dataset,
        )

    @classmethod
    def spark(
        cls, data: Path, model: str, protocol: str, test_days: float, settings: Settings
    ) -> PreparedEvents:
        """Spark SQL reads, validates, stitches, splits and aggregates; only the matrices and the
        (small) held-out parts come back to this process. With `model` "auto" the train part is
        cut again in time, for model selection's validation part, the same way."""
        if protocol != "time":
            raise ConfigError(f"--engine spark splits in time (--protocol time), not {protocol}")
        from features.spark_events import (
            job,
            read_events,
            spark_interactions,
            spark_session,
            time_split,
        )

        spark = spark_session()
        read = read_events(spark, data, settings.max_future_seconds)
        accepted = read.accepted.cache()
        job(spark, "read, validate and stitch the events (cached)")
        count = accepted.count()
        cut = time_split(accepted, test_days)
        split = _held_out(cut)

        def validation() -> tuple[EventSplit, Interactions]:
            try:
                inner = time_split(cut.train, test_days)
            except DataError as exc:
                raise DataError(
                    str(exc.source), f"no validation part for model selection: {exc.reason}"
                ) from exc
            return _held_out(inner), spark_interactions(spark, inner.train, settings.interactions)

        return cls(
            split,
            lambda: spark_interactions(spark, cut.train, settings.interactions),
            lambda: spark_interactions(spark, accepted, settings.interactions),
            count,
            read.rows - count,
            validation=validation if model == "auto" else None,
        )


def _held_out(cut: SparkTimeSplit) -> EventSplit:
    """A Spark time cut as a split: its (small) held-out part here, its train part left to Spark."""
    return EventSplit(cut.test.slice(0, 0), cut.test, cut.cutoff, cut.end)
