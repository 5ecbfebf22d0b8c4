"""A/B experiments as configuration (OMNIREC_EXPERIMENTS_FILE, TOML), deterministic assignment,
recommendation ids that say which variant answered, and the guardrail's settings
(serving.experiments.guardrail holds what it counts and judges).

    [experiments.margin-test]
    placements = ["home", "product_page"]   # scope (default: every placement and none)
    channels = ["web", "app"]               # scope (default: every channel)
    shadow = "challenger"                   # optional: also computed off the request path
    shadow_sample = 0.05                    #   for this share of requests, and compared

    [experiments.margin-test.guardrail]     # optional: when a variant is stopped
    max_error_increase = 0.02
    max_latency_ratio = 1.5
    min_requests = 200
    failed_checks = 3

    [[experiments.margin-test.variants]]
    name = "control"                        # the first variant is the control
    model = "champion"                      # an MLflow alias, or "v7" for a pinned version
    share = 50                              # percent of the experiment's customers
    [[experiments.margin-test.variants]]
    name = "margin"
    model = "champion"
    rules = "margin-boost"                  # a rule set of the placements file
    share = 50

A customer's variant is a hash of the experiment's name and the customer id (after aliases are
resolved): the same customer sees the same variant on every channel, in every worker and
replica, for as long as the shares stay the same. Two experiments may not cover the same
(placement, channel): a request is in at most one.
"""

from __future__ import annotations

import functools
import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnirec.errors import ConfigError
from serving.merchandising import RuleSet
from serving.placements import Placements, check_name

DEFAULT_VARIANT = "default"  # the variant of answers outside every experiment
_MODEL_REF = re.compile(r"^(v[1-9][0-9]{0,8}|[A-Za-z][A-Za-z0-9_\-]{0,63})\Z")


@dataclass(frozen=True)
class Guardrail:
    """A variant is stopped (its customers get the control) when it is found worse than the
    control in `failed_checks` rounds in a row: its error share higher by more than
    `max_error_increase` over a round of `min_requests` answers of each, or its p99 latency above
    the control's times `max_latency_ratio` over a round of LATENCY_SAMPLES answers of each (the
    p99 of a few hundred is their two or three slowest, which a garbage collection or a freshly
    loaded version's first answers make). The two sides of a round cover the same stretch of
    time, and rounds follow one another without overlap: a variant worse in earnest is worse
    round after round, a burst of slow answers falls on both sides and in one round
    (serving.experiments.guardrail)."""

    max_error_increase: float = 0.02
    max_latency_ratio: float = 1.5
    min_requests: int = 200
    failed_checks: int = 3


@dataclass(frozen=True)
class Variant:
    name: str
    model: str  # an MLflow alias ("champion", "challenger", ...) or "v<N>"
    share: float  # of the experiment's customers, 0-1
    rules: RuleSet | None = None


@dataclass(frozen=True)
class Experiment:
    name: str
    variants: tuple[Variant, ...]
    placements: frozenset[str] | None = None  # None: every placement, and requests naming none
    channels: frozenset[str] | None = None  # None: every channel, and requests naming none
    shadow: str | None = None
    shadow_sample: float = 0.0
    guardrail: Guardrail = field(default_factory=Guardrail)

    @property
    def control(self) -> Variant:
        return self.variants[0]

    def covers(self, placement: str | None, channel: str | None) -> bool:
        return (self.placements is None or placement in self.placements) and (
            self.channels is None or channel in self.channels
        )

    def assign(self, customer_id: str) -> Variant:
        """The customer's variant: the same for a customer and experiment, everywhere."""
        point = bucket(self.name, customer_id)
        edge = 0.0
        for variant in self.variants:
            edge += variant.share
            if point < edge:
                return variant
        return self.variants[-1]


@functools.lru_cache(maxsize=65_536)  # a returning customer's point is hashed once per worker
def bucket(experiment: str, customer_id: str) -> float:
    """A point in [0, 1) from a hash of the experiment and customer (BLAKE2b: the same in every
    process, unlike Python's salted `hash`)."""
    digest = hashlib.blake2b(f"{experiment}\x00{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True)
class Experiments:
    source: str
    experiments: tuple[Experiment, ...] = ()

    def find(self, placement: str | None, channel: str | None) -> Experiment | None:
        for experiment in self.experiments:
            if experiment.covers(placement, channel):
                return experiment
        return None

    def model_refs(self) -> set[str]:
        """Every model the experiments serve or shadow (aliases and pinned versions)."""
        refs = {v.model for e in self.experiments for v in e.variants}
        return refs | {e.shadow for e in self.experiments if e.shadow}

    def by_name(self, name: str) -> Experiment | None:
        return next((e for e in self.experiments if e.name == name), None)


def load_experiments(path: Path | None, placements: Placements) -> Experiments:
    """Read and validate an experiments file against the placements' rule sets and names;
    ConfigError names the file, the experiment and what is wrong."""
    if path is None:
        return Experiments("(no experiments file)")
    source = str(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    if set(raw) - {"experiments"}:
        raise ConfigError(f"{source}: only [experiments.NAME] tables belong here")
    table = raw.get("experiments", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: experiments must be a table")
    found = tuple(
        _experiment(name, body, f"{source}: experiments.{name}", placements)
        for name, body in table.items()
    )
    for k, one in enumerate(found):
        for other in found[:k]:
            if _overlap(one.placements, other.placements) and _overlap(
                one.channels, other.channels
            ):
                raise ConfigError(
                    f"{source}: experiments {other.name} and {one.name} cover the "
                    "same placement and channel; a request can be in only one"
                )
    return Experiments(source, found)


EXPERIMENT_KEYS = {"variants", "placements", "channels", "shadow", "shadow_sample", "guardrail"}


def _experiment(name: str, body: Any, where: str, placements: Placements) -> Experiment:
    check_name(name, where)
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = sorted(set(body) - EXPERIMENT_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    raw_variants = body.get("variants")
    if not isinstance(raw_variants, list) or len(raw_variants) < 2:
        raise ConfigError(f"{where}: needs at least two [[...variants]] (the first is the control)")
    variants = tuple(
        _variant(v, f"{where}: variants[{k}]", placements) for k, v in enumerate(raw_variants)
    )
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: two variants share a name")
    total = sum(v.share for v in variants)
    if abs(total - 100.0) > 1e-6:
        raise ConfigError(f"{where}: variant shares add up to {total:g}, not 100")
    scope = body.get("placements")
    if scope is not None:
        if not isinstance(scope, list) or not scope:
            raise ConfigError(f"{where}: placements must be a non-empty list")
        for placement in scope:
            if placement not in placements.placements:
                raise ConfigError(f"{where}: placement {placement!r} is not in {placements.source}")
    channels = body.get("channels")
    if channels is not None and (
        not isinstance(channels, list)
        or not channels
        or not all(isinstance(c, str) for c in channels)
    ):
        raise ConfigError(f"{where}: channels must be a non-empty list of channel names")
    shadow = body.get("shadow")
    if shadow is not None and (not isinstance(shadow, str) or not _MODEL_REF.match(shadow)):
        raise ConfigError(f"{where}: shadow must be a model alias or v<N>")
    sample = body.get("shadow_sample", 0.05 if shadow else 0.0)
    if not isinstance(sample, int | float) or isinstance(sample, bool) or not 0 <= sample <= 1:
        raise ConfigError(f"{where}: shadow_sample must be a share from 0 to 1")
    return Experiment(
        name=name,
        variants=tuple(Variant(v.name, v.model, v.share / 100.0, v.rules) for v in variants),
        placements=None if scope is None else frozenset(scope),
        channels=None if channels is None else frozenset(channels),
        shadow=shadow,
        shadow_sample=float(sample),
        guardrail=_guardrail(body.get("guardrail", {}), f"{where}: guardrail"),
    )


def _variant(body: Any, where: str, placements: Placements) -> Variant:
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = sorted(set(body) - {"name", "model", "share", "rules"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    name = body.get("name")
    if not isinstance(name, str):
        raise ConfigError(f"{where}: name is missing")
    check_name(name, f"{where} ({name})")
    model = body.get("model", "champion")
    if not isinstance(model, str) or not _MODEL_REF.match(model):
        raise ConfigError(f"{where} ({name}): model must be an MLflow alias or v<N>, got {model!r}")
    share = body.get("share")
    if not isinstance(share, int | float) or isinstance(share, bool) or not 0 < share <= 100:
        raise ConfigError(f"{where} ({name}): share must be a percentage above 0")
    rules_name = body.get("rules")
    if rules_name is not None and rules_name not in placements.rule_sets:
        raise ConfigError(
            f"{where} ({name}): rules {rules_name!r} is not a rule set in {placements.source}"
        )
    rules = None if rules_name is None else placements.rule_sets[rules_name]
    return Variant(name, model, float(share), rules)


def _guardrail(body: Any, where: str) -> Guardrail:
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = sorted(set(body) - set(Guardrail().__dict__))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    values = {**Guardrail().__dict__, **body}
    if not all(
        isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in values.values()
    ):
        raise ConfigError(f"{where}: values must be positive numbers")
    if not isinstance(values["failed_checks"], int):
        raise ConfigError(f"{where}: failed_checks must be a whole number")
    return Guardrail(
        float(values["max_error_increase"]),
        float(values["max_latency_ratio"]),
        int(values["min_requests"]),
        values["failed_checks"],
    )


def _overlap(a: frozenset[str] | None, b: frozenset[str] | None) -> bool:
    return a is None or b is None or bool(a & b)
