"""Experiments as configuration: validation with errors naming the file and experiment,
assignment by hash (shares respected, stable), recommendation ids, and the guardrail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from features.feedback import parse_recommendation_id, recommendation_id
from omnirec.errors import ConfigError
from serving.experiments.config import Experiment, Guardrail, Variant, load_experiments
from serving.experiments.guardrail import (
    FOLD_EVERY,
    LATENCY_SAMPLES,
    STRETCH_LATENCIES,
    Stretch,
    VariantHealth,
    percentile_99,
)
from serving.placements import load_placements

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
    return Experiment(
        "ab",
        (Variant("control", "champion", 0.5), Variant("b", "challenger", 0.5)),
        guardrail=Guardrail(**rail),
    )  # type: ignore[arg-type]


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
    # the channel it was shown on, when the caller named one: the fifth part
    shown = recommendation_id("ab12", None, "default", "home", None, "email")
    assert shown == "ab12._.default.home.email"
    ref = parse_recommendation_id(shown)
    assert ref is not None and (ref.placement, ref.channel) == ("home", "email")
    assert ref.channel is not None and outside.channel is None
    assert parse_recommendation_id("ab12._.default.home.E-Mail") is None


def _answer_both(
    health: VariantHealth,
    experiment: Experiment,
    answers: int,
    control: float,
    variant: float,
    variant_fails: int = 0,
) -> list[str]:
    """`answers` of each, alternating (the variant first: its rounds start with its first
    answer), at fixed latencies, then folded in; the variant's first `variant_fails` answers
    failed. Returns the variants stopped."""
    stopped: list[str] = []
    for k in range(answers):
        stopped += health.record(experiment, "b", variant, k < variant_fails)
        stopped += health.record(experiment, "control", control, False)
    return stopped + health.fold(experiment)
    return stopped


def test_the_guardrail_stops_a_slower_variant_in_three_rounds_in_a_row() -> None:
    health, experiment = VariantHealth(), _experiment(min_requests=100, max_latency_ratio=1.5)
    # a latency round ends once both answered LATENCY_SAMPLES times in it: two slow rounds
    assert _answer_both(health, experiment, 2 * LATENCY_SAMPLES, 0.002, 0.004) == []
    # a round as fast as the control's starts the count again
    assert _answer_both(health, experiment, LATENCY_SAMPLES, 0.002, 0.0025) == []
    assert _answer_both(health, experiment, 2 * LATENCY_SAMPLES, 0.002, 0.004) == []
    assert not health.is_stopped("ab", "b")
    assert _answer_both(health, experiment, LATENCY_SAMPLES - 1, 0.002, 0.004) == []
    assert _answer_both(health, experiment, 1, 0.002, 0.004) == ["b"]  # the third round's last
    assert health.is_stopped("ab", "b")
    why = health.stopped[("ab", "b")]
    assert "p99 4.0 ms vs control 2.0 ms, in 3 rounds in a row" in why
    # stopped: its customers get the control, and nothing the control answers judges it again
    assert _answer_both(health, experiment, LATENCY_SAMPLES, 0.002, 0.004) == []
    assert health.stopped[("ab", "b")] == why


def test_the_guardrail_stops_a_variant_that_fails_more_and_keeps_a_healthy_one() -> None:
    health, experiment = VariantHealth(), _experiment(min_requests=100, max_error_increase=0.02)
    for k in range(300):  # three error rounds of 100 answers each
        health.record(experiment, "b", 0.002, k % 100 < 2)  # 2 %: within the allowance
        health.record(experiment, "control", 0.002, k % 100 == 0)  # 1 % failures
    assert health.fold(experiment) == [] and not health.is_stopped("ab", "b")
    for _ in range(2):  # two rounds at 10 %
        _answer_both(health, experiment, 100, 0.002, 0.002, variant_fails=10)
    assert not health.is_stopped("ab", "b")
    _answer_both(health, experiment, 100, 0.002, 0.002, variant_fails=10)  # the third in a row
    assert (
        health.is_stopped("ab", "b")
        and "error share 0.100 vs control 0.000" in health.stopped[("ab", "b")]
    )


def test_a_variant_is_judged_only_against_the_control_of_the_same_time() -> None:
    # the variant's customers failed while the control answered none (a quiet night for the
    # control's customers): nothing to compare with, so no verdict; then both answer, alike
    health, experiment = VariantHealth(), _experiment(min_requests=100, max_error_increase=0.02)
    for _ in range(500):
        health.record(experiment, "b", 0.002, True)
    assert health.fold(experiment) == []
    _answer_both(health, experiment, 1_000, 0.002, 0.002)  # the first round holds those 500
    assert health.is_stopped("ab", "b") is False


def test_a_slow_start_of_every_load_does_not_stop_the_less_assigned_variant() -> None:
    # the experiments bench, where the guardrail stopped a healthy challenger (p99 4.0 vs 2.6 ms
    # at 3 checks in a row): load after load, each opening with a burst of slow answers, and the
    # challenger assigned a few customers fewer than the control. A window of each side's last
    # 2,000 answers stretched further back for the challenger, over the slow start, check after
    # check; both sides of a round cover the same time
    health, experiment = VariantHealth(), _experiment(max_latency_ratio=1.5)
    rng = np.random.default_rng(11)
    for _ in range(40):  # loads of ~4,500 answers, the first 150 slow
        slow = np.arange(4_500) < 150
        latency = np.where(slow, rng.uniform(0.004, 0.007, 4_500), rng.uniform(0.001, 0.003, 4_500))
        for seconds, challenger in zip(latency, rng.random(4_500) < 0.49, strict=True):
            assert (
                health.record(experiment, "b" if challenger else "control", float(seconds), False)
                == []
            )
    assert health.fold(experiment) == [] and not health.is_stopped("ab", "b")


def test_a_variant_with_a_small_share_is_compared_over_its_rounds() -> None:
    # 5 % of the answers: a round holds ~19,000 of the control's, kept as a sample spread over
    # the round (every 8th), and the variant twice as slow is stopped in three rounds
    health, experiment = VariantHealth(), _experiment(max_latency_ratio=1.5)
    rng = np.random.default_rng(5)
    stopped: list[str] = []
    answered = 0
    while not stopped and answered < 100_000:
        variant = rng.random() < 0.05
        seconds = float(rng.uniform(0.001, 0.003)) * (2 if variant else 1)
        stopped += health.record(experiment, "b" if variant else "control", seconds, False)
        answered += 1
    assert stopped == ["b"] and 50_000 < answered < 70_000  # three rounds of ~20,000 answers


def test_a_rounds_latency_sample_spans_the_round_in_bounded_memory() -> None:
    stretch = Stretch(latencies=True)
    latencies = np.random.default_rng(2).exponential(0.002, 50_000)
    latencies[40_000:] *= 3  # the round's last fifth is slower: the sample must hold it
    for start in range(0, len(latencies), 100):
        stretch.add(latencies[start : start + 100], np.zeros(100, dtype=bool))
    assert stretch.answers == 50_000 and STRETCH_LATENCIES // 2 <= stretch.kept <= STRETCH_LATENCIES
    assert stretch.latencies is not None and len(stretch.latencies) == STRETCH_LATENCIES
    every = latencies[
        stretch.stride - 1 :: stretch.stride
    ]  # the answers numbered stride, 2 x stride...
    assert np.array_equal(stretch.latencies[: stretch.kept], every)
    assert stretch.figure() == pytest.approx(np.percentile(every, 99))
    assert stretch.figure() == pytest.approx(np.percentile(latencies, 99), rel=0.1)


def test_folding_answers_in_batches_judges_as_answer_by_answer() -> None:
    # three variants: b fails a little more (within the allowance, over some rounds not), c
    # turns slower; folded after every answer, or every FOLD_EVERY: the same rounds, verdicts
    # and stop
    experiment = Experiment(
        "ab",
        (
            Variant("control", "champion", 0.5),
            Variant("b", "challenger", 0.3),
            Variant("c", "v3", 0.2),
        ),
        guardrail=Guardrail(min_requests=150, max_latency_ratio=1.3, failed_checks=4),
    )
    rng = np.random.default_rng(17)
    one_by_one, batched = VariantHealth(), VariantHealth()
    stops: tuple[list[str], list[str]] = ([], [])
    for k in range(60_000):
        variant = str(rng.choice(["control", "b", "c"], p=[0.5, 0.3, 0.2]))
        slow = variant == "c" and k > 10_000
        seconds = float(rng.exponential(0.002)) * (1.6 if slow else 1.0)
        failed = bool(rng.random() < (0.018 if variant == "b" else 0.01))
        stops[0].extend(
            one_by_one.record(experiment, variant, seconds, failed) + one_by_one.fold(experiment)
        )
        stops[1].extend(batched.record(experiment, variant, seconds, failed))
    stops[1].extend(batched.fold(experiment))
    assert stops[0] == stops[1] == ["c"]

    def verdicts(health: VariantHealth) -> list[tuple[str, str, int, int, int, float]]:
        return sorted((v, m, c.rounds, c.worse, c.failed, c.last) for _, v, m, c in health.rounds())

    assert verdicts(one_by_one) == verdicts(batched)
    assert all(rounds > 3 for _, _, rounds, *_ in verdicts(batched))
    assert any(worse for v, m, _, worse, *_ in verdicts(batched) if (v, m) == ("b", "errors"))
    assert {key: (t.answers, t.failures) for key, t in one_by_one.tallies.items()} == {
        key: (t.answers, t.failures) for key, t in batched.tallies.items()
    }
    assert sum(t.answers for t in batched.tallies.values()) == 60_000
    assert (
        one_by_one.stopped[("ab", "c")].split(", the last")[0]
        == batched.stopped[("ab", "c")].split(", the last")[0]
    )


def test_answers_not_folded_in_yet_are_counted_for_metrics() -> None:
    health, experiment = VariantHealth(), _experiment()
    answers = FOLD_EVERY + 5  # one fold, and five answers after it
    for k in range(answers):
        health.record(experiment, "b" if k % 2 else "control", 0.002, k % 10 == 0)
    counted = {key: (t.answers, t.failures) for key, t in health.tallies.items()}
    control = range(0, answers, 2)
    assert counted == {
        ("ab", "control"): (len(control), sum(k % 10 == 0 for k in control)),
        ("ab", "b"): (answers // 2, 0),
    }


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


class _Live:
    """The one question the lab asks its live state here: which snapshot a model reference
    answers with (an owned fake at the seam)."""

    def __init__(self, loaded: set[str]) -> None:
        self.loaded = loaded
        self.snapshot = "champion-snapshot"

    def snapshot_for(self, model: str) -> str | None:
        return f"{model}-snapshot" if model in self.loaded else None


def test_a_stopped_variants_customers_are_labelled_apart_from_the_control() -> None:
    """They get the control's model, but under `<variant>-fallback`: not counted as the control
    (they were not randomised into it), not as the variant (it did not answer them)."""
    from serving.experiments.guardrail import VariantHealth
    from serving.experiments.lab import Lab

    control = Variant("control", "champion", 0.5)
    treatment = Variant("treatment", "challenger", 0.5)
    experiment = Experiment("exp", (control, treatment))
    lab = Lab.__new__(Lab)  # the lab's choice alone: no metrics, no shadow worker
    lab.live, lab.health = _Live({"champion", "challenger"}), VariantHealth()  # type: ignore[assignment]
    customers = [f"C{k:05d}" for k in range(200)]
    treated = [c for c in customers if experiment.assign(c) is treatment]
    assert treated and all(lab.choose(experiment, c)[0] is treatment for c in treated)
    lab.health.stopped[("exp", "treatment")] = "slower in three rounds"
    for c in customers:
        variant, snap = lab.choose(experiment, c)
        assert snap == "champion-snapshot"
        if c in treated:
            assert variant is not None and variant.name == "treatment-fallback"
            assert variant.model == "champion"
        else:
            assert variant is control
    lab.health.stopped.clear()
    lab.live = _Live({"champion"})  # type: ignore[assignment]  # challenger not loaded yet
    assert lab.choose(experiment, treated[0])[0].name == "treatment-fallback"  # type: ignore[union-attr]


def test_the_shadow_comparison_gives_scipys_kendall_tau() -> None:
    from scipy import stats

    from serving.experiments.shadow import compare, kendall_tau

    rng = np.random.default_rng(3)
    for n in (2, 3, 10, 100):
        ranks = rng.permutation(n).tolist()
        expected = stats.kendalltau(np.arange(n), ranks).statistic
        assert kendall_tau(ranks) == pytest.approx(expected)
    assert compare(["a", "b", "c"], ["c", "b", "a", "x"]) == (1.0, pytest.approx(-1.0))
    assert compare(["a", "b", "z"], ["a", "b"]) == (pytest.approx(2 / 3), pytest.approx(1.0))
    assert compare(["a"], ["a"]) == (1.0, None)
