"""The Redis feature store: atomic snapshot switch, grace-period cleanup, real-time events,
export."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pyarrow.compute as pc
import pytest

from features.encoding import CUSTOMER_DECODER, SnapshotMeta
from features.export import export_events
from features.io import read_table
from features.realtime import RealtimeEvents
from features.store import RedisFeatureStore
from omnirec.errors import EventBacklogFullError, FeatureStoreError, StoreUnavailableError
from omnirec.redis_runtime import free_port
from omnirec.settings import Settings
from tests.waiting import PATIENCE


@pytest.fixture
def store(settings: Settings) -> RedisFeatureStore:
    assert settings.redis.url
    s = RedisFeatureStore(settings.redis.url, settings.redis.prefix)
    yield s
    for key in s.client.scan_iter(f"{settings.redis.prefix}:*"):
        s.client.delete(key)
    s.close()


def _snapshot(store: RedisFeatureStore, snapshot: str, value: bytes, n: int = 200) -> None:
    store.write_batch(snapshot, "c", ((f"k{i}", value) for i in range(n)))
    store.register_snapshot(SnapshotMeta(snapshot, 1, "als", int(time.time()), n, 1, 0))


def test_reads_missing_as_none_and_pipelined_many(store: RedisFeatureStore) -> None:
    _snapshot(store, "s1", b"old", n=50)
    assert store.read_many("s1", "c", ["k1", "nobody", "k49"]) == [b"old", None, b"old"]
    assert store.read_one("s1", "c", "nobody") is None


def test_a_concurrent_reader_sees_old_or_new_never_a_mix(store: RedisFeatureStore) -> None:
    _snapshot(store, "old", b"old")
    store.activate("old")
    mixes: list[set[bytes | None]] = []
    stop = threading.Event()

    def reader() -> None:
        reader_store = RedisFeatureStore(store.url, store.prefix)
        while not stop.is_set():
            snap = reader_store.active_snapshot()
            assert snap is not None
            values = set(reader_store.read_many(snap, "c", [f"k{i}" for i in range(200)]))
            if len(values) != 1 or None in values:
                mixes.append(values)
        reader_store.close()

    thread = threading.Thread(target=reader)
    thread.start()
    for round_ in range(5):
        name = f"new{round_}"
        _snapshot(store, name, name.encode())  # published beside the live one ...
        store.activate(name)  # ... then switched in one step
    stop.set()
    thread.join()
    assert mixes == []
    assert store.active_snapshot() == "new4"


def test_retired_snapshot_readable_during_grace_then_removed(store: RedisFeatureStore) -> None:
    _snapshot(store, "a", b"a")
    store.activate("a")
    _snapshot(store, "b", b"b")
    assert store.activate("b") == "a"
    assert store.cleanup(grace_seconds=3600) == []
    assert store.read_one("a", "c", "k1") == b"a"  # still there for readers that hold 'a'
    assert store.cleanup(grace_seconds=3600, now=time.time() + 7200) == ["a"]
    assert store.read_one("a", "c", "k1") is None
    assert [m.snapshot_id for m, _ in store.snapshots()] == ["b"]
    with pytest.raises(FeatureStoreError, match="never published"):
        store.activate("a")
    with pytest.raises(FeatureStoreError, match="active"):
        store.delete_snapshot("b")


def test_unreachable_redis_raises_one_typed_error() -> None:
    dead = RedisFeatureStore(f"redis://127.0.0.1:{free_port()}/0", "x", timeout=0.2)
    with pytest.raises(StoreUnavailableError):
        dead.read_many("s", "c", ["a"])
    with pytest.raises(StoreUnavailableError):
        dead.write_batch("s", "c", [("a", b"1")])
    with pytest.raises(StoreUnavailableError):
        RealtimeEvents(dead).ingest(
            [{"customer_id": "a", "item_id": "b", "event_type": "view", "channel": "web"}]
        )


def test_ingest_updates_activity_at_once_and_reports_bad_events(store: RedisFeatureStore) -> None:
    store.client.set(store.keys.alias("L999"), "cust-9")
    realtime = RealtimeEvents(store)
    result = realtime.ingest(
        [
            {
                "customer_id": "L999",
                "item_id": "i1",
                "event_type": "view",
                "channel": "web",
                "timestamp": "2026-11-20T10:00:00Z",
            },
            {"customer_id": "cust-9", "item_id": "i2", "event_type": "cart", "channel": "app"},
            {"customer_id": "x", "item_id": "<b>", "event_type": "view", "channel": "web"},
            {"customer_id": "x", "item_id": "i3", "event_type": "teleport", "channel": "web"},
            {
                "customer_id": "x",
                "item_id": "i3",
                "event_type": "view",
                "channel": "web",
                "quantity": -1,
            },
        ]
    )
    assert result.accepted == 2 and len(result.stream_ids) == 2
    assert [(r.index, r.field) for r in result.rejected] == [
        (2, "item_id"),
        (3, "event_type"),
        (4, "quantity"),
    ]
    recent = realtime.recent(["cust-9"])["cust-9"]
    assert [(a.item_id, a.event_type) for a in recent] == [("i2", "add_to_cart"), ("i1", "view")]
    assert sum(store.client.xlen(k) for k in realtime.stream_keys) == 2


def test_export_is_exactly_once_in_effect_across_a_crash(
    store: RedisFeatureStore, settings: Settings, tmp_path: Path
) -> None:
    realtime = RealtimeEvents(store)
    days = ["2026-11-19", "2026-11-20", "2026-11-21"]
    events = [
        {
            "customer_id": f"c{i % 7}",
            "item_id": f"i{i}",
            "event_type": "view",
            "channel": "web",
            "timestamp": f"{days[i % 3]}T10:{i % 60:02d}:00Z",
        }
        for i in range(250)
    ]
    for start in range(0, 250, 50):
        assert realtime.ingest(events[start : start + 50]).accepted == 50
    out = tmp_path / "log"
    env = {
        **os.environ,
        "REDIS_URL": str(settings.redis.url),
        "OMNIREC_REDIS_PREFIX": settings.redis.prefix,
        "OMNIREC_DATA_DIR": str(tmp_path / "var"),
    }
    # a process killed after writing two files, before acknowledging them (the fault is the
    # test's own: production code has no switch for it)
    crash = f"""
import os
from pathlib import Path
from features.export import export_events
from features.realtime import RealtimeEvents
from features.store import RedisFeatureStore
written = []
def after_write(path):
    written.append(path)
    if len(written) >= 2:
        os._exit(137)
store = RedisFeatureStore({str(settings.redis.url)!r}, {settings.redis.prefix!r}, timeout=30)
export_events(RealtimeEvents(store), Path({str(out)!r}), after_write=after_write)
"""
    crashed = subprocess.run(
        [sys.executable, "-c", crash], env=env, capture_output=True, text=True, timeout=PATIENCE
    )
    assert crashed.returncode == 137, crashed.stderr
    assert len(list(out.rglob("*.parquet"))) == 2
    for _ in range(2):  # the retry, and a second run that finds nothing new
        done = subprocess.run(
            [sys.executable, "-m", "cli", "export-events", "--out", str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=PATIENCE,
        )
        assert done.returncode == 0, done.stderr
    table = read_table(out)
    assert table.num_rows == 250
    assert pc.count_distinct(table.column("item_id").cast("string")).as_py() == 250
    assert {p.name for p in out.iterdir()} == {f"date={d}" for d in days}
    assert sum(store.client.xlen(k) for k in realtime.stream_keys) == 0
    again = export_events(realtime, out)
    assert again.events == 0


def test_customer_features_are_compact_binary(settings: Settings) -> None:
    import numpy as np

    from features.encoding import ENCODER, CustomerFeatures

    vector = np.random.default_rng(0).random(64, dtype=np.float32)
    blob = ENCODER.encode(
        CustomerFeatures(customer_id=f"C{uuid.uuid4().hex[:7]}", vector=vector.tobytes())
    )
    assert len(blob) < 64 * 4 + 64  # raw float32s, not JSON text
    decoded = CUSTOMER_DECODER.decode(blob)
    np.testing.assert_array_equal(np.frombuffer(decoded.vector, np.float32), vector)


def test_a_full_backlog_refuses_new_events_and_trims_none(
    store: RedisFeatureStore, tmp_path: Path
) -> None:
    realtime = RealtimeEvents(store, backlog_limit=5, streams=1)
    events = [
        {"customer_id": f"c{i}", "item_id": "i1", "event_type": "view", "channel": "web"}
        for i in range(7)
    ]
    assert realtime.ingest(events[:5]).accepted == 5
    with pytest.raises(EventBacklogFullError) as refused:
        realtime.ingest(events[5:6])
    assert refused.value.waiting == 5
    assert pickle.loads(pickle.dumps(refused.value)).waiting == 5  # crosses processes
    assert store.client.xlen(realtime.stream_key(0)) == 5  # every acknowledged event kept
    assert export_events(realtime, tmp_path / "log").events == 5
    assert realtime.ingest(events[5:7]).accepted == 2  # room again after the export
