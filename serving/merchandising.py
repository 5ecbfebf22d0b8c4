"""Merchandising rules and where they apply: filters, boosts and buries, pinned items and a
diversity cap, grouped in named rule sets (read from the placements file by `serving.placements`).

Filters narrow what may be shown; boosts and buries multiply the scores of the candidates
(scaled to 0-1 among them) and reorder; the diversity cap then walks the list; pinned items go
to their positions last (still only items that are active and, with `store_id`, in stock).
An answer is never emptier than the catalogue allows: popular items that pass the same filters
fill it (source `popular`).

This module is the one place rules meet a snapshot: `allowed` (the filters with the stock's
mask), `RuleSet.arrangement` (what the compiled pass takes), `RuleSet.finish` (pins, the cap and
the backfill); `combined` stacks a placement's, a variant's and a request's rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from serving.arrange import AS_SCORED, NO_CODES, NO_FACTORS, Arrangement, arrange
from serving.candidates import make_item
from serving.catalogue import LoadedSnapshot
from serving.schemas import Item

NEW_COLUMN = "added_at"  # the catalogue column (epoch seconds or a date) new arrivals are read from
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
        cached = snap.derived.rule_masks.get(key)
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
        if len(snap.derived.rule_masks) < MASK_CACHE and not self.per_request:
            snap.derived.rule_masks[key] = allowed
        return allowed

    def pool(self, limit: int) -> int:
        """How many candidates to score for an answer of `limit` items."""
        return limit * POOL_FACTOR + 20 if self.boosts or self.diversity else limit

    def boost_vector(self, snap: LoadedSnapshot, now: float) -> npt.NDArray[np.float32]:
        """Per item: the product of every boost's and bury's factor; cached per snapshot (and
        hour, when new arrivals count), so a request only gathers its candidates' factors."""
        key = (self.name, _hour(now, self.hourly_boosts))
        cached = snap.derived.rule_boosts.get(key)
        if cached is not None:
            return cached
        vector = np.ones(len(snap.item_ids), np.float32)
        for boost in self.boosts:
            vector *= boost.factors(snap, now).astype(np.float32)
        if len(snap.derived.rule_boosts) < MASK_CACHE:
            snap.derived.rule_boosts[key] = vector
        return vector

    def arrangement(self, snap: LoadedSnapshot, limit: int, now: float) -> Arrangement:
        """The boosts and the diversity cap as the compiled pass (`serving.arrange`) takes them
        for an answer of `limit` (`AS_SCORED` for rules that only filter or pin): candidates
        boosted, then ordered by the cap, cut to `limit`; the scores of a boosted answer are the
        boosted ones, scaled to a peak of 1."""
        if not (self.boosts or self.diversity):
            return AS_SCORED
        key = (self.name, limit, _hour(now, self.hourly_boosts))
        cached = snap.derived.rule_arrangements.get(key)
        if cached is None:  # cached per snapshot like the boost vector (a request looks it up)
            codes, max_items, top = _cap(snap, self.diversity, limit) or (NO_CODES, 0, 0)
            factors = self.boost_vector(snap, now) if self.boosts else NO_FACTORS
            cached = Arrangement(factors, codes, max_items, top)
            if len(snap.derived.rule_arrangements) < MASK_CACHE:
                snap.derived.rule_arrangements[key] = cached
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
        if not self.pins:
            return items
        pinned = _pinned(snap, items, self.pins, limit, pinnable)
        if self.diversity is None:
            return pinned
        return _capped_around_pins(snap, pinned, self.diversity, limit, backfill)


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
        item = make_item(snap, col, 0.0, "pinned", ["featured"])
        out.insert(min(pin.position, len(out) + 1) - 1, item)
    return out[:limit]


def _capped_around_pins(
    snap: LoadedSnapshot,
    items: list[Item],
    rule: Diversity,
    limit: int,
    backfill: Callable[[int], list[Item]],
) -> list[Item]:
    """Pinned items stay at their places and count toward the diversity cap; the other places
    take the next items (then popular ones) whose value of the column is still under the cap in
    the top: a pin never pushes a category over it."""
    column = snap.text_column(rule.column)
    if column is None:
        return items
    index = snap.item_index

    def value(item: Item) -> object:
        col = index.get(item.item_id)
        return None if col is None else column[col]

    top = min(rule.top or limit, limit)
    pins = {k: item for k, item in enumerate(items) if item.source == "pinned"}
    counts: dict[object, int] = {}
    for k, item in pins.items():
        if k < top:
            counts[value(item)] = counts.get(value(item), 0) + 1
    present = {item.item_id for item in items}
    queue = [item for item in items if item.source != "pinned"]
    queue += [item for item in backfill(limit) if item.item_id not in present]
    out: list[Item] = []
    for k in range(limit):
        if k in pins:
            out.append(pins[k])
            continue
        found = next(
            (
                j
                for j, item in enumerate(queue)
                if k >= top or counts.get(value(item), 0) < rule.max_items
            ),
            None,
        )
        if found is None:
            continue
        item = queue.pop(found)
        if k < top:
            counts[value(item)] = counts.get(value(item), 0) + 1
        out.append(item)
    return out


# ---------------------------------------------------------------------- where rules apply
def combined(*layers: RuleSet | None) -> RuleSet | None:
    """Rule sets stacked in order (a placement's, then a variant's, then a request's), each
    narrowing the one before."""
    rules: RuleSet | None = None
    for more in layers:
        if more is not None:
            rules = more if rules is None else rules.then(more)
    return rules


def allowed(
    snap: LoadedSnapshot,
    store_id: str | None,
    category: str | None,
    rules: RuleSet | None,
    now: float,
) -> npt.NDArray[np.bool_]:
    """The items that may be shown: active, in stock at `store_id`, in `category`, and allowed by
    the filters of `rules`; shared with other requests (read-only) where it is cached."""
    if rules is None or not rules.filters:
        return snap.allowed(store_id, category)
    if rules.per_request:
        return np.logical_and(snap.allowed(store_id, category), rules.mask(snap, now))
    # a placement's or a variant's rules: their mask and the stock's, together, cached (no
    # element-wise and of two catalogue-long masks per request)
    return snap.allowed(store_id, category, (rules.mask_key(now), lambda: rules.mask(snap, now)))


def allowed_copy(
    snap: LoadedSnapshot,
    store_id: str | None,
    category: str | None,
    rules: RuleSet | None,
    now: float,
) -> npt.NDArray[np.bool_]:
    """`allowed` as a fresh mask (the caller changes it)."""
    return allowed(snap, store_id, category, rules, now).copy()
