"""The experiments on the request path: a request calls `choose` before its answer (which
variant, which model version answers) and `settle` after it (count it for the guardrail, offer a
sampled request to the shadow model, label the answer with its recommendation id)."""

from __future__ import annotations

import functools
import logging

import msgspec

from features.feedback import recommendation_id
from serving.ask import Ask
from serving.catalogue import LoadedSnapshot
from serving.experiments.config import DEFAULT_VARIANT, Experiment, Experiments, Variant
from serving.experiments.guardrail import VariantHealth
from serving.experiments.shadow import Shadow, ShadowJob
from serving.live import Live
from serving.merchandising import RuleSet, combined
from serving.metrics import VARIANT_ANSWERS, VARIANT_STOPPED
from serving.personal import Chooser, Personal, RulesOf
from serving.schemas import Recommendations

log = logging.getLogger("omnirec.serving")


class Lab:
    """The experiments of one worker, with their guardrail and shadow."""

    def __init__(self, live: Live, experiments: Experiments, personal: Personal) -> None:
        self.live = live
        self.experiments = experiments
        self.health = VariantHealth()
        VARIANT_ANSWERS.watch(self.health)  # /metrics counts the answers from its tallies
        self.shadow = Shadow(live, personal)

    def find(self, placement: str | None, channel: str | None) -> Experiment | None:
        """The experiment covering a placement and channel, if any."""
        return self.experiments.find(placement, channel)

    def choose(
        self, experiment: Experiment | None, customer_id: str
    ) -> tuple[Variant | None, LoadedSnapshot | None]:
        """The customer's variant and what answers for it. When the assigned variant is stopped
        by the guardrail or its model is not loaded (yet), the control's model answers under the
        label `<variant>-fallback`: those customers are neither the variant's nor the
        control's in the figures (they were not randomised into the control)."""
        live = self.live
        if experiment is None:
            return None, live.snapshot
        variant = experiment.assign(customer_id)
        control = experiment.control
        if variant is control:
            return control, live.snapshot_for(control.model) or live.snapshot
        if not self.health.is_stopped(experiment.name, variant.name):
            snap = live.snapshot_for(variant.model)
            if snap is not None:
                return variant, snap
        return _fallback(variant, control), live.snapshot_for(control.model) or live.snapshot

    def chooser(self, experiment: Experiment | None) -> Chooser:
        """`choose` for one experiment: customer id -> (variant, snapshot)."""
        return functools.partial(self.choose, experiment)

    def settle(
        self,
        experiment: Experiment | None,
        variant: Variant | None,
        answer: Recommendations,
        seconds: float,
        ask: Ask,
        rules_of: RulesOf,
    ) -> Recommendations:
        """After a customer's answer: count it for its variant, offer a sampled request to the
        shadow model (under the variant's rules, worked out only then), and label the answer
        (recommendation id, variant, experiment, placement)."""
        fallback = variant is not None and variant.name.endswith(FALLBACK)
        if experiment is not None and variant is not None and not fallback:
            self._record(experiment, variant, seconds, answer.degraded)
            # the shadow model scores customers no variant already serves with it
            if (
                not answer.degraded
                and answer.customer_id
                and variant.model != experiment.shadow
                and self.shadow.sampled(experiment)
            ):
                served = [i.item_id for i in answer.items]
                rules = rules_of(variant)
                self.shadow.offer(ShadowJob(experiment, answer.customer_id, served, ask, rules))
        return self.labelled(
            answer, ask.request_id, experiment, variant, ask.placement, channel=ask.channel
        )

    def _record(
        self, experiment: Experiment, variant: Variant, seconds: float, failed: bool
    ) -> None:
        """Count a variant's answer; log and show the variants the guardrail stops."""
        for name in self.health.record(experiment, variant.name, seconds, failed):
            VARIANT_STOPPED.labels(experiment.name, name).set(1)
            log.warning(
                "experiment %s: variant %s stopped by its guardrail (%s); its customers get %s",
                experiment.name,
                name,
                self.health.stopped[(experiment.name, name)],
                experiment.control.name,
            )

    @staticmethod
    def labelled(
        answer: Recommendations,
        request_id: str,
        experiment: Experiment | None,
        variant: Variant | None,
        placement: str | None,
        index: int | None = None,
        channel: str | None = None,
    ) -> Recommendations:
        """`answer` with its recommendation id (which names the channel it is shown on), variant,
        experiment and placement."""
        name = variant.name if variant is not None else DEFAULT_VARIANT
        in_experiment = experiment.name if experiment is not None and variant is not None else None
        return msgspec.structs.replace(
            answer,
            recommendation_id=recommendation_id(
                request_id, in_experiment, name, placement, index, channel
            ),
            variant=name,
            experiment=in_experiment,
            placement=placement,
        )

    @staticmethod
    def rules_of(
        placement: RuleSet | None, request: RuleSet | None
    ) -> functools.partial[RuleSet | None]:
        """variant -> the rules its answer is under: the placement's, the variant's, then the
        request's."""
        return functools.partial(_variant_rules, placement, request)


FALLBACK = "-fallback"


@functools.cache
def _fallback(variant: Variant, control: Variant) -> Variant:
    """What a stopped (or not loaded) variant's customers get: the control's model and rules,
    under its own label."""
    return Variant(f"{variant.name}{FALLBACK}", control.model, 0.0, control.rules)


def _variant_rules(
    placement: RuleSet | None, request: RuleSet | None, variant: Variant | None
) -> RuleSet | None:
    return combined(placement, variant.rules if variant is not None else None, request)
