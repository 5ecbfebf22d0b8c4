"""The experiments' guardrail: each variant against the control, in rounds, in this worker.

A round runs from the end of the last one until both sides have answered enough times in it
(`min_requests` for error shares, LATENCY_SAMPLES for p99 latencies), and gives one verdict. Both
sides of a round cover the same stretch of time, so a burst of slow answers (the first of every
new load's connections, a garbage collection) falls on both; and rounds do not overlap, so a
burst counts in one verdict. A window of each side's last answers did neither: the side with
fewer customers reached further back, over the slow start of a load, and kept the burst for
twenty checks in a row; it stopped the experiments bench's healthy challenger every run.

An answer only appends to its experiment's list; every FOLD_EVERY answers the list is folded in
with numpy (tallies, rounds, verdicts), exactly as if each answer had been counted on its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from serving.experiments.config import Experiment

LATENCY_SAMPLES = 1000  # answers of each side a latency round needs (the p99 is its 10 slowest)
STRETCH_LATENCIES = 4096  # latencies a side of a round keeps (then every 2nd, 4th... answer's)
FOLD_EVERY = 256  # answers of an experiment recorded before they are folded in

Answers = list[tuple[str, float, bool]]  # (variant, seconds, failed), in the order answered


class Tally:
    """One variant's answers in one worker, as /metrics counts them: how many, how many failed
    (degraded or raised)."""

    __slots__ = ("answers", "failures")

    def __init__(self, answers: int = 0, failures: int = 0) -> None:
        self.answers = answers
        self.failures = failures


class Stretch:
    """One side's answers in one round: how many, how many failed and, for a latency round,
    their latencies. Once STRETCH_LATENCIES are kept, every second one is let go and every
    second answer from then on is kept (then every 4th...): the sample still spans the whole
    round, in bounded memory, for a control that answers 20 times as often as a variant."""

    __slots__ = ("answers", "failures", "kept", "latencies", "stride")

    def __init__(self, latencies: bool) -> None:
        self.answers = 0
        self.failures = 0
        self.latencies = np.empty(STRETCH_LATENCIES) if latencies else None
        self.kept = 0  # the latencies of the round's answers number stride, 2 x stride, ...
        self.stride = 1

    def add(self, seconds: npt.NDArray[np.float64], failed: npt.NDArray[np.bool_]) -> None:
        """This side's next answers, in order."""
        first = self.answers + 1
        self.answers += len(seconds)
        self.failures += int(np.count_nonzero(failed))
        if self.latencies is None or not len(seconds):
            return
        while True:
            # the answers numbered stride, 2 x stride... of the round: from the first such here
            kept = seconds[(-first) % self.stride :: self.stride]
            if self.kept + len(kept) <= len(self.latencies):
                break
            halved = self.latencies[1 : self.kept : 2].copy()  # full: every second one stays
            self.kept = len(halved)
            self.latencies[: self.kept] = halved
            self.stride *= 2
        self.latencies[self.kept : self.kept + len(kept)] = kept
        self.kept += len(kept)

    def figure(self) -> float:
        """The round's error share, or for a latency round its p99."""
        if self.latencies is None:
            return self.failures / self.answers
        return percentile_99(self.latencies[: self.kept])


class Comparison:
    """One measure (error share or p99 latency) of a variant against the control, round by
    round: `failed` counts the rounds in a row that found the variant worse, `rounds` and
    `worse` all the rounds judged (for /metrics), `last` the last round's figure (the p99's
    ratio to the control's, or the error share less the control's)."""

    __slots__ = ("control", "failed", "last", "measure", "need", "rounds", "variant", "worse")

    def __init__(self, measure: str, need: int) -> None:
        self.measure = measure  # "errors" or "latency"
        self.need = need
        self.control = Stretch(measure == "latency")
        self.variant = Stretch(measure == "latency")
        self.failed = 0
        self.rounds = 0
        self.worse = 0
        self.last = float("nan")

    def add(
        self,
        side: npt.NDArray[np.int8],
        seconds: npt.NDArray[np.float64],
        failed: npt.NDArray[np.bool_],
    ) -> Iterator[tuple[float, float]]:
        """The next answers (side 0: the control's, 1: the variant's, -1: another variant's);
        yields (variant's figure, control's figure) of each round they complete, the next
        round started."""
        while len(side):
            control, variant = side == 0, side == 1
            end = max(
                _reaching(control, self.need - self.control.answers),
                _reaching(variant, self.need - self.variant.answers),
            )
            complete = end <= len(side)
            end = min(end, len(side))
            self.control.add(seconds[:end][control[:end]], failed[:end][control[:end]])
            self.variant.add(seconds[:end][variant[:end]], failed[:end][variant[:end]])
            if not complete:
                return
            yield self.variant.figure(), self.control.figure()
            self.control = Stretch(self.measure == "latency")
            self.variant = Stretch(self.measure == "latency")
            side, seconds, failed = side[end:], seconds[end:], failed[end:]

    def verdict(self, figure: float, worse: bool) -> int:
        """Count a round's verdict; returns the rounds in a row found worse."""
        self.failed = self.failed + 1 if worse else 0
        self.rounds += 1
        self.worse += worse
        self.last = figure
        return self.failed


class VariantHealth:
    """Per (experiment, variant) in this worker: a Tally of its answers and, for each variant but
    the control, two comparisons with the control (error shares over rounds of `min_requests`
    answers of each, p99 latencies over rounds of LATENCY_SAMPLES), which stop a variant found
    worse in `failed_checks` rounds in a row. The tallies are also what /metrics counts
    (`omnirec_variant_answers_total`, read when scraped: nothing else is bumped per answer)."""

    def __init__(self) -> None:
        self.stopped: dict[tuple[str, str], str] = {}  # -> why
        # (experiment, variant) -> (errors, latency), stopped variants included
        self._comparisons: dict[tuple[str, str], tuple[Comparison, Comparison]] = {}
        self._folded: dict[tuple[str, str], Tally] = {}
        self._pending: dict[str, Answers] = {}

    def record(
        self, experiment: Experiment, variant: str, seconds: float, failed: bool
    ) -> list[str]:
        """Count one answer; every FOLD_EVERY answers of the experiment, fold them in (returns
        the variants stopped then)."""
        pending = self._pending.get(experiment.name)
        if pending is None:
            pending = self._pending[experiment.name] = []
        pending.append((variant, seconds, failed))
        return self.fold(experiment) if len(pending) >= FOLD_EVERY else []

    def is_stopped(self, experiment: str, variant: str) -> bool:
        return (experiment, variant) in self.stopped

    @property
    def tallies(self) -> dict[tuple[str, str], Tally]:
        """Each variant's answers so far, those not folded in yet included."""
        tallies = {key: Tally(t.answers, t.failures) for key, t in self._folded.items()}
        for name, pending in list(self._pending.items()):
            for variant, _, failed in list(pending):
                tally = tallies.setdefault((name, variant), Tally())
                tally.answers += 1
                tally.failures += failed
        return tallies

    def fold(self, experiment: Experiment) -> list[str]:
        """Fold the experiment's answers recorded since the last fold into the tallies and the
        rounds; returns the variants that rounds completed now stopped."""
        name = experiment.name
        pending = self._pending.pop(name, [])
        if not pending:
            return []
        variants, latencies, failures = zip(*pending, strict=True)
        seconds, failed = np.array(latencies), np.array(failures, dtype=bool)
        order = {v.name: k for k, v in enumerate(experiment.variants)}
        codes = np.array([order[v] for v in variants], dtype=np.int8)  # 0: the control
        answers = np.bincount(codes, minlength=len(order))
        failures_of = np.bincount(codes, weights=failed, minlength=len(order))
        for variant, k in order.items():
            if answers[k]:
                tally = self._folded.setdefault((name, variant), Tally())
                tally.answers += int(answers[k])
                tally.failures += int(failures_of[k])
        stopped = []
        for variant, k in order.items():
            if not k or self.is_stopped(name, variant):
                continue
            pair, start = self._comparisons.get((name, variant)), 0
            if pair is None:
                if not answers[k]:
                    continue
                start = int(np.argmax(codes == k))  # its rounds start with its first answer
                rail = experiment.guardrail
                pair = (
                    Comparison("errors", rail.min_requests),
                    Comparison("latency", LATENCY_SAMPLES),
                )
                self._comparisons[(name, variant)] = pair
            side = np.where(codes == 0, 0, np.where(codes == k, 1, -1)).astype(np.int8)
            if self._judge(
                experiment, variant, pair, side[start:], seconds[start:], failed[start:]
            ):
                stopped.append(variant)
        return stopped

    def _judge(
        self,
        experiment: Experiment,
        variant: str,
        pair: tuple[Comparison, Comparison],
        side: npt.NDArray[np.int8],
        seconds: npt.NDArray[np.float64],
        failed: npt.NDArray[np.bool_],
    ) -> bool:
        """Add the answers to the variant's comparisons and judge the rounds they complete;
        True when the variant is stopped (it is not compared again)."""
        rail = experiment.guardrail
        for comparison in pair:
            for mine, theirs in comparison.add(side, seconds, failed):
                if comparison.measure == "errors":
                    worse, figure = mine > theirs + rail.max_error_increase, mine - theirs
                    why = f"error share {mine:.3f} vs control {theirs:.3f}"
                else:
                    figure = mine / theirs if theirs > 0 else (float("inf") if mine > 0 else 1.0)
                    worse = mine > theirs * rail.max_latency_ratio
                    why = f"p99 {mine * 1000:.1f} ms vs control {theirs * 1000:.1f} ms"
                if comparison.verdict(figure, worse) >= rail.failed_checks:
                    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    self.stopped[(experiment.name, variant)] = (
                        f"{why}, in {rail.failed_checks} rounds in a row (both over the same "
                        f"time), the last ending at {when}"
                    )
                    return True
        return False

    def rounds(self) -> Iterator[tuple[str, str, str, Comparison]]:
        """(experiment, variant, measure, its comparison) of every variant compared so far,
        stopped ones included, for /metrics: measure `errors` or `latency`."""
        for (experiment, variant), pair in list(self._comparisons.items()):
            for comparison in pair:
                yield experiment, variant, comparison.measure, comparison


def _reaching(mask: npt.NDArray[np.bool_], needed: int) -> int:
    """How many of the answers it takes for `needed` of those in `mask` (past the end when
    there are fewer)."""
    if needed <= 0:
        return 0
    where = np.flatnonzero(mask)
    return int(where[needed - 1]) + 1 if len(where) >= needed else len(mask) + 1


def percentile_99(values: npt.NDArray[np.float64]) -> float:
    """`np.percentile(values, 99)` (linear interpolation between the two nearest ranks) from a
    partial sort: ~5 µs over 2,000 latencies where np.percentile takes ~55 µs."""
    position = 0.99 * (len(values) - 1)
    low = int(position)
    high = min(low + 1, len(values) - 1)
    ranked = np.partition(values, (low, high))
    return float(ranked[low] + (ranked[high] - ranked[low]) * (position - low))
