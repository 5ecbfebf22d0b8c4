"""The tablet's view of a customer: an alias typed by a clerk turned into a lookup key, and the
profile (identities, recent activity on every channel, favourite categories)."""

from __future__ import annotations

import hashlib
import time

import msgspec

from features.encoding import Activity
from serving.availability import availability
from serving.catalogue import LoadedSnapshot
from serving.reads import CustomerState, all_activity
from serving.reasons import describe
from serving.schemas import ActivityOut, Alias, CartItem, Profile

ACTIVITY_SHOWN = 40
CART_DAYS = 30  # an item added longer ago than this is no longer in the open cart


def alias_key(alias_type: str, value: str) -> str:
    """The alias id as stored: e-mails by the SHA-256 of the trimmed lower-case address, phone
    numbers by their digits (and a leading +); anything else as typed."""
    if alias_type in {"email", "email_sha256"} and "@" in value:
        return hashlib.sha256(value.strip().lower().encode()).hexdigest()
    if alias_type == "phone":
        return "".join(ch for ch in value if ch.isdigit() or ch == "+")
    return value


def decode_aliases(raw: bytes | None) -> list[Alias]:
    """A customer's stored alias list ([[type, id], ...] in msgpack)."""
    if not raw:
        return []
    return [Alias(str(t), str(a)) for t, a in msgspec.msgpack.decode(raw)]


def open_cart(activity: list[Activity], now: float | None = None) -> list[Activity]:
    """What was added to the cart on any channel in the last CART_DAYS and neither removed nor
    bought since (from `activity`, newest first), newest addition first."""
    oldest = (time.time() if now is None else now) - CART_DAYS * 86_400
    cart: dict[str, Activity] = {}
    for a in reversed(activity):
        if a.event_type == "add_to_cart" and a.timestamp >= oldest:
            cart.pop(a.item_id, None)
            cart[a.item_id] = a
        elif a.event_type in {"remove_from_cart", "purchase"}:
            cart.pop(a.item_id, None)
    return list(reversed(cart.values()))


def cart_items(snap: LoadedSnapshot, added: list[Activity], store_id: str | None) -> list[CartItem]:
    """The open cart as the tablet shows it, with where each item is available from `store_id`."""
    out = []
    for a in added:
        col = snap.item_index.get(a.item_id)
        if col is None:
            out.append(
                CartItem(a.item_id, a.item_id, "unknown", 0.0, a.channel, a.timestamp, a.quantity)
            )
            continue
        out.append(
            CartItem(
                a.item_id,
                snap.names[col],
                snap.category_list[col],
                snap.price_list[col],
                a.channel,
                a.timestamp,
                a.quantity,
                availability(snap, col, store_id),
            )
        )
    return out


def build_profile(
    snap: LoadedSnapshot | None,
    state: CustomerState,
    aliases: list[Alias],
    request_id: str,
    store_id: str | None = None,
) -> Profile:
    """The profile of `state`'s customer: the open cart, newest activity first (real-time, then
    the snapshot's), identities and favourite categories."""
    now = time.time()
    activity = []
    everything = all_activity(snap, state.features, state.recent) if snap else []
    cart = cart_items(snap, open_cart(everything), store_id) if snap else []
    events = everything[:ACTIVITY_SHOWN]
    for a in events:
        assert snap is not None
        col = snap.item_index.get(a.item_id)
        activity.append(
            ActivityOut(
                item_id=a.item_id,
                name=snap.names[col] if col is not None else a.item_id,
                category=str(snap.categories[col]) if col is not None else "unknown",
                event_type=a.event_type,
                channel=a.channel,
                timestamp=a.timestamp,
                store_id=a.store_id or None,
                description=describe(a, now, snap.store_names),
            )
        )
    f = state.features
    return Profile(
        customer_id=state.customer_id,
        aliases=aliases,
        activity=activity,
        favourite_categories=list(f.categories) if f else [],
        cart=cart,
        first_seen=f.first_seen if f else None,
        last_seen=max(
            [*([f.last_seen] if f else []), *(a.timestamp for a in state.recent[:1])], default=None
        ),
        known=f is not None or bool(state.recent),
        degraded=False,
        request_id=request_id,
    )
