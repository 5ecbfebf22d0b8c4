"""Live stock and trending sets against a real Redis: levels and deltas, the change log a worker
follows (and the gap that makes it read everything again), trending decayed over hours."""

from __future__ import annotations

import uuid

import pyarrow as pa
import redis

from features.stock import LiveStock, StockUpdate
from features.trending import HOUR, TrendEvent, Trending
from omnirec.redis_access import drive, run_pipelined


def test_levels_deltas_and_the_change_log(redis_server: str) -> None:
    client = redis.Redis.from_url(redis_server)
    live = LiveStock(f"t{uuid.uuid4().hex[:8]}")
    assert live.empty(client)
    live.seed(
        client,
        pa.table(
            {"store_id": ["S1", "S1", "online"], "item_id": ["a", "b", "a"], "quantity": [5, 0, 9]}
        ),
    )
    levels, version, last_id = live.read_all(client, {"a": 0, "b": 1}, 2)
    assert {s: v.tolist() for s, v in levels.items()} == {"S1": [5, 0], "online": [9, -1]}
    assert (
        live.apply(client, [StockUpdate("S1", "a", -7, delta=True), StockUpdate("S2", "b", 4)])
        == version + 1
    )
    reply = run_pipelined(client, [live.changes_command(last_id)])[0]
    changes = LiveStock.decode_changes(reply, last_id, version)
    assert (changes.stores, changes.items, changes.levels) == (
        ["S1", "S2"],
        ["a", "b"],
        [0, 4],
    )  # never below 0
    assert not changes.gap and changes.version == version + 1
    # a worker that missed trimmed entries sees a gap and reads everything again
    live.apply(client, [StockUpdate("S1", "b", 1)])
    client.xtrim(live.changes_key, maxlen=1, approximate=False)
    behind = LiveStock.decode_changes(
        run_pipelined(client, [live.changes_command(last_id)])[0], last_id, version
    )
    assert behind.gap
    levels, _, _ = live.read_all(client, {"a": 0, "b": 1}, 2)
    assert levels["S1"].tolist() == [0, 1] and levels["S2"].tolist() == [-1, 4]


def test_trending_counts_weighted_events_and_fades_older_hours(redis_server: str) -> None:
    client = redis.Redis.from_url(redis_server)
    trending = Trending(f"t{uuid.uuid4().hex[:8]}", {"view": 1.0, "purchase": 6.0})
    now = 1_000 * HOUR + 10
    events = (
        [TrendEvent("new", "purchase", "store", "S1", now)]
        + [TrendEvent("old", "purchase", "store", "S1", now - 2 * HOUR) for _ in range(3)]
        + [TrendEvent("viewed", "view", "web", None, now) for _ in range(4)]
    )
    run_pipelined(client, trending.writes(events, now))
    at_store = trending.merge(run_pipelined(client, trending.reads("store:S1", now)))
    assert at_store == [("old", 18 * 0.5), ("new", 6.0)]  # three purchases two hours ago count half
    everywhere = dict(trending.merge(run_pipelined(client, trending.reads("all", now))))
    assert everywhere == {"old": 9.0, "new": 6.0, "viewed": 4.0}
    assert trending.merge(run_pipelined(client, trending.reads("channel:app", now))) == []


def test_an_item_trends_only_when_enough_customers_made_it_so(redis_server: str) -> None:
    client = redis.Redis.from_url(redis_server)
    trending = Trending(f"t{uuid.uuid4().hex[:8]}", {"view": 1.0, "purchase": 6.0})
    now = 1_000 * HOUR + 10
    one_visitor = [TrendEvent("fad", "view", "web", None, now, "visitor-1") for _ in range(5)]
    three = [TrendEvent("liked", "view", "web", None, now, f"c{k}") for k in range(3)]
    at_store = [TrendEvent("local", "purchase", "store", "S1", now, f"c{k}") for k in range(3)]
    run_pipelined(client, trending.writes(one_visitor + three + at_store, now))
    lists = drive(client, trending.read(["all", "channel:web", "store:S1", "store:S2"], now, 3))
    # five views by one visitor outscore three customers' views, and do not trend
    assert [i for i, _ in lists["all"]] == ["local", "liked"]
    assert [i for i, _ in lists["channel:web"]] == ["liked"]
    assert [i for i, _ in lists["store:S1"]] == ["local"]
    assert lists["store:S2"] == []  # another store's trend is not this store's
    # without a minimum, the raw scores
    raw = drive(client, trending.read(["channel:web"], now, 1))
    assert [i for i, _ in raw["channel:web"]] == ["fad", "liked"]
