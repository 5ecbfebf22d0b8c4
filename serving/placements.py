"""The placements file (OMNIREC_PLACEMENTS_FILE): named rule sets and the placements (`home`,
`cart`, ...) that each use one, validated as a whole when it is read: an error names the file,
the rule set or placement, and the rule.

    [rules.storefront]
    exclude = { category = ["tobacco"] }          # never these values of a catalogue column
    include = { brand = ["Acme", "Globex"] }       # only these
    exclude_items = ["I000013"]
    price_min = 1.0
    price_max = 250.0
    new_arrivals_days = 30                         # only items listed in the last 30 days
    boost = [{ column = "category", values = ["wine"], factor = 1.5 },
             { column = "margin", factor = 2.0 },  # numeric: up to x2 for the highest margin
             { new_days = 30, factor = 1.3 }]      # items listed in the last 30 days
    bury = [{ column = "brand", values = ["Initech"], factor = 0.5 }]
    pin = [{ item_id = "I000042", position = 1 }]
    diversity = { column = "category", max = 2, top = 10 }   # at most 2 per category in the top 10

    [placements.home]
    rules = "storefront"
    [placements.cart]                              # a placement without rules
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from omnirec.errors import ConfigError, InvalidRequestError
from serving.catalogue import LoadedSnapshot
from serving.merchandising import Boost, Diversity, Pin, RuleSet

STANDARD_PLACEMENTS = ("home", "product_page", "cart", "post_purchase_email", "store_tablet")
NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
MAX_NAME = 24


# ---------------------------------------------------------------------- the placements file
@dataclass(frozen=True)
class Placements:
    """Rule sets and placements read from one file (or the standard placements, without rules)."""

    source: str
    rule_sets: Mapping[str, RuleSet]
    placements: Mapping[str, RuleSet | None]

    def rules_for(self, placement: str | None) -> RuleSet | None:
        """The rules of a placement (None: no placement named, or one without rules); an unknown
        placement is a 400 naming `placement`."""
        if placement is None:
            return None
        if placement not in self.placements:
            known = ", ".join(sorted(self.placements))
            raise InvalidRequestError(
                "placement", f"unknown placement {placement!r}; known: {known}"
            )
        return self.placements[placement]

    def check_columns(self, snap: LoadedSnapshot) -> list[str]:
        """What the rules read that the snapshot's catalogue lacks (one line each)."""
        problems = []
        for name, rules in self.rule_sets.items():
            for column, kind in dict.fromkeys(rules.columns()):
                found = snap.text_column(column) if kind == "text" else snap.number_column(column)
                if found is None:
                    problems.append(
                        f"{self.source}: rules.{name} reads the {kind} column "
                        f"{column!r}, which the catalogue does not have"
                    )
        return problems


def standard_placements() -> Placements:
    return Placements("(no placements file)", {}, dict.fromkeys(STANDARD_PLACEMENTS))


def load_placements(path: Path | None) -> Placements:
    """Read and validate a placements file; ConfigError names the file, the entry and the rule."""
    if path is None:
        return standard_placements()
    source = str(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    _only(raw, {"rules", "placements"}, source)
    rules_raw = _table(raw.get("rules", {}), f"{source}: rules")
    rule_sets: dict[str, RuleSet] = {}
    for name in rules_raw:
        _resolve(name, rules_raw, rule_sets, source, ())
    placements: dict[str, RuleSet | None] = {}
    for name, body in _table(raw.get("placements", {}), f"{source}: placements").items():
        where = f"{source}: placements.{name}"
        check_name(name, where)
        body = _table(body, where)
        _only(body, {"rules"}, where)
        ref = body.get("rules")
        if ref is not None and ref not in rule_sets:
            raise ConfigError(f"{where}: rules {ref!r} is not a rule set in this file")
        placements[name] = None if ref is None else rule_sets[ref]
    if not placements:
        raise ConfigError(f"{source}: no [placements.NAME] entries")
    return Placements(source, rule_sets, placements)


RULE_KEYS = {
    "extends",
    "include",
    "exclude",
    "exclude_items",
    "price_min",
    "price_max",
    "new_arrivals_days",
    "boost",
    "bury",
    "pin",
    "diversity",
}


def _resolve(
    name: str, raw: Mapping[str, Any], done: dict[str, RuleSet], source: str, chain: tuple[str, ...]
) -> RuleSet:
    if name in done:
        return done[name]
    where = f"{source}: rules.{name}"
    check_name(name, where)
    if name in chain:
        raise ConfigError(f"{where}: extends itself ({' -> '.join((*chain, name))})")
    body = _table(raw[name], where)
    _only(body, RULE_KEYS, where)
    parent = body.get("extends")
    if parent is not None and parent not in raw:
        raise ConfigError(f"{where}: extends {parent!r}, which is not a rule set in this file")
    rules = parse_rules(name, body, where)
    if parent is not None:
        rules = replace(_resolve(parent, raw, done, source, (*chain, name)).then(rules), name=name)
    done[name] = rules
    return rules


def parse_rules(name: str, body: Mapping[str, Any], where: str) -> RuleSet:
    """One rule set's rules (without `extends`)."""
    price_min = _number(body, "price_min", where)
    price_max = _number(body, "price_max", where)
    if price_min is not None and price_max is not None and price_min > price_max:
        raise ConfigError(f"{where}: price_min {price_min} is above price_max {price_max}")
    days = _number(body, "new_arrivals_days", where, positive=True)
    boosts = tuple(
        _boost(entry, f"{where}: boost[{k}]", above_one=True)
        for k, entry in enumerate(_list(body, "boost", where))
    )
    buries = tuple(
        _boost(entry, f"{where}: bury[{k}]", above_one=False)
        for k, entry in enumerate(_list(body, "bury", where))
    )
    pins = tuple(
        _pin(entry, f"{where}: pin[{k}]") for k, entry in enumerate(_list(body, "pin", where))
    )
    positions = [p.position for p in pins]
    if len(set(positions)) != len(positions):
        raise ConfigError(f"{where}: two pins at one position")
    excluded = _list(body, "exclude_items", where)
    if not all(isinstance(i, str) and i for i in excluded):
        raise ConfigError(f"{where}: exclude_items must be a list of item ids")
    return RuleSet(
        name=name,
        include=_selectors(body, "include", where),
        exclude=_selectors(body, "exclude", where),
        exclude_items=frozenset(excluded),
        price_min=price_min,
        price_max=price_max,
        new_arrivals_days=days,
        boosts=boosts + buries,
        pins=pins,
        diversity=_diversity(body.get("diversity"), f"{where}: diversity"),
    )


def _boost(entry: Any, where: str, *, above_one: bool) -> Boost:
    body = _table(entry, where)
    _only(body, {"column", "values", "new_days", "factor"}, where)
    factor = _number(body, "factor", where, positive=True)
    if factor is None:
        raise ConfigError(f"{where}: factor is missing")
    if above_one and factor <= 1:
        raise ConfigError(f"{where}: a boost's factor must be above 1, got {factor} (use bury)")
    if not above_one and factor >= 1:
        raise ConfigError(f"{where}: a bury's factor must be below 1, got {factor} (use boost)")
    new_days = _number(body, "new_days", where, positive=True)
    column = body.get("column")
    if (new_days is None) == (column is None):
        raise ConfigError(f"{where}: give either column (with or without values) or new_days")
    if column is not None and not isinstance(column, str):
        raise ConfigError(f"{where}: column must be a column name")
    values = _strings(body.get("values", []), f"{where}: values")
    return Boost(factor=factor, column=column, values=frozenset(values), new_days=new_days)


def _pin(entry: Any, where: str) -> Pin:
    body = _table(entry, where)
    _only(body, {"item_id", "position"}, where)
    item, position = body.get("item_id"), body.get("position")
    if not isinstance(item, str) or not item:
        raise ConfigError(f"{where}: item_id must be an item id")
    if not isinstance(position, int) or isinstance(position, bool) or not 1 <= position <= 100:
        raise ConfigError(f"{where}: position must be a whole number from 1 to 100")
    return Pin(item, position)


def _diversity(entry: Any, where: str) -> Diversity | None:
    if entry is None:
        return None
    body = _table(entry, where)
    _only(body, {"column", "max", "top"}, where)
    column = body.get("column", "category")
    top = body.get("top")
    most = body.get("max")
    if not isinstance(column, str):
        raise ConfigError(f"{where}: column must be a column name")
    if not isinstance(most, int) or isinstance(most, bool) or most < 1:
        raise ConfigError(f"{where}: max must be a whole number of at least 1")
    if top is not None and (not isinstance(top, int) or isinstance(top, bool) or top < 1):
        raise ConfigError(f"{where}: top must be a whole number of at least 1")
    return Diversity(column, most, top)


def _selectors(
    body: Mapping[str, Any], key: str, where: str
) -> tuple[tuple[str, frozenset[str]], ...]:
    table = _table(body.get(key, {}), f"{where}: {key}")
    return tuple(
        (column, frozenset(_strings(values, f"{where}: {key}.{column}")))
        for column, values in table.items()
    )


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: must be a list of strings")
    return value


def _number(body: Mapping[str, Any], key: str, where: str, positive: bool = False) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or (positive and value <= 0):
        raise ConfigError(f"{where}: {key} must be a {'positive ' if positive else ''}number")
    return float(value)


def _list(body: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = body.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"{where}: {key} must be a list")
    return value


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a table")
    return value


def _only(body: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def check_name(name: str, where: str) -> None:
    """Names of rule sets, placements, experiments and variants: lowercase letters, digits, `_`
    and `-`, at most 24 (they travel inside recommendation ids)."""
    if not name or len(name) > MAX_NAME or not set(name) <= NAME_CHARACTERS or name[0] in "_-":
        raise ConfigError(
            f"{where}: names are 1-{MAX_NAME} lowercase letters, digits, _ or -, "
            "starting with a letter or digit"
        )
