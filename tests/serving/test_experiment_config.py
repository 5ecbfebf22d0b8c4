"""Experiments as configuration: validation with errors naming the file and experiment,
assignment by hash (shares respected, stable), recommendation ids, and the guardrail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from features.feedback import parse_recommendation_id, recommendation_id
from omnirec.errors import ConfigError
from serving.experiments import (
    LATENCY_SAMPLES,
    Experiment,
    Guardrail,
    Variant,
    VariantHealth,
    load_experiments,
    percentile_99,
)
from serving.merchandising import load_placements

PLACEMENTS = """
[rules.margin]
boost = [{ column = "margin", factor = 2.0 }]
[placements.home]
[placements.cart]
"""
GOOD = """
[experiments.ab]
placements = ["home"]
shadow = "challenger"
[[experiments.ab.variants]]
name = "control"
model = "champion"
share = 70
[[experiments.ab.variants]]
name = "margin"
model = "v3"
rules = "margin"
share = 30
"""


def _load(tmp_path: Path, experiments: str) -> object:
    placements = tmp_path / "placements.toml"
    placements.write_text(PLACEMENTS)
    path = tmp_path / "experiments.toml"
    path.write_text(experiments)
    return load_experiments(path, load_placements(placements))


def test_an_experiments_file_is_read(tmp_path: Path) -> None:
    loaded = _load(tmp_path, GOOD)
    experiment = loaded.find("home", "web")  # type: ignore[attr-defined]
    assert experiment.name == "ab" and experiment.control.name == "control"
    assert [v.share for v in experiment.variants] == [0.7, 0.3]
    assert experiment.variants[1].rules.name == "margin" and experiment.shadow_sample == 0.05
    assert loaded.find("cart", "web") is None and loaded.find(None, None) is None  # type: ignore[attr-defined]
    assert loaded.model_refs() == {"champion", "v3", "challenger"}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            GOOD.replace("share = 30", "share = 20"),
            "experiments.ab: variant shares add up to 90, not 100",
        ),
        (GOOD.replace('rules = "margin"', 'rules = "nope"'), "rules 'nope' is not a rule set in"),
        (GOOD.replace('["home"]', '["checkout"]'), "placement 'checkout' is not in"),
        (GOOD.replace('model = "v3"', 'model = "v 3"'), "model must be an MLflow alias or v<N>"),
        (GOOD.replace('name = "margin"', 'name = "control"'), "two variants share a name"),
        (GOOD.replace("shadow =", "shadows ="), "experiments.ab: unknown key(s) shadows"),
        (
            GOOD + GOOD.replace("experiments.ab", "experiments.cd"),
            "experiments ab and cd cover the same",
        ),
        (
            '[experiments.ab]\n[[experiments.ab.variants]]\nname = "x"\nshare = 100\n',
            "needs at least two",
        ),
    ],
)
def test_a_bad_experiments_file_names_the_file_and_experiment(
    tmp_path: Path, text: str, says: str
) -> None:
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, text)
    assert str(tmp_path / "experiments.toml") in str(error.value) and says in str(error.value)


def _experiment(**rail: float) -> Experiment:
    return Experiment("ab", (Variant("control", "champion", 0.5), Variant("b", "challenger", 0.5)),
                      guardrail=Guardrail(**rail))  # type: ignore[arg-type]  # fmt: skip


def test_assignment_is_stable_and_follows_the_shares() -> None:
    experiment = Experiment("split", (Variant("a", "champion", 0.7), Variant("b", "champion", 0.3)))
    customers = [f"C{i:06d}" for i in range(20_000)]
    first = [experiment.assign(c).name for c in customers]
    assert first == [experiment.assign(c).name for c in customers]
    assert 0.28 < first.count("b") / len(first) < 0.32
    # another experiment splits the same customers independently
    other = Experiment("other", experiment.variants)
    both = sum(
        a == "b" and other.assign(c).name == "b" for a, c in zip(first, customers, strict=True)
    )
    assert 0.07 < both / len(customers) < 0.11  # about 0.3 x 0.3


def test_recommendation_ids_say_what_answered() -> None:
    rid = recommendation_id("ab12", "exp", "margin", "home", 7)
    assert rid == "ab12-7.exp.margin.home"
    ref = parse_recommendation_id(rid)
    assert ref is not None and (ref.experiment, ref.variant, ref.placement) == (
        "exp",
        "margin",
        "home",
    )
    outside = parse_recommendation_id(recommendation_id("ab12", None, "default", None))
    assert outside is not None and (outside.experiment, outside.placement) == (None, None)
    assert (
        parse_recommendation_id("not-ours") is None and parse_recommendation_id("a.b.C D.e") is None
    )


def test_the_guardrail_stops_a_slower_variant_after_enough_answers() -> None:
    health, experiment = VariantHealth(), _experiment(min_requests=100, max_latency_ratio=1.5)
    stopped: list[str] = []
    for _ in range(LATENCY_SAMPLES):  # a p99 counts from LATENCY_SAMPLES answers each
        stopped += health.record(experiment, "control", 0.002, False)
        stopped += health.record(experiment, "b", 0.004, False)
    assert stopped == [] and not health.is_stopped("ab", "b")  # one failed check so far
    for _ in range(100):  # two more checks, every 100 answers of the experiment
        stopped += health.record(experiment, "control", 0.002, False)
        stopped += health.record(experiment, "b", 0.004, False)
    assert stopped == ["b"] and health.is_stopped("ab", "b")
    assert "p99 4.0 ms vs control 2.0 ms at 3 checks in a row" in health.stopped[("ab", "b")]


def test_the_guardrail_stops_a_variant_that_fails_more_and_keeps_a_healthy_one() -> None:
    health, experiment = VariantHealth(), _experiment(min_requests=100, max_error_increase=0.02)
    for k in range(200):
        health.record(experiment, "control", 0.002, k % 100 == 0)  # 1 % failures
        health.record(experiment, "b", 0.002, k % 100 < 2)  # 2 %: within the allowance
    assert not health.is_stopped("ab", "b")
    for k in range(200):
        health.record(experiment, "b", 0.002, k % 10 == 0)  # now 10 %: two failed checks
    assert not health.is_stopped("ab", "b")
    for k in range(100):
        health.record(experiment, "b", 0.002, k % 10 == 0)  # the third in a row
    assert health.is_stopped("ab", "b") and "error share" in health.stopped[("ab", "b")]


def test_a_freshly_loaded_variants_first_slow_answers_do_not_stop_it() -> None:
    # the bench's challenger was stopped this way: p99 10.2 ms vs 6.5 ms over its first ~250
    # answers, a few of them slow (its version just loaded, a garbage collection), then like the
    # control's; over a window that short the p99 is those few slowest answers
    health, experiment = VariantHealth(), _experiment(min_requests=200, max_latency_ratio=1.5)
    rng = np.random.default_rng(3)
    for k in range(3_000):
        health.record(experiment, "control", float(rng.uniform(0.002, 0.004)), False)
        slow = k in {3, 40, 77, 150, 420}  # five spikes in the first 500 answers
        health.record(experiment, "b", 0.02 if slow else float(rng.uniform(0.002, 0.004)), False)
    assert not health.is_stopped("ab", "b")


def test_the_guardrails_p99_is_numpys_percentile() -> None:
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 99, 100, 101, 2_000):
        latencies = rng.exponential(0.002, n)
        assert percentile_99(latencies) == pytest.approx(np.percentile(latencies, 99), rel=1e-12)
