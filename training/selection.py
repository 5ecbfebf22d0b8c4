"""The default model, chosen by validation: every candidate (model kind + searched defaults) is
fitted on the training part minus a validation part carved with the same protocol, scored on that
validation part, and the best one wins. The test part is never seen here."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from features.interactions import build_interactions
from models.show_again import choose_policy
from omnirec.errors import DataError, ModelError
from omnirec.interaction_data import Interactions
from omnirec.settings import Settings
from training.evaluation import ALL, EvaluationSet, build_evaluation_set, evaluate
from training.splits import EventSplit, split_events

DEFAULT_BUDGET_SECONDS = 600.0
TUNE_PATIENCE = 8  # tuning stops after this many trials in a row find nothing better
TUNE_MAX_TRIALS = 60
RANKED_LEVELS = 5  # repeat_ranked's default levels (each a repeat fit), for its expected cost
REPEAT_SHARE_TO_KEEP = 0.2  # more repeat purchases than this: bought items stay recommendable
# a time split that leaves fewer validation customers than this (or than this share of them)
# cannot decide: validation falls back to each customer's own last basket (or last days)
MIN_VALIDATION_CUSTOMERS = 200
MIN_VALIDATION_SHARE = 0.10

# (kind, params) tried, cheapest first; values are the searched defaults that held across data
# sets (MovieLens, Complete Journey, synthetic): heavily regularised ALS and EASE, the
# repeat model with two decays, and its candidates re-ranked by a learned LambdaRank model
CANDIDATES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("popularity", {}),
    ("buy_again", {}),
    ("repeat", {}),
    ("repeat", {"half_life_days": 90.0, "shrinkage": 20.0}),
    ("repeat", {"half_life_days": 90.0, "shrinkage": 20.0, "basket_prior": 10.0}),
    ("repeat_ranked", {}),
    ("itemknn", {}),
    ("ease", {"l2": 300.0}),
    ("ease", {"l2": 1000.0}),
    ("als", {"factors": 64, "regularization": 20.0, "alpha": 2.0, "iterations": 15}),
    ("als", {"factors": 64, "regularization": 1.0, "alpha": 10.0, "iterations": 15}),
)
REPEAT_KINDS = frozenset({"buy_again", "repeat", "repeat_ranked"})


@dataclass
class Trial:
    """One candidate's validation result (or why it was not tried)."""

    kind: str
    params: dict[str, Any]
    score: float | None = None
    recall: float | None = None
    fit_seconds: float = 0.0
    note: str = ""
    # the show-again policy it was scored with: bought items back when due (models that learn
    # windows, where bought items stay), or not
    due: bool = True

    @property
    def label(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.kind}({shown})" if shown else self.kind


@dataclass
class Selection:
    """The candidates compared on validation and the one chosen."""

    trials: list[Trial]
    best: Trial
    validation_customers: int
    budget_seconds: float
    exclude_seen: bool
    repeat_share: float
    metric: str
    notes: list[str] = field(default_factory=list)
    validation: str = ""  # what the validation part held out

    def table(self) -> str:
        """The comparison as Markdown (best first)."""
        lines = [
            f"| candidate | validation {self.metric} | recall | fit | note |",
            "|---|---|---|---|---|",
        ]
        ranked = sorted(self.trials, key=lambda t: -(t.score if t.score is not None else -1.0))
        for t in ranked:
            score = f"{t.score:.4f}" if t.score is not None else "-"
            recall = f"{t.recall:.4f}" if t.recall is not None else "-"
            mark = " **chosen**" if t is self.best else ""
            lines.append(
                f"| {t.label}{mark} | {score} | {recall} | {t.fit_seconds:.1f} s | {t.note} |"
            )
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(
            {
                "chosen": {
                    "kind": self.best.kind,
                    "params": self.best.params,
                    "show_again_when_due": self.best.due,
                },
                "metric": self.metric,
                "validation_customers": self.validation_customers,
                "validation": self.validation,
                "budget_seconds": self.budget_seconds,
                "exclude_seen": self.exclude_seen,
                "repeat_share": self.repeat_share,
                "notes": self.notes,
                "trials": [
                    {
                        "kind": t.kind,
                        "params": t.params,
                        "score": t.score,
                        "recall": t.recall,
                        "fit_seconds": t.fit_seconds,
                        "note": t.note,
                        "show_again_when_due": t.due,
                    }
                    for t in self.trials
                ],
            },
            indent=2,
        )


def repeat_share(evaluation: EvaluationSet) -> float:
    """Share of the held-out purchases (returning customers) the customer had bought before."""
    truth = evaluation.truth[ALL]
    seen = evaluation.train.matrix[evaluation.rows]
    total = truth.nnz
    return float(truth.multiply(seen > 0).nnz / total) if total else 0.0


def decide_exclude_seen(evaluation: EvaluationSet) -> tuple[bool, float]:
    """Exclude bought items from lists unless the data shows customers buy them again."""
    share = repeat_share(evaluation)
    return share < REPEAT_SHARE_TO_KEEP, share


def select_model(
    train_events: pa.Table,
    settings: Settings,
    *,
    protocol: str,
    test_days: float,
    relevant: tuple[str, ...],
    exclude_seen: bool | None,
    k: int = 10,
    budget_seconds: float = DEFAULT_BUDGET_SECONDS,
    max_users: int = 20_000,
    say: Callable[[str], None] = print,
) -> Selection:
    """Compare CANDIDATES on a validation split of `train_events` within `budget_seconds`."""
    started = time.perf_counter()
    asked = _Asked(settings, relevant, exclude_seen, k, budget_seconds, max_users, say)
    try:
        inner = split_events(train_events, protocol, test_days)
    except DataError as exc:
        raise DataError(
            str(exc.source), f"no validation part for model selection: {exc.reason}"
        ) from exc
    inner_train = build_interactions(inner.train, settings.interactions)
    probe = _probe(inner, inner_train, asked)
    held = len(probe.rows)
    if protocol == "time" and held < _enough(inner_train, max_users):
        # too few to decide: each customer's own cut
        inner = split_events(train_events, _own_cut_protocol(train_events), test_days)
        inner_train = build_interactions(inner.train, settings.interactions)
        probe = _probe(inner, inner_train, asked)
        say(
            f"model selection: the time split held {held} validation customers (under "
            f"{MIN_VALIDATION_CUSTOMERS} or {MIN_VALIDATION_SHARE:.0%} of them): validating on "
            f"{inner.describe()} instead ({len(probe.rows):,} customers)"
        )
    return _select(inner, inner_train, probe, asked, started)


def select_model_on(
    inner: EventSplit,
    inner_train: Interactions,
    settings: Settings,
    *,
    relevant: tuple[str, ...],
    exclude_seen: bool | None,
    k: int = 10,
    budget_seconds: float = DEFAULT_BUDGET_SECONDS,
    max_users: int = 20_000,
    say: Callable[[str], None] = print,
) -> Selection:
    """The same comparison on a validation part another engine cut and aggregated (Spark: the
    part's interactions and its held-out events, on this process); its per-customer fallback
    needs the raw events, so a thin time split is only reported."""
    started = time.perf_counter()
    asked = _Asked(settings, relevant, exclude_seen, k, budget_seconds, max_users, say)
    probe = _probe(inner, inner_train, asked)
    if len(probe.rows) < _enough(inner_train, max_users):
        say(
            f"model selection: the time split holds only {len(probe.rows)} validation customers "
            f"(under {MIN_VALIDATION_CUSTOMERS} or {MIN_VALIDATION_SHARE:.0%} of them): the "
            "choice is weak (a single-machine run would validate on each customer's own cut)"
        )
    return _select(inner, inner_train, probe, asked, started)


@dataclass(frozen=True)
class _Asked:
    """What the caller asked of a selection."""

    settings: Settings
    relevant: tuple[str, ...]
    exclude_seen: bool | None
    k: int
    budget_seconds: float
    max_users: int
    say: Callable[[str], None]


def _probe(part: EventSplit, built: Interactions, asked: _Asked) -> EvaluationSet:
    """The part's truth with bought items kept."""
    return build_evaluation_set(
        part,
        built,
        relevant_types=asked.relevant,
        exclude_seen=False,
        max_users=asked.max_users,
        seed=asked.settings.seed,
    )


def _enough(inner_train: Interactions, max_users: int) -> float:
    """Validation customers a time split must hold to decide."""
    return min(
        max(MIN_VALIDATION_CUSTOMERS, MIN_VALIDATION_SHARE * inner_train.shape[0]), max_users
    )


def _select(
    inner: EventSplit,
    inner_train: Interactions,
    probe: EvaluationSet,
    asked: _Asked,
    started: float,
) -> Selection:
    settings, relevant, k, say = asked.settings, asked.relevant, asked.k, asked.say
    exclude_seen, budget_seconds, max_users = (
        asked.exclude_seen,
        asked.budget_seconds,
        asked.max_users,
    )
    keep_decided, share = decide_exclude_seen(probe)
    exclude = keep_decided if exclude_seen is None else exclude_seen
    validation = probe
    if exclude:
        validation = build_evaluation_set(
            inner,
            inner_train,
            relevant_types=relevant,
            exclude_seen=True,
            max_users=max_users,
            seed=settings.seed,
        )
    customers = len(validation.rows)
    say(
        f"model selection: {len(CANDIDATES)} candidates on a validation part "
        f"({inner.describe()}, {customers:,} customers), budget {budget_seconds:.0f} s; "
        f"{share:.0%} of held-out purchases are repeats: bought items "
        f"{'excluded' if exclude else 'stay recommendable'}"
    )
    trials, best = compare(
        validation,
        seed=settings.seed,
        k=k,
        exclude_seen=exclude,
        budget_seconds=budget_seconds,
        say=say,
    )
    notes = [f"only {customers} validation customers: the choice is weak"] if customers < 50 else []
    say(f"model selection: chose {best.label} in {time.perf_counter() - started:.0f} s")
    return Selection(
        trials,
        best,
        customers,
        budget_seconds,
        exclude,
        share,
        f"ndcg_at_{k}",
        notes,
        inner.describe(),
    )


def _own_cut_protocol(events: pa.Table) -> str:
    """The per-customer protocol for these events: each customer's last basket where there are
    purchases, else each customer's last days."""
    kinds = pc.unique(events.column("event_type").cast(pa.string())).to_pylist()
    return "next-basket" if "purchase" in kinds else "last-days"


def compare(
    validation: EvaluationSet,
    *,
    seed: int,
    k: int,
    exclude_seen: bool,
    budget_seconds: float,
    say: Callable[[str], None] = print,
) -> tuple[list[Trial], Trial]:
    """Fit every candidate on `validation.train` and score it on the validation truth (nDCG@k),
    cheapest first, skipping one whose fit cannot end within the budget; then spend what is
    left of `budget_seconds` searching the best family's parameters (`tuning`), until
    TUNE_PATIENCE trials in a row find nothing better. Returns the trials and the best."""
    started = time.perf_counter()
    trials: list[Trial] = []
    n_items = validation.train.shape[1]
    took: dict[str, float] = {}  # the last fit time of each kind (what the next one costs)
    for kind, params in CANDIDATES:
        trial = Trial(kind, dict(params))
        trials.append(trial)
        if exclude_seen and kind in REPEAT_KINDS:
            trial.note = "repeat model: bought items are excluded on this data"
            continue
        if kind == "ease" and not ease_fits(n_items):
            trial.note = f"EASE's dense {n_items:,}-item matrices do not fit in memory"
            continue
        left = budget_seconds - (time.perf_counter() - started)
        expected = _expected_seconds(kind, took)
        if left <= 0 or expected > left:
            trial.note = (
                f"cannot finish within the budget ({expected:.0f} s expected, {max(left, 0):.0f} s"
                " left)"
            )
            continue
        _score(trial, validation, seed, k, exclude_seen, say)
        took[kind] = trial.fit_seconds
    scored = [t for t in trials if t.score is not None]
    if not scored:
        raise ModelError("model selection: no candidate could be fitted on the validation part")
    best = max(scored, key=lambda t: (t.score or 0.0, -t.fit_seconds))
    trials += _tune(best, validation, seed, k, exclude_seen, budget_seconds, started, took, say)
    scored = [t for t in trials if t.score is not None]
    return trials, max(scored, key=lambda t: (t.score or 0.0, -t.fit_seconds))


def _score(
    trial: Trial,
    validation: EvaluationSet,
    seed: int,
    k: int,
    exclude_seen: bool,
    say: Callable[[str], None],
) -> None:
    """Fit the trial's model and fill in its validation score (repeat models with both show-again
    policies, the better kept); a refusal is noted."""
    from training.fitting import fit_model

    clock = time.perf_counter()
    kind, params = trial.kind, trial.params
    try:
        params = {"max_items": validation.train.shape[1], **params} if kind == "ease" else params
        model = fit_model(
            kind, params, validation.train, seed, serving_index=False, exclude_bought=exclude_seen
        )
    except ModelError as exc:
        trial.note = f"refused: {exc}"
        return
    trial.fit_seconds = time.perf_counter() - clock
    metrics = evaluate(model, validation, model, k)[ALL]
    trial.score, trial.recall = metrics["ndcg"], metrics["recall"]
    tried_both = model.show_again.mode == "when_due"
    if tried_both:  # the same model, bought items always kept
        model.show_again = choose_policy(
            model.n_items, model.repurchase_window_days(), exclude_bought=False, due=False
        )
        kept = evaluate(model, validation, model, k)[ALL]
        if kept["ndcg"] > metrics["ndcg"]:
            trial.score, trial.recall, trial.due = kept["ndcg"], kept["recall"], False
        trial.note = (
            f"bought items back when due: nDCG {metrics['ndcg']:.4f}, "
            f"always kept: {kept['ndcg']:.4f}"
        )
    policy = (
        ("  (bought items back when due)" if trial.due else "  (bought items always kept)")
        if tried_both
        else ""
    )
    say(
        f"  {trial.label:<60} nDCG@{k} {trial.score:.4f}  recall@{k} {trial.recall:.4f}  "
        f"({trial.fit_seconds:.1f} s fit){policy}"
    )


def _tune(
    best: Trial,
    validation: EvaluationSet,
    seed: int,
    k: int,
    exclude_seen: bool,
    budget_seconds: float,
    started: float,
    took: dict[str, float],
    say: Callable[[str], None],
) -> list[Trial]:
    """Search the best family's parameters with the budget left (TPE, seeded, starting from the
    best candidate's), each trial scored like a candidate, until TUNE_PATIENCE trials in a row
    find nothing better or the next would overrun the budget."""
    import optuna

    from training.tuning import SEARCH_SPACES

    space = SEARCH_SPACES.get(best.kind)
    if space is None or best.kind in {"popularity", "buy_again"}:
        return []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    tuned: list[Trial] = []
    leader, since = best.score or 0.0, 0
    while since < TUNE_PATIENCE and len(tuned) < TUNE_MAX_TRIALS:
        left = budget_seconds - (time.perf_counter() - started)
        if _expected_seconds(best.kind, took) > left:
            break
        suggestion = study.ask()
        params = {**best.params, **space(suggestion)}
        trial = Trial(best.kind, params, note="tuned within the budget")
        _score(trial, validation, seed, k, exclude_seen, say)
        took[best.kind] = max(took.get(best.kind, 0.0), trial.fit_seconds)
        study.tell(suggestion, trial.score or 0.0)
        tuned.append(trial)
        if (trial.score or 0.0) > leader:
            leader, since = trial.score or 0.0, 0
        else:
            since += 1
    if tuned:
        say(
            f"  tuned {best.kind}: {len(tuned)} trials, best nDCG@{k} {leader:.4f} "
            f"(untuned {best.score or 0.0:.4f})"
        )
    return tuned


def _expected_seconds(kind: str, took: dict[str, float]) -> float:
    """What fitting `kind` should cost, from the fits so far: its own last fit, or for the
    re-ranked repeat model its base model's times its levels (0 when nothing is known)."""
    if kind in took:
        return took[kind]
    if kind == "repeat_ranked" and "repeat" in took:
        return took["repeat"] * (RANKED_LEVELS + 1) * 2
    return 0.0


def ease_fits(n_items: int) -> bool:
    """Whether EASE's dense matrices (Gram, inverse and weights, float32) fit in half of the
    memory available now."""
    try:
        with open("/proc/meminfo") as info:
            fields = dict(line.split(":", 1) for line in info)
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return 3 * 4 * n_items * n_items <= available // 2


__all__ = ["CANDIDATES", "Selection", "Trial", "compare", "select_model", "select_model_on"]
