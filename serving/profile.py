"""The tablet's view of a customer: an alias typed by a clerk turned into a lookup key, and the
profile (identities, recent activity on every channel, favourite categories)."""

from __future__ import annotations

import hashlib
import time

import msgspec

from serving.catalogue import LoadedSnapshot
from serving.reads import CustomerState, all_activity
from serving.reasons import describe
from serving.schemas import ActivityOut, Alias, Profile

ACTIVITY_SHOWN = 40


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


def build_profile(
    snap: LoadedSnapshot | None, state: CustomerState, aliases: list[Alias], request_id: str
) -> Profile:
    """The profile of `state`'s customer: newest activity first (real-time, then the snapshot's)."""
    now = time.time()
    activity = []
    events = all_activity(snap, state.features, state.recent)[:ACTIVITY_SHOWN] if snap else []
    for a in events:
        assert snap is not None
        col = snap.item_index.get(a.item_id)
        activity.append(ActivityOut(
            item_id=a.item_id, name=snap.names[col] if col is not None else a.item_id,
            category=str(snap.categories[col]) if col is not None else "unknown", event_type=a.event_type,
            channel=a.channel, timestamp=a.timestamp, store_id=a.store_id or None, description=describe(a, now),
        ))  # fmt: skip
    f = state.features
    return Profile(customer_id=state.customer_id, aliases=aliases, activity=activity,
                   favourite_categories=list(f.categories) if f else [],
                   first_seen=f.first_seen if f else None, last_seen=max([*([f.last_seen] if f else []), *(a.timestamp for a in state.recent[:1])], default=None),
                   known=f is not None or bool(state.recent), degraded=False, request_id=request_id)  # fmt: skip
