"""Reasons in plain words: when and where a customer did something, why an item is suggested."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from features.encoding import Activity, CustomerFeatures
from serving.schemas import Item

DAY = 86_400
VERBS = {
    "view": "viewed",
    "favorite": "saved",
    "add_to_cart": "added to cart",
    "remove_from_cart": "removed from cart",
    "purchase": "bought",
    "return": "returned",
}
PLACES = {"web": "on the web", "app": "in the app", "store": "in store"}


def when_words(timestamp: int, now: float) -> str:
    """'today', 'yesterday', '3 days ago', ... for a reason a person reads."""
    days = int((now - timestamp) // DAY)
    if days <= 0:
        return "today"
    if days == 1:
        return "yesterday"
    if days < 14:
        return f"{days} days ago"
    return f"{days // 7} weeks ago"


def describe(activity: Activity, now: float, store_names: Mapping[str, str] | None = None) -> str:
    """'viewed in the app yesterday', 'bought in store Riverside 3 days ago' (the store's id
    when it has no name), ..."""
    verb = VERBS.get(activity.event_type, activity.event_type)
    place = PLACES.get(activity.channel, f"via {activity.channel}")
    if activity.channel == "store" and activity.store_id:
        name = (store_names or {}).get(activity.store_id, activity.store_id)
        place = f"in store {name}"
    return f"{verb} {place} {when_words(activity.timestamp, now)}"


def session_reason(activity: Activity, name: str, item_id: str) -> str:
    """'because you viewed Merlot 2019 just now': an item the current session brought (the item
    itself: 'you viewed it just now')."""
    verb = VERBS.get(activity.event_type, activity.event_type)
    if activity.item_id == item_id:
        return f"you {verb} it just now"
    return f"because you {verb} {name} just now"


def bought_reason(count: float, every_days: float, since_days: float) -> str:
    """'bought 6 times, usually every 12 days: due', 'bought 3 times', 'bought 5 weeks ago'."""
    if count >= 2 and every_days == every_days:  # not NaN: the customer's own rhythm
        due = ": due" if since_days >= 0.75 * every_days else ""
        return f"bought {count:.0f} times, usually every {max(every_days, 1):.0f} days{due}"
    if count >= 2:
        return f"bought {count:.0f} times"
    return f"bought {when_words(0, since_days * DAY)}"


def default_reasons(
    picked: list[int],
    bought: dict[int, str],
    categories: list[str],
    favourites: set[str],
) -> list[list[str]]:
    """The cheap reasons every personalized item carries (no extra read): what the customer's
    purchases say about it (`bought`: column -> reason), else a favourite category, else their
    activity in general."""
    return [
        [bought[c]]
        if c in bought
        else [f"you often shop {categories[c]}"]
        if categories[c] in favourites
        else ["matches your recent activity"]
        for c in picked
    ]


def _scoped(word: str, scope: str, suffix: str) -> str:
    kind, _, value = scope.partition(":")
    if kind == "store" and value == "online":
        return f"{word} online{suffix}"
    if kind == "store":
        return f"{word} at this store{suffix}"
    if kind == "channel":
        return f"{word} {PLACES.get(value, 'on ' + value)}{suffix}"
    if kind == "category":
        return f"{word} in {value}{suffix}"
    return f"{word}{suffix or ' right now'}"


def trending_reason(scope: str) -> str:
    """The reason for a trending item ('store:S001', 'channel:app', 'all')."""
    return _scoped("trending", scope, " now")


def popular_reason(key: str) -> str:
    """The reason for an item from the popular list `key` ('all', 'store:S001', 'channel:web',
    ...)."""
    return _scoped("popular", key, "")


def explain(
    items: list[Item],
    activity: list[Activity],
    features: CustomerFeatures | None,
    bought_with: dict[str, str],
    now: float,
) -> list[Item]:
    """`items` with the expensive reasons added after their own: what the customer did with the
    item (`activity`, newest first), what it is often bought with (`bought_with`: item id -> name
    of a purchase)."""
    seen: dict[str, str] = {}
    for a in activity:
        if a.event_type in {"view", "add_to_cart", "favorite"} and a.item_id not in seen:
            seen[a.item_id] = describe(a, now)
    favourites = set(features.categories) if features else set()
    out = []
    for item in items:
        reasons = [r for r in item.reasons if r != "matches your recent activity"]
        if item.item_id in seen:
            reasons.append(seen[item.item_id])
        if item.item_id in bought_with:
            reasons.append(f"often bought with {bought_with[item.item_id]}")
        liked = f"you often shop {item.category}"
        if item.source == "personalized" and item.category in favourites and liked not in reasons:
            reasons.append(liked)
        if not reasons:
            reasons.append("matches your recent activity")
        out.append(msgspec.structs.replace(item, reasons=reasons, availability=None))
    return out
