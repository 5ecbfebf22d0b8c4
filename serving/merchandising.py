"""Merchandising rules applied after scoring: filters, boosts and buries, pinned items and a
diversity cap, grouped in named rule sets; and the named placements (`home`, `cart`, ...) that
each use one. Read from one TOML file (OMNIREC_PLACEMENTS_FILE) and validated as a whole when
it is read: an error names the file, the rule set or placement, and the rule.

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

Filters narrow what may be shown; boosts and buries multiply the scores of the candidates
(scaled to 0-1 among them) and reorder; the diversity cap then walks the list; pinned items go
to their positions last (still only items that are active and, with `store_id`, in stock).
An answer is never emptier than the catalogue allows: popular items that pass the same filters
fill it (source `popular`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from omnirec.errors import ConfigError, InvalidRequestError
from serving.arrange import AS_SCORED, NO_CODES, NO_FACTORS, Arrangement, arrange
from serving.catalogue import LoadedSnapshot
from serving.schemas import Item

NEW_COLUMN = "added_at"  # the catalogue column (epoch seconds or a date) new arrivals are read from
STANDARD_PLACEMENTS = ("home", "product_page", "cart", "post_purchase_email", "store_tablet")
NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
MAX_NAME = 24
POOL_FACTOR = 4  # rules that reorder see this many times the answer's length of candidates
MASK_CACHE = 1024  # rule masks kept per snapshot


@dataclass(frozen=True)
class Boost:
    """Multiplies the score of matching candidates by `factor` (< 1 buries). Matching: a text
    column's `values`; a numeric column alone (the factor scaled by where the item's value lies
    between the catalogue's lowest and highest); or `new_days` (listed in the last N days)."""

    factor: float
    column: str | None = None
    values: frozenset[str] = frozenset()
    new_days: float | None = None

    def factors(self, snap: LoadedSnapshot, now: float) -> npt.NDArray[np.float64]:
        """Per item of the catalogue: the multiplier (1 where the boost does not apply)."""
        n = len(snap.item_ids)
        if self.new_days is not None:
            return np.where(_listed_since(snap, now - self.new_days * 86_400), self.factor, 1.0)
        assert self.column is not None
        if self.values:
            text = snap.text_column(self.column)
            if text is None:
                return np.ones(n)
            return np.where(np.isin(text, list(self.values)), self.factor, 1.0)
        numbers = snap.number_column(self.column)
        if numbers is None or not np.isfinite(numbers).any():
            return np.ones(n)
        low, high = np.nanmin(numbers), np.nanmax(numbers)
        share = np.nan_to_num((numbers - low) / (high - low)) if high > low else np.zeros(n)
        return np.asarray(1.0 + (self.factor - 1.0) * share, dtype=np.float64)


@dataclass(frozen=True)
class Pin:
    item_id: str
    position: int  # 1 = first


@dataclass(frozen=True)
class Diversity:
    """At most `max_items` per value of `column` among the first `top` items (None: all)."""

    column: str = "category"
    max_items: int = 2
    top: int | None = None


@dataclass(frozen=True)
class RuleSet:
    """Filters, score multipliers, pins and a diversity cap; `name` identifies the set (and
    keys its cached filter masks), so two sets with one name must be the same rules."""

    name: str
    include: tuple[tuple[str, frozenset[str]], ...] = ()
    exclude: tuple[tuple[str, frozenset[str]], ...] = ()
    exclude_items: frozenset[str] = frozenset()
    price_min: float | None = None
    price_max: float | None = None
    new_arrivals_days: float | None = None
    boosts: tuple[Boost, ...] = ()
    pins: tuple[Pin, ...] = ()
    diversity: Diversity | None = None
    per_request: bool = (
        False  # a request's own filters: its masks are not kept (they rarely repeat)
    )
    filters: bool = field(init=False, default=False)
    hourly_boosts: bool = field(
        init=False, default=False
    )  # new arrivals: factors change by the hour
    reorders: bool = field(init=False, default=False)  # boosts, a diversity cap or pins

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "filters",
            bool(
                self.include
                or self.exclude
                or self.exclude_items
                or self.price_min is not None
                or self.price_max is not None
                or self.new_arrivals_days is not None
            ),
        )
        object.__setattr__(self, "hourly_boosts", any(b.new_days is not None for b in self.boosts))
        object.__setattr__(self, "reorders", bool(self.boosts or self.diversity or self.pins))

    def then(self, other: RuleSet | None) -> RuleSet:
        """These rules and `other`'s: both sets of filters (the narrower price range), `other`'s
        boosts after these, its pins over these at the same position, its diversity cap if any."""
        if other is None or other is self:
            return self
        pins = {p.position: p for p in self.pins} | {p.position: p for p in other.pins}
        return RuleSet(
            name=f"{self.name}+{other.name}",
            include=self.include + other.include,
            exclude=self.exclude + other.exclude,
            exclude_items=self.exclude_items | other.exclude_items,
            price_min=_tighter(self.price_min, other.price_min, max),
            price_max=_tighter(self.price_max, other.price_max, min),
            new_arrivals_days=_tighter(self.new_arrivals_days, other.new_arrivals_days, min),
            boosts=self.boosts + other.boosts,
            pins=tuple(pins[k] for k in sorted(pins)),
            diversity=other.diversity or self.diversity,
            per_request=self.per_request or other.per_request,
        )

    def columns(self) -> list[tuple[str, str]]:
        """(column, 'text' | 'number') the rules read from the catalogue."""
        wanted = [(c, "text") for c, _ in self.include + self.exclude]
        for boost in self.boosts:
            if boost.new_days is not None:
                wanted.append((NEW_COLUMN, "number"))
            elif boost.column is not None:
                wanted.append((boost.column, "text" if boost.values else "number"))
        if self.new_arrivals_days is not None:
            wanted.append((NEW_COLUMN, "number"))
        if self.diversity is not None:
            wanted.append((self.diversity.column, "text"))
        return wanted

    def mask_key(self, now: float) -> tuple[str, int]:
        """What the mask depends on besides the snapshot: the rule set and, with new arrivals, the
        hour."""
        return self.name, _hour(now, self.new_arrivals_days is not None)

    def mask(self, snap: LoadedSnapshot, now: float) -> npt.NDArray[np.bool_]:
        """Items these filters allow (all True without filters); cached per snapshot and hour
        (a request's own filters are computed each time: a cache of them would only grow)."""
        key = self.mask_key(now)
        cached = snap.rule_masks.get(key)
        if cached is not None:
            return cached
        allowed = np.ones(len(snap.item_ids), dtype=bool)
        for column, values in self.include:
            text = snap.text_column(column)
            allowed &= np.isin(text, list(values)) if text is not None else False
        for column, values in self.exclude:
            text = snap.text_column(column)
            if text is not None:
                allowed &= ~np.isin(text, list(values))
        for item in self.exclude_items:
            col = snap.item_index.get(item)
            if col is not None:
                allowed[col] = False
        if self.price_min is not None:
            allowed &= snap.prices >= self.price_min
        if self.price_max is not None:
            allowed &= snap.prices <= self.price_max
        if self.new_arrivals_days is not None:
            allowed &= _listed_since(snap, now - self.new_arrivals_days * 86_400)
        if len(snap.rule_masks) < MASK_CACHE and not self.per_request:
            snap.rule_masks[key] = allowed
        return allowed

    def pool(self, limit: int) -> int:
        """How many candidates to score for an answer of `limit` items."""
        return limit * POOL_FACTOR + 20 if self.boosts or self.diversity else limit

    def boost_vector(self, snap: LoadedSnapshot, now: float) -> npt.NDArray[np.float32]:
        """Per item: the product of every boost's and bury's factor; cached per snapshot (and
        hour, when new arrivals count), so a request only gathers its candidates' factors."""
        key = (self.name, _hour(now, self.hourly_boosts))
        cached = snap.rule_boosts.get(key)
        if cached is not None:
            return cached
        vector = np.ones(len(snap.item_ids), np.float32)
        for boost in self.boosts:
            vector *= boost.factors(snap, now).astype(np.float32)
        if len(snap.rule_boosts) < MASK_CACHE:
            snap.rule_boosts[key] = vector
        return vector

    def arrangement(self, snap: LoadedSnapshot, limit: int, now: float) -> Arrangement:
        """The boosts and the diversity cap as the compiled pass (`serving.arrange`) takes them
        for an answer of `limit` (`AS_SCORED` for rules that only filter or pin): candidates
        boosted, then ordered by the cap, cut to `limit`; the scores of a boosted answer are the
        boosted ones, scaled to a peak of 1."""
        if not (self.boosts or self.diversity):
            return AS_SCORED
        key = (self.name, limit, _hour(now, self.hourly_boosts))
        cached = snap.rule_arrangements.get(key)
        if cached is None:  # cached per snapshot like the boost vector (a request looks it up)
            codes, max_items, top = _cap(snap, self.diversity, limit) or (NO_CODES, 0, 0)
            factors = self.boost_vector(snap, now) if self.boosts else NO_FACTORS
            cached = Arrangement(factors, codes, max_items, top)
            if len(snap.rule_arrangements) < MASK_CACHE:
                snap.rule_arrangements[key] = cached
        return cached

    def reordered(self, snap: LoadedSnapshot, items: list[Item], now: float) -> list[Item]:
        """Items (popular, trending) in the order their scores times the boosts give."""
        if not self.boosts or len(items) < 2:
            return items
        cols = np.array([snap.item_index[i.item_id] for i in items], np.int64)
        scores = np.array([i.score for i in items], np.float32)
        positions = {int(c): k for k, c in enumerate(cols.tolist())}
        order, _, _ = arrange(cols, scores, self.boost_vector(snap, now), NO_CODES, 0, 0, len(cols))
        return [items[positions[int(c)]] for c in order.tolist()]

    def finish(
        self,
        snap: LoadedSnapshot,
        items: list[Item],
        limit: int,
        backfill: Callable[[int], list[Item]],
        pinnable: npt.NDArray[np.bool_],
        settled: bool = False,
        arranged: bool = False,
    ) -> list[Item]:
        """The answer from ranked candidates: capped per category (or column), filled with
        popular items (`backfill(n)`, the same filters) when short or when the cap left the top
        with gaps, pinned items at their places. `arranged`: `items` come in the order of
        `arrangement`; `settled`: and that order is final."""
        if settled and len(items) >= limit:
            items = items[:limit]
        elif self.diversity is not None:
            # arranged but not settled: the cap's top has gaps, no need to look again first
            items, full = (
                (items, False) if arranged else _diversified(snap, items, self.diversity, limit)
            )
            if not full or len(items) < limit:  # other categories from the popular items
                items, _ = _diversified(snap, items + backfill(limit), self.diversity, limit)
        elif len(items) < limit:
            items = items + backfill(limit - len(items))
        items = items[:limit]
        return _pinned(snap, items, self.pins, limit, pinnable) if self.pins else items


def _hour(now: float, hourly: bool) -> int:
    """What a cached mask or factor vector depends on in time: the hour when new arrivals count
    (they change by the hour), else nothing (0)."""
    return int(now // 3600) if hourly else 0


def _tighter(
    a: float | None, b: float | None, pick: Callable[[float, float], float]
) -> float | None:
    return b if a is None else a if b is None else pick(a, b)


def _listed_since(snap: LoadedSnapshot, since: float) -> npt.NDArray[np.bool_]:
    added = snap.number_column(NEW_COLUMN)
    if added is None:
        return np.zeros(len(snap.item_ids), dtype=bool)
    return np.asarray(np.nan_to_num(added, nan=-np.inf) >= since, dtype=bool)


def _diversified(
    snap: LoadedSnapshot, items: list[Item], rule: Diversity, limit: int
) -> tuple[list[Item], bool]:
    """`items` (of the catalogue) in capped order: an item whose value of the column already has
    `max_items` in the top (`top`, at most `limit`) moves below it, the top filled by the next
    items that fit; and whether the top is full. The same compiled pass that `arrangement`
    feeds, over positions in `items`."""
    index = snap.item_index
    cols = np.array([index.get(i.item_id, -1) for i in items], np.int64)
    known = cols >= 0
    kept = [item for item, ok in zip(items, known.tolist(), strict=True) if ok]
    cap = _cap(snap, rule, limit)
    if cap is None:
        return kept, True
    codes, max_items, top = cap
    positions = np.arange(len(kept), dtype=np.int64)
    order, _, full = arrange(
        positions,
        np.zeros(len(kept), np.float32),
        NO_FACTORS,
        codes[cols[known]],
        max_items,
        top,
        len(kept),
    )
    return [kept[k] for k in order.tolist()], full


def _cap(
    snap: LoadedSnapshot, rule: Diversity | None, limit: int
) -> tuple[npt.NDArray[np.int32], int, int] | None:
    """A diversity rule as the compiled pass takes it: the column's codes per item, the most per
    value, and the top it applies to (at most `limit`); None without a rule or the column."""
    codes = None if rule is None else snap.text_codes(rule.column)
    if rule is None or codes is None:
        return None
    return codes, rule.max_items, min(rule.top or limit, limit)


def _pinned(
    snap: LoadedSnapshot,
    items: list[Item],
    pins: tuple[Pin, ...],
    limit: int,
    pinnable: npt.NDArray[np.bool_],
) -> list[Item]:
    """Pinned items (active, in stock where asked) moved or put at their positions."""
    out = list(items)
    for pin in sorted(pins, key=lambda p: p.position):
        col = snap.item_index.get(pin.item_id)
        if col is None or not pinnable[col]:
            continue
        out = [i for i in out if i.item_id != pin.item_id]
        item = Item(
            item_id=snap.id_list[col],
            score=0.0,
            name=snap.names[col],
            category=snap.category_list[col],
            price=snap.price_list[col],
            source="pinned",
            reasons=["featured"],
        )
        out.insert(min(pin.position, len(out) + 1) - 1, item)
    return out[:limit]


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
