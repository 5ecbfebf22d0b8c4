"""The recommendation engine: wires the rooms that answer each kind of question over one worker's
live state, and takes a customer's question through the experiments (choose, answer, settle).

The rooms, each its own module:
- `live.Live`: the served snapshot(s), Redis and its breaker, live stock, the trending cache;
- `personal.Personal`: one customer's answer (and the walk-in's trending list);
- `items.ItemQuestions`: similar items, order and cart complements;
- `batch.Batches`: many customers at once (e-mail batches, the batch route);
- `lookup.Lookup`: the tablet's profile and alias lookup;
- `experiments.lab.Lab`: which variant answers, the guardrail, the shadow model.
"""

from __future__ import annotations

import time

from features.store import RedisFeatureStore
from omnirec.settings import Settings
from serving.ask import Ask
from serving.availability import located
from serving.batch import Batches
from serving.experiments.config import load_experiments
from serving.experiments.lab import Lab
from serving.items import ItemQuestions
from serving.links import Links, link_secret
from serving.live import Live
from serving.lookup import Lookup
from serving.merchandising import RuleSet, combined
from serving.personal import Personal
from serving.placements import load_placements
from serving.schemas import Recommendations


class Engine:
    """Every recommendation question of one worker, answered from its live state."""

    def __init__(self, settings: Settings, store: RedisFeatureStore | None) -> None:
        self.settings = settings
        # merchandising and experiments (configuration files, validated here: a bad file stops
        # the service from starting, with the file and rule named)
        self.placements = load_placements(settings.serving.placements_file)
        self.experiments = load_experiments(settings.serving.experiments_file, self.placements)
        self.live = Live(settings, store)
        self.personal = Personal(settings, self.live)
        self.lab = Lab(self.live, self.experiments, self.personal)
        self.items = ItemQuestions(self.live, self.personal)
        self.links = Links(
            link_secret(settings),
            settings.serving.public_url
            or f"http://{settings.serving.host}:{settings.serving.port}",
            settings.tenant,
        )
        self.batches = Batches(self.live, self.personal, self.lab, self.placements, self.links)
        self.lookup = Lookup(self.live)

    async def aclose(self) -> None:
        await self.live.aclose()

    async def recommend(
        self, customer: str, ask: Ask, request_rules: RuleSet | None = None
    ) -> Recommendations:
        """One customer's answer, in the variant of the experiment covering the placement and
        channel (if any), under the placement's, the variant's and the request's rules."""
        lab = self.lab
        placement_rules = self.placements.rules_for(ask.placement)
        experiment = lab.find(ask.placement, ask.channel)
        rules_of = lab.rules_of(placement_rules, request_rules)
        started = time.perf_counter()
        answer, variant = await self.personal.recommend(
            customer, ask, lab.chooser(experiment), rules_of
        )
        seconds = time.perf_counter() - started
        if ask.availability:
            answer = located(self.live.snapshot, answer, ask.store_id)
        return lab.settle(experiment, variant, answer, seconds, ask, rules_of)

    async def trending(self, ask: Ask, request_rules: RuleSet | None = None) -> Recommendations:
        """What is trending now, then popular: the walk-in customer's list."""
        rules = combined(self.placements.rules_for(ask.placement), request_rules)
        answer = await self.personal.trending(ask, rules)
        if ask.availability:
            answer = located(self.live.snapshot, answer, ask.store_id)
        return self.labelled(answer, ask)

    def labelled(self, answer: Recommendations, ask: Ask) -> Recommendations:
        """An answer outside every experiment, with its recommendation id and placement."""
        return self.lab.labelled(
            answer, ask.request_id, None, None, ask.placement, channel=ask.channel
        )


__all__ = ["Engine"]
