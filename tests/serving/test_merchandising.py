"""Merchandising rules on a small catalogue whose right answers are written out by hand, and the
placements file's validation (errors name the file, the entry and the rule)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from features.encoding import SnapshotMeta
from models.popularity import PopularityRecommender
from omnirec.errors import ConfigError, InvalidRequestError
from omnirec.interaction_data import Interactions
from serving.answers import popular
from serving.ask import Ask
from serving.catalogue import LoadedSnapshot
from serving.merchandising import allowed_copy
from serving.placements import load_placements, parse_rules
from serving.schemas import Item

NOW = time.time()
DAY = 86_400.0
#            id    category  brand     price  margin  listed days ago  popularity
CATALOGUE = [
    ("A", "wine", "Acme", 12.0, 0.10, 400, 80),
    ("B", "wine", "Globex", 30.0, 0.50, 5, 70),
    ("C", "cheese", "Acme", 6.0, 0.30, 200, 60),
    ("D", "wine", "Acme", 55.0, 0.20, 10, 50),
    ("E", "bread", "Initech", 3.0, 0.05, 300, 40),
    ("F", "cheese", "Globex", 9.0, 0.40, 2, 30),
    ("G", "wine", "Globex", 20.0, 0.00, 900, 20),
    ("H", "bread", "Acme", 4.0, 0.60, 50, 10),
]


def _snapshot() -> LoadedSnapshot:
    ids = np.array([row[0] for row in CATALOGUE])
    popularity = np.array([row[6] for row in CATALOGUE], np.float32)
    matrix = sp.csr_matrix(popularity[None, :])
    model = PopularityRecommender().fit(Interactions(matrix, np.array(["c1"]), ids))
    categories = np.array([row[1] for row in CATALOGUE], dtype=object)
    names, codes = np.unique(categories.astype(str), return_inverse=True)
    order = np.argsort(-popularity).astype(np.int32)
    return LoadedSnapshot(
        version=1,
        meta=SnapshotMeta("s1", 1, "popularity", int(NOW), 1, len(ids), int(NOW)),
        model=model,
        item_ids=ids,
        names=[f"item {i}" for i in ids],
        categories=categories,
        category_codes=codes.astype(np.int32),
        category_names=names.tolist(),
        prices=np.array([row[3] for row in CATALOGUE]),
        active=np.ones(len(ids), bool),
        channels=["web"],
        stores=[],
        popular={"all": (order, popularity[order])},
        stock={},
        item_index={str(i): k for k, i in enumerate(ids)},
        texts={"brand": np.array([row[2] for row in CATALOGUE], dtype=object)},
        numbers={
            "margin": np.array([row[4] for row in CATALOGUE]),
            "added_at": np.array([NOW - row[5] * DAY for row in CATALOGUE]),
        },
    )


def _answer(rules_toml: dict[str, object], limit: int = 5) -> list[str]:
    """The anonymous (popular) answer under the rules, as item ids."""
    rules = parse_rules("test", rules_toml, "test")
    snap = _snapshot()
    answer = popular(snap, Ask(limit=limit, request_id="r"), None, rules=rules)
    return [item.item_id for item in answer.items]


def test_without_rules_the_answer_is_by_popularity() -> None:
    snap = _snapshot()
    assert [i.item_id for i in popular(snap, Ask(limit=5, request_id="r"), None).items] == list(
        "ABCDE"
    )


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ({"exclude": {"category": ["wine"]}}, list("CEFH")),  # only four items are not wine
        ({"include": {"brand": ["Acme"]}}, list("ACDH")),
        ({"price_min": 5.0, "price_max": 25.0}, list("ACFG")),
        ({"exclude_items": ["A", "C"]}, list("BDEFG")),
        ({"new_arrivals_days": 30}, list("BDF")),  # listed 5, 10 and 2 days ago
        ({"include": {"category": ["wine"]}, "exclude": {"brand": ["Globex"]}}, list("AD")),
    ],
)
def test_filters_keep_only_what_they_allow(rules: dict[str, object], expected: list[str]) -> None:
    assert _answer(rules) == expected


def test_a_boost_moves_its_items_up_by_their_scaled_score_times_the_factor() -> None:
    # popularity among the candidates A..H scaled to 0-1: A 1.0, B 6/7, C 5/7, D 4/7, E 3/7,
    # F 2/7, G 1/7, H 0; cheese x2.5: C 12.5/7, F 5/7 -> C, A, B, F, D
    assert _answer(
        {"boost": [{"column": "category", "values": ["cheese"], "factor": 2.5}]}
    ) == list("CABFD")


def test_a_bury_moves_its_items_down() -> None:
    # Acme x0.1: A 0.1, C 5/70, D 4/70, H 0 -> B 6/7, E 3/7, F 2/7, G 1/7, then A
    assert _answer({"bury": [{"column": "brand", "values": ["Acme"], "factor": 0.1}]}) == list(
        "BEFGA"
    )


def test_a_numeric_boost_scales_with_the_column() -> None:
    # margin 0-0.6 scaled: A 1/6, B 5/6, C 1/2, D 1/3, E 1/12, F 2/3, G 0, H 1; factor 1 + 9 x
    # share:
    # A 1 x 2.5 = 2.5, B 6/7 x 8.5 = 7.29, C 5/7 x 5.5 = 3.93, D 4/7 x 4 = 2.29, F 2/7 x 7 = 2.0,
    # E 3/7 x 1.75 = 0.75, H 0
    assert _answer({"boost": [{"column": "margin", "factor": 10.0}]}) == list("BCADF")


def test_new_arrivals_can_be_boosted() -> None:
    # listed in the last 30 days: B, D, F; x2: B 12/7, D 8/7, A 1, F 4/7, C 5/7
    assert _answer({"boost": [{"new_days": 30, "factor": 2.0}]}) == list("BDACF")


def test_the_diversity_cap_allows_at_most_n_per_category_in_the_top() -> None:
    # by popularity A B C D E F G H; wine: A B D G -> at most 1 wine in the top 4
    assert _answer({"diversity": {"column": "category", "max": 1, "top": 4}}, limit=6) == list(
        "ACEBDF"
    )


def test_pins_go_to_their_positions_and_the_list_keeps_its_length() -> None:
    answer = _answer({"pin": [{"item_id": "H", "position": 1}, {"item_id": "C", "position": 4}]})
    assert answer == list("HABCD")


def test_a_rule_that_leaves_few_items_is_filled_with_popular_items_that_pass_it() -> None:
    snap = _snapshot()
    rules = parse_rules("few", {"include": {"category": ["bread"]}}, "test")
    answer = popular(snap, Ask(limit=5, request_id="r"), None, rules=rules)
    assert [i.item_id for i in answer.items] == ["E", "H"]  # never an item the rules exclude
    assert {i.source for i in answer.items} == {"popular"}


def test_rules_combine_narrowing() -> None:
    base = parse_rules("base", {"price_max": 40.0, "exclude": {"category": ["bread"]}}, "t")
    more = parse_rules("more", {"price_min": 8.0, "price_max": 25.0}, "t")
    both = base.then(more)
    assert (both.price_min, both.price_max) == (8.0, 25.0)
    snap = _snapshot()
    answer = popular(snap, Ask(limit=5, request_id="r"), None, rules=both)
    assert [i.item_id for i in answer.items] == list("AFG")


def test_a_placements_filter_follows_the_live_stock_and_a_requests_own_is_not_kept() -> None:
    """The items a placement's filters allow at a store are kept per snapshot until the stock
    changes; a request's own filters are computed each time and never kept."""
    snap = _snapshot()
    wine = parse_rules("wine", {"include": {"category": ["wine"]}}, "test")
    store_levels = np.ones(len(CATALOGUE), np.int32)
    snap.set_levels({"s1": store_levels.copy()}, 1, "1-0")
    shown = allowed_copy(snap, "s1", None, wine, NOW)
    assert snap.item_ids[shown].tolist() == list("ABDG")
    shown[:] = False  # the caller's copy: changing it changes nothing kept
    assert snap.item_ids[allowed_copy(snap, "s1", None, wine, NOW)].tolist() == list("ABDG")
    snap.apply_levels(["s1"], ["B"], [0], 2, "2-0")  # B sold out at the store
    assert snap.item_ids[allowed_copy(snap, "s1", None, wine, NOW)].tolist() == list("ADG")
    cached = len(snap.derived.allowed)
    own = replace(parse_rules("request", {"price_max": 25.0}, "request"), per_request=True)
    assert snap.item_ids[allowed_copy(snap, "s1", None, wine.then(own), NOW)].tolist() == list("AG")
    assert len(snap.derived.allowed) == cached


def test_finish_backfills_then_caps_then_pins() -> None:
    snap = _snapshot()
    rules = parse_rules(
        "t", {"diversity": {"max": 1, "top": 3}, "pin": [{"item_id": "G", "position": 2}]}, "t"
    )
    first = [
        Item(i, 1.0, i, str(snap.categories[snap.item_index[i]]), 1.0, "personalized", [])
        for i in "AB"
    ]
    backfill = [
        Item(i, 1.0, i, str(snap.categories[snap.item_index[i]]), 1.0, "popular", []) for i in "CDE"
    ]
    out = rules.finish(snap, first, 4, lambda n: backfill[:n], np.ones(8, bool))
    # G (wine) pinned at 2 counts toward the cap: the top 3 holds no other wine, so C (cheese)
    # and E (bread) fill it and A (wine) comes after
    assert [i.item_id for i in out] == list("CGEA")
    assert out[1].source == "pinned"


def test_a_pinned_item_never_breaks_the_diversity_cap() -> None:
    """Wine capped at 2 in the top 5, a wine pinned first: only one more wine in the top 5, with
    pins anywhere in it, whatever the candidates' order."""
    snap = _snapshot()
    categories = {i: str(snap.categories[snap.item_index[i]]) for i in snap.id_list}
    for position in range(1, 6):
        rules = parse_rules(
            "t",
            {"diversity": {"max": 2, "top": 5}, "pin": [{"item_id": "G", "position": position}]},
            "t",
        )
        ranked = [Item(i, 1.0, i, categories[i], 1.0, "personalized", []) for i in "ABDCEFH"]
        out = rules.finish(snap, ranked, 6, lambda n: [], np.ones(8, bool))
        top = [categories[i.item_id] for i in out[:5]]
        assert top.count("wine") <= 2, (position, [i.item_id for i in out])
        assert out[position - 1].item_id == "G" and len(out) == 6


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "placements.toml"
    path.write_text(text)
    return path


def test_a_placements_file_is_read_with_its_rule_sets(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[rules.base]
exclude = { category = ["tobacco"] }
[rules.home]
extends = "base"
boost = [{ column = "margin", factor = 1.5 }]
diversity = { max = 2, top = 10 }
[placements.home]
rules = "home"
[placements.cart]
""",
    )
    placements = load_placements(path)
    home = placements.rules_for("home")
    assert home is not None and home.exclude == (("category", frozenset({"tobacco"})),)
    assert home.boosts[0].factor == 1.5 and home.diversity is not None
    assert placements.rules_for("cart") is None
    with pytest.raises(InvalidRequestError) as unknown:
        placements.rules_for("checkout")
    assert unknown.value.field == "placement"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            '[rules.a]\nboost = [{ column = "brand", values = ["x"], factor = 0.5 '
            "}]\n[placements.home]\n",
            "rules.a: boost[0]: a boost's factor must be above 1",
        ),
        (
            "[rules.a]\nprice_min = 10\nprice_max = 5\n[placements.home]\n",
            "rules.a: price_min 10.0 is above",
        ),
        ("[rules.a]\nfilters = 1\n[placements.home]\n", "rules.a: unknown key(s) filters"),
        ('[rules.a]\nextends = "b"\n[placements.home]\n', "rules.a: extends 'b', which is not"),
        ('[rules.a]\nextends = "a"\n[placements.home]\n', "rules.a: extends itself"),
        ('[placements.home]\nrules = "nope"\n', "placements.home: rules 'nope' is not a rule set"),
        (
            '[rules.a]\npin = [{ item_id = "x", position = 0 }]\n[placements.home]\n',
            "rules.a: pin[0]: position",
        ),
        ("[rules.a]\ndiversity = { max = 0 }\n[placements.home]\n", "rules.a: diversity: max"),
        ("[placements.Home]\n", "placements.Home: names are"),
        ("[rules.a]\n", "no [placements.NAME] entries"),
        ("[rules.a\n", "placements.toml"),
    ],
)
def test_a_bad_placements_file_names_the_file_and_the_rule(
    tmp_path: Path, text: str, says: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_placements(path)
    assert str(path) in str(error.value) and says in str(error.value)


def test_columns_the_catalogue_lacks_are_reported(tmp_path: Path) -> None:
    path = _write(
        tmp_path, '[rules.a]\nexclude = { colour = ["red"] }\n[placements.home]\nrules = "a"\n'
    )
    problems = load_placements(path).check_columns(_snapshot())
    assert problems == [
        f"{path}: rules.a reads the text column 'colour', which the catalogue does not have"
    ]
