"""The repeat model's candidates re-ranked by a learned ranker (LightGBM's LambdaRank): what
wins next-basket prediction in practice (Instacart- and Dunnhumby-style grocery data).

Training needs no labels beyond the purchases: each customer's last `levels` baskets are held
out in turn, a repeat model is fitted on what came before each, and its best `candidates` items
per customer, described by basket statistics (how often, how recently in days and baskets, the
customer's own interval against the item's learned cycle, basket habits), are labelled by
whether that basket held them. The ranker learns how these combine (a coffee bought in 8 of the
last 10 baskets, a treat bought once 3 weeks ago) and orders the candidates to maximise nDCG.

Scores: the re-ranked candidates score 1-2 (the ranker's output through a logistic), every other
item keeps the repeat model's order below 1. Customers scored from a history the model has no
basket statistics for (unknown, folded in at serving) get the repeat model's scores. The booster
is stored as LightGBM's text model inside the npz (no pickle).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from models.base import InteractionData, check_finite
from models.basket_stats import (
    CANDIDATE_FEATURES,
    PAIR_FEATURES,
    ROW_FEATURES,
    PurchaseStats,
    candidate_features,
    purchase_stats,
    visit_rank,
)
from models.repeat import PurchaseOccasions, RepeatExploreRecommender
from models.topk import top_k
from omnirec.errors import ModelError, ModelFormatError
from omnirec.interaction_data import Interactions, Occasions

SCORE_BLOCK = 512  # customers whose candidates are described and ranked at once
RANKER_PARAMS = {  # LambdaRank on nDCG; searched on Complete Journey's validation baskets
    "objective": "lambdarank",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 100,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "feature_fraction": 0.8,
    "deterministic": True,
    "force_row_wise": True,
    "verbosity": -1,
}
BOOST_ROUNDS = 300  # at most; the rounds that help are found on held-out groups
STOP_PATIENCE = 50  # rounds without a better held-out nDCG@10 before the search stops
HELD_OUT_SHARE = 0.2  # of the candidate groups, to find the rounds
MIN_GROUPS_TO_STOP = 50  # fewer groups: all BOOST_ROUNDS, nothing held out
ROUNDS_FOR_ALL = 1.25  # the refit on every group: the best round count times this
PARALLEL_PREDICT_ROWS = 200_000  # candidate rows a prediction needs before it uses every core


class RankedRepeatRecommender(RepeatExploreRecommender):
    """Repeat + explore candidates, re-ranked per customer by a LambdaRank model of their
    baskets."""

    kind = "repeat_ranked"

    def __init__(
        self,
        half_life_days: float = 90.0,
        neighbours: int = 100,
        own_weight: float = 0.7,
        shrinkage: float = 20.0,
        min_buyers: int = 20,
        basket_prior: float = 0.0,
        levels: int = 5,
        candidates: int = 50,
        max_customers: int = 20_000,
        seed: int = 0,
    ) -> None:
        super().__init__(
            half_life_days=half_life_days,
            neighbours=neighbours,
            own_weight=own_weight,
            shrinkage=shrinkage,
            min_buyers=min_buyers,
            basket_prior=basket_prior,
        )
        self.params.update(
            levels=levels, candidates=candidates, max_customers=max_customers, seed=seed
        )
        self.stats = PurchaseStats(
            np.zeros(0, np.int64),
            np.zeros((0, len(PAIR_FEATURES)), np.float32),
            np.zeros((0, len(ROW_FEATURES)), np.float32),
            0,
        )
        self.ranker_text = ""
        self._booster: Any = None
        self._items: npt.NDArray[np.float32] | None = None

    # ----------------------------------------------------------------- fitting
    def fit(self, interactions: InteractionData) -> RankedRepeatRecommender:
        """The repeat model on everything, then the ranker on `levels` held-out baskets."""
        occasions: PurchaseOccasions | None = getattr(interactions, "occasions", None)
        if occasions is None or len(occasions.rows) == 0:
            raise ModelError("repeat_ranked learns from dated purchase baskets; this data has none")
        super().fit(interactions)
        rows, cols, days = occasions.rows, occasions.cols, occasions.days
        rank = visit_rank(rows, days)
        self.stats = purchase_stats(rows, cols, days, self.history.shape, rank)
        n_items = self.history.shape[1]
        features, labels, groups = [], [], []
        rng = np.random.default_rng(int(self.params["seed"]))
        for level in range(1, int(self.params["levels"]) + 1):
            before, held = rank >= level, rank == level - 1
            customers = np.intersect1d(np.unique(rows[held]), np.unique(rows[before]))
            if len(customers) > int(self.params["max_customers"]):
                customers = np.sort(
                    rng.choice(customers, int(self.params["max_customers"]), replace=False)
                )
            if len(customers) == 0:
                break
            base = self._base_on(interactions, Occasions(rows[before], cols[before], days[before]))
            # the baskets before the held-out ones: each customer's ranks move down by `level`
            stats = purchase_stats(
                rows[before], cols[before], days[before], self.history.shape, rank[before] - level
            )
            truth = np.unique(rows[held].astype(np.int64) * n_items + cols[held])
            for start in range(0, len(customers), SCORE_BLOCK):
                block = customers[start : start + SCORE_BLOCK]
                cand_rows, cand_cols, x = base._described(block, stats, self._top_k())
                features.append(x)
                labels.append(np.isin(cand_rows * n_items + cand_cols, truth).astype(np.int32))
                groups.append(np.full(len(block), self._top_k()))
        if not features:
            raise ModelError("repeat_ranked: no customer has two baskets to learn from")
        self._booster = _train_ranker(
            np.vstack(features),
            np.concatenate(labels),
            np.concatenate(groups),
            int(self.params["seed"]),
        )
        self.ranker_text = str(self._booster.model_to_string())
        return self

    def _base_on(self, interactions: InteractionData, before: Occasions) -> RankedRepeatRecommender:
        """A repeat model (this one's parameters, no ranker) fitted on the occasions `before`."""
        shape = self.history.shape
        matrix = sp.csr_matrix(
            (np.ones(len(before.rows), np.float32), (before.rows, before.cols)), shape=shape
        )
        base = RankedRepeatRecommender(**self.params)
        RepeatExploreRecommender.fit(
            base, Interactions(matrix, interactions.customer_ids, interactions.item_ids, before)
        )
        return base

    def _top_k(self) -> int:
        return min(int(self.params["candidates"]), self.n_items)

    def _described(
        self, rows: npt.NDArray[np.int64], stats: PurchaseStats, k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The repeat model's best k items of each of `rows` and their features: (candidate rows,
        candidate columns, features (len(rows) * k, len(CANDIDATE_FEATURES)))."""
        scores = RepeatExploreRecommender.score(self, rows, self.history_rows(rows))
        return self._features_of(rows, scores, stats, k)

    def _features_of(
        self,
        rows: npt.NDArray[np.int64],
        scores: npt.NDArray[np.float32],
        stats: PurchaseStats,
        k: int,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        part, best = top_k(scores, k)  # best first
        cand_rows, cand_cols = np.repeat(rows, part.shape[1]), part.ravel().astype(np.int64)
        own = np.asarray(self.history[cand_rows, cand_cols], dtype=np.float32).ravel()
        ranks = np.tile(np.arange(part.shape[1], dtype=np.float32), len(rows))
        x = candidate_features(
            stats, cand_rows, cand_cols, best.ravel(), ranks, own, self._per_item()
        )
        return cand_rows, cand_cols, x

    def _per_item(self) -> npt.NDArray[np.float32]:
        """(n_items, len(ITEM_FEATURES)): learned repeat rate, buyers (log), cycle."""
        if self._items is None or len(self._items) != self.n_items:
            buyers = np.bincount(self.history.indices, minlength=self.n_items)
            self._items = np.column_stack(
                [self.repeat_rate, np.log1p(buyers), self.cycle_days]
            ).astype(np.float32)
        return self._items

    # ----------------------------------------------------------------- scoring
    def score(self, rows: npt.NDArray[np.int64], history: sp.csr_matrix) -> npt.NDArray[np.float32]:
        scores = np.array(super().score(rows, history), dtype=np.float32)
        known = np.flatnonzero(rows >= 0)
        if not self.ranker_text or len(known) == 0:
            return scores
        top = scores[known].max(axis=1, keepdims=True)
        base = scores[known].copy()
        scores[known] = base / np.where(top > 0, top * 1.001, 1.0)  # below 1, in the repeat order
        for start in range(0, len(known), SCORE_BLOCK):
            at = known[start : start + SCORE_BLOCK]
            _, cand_cols, x = self._features_of(
                rows[at], base[start : start + SCORE_BLOCK], self.stats, self._top_k()
            )
            # one thread for a block this small: OpenMP's team costs more than it saves, and on
            # busy cores (a service's workers) its waiting threads starve the others
            threads = 1 if len(x) < PARALLEL_PREDICT_ROWS else 0
            ranked = np.asarray(self._ranker().predict(x, num_threads=threads), dtype=np.float64)
            scores[np.repeat(at, self._top_k()), cand_cols] = 1.0 + 1.0 / (1.0 + np.exp(-ranked))
        return scores

    def _ranker(self) -> Any:
        if self._booster is None:
            import lightgbm

            self._booster = lightgbm.Booster(model_str=self.ranker_text)
        return self._booster

    # ----------------------------------------------------------------- storage
    def _forget_rows(self, rows: npt.NDArray[np.int64]) -> None:
        super()._forget_rows(rows)
        stats = self.stats
        kept = ~np.isin(stats.keys // stats.n_items, rows)
        per_row = stats.per_row.copy()
        per_row[rows] = 0.0
        self.stats = PurchaseStats(stats.keys[kept], stats.pairs[kept], per_row, stats.n_items)

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {
            **super()._arrays(),
            "stat_keys": self.stats.keys,
            "stat_pairs": self.stats.pairs,
            "stat_rows": self.stats.per_row,
            "ranker": np.array(self.ranker_text),
        }

    def _restore(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        super()._restore(arrays)
        try:
            keys, pairs, per_row = arrays["stat_keys"], arrays["stat_pairs"], arrays["stat_rows"]
            text = str(arrays["ranker"])
        except KeyError as exc:
            raise ModelFormatError(f"repeat_ranked: {exc.args[0]} missing") from exc
        if keys.ndim != 1 or pairs.shape != (len(keys), len(PAIR_FEATURES)):
            raise ModelFormatError(
                f"stat_pairs has shape {pairs.shape}, expected ({len(keys)}, {len(PAIR_FEATURES)})"
            )
        check_finite("stat_keys", keys, (None,))
        if per_row.shape != (len(self.customer_ids), len(ROW_FEATURES)):
            raise ModelFormatError(f"stat_rows has shape {per_row.shape}")
        if not text.startswith("tree"):
            raise ModelFormatError("ranker is not a LightGBM text model")
        self.stats = PurchaseStats(
            keys.astype(np.int64),
            pairs.astype(np.float32),
            per_row.astype(np.float32),
            len(self.item_ids),
        )
        self.ranker_text, self._booster = text, None


def _train_ranker(
    features: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int32],
    groups: npt.NDArray[np.int64],
    seed: int,
) -> Any:
    """A LightGBM LambdaRank booster over candidate groups (one per customer and level).

    How many rounds is found first: trained on four fifths of the groups, it stops once
    STOP_PATIENCE rounds in a row do not raise the held-out fifth's nDCG@10 (at most
    BOOST_ROUNDS). The booster is then refitted on every group with that many rounds (times
    ROUNDS_FOR_ALL, for the larger data). A fixed 300 rounds cost 5.7 s of a 2,000-customer
    selection where 12 were best, and were within 0.4 % of the rounds found on Complete Journey
    (`docs/models.md`)."""
    import lightgbm

    params = {**RANKER_PARAMS, "seed": seed}
    names = list(CANDIDATE_FEATURES)
    rounds = BOOST_ROUNDS
    if len(groups) >= MIN_GROUPS_TO_STOP:
        held = np.zeros(len(groups), bool)
        rng = np.random.default_rng(seed)
        held[rng.choice(len(groups), int(len(groups) * HELD_OUT_SHARE), replace=False)] = True
        rows = np.repeat(held, groups)
        fit = lightgbm.Dataset(
            features[~rows], label=labels[~rows], group=groups[~held], feature_name=names
        )
        check = lightgbm.Dataset(
            features[rows], label=labels[rows], group=groups[held], reference=fit
        )
        probe = lightgbm.train(
            {**params, "metric": "ndcg", "eval_at": [10]},
            fit,
            num_boost_round=BOOST_ROUNDS,
            valid_sets=[check],
            callbacks=[lightgbm.early_stopping(STOP_PATIENCE, verbose=False)],
        )
        rounds = min(BOOST_ROUNDS, max(1, round(probe.best_iteration * ROUNDS_FOR_ALL)))
    data = lightgbm.Dataset(
        features, label=labels, group=groups, feature_name=names, free_raw_data=True
    )
    return lightgbm.train(params, data, num_boost_round=rounds)
