"""A customer's activity as the profile and the tablet list it: live events first, then the
snapshot's, each event once (an event exported and learned since is in both)."""

from __future__ import annotations

import numpy as np

from features.encoding import EVENT_CODES, Activity, CustomerFeatures
from serving.reads import all_activity
from tests.serving.test_merchandising import NOW, _snapshot


def test_an_event_in_the_snapshot_and_the_live_list_is_listed_once() -> None:
    snap = _snapshot()
    bought = Activity("C", "purchase", "web", int(NOW) - 3600)
    viewed = Activity("A", "view", "web", int(NOW) - 7200)
    fresh = Activity("B", "view", "app", int(NOW) - 60)  # after the snapshot
    features = CustomerFeatures(
        customer_id="c1",
        recent_items=np.array([snap.item_index["A"], snap.item_index["C"]], np.int32).tobytes(),
        recent_types=np.array([EVENT_CODES["view"], EVENT_CODES["purchase"]], np.uint8).tobytes(),
        recent_channels=np.zeros(2, np.uint8).tobytes(),
        recent_at=np.array([viewed.timestamp, bought.timestamp], np.int64).tobytes(),
        recent_stores=np.full(2, -1, np.int16).tobytes(),
    )
    listed = all_activity(snap, features, [fresh, bought, viewed])  # the live list, newest first
    assert [(a.item_id, a.event_type) for a in listed] == [
        ("B", "view"),
        ("C", "purchase"),
        ("A", "view"),
    ]
